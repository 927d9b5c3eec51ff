// 2-D convolution and the two transposes its gradient needs (data and weights).
#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "metagrad/ops.h"
#include "ops/families.h"
#include "ops/op_helpers.h"

namespace metagrad {

namespace {

using IntList = std::vector<int64_t>;

struct ConvGeom {
  int64_t n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw;
};

ConvGeom geom(const Shape& x, const Shape& wt, const IntList& stride, const IntList& pad) {
  if (stride.size() != 2 || pad.size() != 2) throw ShapeError("stride and padding need two values");
  if (stride[0] <= 0 || stride[1] <= 0 || pad[0] < 0 || pad[1] < 0) throw ShapeError("bad stride or padding");
  ConvGeom g{x[0], x[1], x[2], x[3], wt[0], wt[2], wt[3], 0, 0, stride[0], stride[1], pad[0], pad[1]};
  g.oh = (g.h + 2 * g.ph - g.kh) / g.sh + 1;
  g.ow = (g.w + 2 * g.pw - g.kw) / g.sw + 1;
  if (g.oh <= 0 || g.ow <= 0)
    throw ShapeError(fmt::format("window {}x{} does not fit input {}", g.kh, g.kw, shape_str(x)));
  return g;
}

void need_rank4(const TensorType& t, const char* what) {
  if (t.shape.size() != 4 || t.dtype != DType::f32) throw ShapeError(fmt::format("{} must be f32 rank 4, got {}", what, type_str(t)));
}

// ---- shape rules ----
std::vector<TensorType> conv_rule(const std::vector<TensorType>& in, const Attrs& a) {
  need_rank4(in[0], "conv2d input");
  need_rank4(in[1], "conv2d weights");
  if (in[0].shape[1] != in[1].shape[1])
    throw ShapeError(fmt::format("input channels {} differ from weight channels {}", in[0].shape[1], in[1].shape[1]));
  auto g = geom(in[0].shape, in[1].shape, attr_ints(a, "stride"), attr_ints(a, "padding"));
  return {{DType::f32, {g.n, g.o, g.oh, g.ow}}};
}

std::vector<TensorType> conv_bwd_data_rule(const std::vector<TensorType>& in, const Attrs& a) {
  need_rank4(in[0], "output cotangent");
  need_rank4(in[1], "weights");
  const auto& hw = attr_ints(a, "input_hw");
  Shape x{in[0].shape[0], in[1].shape[1], hw.at(0), hw.at(1)};
  auto out = conv_rule({{DType::f32, x}, in[1]}, a);
  if (out[0].shape != in[0].shape)
    throw ShapeError(fmt::format("cotangent {} does not match convolution output {}", shape_str(in[0].shape), shape_str(out[0].shape)));
  return {{DType::f32, x}};
}

std::vector<TensorType> conv_bwd_weights_rule(const std::vector<TensorType>& in, const Attrs& a) {
  need_rank4(in[0], "input");
  need_rank4(in[1], "output cotangent");
  const auto& k = attr_ints(a, "kernel_hw");
  Shape w{in[1].shape[1], in[0].shape[1], k.at(0), k.at(1)};
  auto out = conv_rule({in[0], {DType::f32, w}}, a);
  if (out[0].shape != in[1].shape)
    throw ShapeError(fmt::format("cotangent {} does not match convolution output {}", shape_str(in[1].shape), shape_str(out[0].shape)));
  return {{DType::f32, w}};
}

// ---- f64 references: one loop nest, three uses ----
enum class ConvMode { Forward, BackwardData, BackwardWeights };

// Calls f(x index, w index, y index) for every product the convolution sums; the forward pass and
// both transposes are the same nest accumulating into a different operand.
template <class F>
void conv_for_each(const ConvGeom& g, F&& f) {
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < g.o; ++o)
      for (int64_t i = 0; i < g.oh; ++i)
        for (int64_t j = 0; j < g.ow; ++j) {
          size_t yi = size_t(((n * g.o + o) * g.oh + i) * g.ow + j);
          for (int64_t c = 0; c < g.c; ++c)
            for (int64_t p = 0; p < g.kh; ++p)
              for (int64_t q = 0; q < g.kw; ++q) {
                int64_t r = i * g.sh + p - g.ph, s = j * g.sw + q - g.pw;
                if (r < 0 || r >= g.h || s < 0 || s >= g.w) continue;
                f(size_t(((n * g.c + c) * g.h + r) * g.w + s), size_t(((o * g.c + c) * g.kh + p) * g.kw + q), yi);
              }
        }
}

// ---- oneDNN kernels ----

dnnl::memory::desc any_desc(const Shape& s) {
  return dnnl::memory::desc(to_dims(s), dnnl::memory::data_type::f32, dnnl::memory::format_tag::any);
}

dnnl::convolution_forward::primitive_desc conv_fwd_pd(const ConvGeom& g, const dnnl::engine& eng) {
  auto src = any_desc({g.n, g.c, g.h, g.w}), wei = any_desc({g.o, g.c, g.kh, g.kw}), dst = any_desc({g.n, g.o, g.oh, g.ow});
  // A single input channel (an image network's first layer) has little to block: oneDNN's GEMM
  // path on plain NCHW beats the blocked kernel plus the reorder of its many-channel output
  // (measured in docs/ARCHITECTURE.md, Runtime).
  if (g.c == 1) src = dense_desc({g.n, g.c, g.h, g.w}), dst = dense_desc({g.n, g.o, g.oh, g.ow});
  dnnl::memory::dims strides{g.sh, g.sw}, pad{g.ph, g.pw};
  auto pad_r = right_pad(g.oh, g.ow, g.sh, g.sw, g.kh, g.kw, g.h, g.w, g.ph, g.pw);
  return {dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src,
                                          wei, dst, strides, pad, pad_r),
          dnnl_attr(), eng};
}

// One operand of a convolution primitive: our dense buffer and the format the primitive chose.
struct ConvOperand {
  int arg;
  dnnl::memory::desc dense, chosen;
  void* ptr;
  bool output;
};

// Convolutions run in the formats oneDNN picks for them (blocked, nChw16c-style, on AVX-512): its
// jit kernels there are about 1.8x faster than the im2col + GEMM path plain NCHW gets, which pays
// for reordering operands in and the result out through the shared workspace.
std::unique_ptr<Kernel> reordered_kernel(const KernelCtx& ctx, dnnl::primitive prim, const dnnl::primitive_desc_base& pd,
                                         const std::vector<ConvOperand>& ops) {
  auto k = std::make_unique<DnnlKernel>(ctx.engine);
  std::vector<DnnlKernel::Arg> args;
  std::vector<int> temps;
  std::vector<std::pair<int, const ConvOperand*>> outputs;
  for (const ConvOperand& op : ops) {
    if (op.chosen == op.dense) {
      args.push_back({op.arg, op.dense, op.ptr});
      continue;
    }
    int t = k->add_temp(op.chosen);
    args.push_back({op.arg, op.chosen, nullptr});
    temps.push_back(t);
    if (op.output) {
      outputs.push_back({t, &op});
    } else {
      dnnl::reorder::primitive_desc r(ctx.engine, op.dense, ctx.engine, op.chosen, dnnl_attr());
      k->add(dnnl::reorder(r), r, {{DNNL_ARG_FROM, op.dense, op.ptr}, {DNNL_ARG_TO, op.chosen, nullptr}}, {t});
    }
  }
  k->add(std::move(prim), pd, args, temps);
  for (auto [t, op] : outputs) {
    dnnl::reorder::primitive_desc r(ctx.engine, op->chosen, ctx.engine, op->dense, dnnl_attr());
    k->add(dnnl::reorder(r), r, {{DNNL_ARG_FROM, op->chosen, nullptr}, {DNNL_ARG_TO, op->dense, op->ptr}}, {t});
  }
  k->bind(ctx.workspace);
  return k;
}

std::unique_ptr<Kernel> conv_kernel(const KernelCtx& ctx, ConvMode mode) {
  const Attrs& a = ctx.node.attrs;
  Shape x, w;
  if (mode == ConvMode::Forward) x = ctx.in_types[0].shape, w = ctx.in_types[1].shape;
  if (mode == ConvMode::BackwardData) x = ctx.out_type().shape, w = ctx.in_types[1].shape;
  if (mode == ConvMode::BackwardWeights) x = ctx.in_types[0].shape, w = ctx.out_type().shape;
  ConvGeom g = geom(x, w, attr_ints(a, "stride"), attr_ints(a, "padding"));
  auto fwd = conv_fwd_pd(g, ctx.engine);
  const Shape y{g.n, g.o, g.oh, g.ow};
  auto src = dense_desc(x), wei = dense_desc(w), dst = dense_desc(y);
  dnnl::memory::dims strides{g.sh, g.sw}, pad{g.ph, g.pw};
  auto pad_r = right_pad(g.oh, g.ow, g.sh, g.sw, g.kh, g.kw, g.h, g.w, g.ph, g.pw);
  if (mode == ConvMode::Forward)
    return reordered_kernel(ctx, dnnl::convolution_forward(fwd), fwd,
                            {{DNNL_ARG_SRC, src, fwd.src_desc(), ctx.in[0], false},
                             {DNNL_ARG_WEIGHTS, wei, fwd.weights_desc(), ctx.in[1], false},
                             {DNNL_ARG_DST, dst, fwd.dst_desc(), ctx.out[0], true}});
  if (mode == ConvMode::BackwardData) {
    dnnl::convolution_backward_data::primitive_desc pd(
        dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, any_desc(x), any_desc(w), any_desc(y),
                                              strides, pad, pad_r),
        dnnl_attr(), ctx.engine, fwd);
    return reordered_kernel(ctx, dnnl::convolution_backward_data(pd), pd,
                            {{DNNL_ARG_DIFF_DST, dst, pd.diff_dst_desc(), ctx.in[0], false},
                             {DNNL_ARG_WEIGHTS, wei, pd.weights_desc(), ctx.in[1], false},
                             {DNNL_ARG_DIFF_SRC, src, pd.diff_src_desc(), ctx.out[0], true}});
  }
  // One input channel: plain formats here too. Blocked, the 64-channel cotangent needs a reorder
  // buffer as large as itself (14 MiB of workspace for the conv-MAML query batch) for about 10%
  // less time.
  dnnl::convolution_backward_weights::primitive_desc pd(
      dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, g.c == 1 ? src : any_desc(x),
                                               any_desc(w), g.c == 1 ? dst : any_desc(y), strides, pad, pad_r),
      dnnl_attr(), ctx.engine, fwd);
  return reordered_kernel(ctx, dnnl::convolution_backward_weights(pd), pd,
                          {{DNNL_ARG_SRC, src, pd.src_desc(), ctx.in[0], false},
                           {DNNL_ARG_DIFF_DST, dst, pd.diff_dst_desc(), ctx.in[1], false},
                           {DNNL_ARG_DIFF_WEIGHTS, wei, pd.diff_weights_desc(), ctx.out[0], true}});
}

Attrs conv_attrs(const Attrs& a) { return {{"stride", attr_ints(a, "stride")}, {"padding", attr_ints(a, "padding")}}; }

Tensor conv_bwd_data(const Tensor& gy, const Tensor& w, const Attrs& conv, const Shape& x_shape) {
  Attrs a = conv_attrs(conv);
  a["input_hw"] = IntList{x_shape[2], x_shape[3]};
  return apply("conv2d_backward_data", {gy, w}, a);
}

Tensor conv_bwd_weights(const Tensor& x, const Tensor& gy, const Attrs& conv, const Shape& w_shape) {
  Attrs a = conv_attrs(conv);
  a["kernel_hw"] = IntList{w_shape[2], w_shape[3]};
  return apply("conv2d_backward_weights", {x, gy}, a);
}

Tensor conv_fwd(const Tensor& x, const Tensor& w, const Attrs& conv) { return apply("conv2d", {x, w}, conv_attrs(conv)); }

void add_conv_op(OpRegistry& r, const char* name, ShapeFn shape, ConvMode mode, GradFn grad, std::vector<OpTestCase> tests,
                 std::vector<AttrSpec> extra) {
  OpDef d;
  d.name = name;
  d.num_inputs = 2;
  d.attrs = {{"stride", AttrKind::Ints, AttrValue(IntList{1, 1})}, {"padding", AttrKind::Ints, AttrValue(IntList{0, 0})}};
  d.attrs.insert(d.attrs.end(), extra.begin(), extra.end());
  d.shape = std::move(shape);
  d.grad = std::move(grad);
  d.reference = [mode](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
    const IntList &st = attr_ints(n.attrs, "stride"), &pd = attr_ints(n.attrs, "padding");
    const std::vector<double>&a = in[0]->data, &b = in[1]->data;
    std::vector<double>& z = out[0].data;
    if (mode == ConvMode::Forward)  // a = x, b = w, z = y
      conv_for_each(geom(in[0]->shape, in[1]->shape, st, pd), [&](size_t xi, size_t wi, size_t yi) { z[yi] += a[xi] * b[wi]; });
    else if (mode == ConvMode::BackwardData)  // a = gy, b = w, z = gx
      conv_for_each(geom(out[0].shape, in[1]->shape, st, pd), [&](size_t xi, size_t wi, size_t yi) { z[xi] += a[yi] * b[wi]; });
    else  // a = x, b = gy, z = gw
      conv_for_each(geom(in[0]->shape, out[0].shape, st, pd), [&](size_t xi, size_t wi, size_t yi) { z[wi] += a[xi] * b[yi]; });
  };
  d.kernel = [mode](const KernelCtx& ctx) { return conv_kernel(ctx, mode); };
  d.tests = std::move(tests);
  r.add(std::move(d));
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, std::vector<int64_t> stride, std::vector<int64_t> padding) {
  return apply("conv2d", {x, w}, {{"stride", stride}, {"padding", padding}});
}
void register_conv_ops(OpRegistry& r) {
  auto ct = [](Shape x, Shape w, IntList s, IntList p) { return tcase({x, w}, {{"stride", s}, {"padding", p}}, -1, 1); };
  add_conv_op(
      r, "conv2d", conv_rule, ConvMode::Forward,
      [](const GradCtx& c) {
        const Tensor &x = c.inputs[0], &w = c.inputs[1], &g = c.cotangents[0];
        return std::vector<Tensor>{conv_bwd_data(g, w, c.attrs, x.shape()), conv_bwd_weights(x, g, c.attrs, w.shape())};
      },
      {ct({2, 3, 5, 5}, {4, 3, 3, 3}, {1, 1}, {0, 0}), ct({1, 2, 5, 5}, {3, 2, 3, 3}, {2, 2}, {1, 1}),
       ct({1, 2, 4, 6}, {2, 2, 1, 3}, {1, 2}, {0, 1}), ct({2, 3, 5, 5}, {4, 3, 3, 3}, {2, 2}, {1, 1}),
       // The stride does not tile the input: the last row and column are never read.
       ct({1, 2, 6, 6}, {2, 2, 3, 3}, {2, 2}, {0, 0}),
       // One input channel (a first layer), which runs on plain formats.
       ct({3, 1, 6, 6}, {8, 1, 3, 3}, {1, 1}, {1, 1})},
      {});
  auto bd = [](Shape gy, Shape w, IntList s, IntList p, IntList hw) {
    return tcase({gy, w}, {{"stride", s}, {"padding", p}, {"input_hw", hw}}, -1, 1);
  };
  add_conv_op(
      r, "conv2d_backward_data", conv_bwd_data_rule, ConvMode::BackwardData,
      [](const GradCtx& c) {  // z = Dx(gy, w): linear in gy, bilinear with w
        const Tensor &gy = c.inputs[0], &w = c.inputs[1], &cz = c.cotangents[0];
        return std::vector<Tensor>{conv_fwd(cz, w, c.attrs), conv_bwd_weights(cz, gy, c.attrs, w.shape())};
      },
      {bd({2, 4, 3, 3}, {4, 3, 3, 3}, {1, 1}, {0, 0}, {5, 5}), bd({1, 3, 3, 3}, {3, 2, 3, 3}, {2, 2}, {1, 1}, {5, 5}),
       bd({1, 2, 2, 2}, {2, 2, 3, 3}, {2, 2}, {0, 0}, {6, 6})},
      {{"input_hw", AttrKind::Ints, std::nullopt}});
  auto bw = [](Shape x, Shape gy, IntList s, IntList p, IntList k) {
    return tcase({x, gy}, {{"stride", s}, {"padding", p}, {"kernel_hw", k}}, -1, 1);
  };
  add_conv_op(
      r, "conv2d_backward_weights", conv_bwd_weights_rule, ConvMode::BackwardWeights,
      [](const GradCtx& c) {  // z = Dw(x, gy)
        const Tensor &x = c.inputs[0], &gy = c.inputs[1], &cz = c.cotangents[0];
        return std::vector<Tensor>{conv_bwd_data(gy, cz, c.attrs, x.shape()), conv_fwd(x, cz, c.attrs)};
      },
      {bw({2, 3, 5, 5}, {2, 4, 3, 3}, {1, 1}, {0, 0}, {3, 3}), bw({1, 2, 5, 5}, {1, 3, 3, 3}, {2, 2}, {1, 1}, {3, 3}),
       bw({1, 2, 6, 6}, {1, 2, 2, 2}, {2, 2}, {0, 0}, {3, 3}),
       // One input channel (a first layer), which runs on plain formats.
       bw({3, 1, 6, 6}, {3, 8, 6, 6}, {1, 1}, {1, 1}, {3, 3})},
      {{"kernel_hw", AttrKind::Ints, std::nullopt}});
}

}  // namespace metagrad
