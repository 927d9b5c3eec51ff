// Max and average pooling over 2-D windows, and the closed pair of ops max pooling's derivatives use.
#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "metagrad/ops.h"
#include "ops/families.h"
#include "ops/op_helpers.h"
#include "ops/vec4.h"

namespace metagrad {

namespace {

using IntList = std::vector<int64_t>;

struct PoolGeom {
  int64_t n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow;
};
PoolGeom pool_geom(const Shape& x, const Attrs& a) {
  const auto& k = attr_ints(a, "kernel");
  auto s = attr_ints(a, "stride");
  const auto& p = attr_ints(a, "padding");
  if (s.empty()) s = k;
  if (x.size() != 4 || k.size() != 2 || s.size() != 2 || p.size() != 2)
    throw ShapeError(fmt::format("pooling needs a rank-4 input and two-value kernel/stride/padding, got {}", shape_str(x)));
  PoolGeom g{x[0], x[1], x[2], x[3], k[0], k[1], s[0], s[1], p[0], p[1], 0, 0};
  if (g.kh <= 0 || g.kw <= 0 || g.sh <= 0 || g.sw <= 0 || g.ph < 0 || g.pw < 0) throw ShapeError("bad pooling window");
  g.oh = (g.h + 2 * g.ph - g.kh) / g.sh + 1;
  g.ow = (g.w + 2 * g.pw - g.kw) / g.sw + 1;
  if (g.oh <= 0 || g.ow <= 0) throw ShapeError(fmt::format("pooling window does not fit {}", shape_str(x)));
  return g;
}

std::vector<TensorType> pool_rule(const std::vector<TensorType>& in, const Attrs& a) {
  auto g = pool_geom(in[0].shape, a);
  return {{DType::f32, {g.n, g.c, g.oh, g.ow}}};
}

void pool_reference(bool is_max, const Node& node, const RefTensor& x, RefTensor& y) {
  auto g = pool_geom(x.shape, node.attrs);
  for (int64_t nc = 0; nc < g.n * g.c; ++nc)
    for (int64_t i = 0; i < g.oh; ++i)
      for (int64_t j = 0; j < g.ow; ++j) {
        double acc = is_max ? -std::numeric_limits<double>::infinity() : 0.0;
        int64_t count = 0;
        for (int64_t p = 0; p < g.kh; ++p)
          for (int64_t q = 0; q < g.kw; ++q) {
            int64_t r = i * g.sh + p - g.ph, s = j * g.sw + q - g.pw;
            if (r < 0 || r >= g.h || s < 0 || s >= g.w) continue;
            double v = x.data[size_t((nc * g.h + r) * g.w + s)];
            acc = is_max ? std::max(acc, v) : acc + v;
            ++count;
          }
        y.data[size_t((nc * g.oh + i) * g.ow + j)] = is_max ? acc : acc / double(count);
      }
}

// 2x2 max pooling over windows that tile the input, one output row at a time: the row-wise
// maximum of the two input rows, then the maximum of each deinterleaved pair. oneDNN 2.6's
// pooling on plain NCHW took twice as long on the conv network's first block.
void max_pool_2x2_row(const float* __restrict t, const float* __restrict b, float* __restrict y, int64_t ow) {
  using vec4::v4;
  int64_t j = 0;
  for (; j + 4 <= ow; j += 4) {
    const v4 m0 = vec4::max(vec4::load(t + 2 * j), vec4::load(b + 2 * j));
    const v4 m1 = vec4::max(vec4::load(t + 2 * j + 4), vec4::load(b + 2 * j + 4));
    vec4::store(y + j, vec4::max(__builtin_shufflevector(m0, m1, 0, 2, 4, 6), __builtin_shufflevector(m0, m1, 1, 3, 5, 7)));
  }
  for (; j < ow; ++j) {
    const float a = t[2 * j] > t[2 * j + 1] ? t[2 * j] : t[2 * j + 1];
    const float c = b[2 * j] > b[2 * j + 1] ? b[2 * j] : b[2 * j + 1];
    y[j] = a > c ? a : c;
  }
}

std::unique_ptr<Kernel> pool_kernel(const KernelCtx& ctx, dnnl::algorithm alg) {
  auto g = pool_geom(ctx.in_types[0].shape, ctx.node.attrs);
  if (alg == dnnl::algorithm::pooling_max && g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && !g.ph && !g.pw &&
      g.h % 2 == 0 && g.w % 2 == 0) {
    const float* x = ctx.in_f32(0);
    float* y = ctx.out_f32();
    const int64_t rows = g.n * g.c * g.oh, w = g.w, ow = g.ow;
    return std::make_unique<LoopKernel>(
        [=] {
#pragma omp parallel for schedule(static) if (rows * w >= (int64_t(1) << 16))
          for (int64_t r = 0; r < rows; ++r) max_pool_2x2_row(x + 2 * r * w, x + 2 * r * w + w, y + r * ow, ow);
        },
        "loop:max_pool_2x2");
  }
  auto src = dense_desc(ctx.in_types[0].shape), dst = dense_desc(ctx.out_type().shape);
  auto pad_r = right_pad(g.oh, g.ow, g.sh, g.sw, g.kh, g.kw, g.h, g.w, g.ph, g.pw);
  dnnl::pooling_forward::primitive_desc pd(
      dnnl::pooling_forward::desc(dnnl::prop_kind::forward_inference, alg, src, dst, {g.sh, g.sw}, {g.kh, g.kw},
                                  {g.ph, g.pw}, pad_r),
      dnnl_attr(), ctx.engine);
  return std::make_unique<DnnlKernel>(
      dnnl::pooling_forward(pd), pd,
      std::vector<DnnlKernel::Arg>{{DNNL_ARG_SRC, src, ctx.in[0]}, {DNNL_ARG_DST, dst, ctx.out[0]}}, ctx.engine, ctx.workspace);
}

// Nearest upsampling of a pooled [N,C,H/kh,W/kw] tensor back to [N,C,H,W], from primitives.
Tensor upsample(const Tensor& y, const PoolGeom& g) {
  Tensor t = reshape(y, {g.n, g.c, g.oh, 1, g.ow, 1});
  t = broadcast_to(t, {g.n, g.c, g.oh, g.kh, g.ow, g.kw});
  return reshape(t, {g.n, g.c, g.h, g.w});
}

// Pool gradients exist as graph for non-overlapping windows that tile the input exactly.
PoolGeom tiling_geom(const GradCtx& c, const char* op) {
  auto g = pool_geom(c.inputs[0].shape(), c.attrs);
  if (g.sh != g.kh || g.sw != g.kw || g.ph || g.pw || g.h % g.kh || g.w % g.kw)
    throw GraphError(fmt::format("{}: gradients exist for non-overlapping, unpadded windows that tile the input; "
                                 "got kernel {}x{}, stride {}x{}, padding {}x{} on {}",
                                 op, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, shape_str(c.inputs[0].shape())));
  return g;
}

// Max pooling's derivative over windows that tile the input, as a closed pair of ops:
// max_pool2d_backward(x, gy) routes each window's cotangent to the window's (first) maximum of x;
// max_pool2d_select(x, z) reads z at those positions. Each is linear in its second operand and
// the other's adjoint there; both are locally constant in x.
template <typename F>
void for_each_window_argmax(const PoolGeom& g, const double* x, F&& f) {
  for (int64_t nc = 0; nc < g.n * g.c; ++nc)
    for (int64_t i = 0; i < g.oh; ++i)
      for (int64_t j = 0; j < g.ow; ++j) {
        int64_t best = (nc * g.h + i * g.kh) * g.w + j * g.kw;
        for (int64_t p = 0; p < g.kh; ++p)
          for (int64_t q = 0; q < g.kw; ++q) {
            int64_t at = (nc * g.h + i * g.kh + p) * g.w + j * g.kw + q;
            if (x[at] > x[best]) best = at;
          }
        f((nc * g.oh + i) * g.ow + j, best);
      }
}

// The f32 kernels visit each window once. 2x2 windows, by far the common case, take a
// branch-free path over row pairs that the compiler vectorizes; ties go to the first position
// in window order, as in the reference.
struct WindowLoop {
  PoolGeom g;
  const float* x;
  // f(output index, window's top-left input index, argmax input index)
  template <typename F>
  void run(F&& f) const {
    const int64_t kh = g.kh, kw = g.kw, w = g.w;
    for (int64_t nc = 0; nc < g.n * g.c; ++nc)
      for (int64_t i = 0; i < g.oh; ++i) {
        const int64_t row = (nc * g.h + i * kh) * w;
        for (int64_t j = 0; j < g.ow; ++j) {
          int64_t best = row + j * kw;
          for (int64_t p = 0; p < kh; ++p)
            for (int64_t q = 0; q < kw; ++q) {
              int64_t at = row + p * w + j * kw + q;
              if (x[at] > x[best]) best = at;
            }
          f((nc * g.oh + i) * g.ow + j, row + j * kw, best);
        }
      }
  }
  bool two_by_two() const { return g.kh == 2 && g.kw == 2; }
  // f(output row, top input row, bottom input row, output row length): per row pair.
  template <typename F>
  void rows2(F&& f) const {
    for (int64_t r = 0; r < g.n * g.c * g.oh; ++r) f(r * g.ow, 2 * r * g.w, 2 * r * g.w + g.w, g.ow);
  }
};

// The first maximum of a 2x2 window, in window order; bitwise & keeps it free of branches.
struct FirstMax4 {
  bool a, b, c, d;
  FirstMax4(float xa, float xb, float xc, float xd) {
    a = (xa >= xb) & (xa >= xc) & (xa >= xd);
    b = !a & (xb >= xc) & (xb >= xd);
    c = !a & !b & (xc >= xd);
    d = !a & !b & !c;
  }
};

// One output row of 2x2 windows: its two input rows of x and of gx. gx may be x itself (the op
// runs in place): each window's four x values are read before its four gx values are written.
void max_pool_backward_row2(const float* xt, const float* xb, const float* __restrict gy, float* gt, float* gb, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    FirstMax4 m(xt[2 * j], xt[2 * j + 1], xb[2 * j], xb[2 * j + 1]);
    const float v = gy[j];
    gt[2 * j] = m.a ? v : 0.f;
    gt[2 * j + 1] = m.b ? v : 0.f;
    gb[2 * j] = m.c ? v : 0.f;
    gb[2 * j + 1] = m.d ? v : 0.f;
  }
}

void max_pool_backward_f32(const WindowLoop& loop, const float* gy, float* gx) {
  const float* x = loop.x;
  if (loop.two_by_two()) {
    // Row pairs are independent: large tensors split them over the OpenMP threads.
    const int64_t rows = loop.g.n * loop.g.c * loop.g.oh, w = loop.g.w, ow = loop.g.ow;
#pragma omp parallel for schedule(static) if (rows * w >= (int64_t(1) << 16))
    for (int64_t r = 0; r < rows; ++r)
      max_pool_backward_row2(x + 2 * r * w, x + 2 * r * w + w, gy + r * ow, gx + 2 * r * w, gx + 2 * r * w + w, ow);
    return;
  }
  const int64_t kh = loop.g.kh, kw = loop.g.kw, w = loop.g.w;
  loop.run([&](int64_t o, int64_t corner, int64_t best) {
    for (int64_t p = 0; p < kh; ++p)
      for (int64_t q = 0; q < kw; ++q) gx[corner + p * w + q] = 0.f;
    gx[best] = gy[o];
  });
}

// One output row of 2x2 windows, with the winner selected by bit masks so that the loop
// vectorizes: written as conditional selection it compiled to branches on random outcomes and
// ran ten times slower than the backward op.
void max_pool_select_row2(const float* __restrict xt, const float* __restrict xb, const float* __restrict zt,
                          const float* __restrict zb, float* __restrict y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    FirstMax4 m(xt[2 * j], xt[2 * j + 1], xb[2 * j], xb[2 * j + 1]);
    // Exactly one mask is all ones: the winner's bits, copied exactly (NaN and -0 included).
    auto bits = [](float f) { return std::bit_cast<uint32_t>(f); };
    const uint32_t v = (bits(zt[2 * j]) & -uint32_t(m.a)) | (bits(zt[2 * j + 1]) & -uint32_t(m.b)) |
                       (bits(zb[2 * j]) & -uint32_t(m.c)) | (bits(zb[2 * j + 1]) & -uint32_t(m.d));
    y[j] = std::bit_cast<float>(v);
  }
}

void max_pool_select_f32(const WindowLoop& loop, const float* z, float* y) {
  const float* x = loop.x;
  if (loop.two_by_two()) {
    loop.rows2([&](int64_t o, int64_t t, int64_t b, int64_t n) { max_pool_select_row2(x + t, x + b, z + t, z + b, y + o, n); });
    return;
  }
  loop.run([&](int64_t o, int64_t, int64_t best) { y[o] = z[best]; });
}

PoolGeom tiling_pool_geom(const Shape& x, const Attrs& a, const char* op) {
  auto g = pool_geom(x, a);
  if (g.sh != g.kh || g.sw != g.kw || g.ph || g.pw || g.h % g.kh || g.w % g.kw)
    throw ShapeError(fmt::format("{}: needs non-overlapping, unpadded windows that tile the input; got kernel {}x{}, "
                                 "stride {}x{}, padding {}x{} on {}",
                                 op, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, shape_str(x)));
  return g;
}

std::vector<AttrSpec> pool_attr_schema() {
  return {{"kernel", AttrKind::Ints, std::nullopt},
          {"stride", AttrKind::Ints, AttrValue(IntList{})},
          {"padding", AttrKind::Ints, AttrValue(IntList{0, 0})}};
}
Tensor max_pool_backward(const Tensor& x, const Tensor& gy, const Attrs& a) { return apply("max_pool2d_backward", {x, gy}, a); }
Tensor max_pool_select(const Tensor& x, const Tensor& z, const Attrs& a) { return apply("max_pool2d_select", {x, z}, a); }

void add_max_pool_derivatives(OpRegistry& r) {
  {
    OpDef d;
    d.name = "max_pool2d_backward";
    d.num_inputs = 2;
    d.attrs = pool_attr_schema();
    d.shape = [](const std::vector<TensorType>& in, const Attrs& a) {
      auto g = tiling_pool_geom(in[0].shape, a, "max_pool2d_backward");
      if (in[1].shape != Shape{g.n, g.c, g.oh, g.ow})
        throw ShapeError(fmt::format("max_pool2d_backward: cotangent {} does not match pooled {}", shape_str(in[1].shape),
                                     shape_str(Shape{g.n, g.c, g.oh, g.ow})));
      return std::vector<TensorType>{{DType::f32, in[0].shape}};
    };
    d.grad = [](const GradCtx& c) {
      return std::vector<Tensor>{Tensor(), max_pool_select(c.inputs[0], c.cotangents[0], c.attrs)};
    };
    d.reference = [](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
      std::fill(out[0].data.begin(), out[0].data.end(), 0.0);
      for_each_window_argmax(pool_geom(in[0]->shape, n.attrs), in[0]->data.data(),
                             [&](int64_t o, int64_t at) { out[0].data[size_t(at)] = in[1]->data[size_t(o)]; });
    };
    d.kernel = [](const KernelCtx& ctx) {
      WindowLoop loop{pool_geom(ctx.in_types[0].shape, ctx.node.attrs), ctx.in_f32(0)};
      const float* gy = ctx.in_f32(1);
      float* gx = ctx.out_f32();
      return std::make_unique<LoopKernel>([=] { max_pool_backward_f32(loop, gy, gx); }, "loop:max_pool_backward");
    };
    // The pooled input usually dies here (relu's output in a conv block): its buffer takes the
    // result, one activation-sized buffer less at the peak of the backward pass.
    d.inplace = true;
    auto c = [](Shape x, IntList k) {
      Shape y{x[0], x[1], x[2] / k[0], x[3] / k[1]};
      OpTestCase t = tcase({x, y}, {{"kernel", k}});
      t.differentiable = {false, true};
      return t;
    };
    d.tests = {c({2, 3, 4, 4}, {2, 2}), c({1, 2, 6, 4}, {3, 2}), c({1, 3, 2, 6}, {2, 2})};
    // Large enough for the threaded 2x2 path (kernel against reference only).
    OpTestCase big = c({2, 64, 32, 32}, {2, 2});
    big.differentiable = {false, false};
    d.tests.push_back(big);
    r.add(std::move(d));
  }
  {
    OpDef d;
    d.name = "max_pool2d_select";
    d.num_inputs = 2;
    d.attrs = pool_attr_schema();
    d.shape = [](const std::vector<TensorType>& in, const Attrs& a) {
      auto g = tiling_pool_geom(in[0].shape, a, "max_pool2d_select");
      if (in[1].shape != in[0].shape)
        throw ShapeError(fmt::format("max_pool2d_select: values {} do not match the pooled input {}", shape_str(in[1].shape),
                                     shape_str(in[0].shape)));
      return std::vector<TensorType>{{DType::f32, Shape{g.n, g.c, g.oh, g.ow}}};
    };
    d.grad = [](const GradCtx& c) {
      return std::vector<Tensor>{Tensor(), max_pool_backward(c.inputs[0], c.cotangents[0], c.attrs)};
    };
    d.reference = [](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
      for_each_window_argmax(pool_geom(in[0]->shape, n.attrs), in[0]->data.data(),
                             [&](int64_t o, int64_t at) { out[0].data[size_t(o)] = in[1]->data[size_t(at)]; });
    };
    d.kernel = [](const KernelCtx& ctx) {
      WindowLoop loop{pool_geom(ctx.in_types[0].shape, ctx.node.attrs), ctx.in_f32(0)};
      const float* z = ctx.in_f32(1);
      float* y = ctx.out_f32();
      return std::make_unique<LoopKernel>([=] { max_pool_select_f32(loop, z, y); }, "loop:max_pool_select");
    };
    auto c = [](Shape x, IntList k) {
      OpTestCase t = tcase({x, x}, {{"kernel", k}});
      t.differentiable = {false, true};
      return t;
    };
    d.tests = {c({2, 3, 4, 4}, {2, 2}), c({1, 2, 6, 4}, {3, 2}), c({1, 3, 2, 6}, {2, 2})};
    r.add(std::move(d));
  }
}

void add_pool(OpRegistry& r, const char* name, bool is_max) {
  OpDef d;
  d.name = name;
  d.attrs = pool_attr_schema();
  d.shape = pool_rule;
  std::string opname = name;
  d.grad = [is_max, opname](const GradCtx& c) {
    auto g = tiling_geom(c, opname.c_str());
    if (is_max) return std::vector<Tensor>{max_pool_backward(c.inputs[0], c.cotangents[0], c.attrs)};
    return std::vector<Tensor>{upsample(c.cotangents[0], g) / double(g.kh * g.kw)};
  };
  d.reference = [is_max](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
    pool_reference(is_max, n, *in[0], out[0]);
  };
  auto alg = is_max ? dnnl::algorithm::pooling_max : dnnl::algorithm::pooling_avg_exclude_padding;
  d.kernel = [alg](const KernelCtx& ctx) { return pool_kernel(ctx, alg); };
  d.tests = {tcase({{2, 3, 4, 4}}, {{"kernel", IntList{2, 2}}}), tcase({{1, 2, 6, 4}}, {{"kernel", IntList{3, 2}}}),
             tcase({{2, 1, 4, 6}}, {{"kernel", IntList{2, 3}}, {"stride", IntList{2, 3}}})};
  // Overlapping, padded or non-tiling windows run forward (kernel vs reference) but have no gradient rule.
  const int64_t windows[][4] = {{5, 3, 2, 1}, {6, 3, 2, 0}, {4, 2, 2, 1}, {5, 2, 1, 0}};  // size, kernel, stride, pad
  for (const auto& [hw, k, st, p] : windows) {
    OpTestCase c = tcase({{1, 2, hw, hw}}, {{"kernel", IntList{k, k}}, {"stride", IntList{st, st}}, {"padding", IntList{p, p}}});
    c.differentiable = {false};
    d.tests.push_back(c);
  }
  // 2x2 tiling windows take a loop kernel for max: vector iterations plus a tail, and a size large
  // enough for its threads (forward only, against the reference).
  d.tests.push_back(tcase({{1, 2, 4, 20}}, {{"kernel", IntList{2, 2}}}));
  OpTestCase big = tcase({{2, 64, 32, 32}}, {{"kernel", IntList{2, 2}}});
  big.differentiable = {false};
  d.tests.push_back(big);
  r.add(std::move(d));
}

}  // namespace

// Non-overlapping unpadded windows that leave a remainder (2x2 pooling of a 7x7 map) never read
// the last rows and columns; slicing them off first gives the same result on an input the
// windows tile, where the gradient exists as graph.
static Tensor drop_untouched_edges(const Tensor& x, const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
                                   const std::vector<int64_t>& padding) {
  if (x.rank() != 4 || kernel.size() != 2 || stride != kernel || (padding.size() == 2 && (padding[0] || padding[1])))
    return x;
  if (kernel[0] <= 0 || kernel[1] <= 0) return x;
  const int64_t h = x.dim(2) - x.dim(2) % kernel[0], w = x.dim(3) - x.dim(3) % kernel[1];
  if (h == x.dim(2) && w == x.dim(3)) return x;
  return slice(x, {0, 0, 0, 0}, {x.dim(0), x.dim(1), h, w});
}
Tensor max_pool2d(const Tensor& x, std::vector<int64_t> kernel, std::vector<int64_t> stride, std::vector<int64_t> padding) {
  if (stride.empty()) stride = kernel;
  return apply("max_pool2d", {drop_untouched_edges(x, kernel, stride, padding)},
               {{"kernel", kernel}, {"stride", stride}, {"padding", padding}});
}
Tensor avg_pool2d(const Tensor& x, std::vector<int64_t> kernel, std::vector<int64_t> stride, std::vector<int64_t> padding) {
  if (stride.empty()) stride = kernel;
  return apply("avg_pool2d", {drop_untouched_edges(x, kernel, stride, padding)},
               {{"kernel", kernel}, {"stride", stride}, {"padding", padding}});
}
void register_pooling_ops(OpRegistry& r) {
  add_pool(r, "max_pool2d", true);
  add_max_pool_derivatives(r);
  add_pool(r, "avg_pool2d", false);
}

}  // namespace metagrad
