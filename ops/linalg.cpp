// Batched matrix multiplication with transpose flags and NumPy broadcasting of batch axes.
#include <fmt/format.h>

#include "metagrad/ops.h"
#include "ops/broadcast.h"
#include "ops/families.h"
#include "ops/op_helpers.h"

namespace metagrad {

namespace {

struct MatmulDims {
  Shape batch;        // broadcast batch shape
  int64_t m, k, n;
  Shape a_batch, b_batch;
};

MatmulDims matmul_dims(const Shape& a, const Shape& b, bool ta, bool tb) {
  if (a.size() < 2 || b.size() < 2)
    throw ShapeError(fmt::format("matmul needs rank >= 2 operands, got {} and {}", shape_str(a), shape_str(b)));
  MatmulDims d;
  int64_t ar = a[a.size() - 2], ac = a[a.size() - 1], br = b[b.size() - 2], bc = b[b.size() - 1];
  d.m = ta ? ac : ar;
  d.k = ta ? ar : ac;
  int64_t kb = tb ? bc : br;
  d.n = tb ? br : bc;
  if (d.k != kb)
    throw ShapeError(fmt::format("matmul inner dimensions differ: {}{} @ {}{} (k = {} vs {})", shape_str(a),
                                 ta ? "^T" : "", shape_str(b), tb ? "^T" : "", d.k, kb));
  d.a_batch = Shape(a.begin(), a.end() - 2);
  d.b_batch = Shape(b.begin(), b.end() - 2);
  try {
    d.batch = broadcast_shapes(d.a_batch, d.b_batch);
  } catch (const ShapeError&) {
    throw ShapeError(fmt::format("matmul batch axes do not broadcast: {} @ {}", shape_str(a), shape_str(b)));
  }
  return d;
}

std::vector<TensorType> matmul_rule(const std::vector<TensorType>& in, const Attrs& attrs) {
  if (in[0].dtype != DType::f32 || in[1].dtype != DType::f32) throw ShapeError("matmul takes f32 operands");
  auto d = matmul_dims(in[0].shape, in[1].shape, attr_int(attrs, "transpose_a"), attr_int(attrs, "transpose_b"));
  Shape out = d.batch;
  out.push_back(d.m);
  out.push_back(d.n);
  return {{DType::f32, out}};
}

void matmul_reference(const Node& node, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
  bool ta = attr_int(node.attrs, "transpose_a"), tb = attr_int(node.attrs, "transpose_b");
  const RefTensor &a = *in[0], &b = *in[1];
  auto d = matmul_dims(a.shape, b.shape, ta, tb);
  auto sa = broadcast_strides(d.a_batch, d.batch), sb = broadcast_strides(d.b_batch, d.batch);
  const int64_t as = d.m * d.k, bs = d.k * d.n;
  for_each_broadcast_n(d.batch, {sa, sb}, [&](int64_t i, const int64_t* off) {
    const double* pa = a.data.data() + off[0] * as;
    const double* pb = b.data.data() + off[1] * bs;
    double* pc = out[0].data.data() + i * d.m * d.n;
    for (int64_t r = 0; r < d.m; ++r)
      for (int64_t c = 0; c < d.n; ++c) {
        double acc = 0;
        for (int64_t k = 0; k < d.k; ++k)
          acc += (ta ? pa[k * d.m + r] : pa[r * d.k + k]) * (tb ? pb[c * d.k + k] : pb[k * d.n + c]);
        pc[r * d.n + c] = acc;
      }
  });
}

// Logical [..., rows, cols] view of an operand stored as [..., cols, rows] when transposed.
dnnl::memory::desc operand_desc(const Shape& batch, int64_t rows, int64_t cols, bool transposed) {
  Shape dims = batch;
  dims.push_back(rows);
  dims.push_back(cols);
  std::vector<int64_t> strides(dims.size());
  strides[dims.size() - 2] = transposed ? 1 : cols;
  strides[dims.size() - 1] = transposed ? rows : 1;
  int64_t s = rows * cols;
  for (size_t i = batch.size(); i-- > 0;) {
    strides[i] = s;
    s *= batch[i];
  }
  return dnnl::memory::desc(to_dims(dims), dnnl::memory::data_type::f32,
                            dnnl::memory::dims(strides.begin(), strides.end()));
}

std::unique_ptr<Kernel> matmul_primitive(const KernelCtx& ctx, const dnnl::memory::desc& a, const dnnl::memory::desc& b,
                                         const dnnl::memory::desc& c) {
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), dnnl_attr(), ctx.engine);
  return std::make_unique<DnnlKernel>(
      dnnl::matmul(pd), pd,
      std::vector<DnnlKernel::Arg>{{DNNL_ARG_SRC, a, ctx.in[0]}, {DNNL_ARG_WEIGHTS, b, ctx.in[1]}, {DNNL_ARG_DST, c, ctx.out[0]}},
      ctx.engine, ctx.workspace);
}

std::unique_ptr<Kernel> matmul_kernel(const KernelCtx& ctx) {
  bool ta = attr_int(ctx.node.attrs, "transpose_a"), tb = attr_int(ctx.node.attrs, "transpose_b");
  auto d = matmul_dims(ctx.in_types[0].shape, ctx.in_types[1].shape, ta, tb);
  // A weight shared by every batch entry: fold the batch into the rows, one large GEMM.
  const bool b_shared = num_elements(d.b_batch) == 1;
  if (b_shared && !ta && d.a_batch == d.batch) {
    Shape none;
    int64_t rows = num_elements(d.batch) * d.m;
    return matmul_primitive(ctx, operand_desc(none, rows, d.k, false), operand_desc(none, d.k, d.n, tb),
                            operand_desc(none, rows, d.n, false));
  }
  // oneDNN broadcasts batch axes of size 1 when both operands have the output's rank.
  const size_t rank = d.batch.size();
  Shape ab = pad_rank(d.a_batch, rank), bb = pad_rank(d.b_batch, rank);
  return matmul_primitive(ctx, operand_desc(ab, d.m, d.k, ta), operand_desc(bb, d.k, d.n, tb),
                          operand_desc(d.batch, d.m, d.n, false));
}

// Cotangents of C = op(A) op(B) written with the transpose flags, never with transpose nodes.
std::vector<Tensor> matmul_grad(const GradCtx& c) {
  bool ta = attr_int(c.attrs, "transpose_a"), tb = attr_int(c.attrs, "transpose_b");
  const Tensor &a = c.inputs[0], &b = c.inputs[1], &g = c.cotangents[0];
  if (!ta && !tb) return {matmul(g, b, false, true), matmul(a, g, true, false)};
  if (!ta && tb) return {matmul(g, b, false, false), matmul(g, a, true, false)};
  if (ta && !tb) return {matmul(b, g, false, true), matmul(a, g, false, false)};
  return {matmul(b, g, true, true), matmul(g, a, true, true)};
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) {
  return apply("matmul", {a, b}, {{"transpose_a", int64_t(transpose_a)}, {"transpose_b", int64_t(transpose_b)}});
}

void register_linalg_ops(OpRegistry& r) {
  OpDef d;
  d.name = "matmul";
  d.num_inputs = 2;
  d.attrs = {{"transpose_a", AttrKind::Int, AttrValue(int64_t(0))}, {"transpose_b", AttrKind::Int, AttrValue(int64_t(0))}};
  d.shape = matmul_rule;
  d.grad = matmul_grad;
  d.reference = matmul_reference;
  d.kernel = matmul_kernel;
  auto t = [](Shape a, Shape b, int64_t ta, int64_t tb) {
    return tcase({a, b}, {{"transpose_a", ta}, {"transpose_b", tb}}, -1.0, 1.0);
  };
  d.tests = {t({3, 4}, {4, 5}, 0, 0),       t({4, 3}, {4, 5}, 1, 0),       t({3, 4}, {5, 4}, 0, 1),
             t({4, 3}, {5, 4}, 1, 1),       t({2, 3, 4}, {2, 4, 5}, 0, 0), t({2, 3, 1}, {1, 5}, 0, 0),
             t({3, 4}, {2, 4, 5}, 0, 0),    t({2, 1, 3, 4}, {3, 4, 2}, 0, 0), t({2, 4, 3}, {2, 5, 4}, 1, 1),
             t({2, 3, 4}, {5, 4}, 0, 1),    t({4, 3}, {2, 4, 5}, 1, 0),    t({2, 4, 3}, {5, 4}, 1, 1),
             t({1, 3, 4}, {2, 4, 5}, 0, 0), t({2, 3, 4}, {2, 1, 5, 4}, 0, 1)};
  r.add(std::move(d));
}

}  // namespace metagrad
