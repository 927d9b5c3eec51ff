// Max and average pooling over 2-D windows: geometry, shape rules, f64 references, forward
// kernels and builders. Their derivative ops are in ops/pooling_backward.cpp.
#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "metagrad/ops.h"
#include "ops/families.h"
#include "ops/op_helpers.h"
#include "ops/pooling.h"
#include "ops/vec4.h"

namespace metagrad {

using IntList = std::vector<int64_t>;

PoolGeom pool_geom(const Shape& x, const Attrs& a) {
  const auto& k = attr_ints(a, "kernel");
  auto s = attr_ints(a, "stride");
  const auto& p = attr_ints(a, "padding");
  if (s.empty()) s = k;
  if (x.size() != 4 || k.size() != 2 || s.size() != 2 || p.size() != 2)
    throw ShapeError(fmt::format("pooling needs a rank-4 input and two-value kernel/stride/padding, got {}", shape_str(x)));
  PoolGeom g{x[0], x[1], x[2], x[3], k[0], k[1], s[0], s[1], p[0], p[1], 0, 0};
  if (g.kh <= 0 || g.kw <= 0 || g.sh <= 0 || g.sw <= 0 || g.ph < 0 || g.pw < 0)
    throw ShapeError(fmt::format("bad pooling window: kernel {}x{}, stride {}x{}, padding {}x{}", g.kh, g.kw, g.sh, g.sw, g.ph, g.pw));
  // A window wholly in padding would have no maximum (and PyTorch refuses it too).
  if (g.ph >= g.kh || g.pw >= g.kw)
    throw ShapeError(fmt::format("pooling padding {}x{} must be smaller than the kernel {}x{}", g.ph, g.pw, g.kh, g.kw));
  g.oh = (g.h + 2 * g.ph - g.kh) / g.sh + 1;
  g.ow = (g.w + 2 * g.pw - g.kw) / g.sw + 1;
  if (g.h <= 0 || g.w <= 0 || g.oh <= 0 || g.ow <= 0)
    throw ShapeError(fmt::format("pooling window {}x{} does not fit {}", g.kh, g.kw, shape_str(x)));
  return g;
}

std::vector<AttrSpec> pool_attr_schema() {
  return {{"kernel", AttrKind::Ints, std::nullopt},
          {"stride", AttrKind::Ints, AttrValue(IntList{})},
          {"padding", AttrKind::Ints, AttrValue(IntList{0, 0})}};
}

Attrs pool_attrs(const PoolCase& c) { return {{"kernel", c.kernel}, {"stride", c.stride}, {"padding", c.padding}}; }

std::vector<PoolCase> pool_test_cases() {
  return {
      {{2, 3, 4, 4}, {2, 2}, {2, 2}, {0, 0}, "2x2 windows tiling the input (the vectorized loops)"},
      {{1, 2, 4, 20}, {2, 2}, {2, 2}, {0, 0}, "2x2 tiling, vector iterations plus a tail"},
      {{1, 2, 6, 4}, {3, 2}, {3, 2}, {0, 0}, "non-square windows tiling the input"},
      {{1, 2, 7, 7}, {3, 3}, {2, 2}, {1, 1}, "overlapping and padded: 3x3 stride 2 padding 1 (ResNet stem)"},
      {{1, 2, 5, 6}, {3, 3}, {1, 1}, {0, 0}, "overlapping: 3x3 stride 1"},
      {{1, 2, 5, 7}, {2, 2}, {2, 2}, {0, 0}, "non-overlapping with a remainder of rows and columns"},
      {{1, 2, 8, 7}, {2, 2}, {3, 3}, {0, 0}, "stride larger than the window: gaps and a remainder"},
      {{1, 2, 5, 5}, {2, 2}, {2, 2}, {1, 1}, "padded 2x2 windows"},
      {{1, 2, 5, 5}, {2, 2}, {1, 1}, {0, 0}, "2x2 stride 1"},
      {{2, 1, 6, 5}, {3, 2}, {2, 1}, {1, 0}, "non-square window, stride and padding"},
      {{1, 2, 4, 6}, {2, 3}, {1, 2}, {1, 1}, "non-square, padded on both axes, overlapping rows"},
      {{1, 1, 4, 21}, {3, 3}, {1, 1}, {1, 1}, "wide rows (the vector loops over windows): stride 1"},
      {{1, 1, 3, 23}, {3, 3}, {2, 2}, {0, 0}, "wide rows: stride 2"},
      {{1, 1, 5, 26}, {2, 2}, {3, 3}, {0, 0}, "wide rows: stride 3, gaps between windows"},
  };
}

namespace {

std::vector<TensorType> pool_rule(const std::vector<TensorType>& in, const Attrs& a) {
  auto g = pool_geom(in[0].shape, a);
  return {{DType::f32, {g.n, g.c, g.oh, g.ow}}};
}

// Average pooling counts padding in the divisor (every window divides by kh * kw), PyTorch's
// default count_include_pad=True; max pooling skips padding.
void pool_reference(bool is_max, const Node& node, const RefTensor& x, RefTensor& y) {
  auto g = pool_geom(x.shape, node.attrs);
  for (int64_t nc = 0; nc < g.planes(); ++nc)
    for (int64_t i = 0; i < g.oh; ++i)
      for (int64_t j = 0; j < g.ow; ++j) {
        const WindowSpan s = window_span(g, i, j);
        double acc = is_max ? -std::numeric_limits<double>::infinity() : 0.0;
        for (int64_t p = s.p0; p < s.p1; ++p)
          for (int64_t q = s.q0; q < s.q1; ++q) {
            const double v = x.data[size_t((nc * g.h + s.r0 + p) * g.w + s.c0 + q)];
            acc = is_max ? std::max(acc, v) : acc + v;
          }
        y.data[size_t((nc * g.oh + i) * g.ow + j)] = is_max ? acc : acc / double(g.kh * g.kw);
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
  if (alg == dnnl::algorithm::pooling_max && g.tiles_2x2()) {
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

void add_pool(OpRegistry& r, const char* name, bool is_max) {
  OpDef d;
  d.name = name;
  d.attrs = pool_attr_schema();
  d.shape = pool_rule;
  // Both derivatives are ops of their own, closed under differentiation: max pooling's is
  // max_pool2d_backward (whose adjoint is max_pool2d_select, and back), average pooling's is
  // avg_pool2d_backward (whose adjoint is avg_pool2d again).
  if (is_max)
    d.grad = [](const GradCtx& c) { return std::vector<Tensor>{max_pool_backward(c.inputs[0], c.cotangents[0], c.attrs)}; };
  else
    d.grad = [](const GradCtx& c) {
      return std::vector<Tensor>{avg_pool_backward(c.cotangents[0], c.inputs[0].shape(), c.attrs)};
    };
  d.reference = [is_max](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
    pool_reference(is_max, n, *in[0], out[0]);
  };
  auto alg = is_max ? dnnl::algorithm::pooling_max : dnnl::algorithm::pooling_avg_include_padding;
  d.kernel = [alg](const KernelCtx& ctx) { return pool_kernel(ctx, alg); };
  for (const PoolCase& pc : pool_test_cases()) {
    OpTestCase t = tcase({pc.x}, pool_attrs(pc));
    t.note = pc.note;
    d.tests.push_back(t);
  }
  // Large enough for the threaded 2x2 loop (forward only, against the reference).
  OpTestCase big = tcase({{2, 64, 32, 32}}, {{"kernel", IntList{2, 2}}});
  big.differentiable = {false};
  d.tests.push_back(big);
  r.add(std::move(d));
}

}  // namespace

// Non-overlapping unpadded windows that leave a remainder (2x2 pooling of a 7x7 map) never read
// the last rows and columns; slicing them off first gives the same result on an input the
// windows tile, where 2x2 windows take the vectorized loops forward and backward.
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
  add_pool(r, "avg_pool2d", false);
  add_pool_derivative_ops(r);
}

}  // namespace metagrad
