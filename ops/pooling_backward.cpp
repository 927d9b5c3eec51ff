// The derivative ops of pooling, for every window the forward accepts: max pooling's closed pair
// max_pool2d_backward / max_pool2d_select, and avg_pool2d_backward (whose adjoint is avg_pool2d).
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <memory>

#include "metagrad/ops.h"
#include "ops/op_helpers.h"
#include "ops/pooling.h"

namespace metagrad {

namespace {

using IntList = std::vector<int64_t>;

// ---- 2x2 windows that tile the input: branch-free row-pair loops the compiler vectorizes ----

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

void max_pool_backward_2x2(const PoolGeom& g, const float* x, const float* gy, float* gx) {
  // Row pairs are independent: large tensors split them over the OpenMP threads.
  const int64_t rows = g.planes() * g.oh, w = g.w, ow = g.ow;
#pragma omp parallel for schedule(static) if (rows * w >= (int64_t(1) << 16))
  for (int64_t r = 0; r < rows; ++r)
    max_pool_backward_row2(x + 2 * r * w, x + 2 * r * w + w, gy + r * ow, gx + 2 * r * w, gx + 2 * r * w + w, ow);
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

void max_pool_select_2x2(const PoolGeom& g, const float* x, const float* z, float* y) {
  for (int64_t r = 0; r < g.planes() * g.oh; ++r)
    max_pool_select_row2(x + 2 * r * g.w, x + 2 * r * g.w + g.w, z + 2 * r * g.w, z + 2 * r * g.w + g.w, y + r * g.ow, g.ow);
}

// ---- any window: one (n, c) plane at a time, planes split over the threads ----

// The thread count for a general-window kernel, fixed when it is built (its per-thread scratch
// in the workspace is sized by it).
int plane_threads(const PoolGeom& g) {
  if (g.planes() * g.h * g.w < (int64_t(1) << 16)) return 1;
  return int(std::min<int64_t>(std::max(1, omp_get_max_threads()), g.planes()));
}

template <typename F>
void for_planes(const PoolGeom& g, int threads, F&& f) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t pl = 0; pl < g.planes(); ++pl) f(pl, omp_get_thread_num());
}

size_t round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

// Per-thread scratch of a general-window kernel, in the executable's workspace (kernels run one
// at a time, so they all share it).
struct Scratch {
  PoolGeom g;
  int threads = 1;
  size_t bytes = 0;  // per thread
  char* base = nullptr;
  char* of(int thread) const { return base + size_t(thread) * bytes; }
};
std::shared_ptr<Scratch> request_scratch(const KernelCtx& ctx, const PoolGeom& g, size_t bytes) {
  auto s = std::make_shared<Scratch>(Scratch{g, plane_threads(g), round64(bytes)});
  ctx.workspace.request(size_t(s->threads) * s->bytes, [s](char* base) { s->base = base; });
  return s;
}

// A plane's winners and the row of running maxima plane_winners needs.
size_t winners_bytes(const PoolGeom& g) { return round64(size_t(g.oh * g.ow) * sizeof(int32_t)) + size_t(g.ow) * sizeof(float); }
int32_t* winners_of(const Scratch& s, int t) { return reinterpret_cast<int32_t*>(s.of(t)); }
float* top_of(const Scratch& s, int t) {
  return reinterpret_cast<float*>(s.of(t) + round64(size_t(s.g.oh * s.g.ow) * sizeof(int32_t)));
}

// Each window's cotangent goes to its winner; overlapping windows may share one and add up.
// The winners of a plane are found before any of its gradient is written, so gx may be x itself.
void max_backward_windows(const Scratch& s, const float* x, const float* gy, float* gx) {
  const PoolGeom& g = s.g;
  const int64_t in = g.h * g.w, out = g.oh * g.ow;
  for_planes(g, s.threads, [&](int64_t pl, int t) {
    int32_t* win = winners_of(s, t);
    plane_winners(g, x + pl * in, top_of(s, t), win);
    float* gp = gx + pl * in;
    const float* gyp = gy + pl * out;
    std::fill(gp, gp + in, 0.f);
    for (int64_t o = 0; o < out; ++o) gp[win[o]] += gyp[o];
  });
}

void max_select_windows(const Scratch& s, const float* x, const float* z, float* y) {
  const PoolGeom& g = s.g;
  const int64_t in = g.h * g.w, out = g.oh * g.ow;
  for_planes(g, s.threads, [&](int64_t pl, int t) {
    int32_t* win = winners_of(s, t);
    plane_winners(g, x + pl * in, top_of(s, t), win);
    const float* zp = z + pl * in;
    float* yp = y + pl * out;
    for (int64_t o = 0; o < out; ++o) yp[o] = zp[win[o]];
  });
}

// Average pooling's adjoint: each window spreads its cotangent over the positions it covers,
// divided by kh * kw (padding counts in the divisor, as in the forward). The reference, one
// window at a time.
void avg_backward_plane_ref(const PoolGeom& g, const double* gy, double* gx) {
  std::fill(gx, gx + g.h * g.w, 0.0);
  const double k = double(g.kh * g.kw);
  for (int64_t i = 0; i < g.oh; ++i)
    for (int64_t j = 0; j < g.ow; ++j) {
      const WindowSpan s = window_span(g, i, j);
      const double v = gy[i * g.ow + j] / k;
      for (int64_t p = s.p0; p < s.p1; ++p)
        for (int64_t q = s.q0; q < s.q1; ++q) gx[(s.r0 + p) * g.w + s.c0 + q] += v;
    }
}

// The f32 kernel uses that a window is a product of a row range and a column range: first every
// pooled row is spread over the input's columns (t, [oh, w]), then the rows of t are added into
// the input rows each window covers, whole rows at a time, which vectorizes.
void avg_backward_plane(const PoolGeom& g, const float* __restrict gy, float* __restrict gx, float* __restrict t) {
  const auto [first, end] = interior_columns(g);
  const int64_t n = end - first, w = g.w, sw = g.sw;
  const float k = float(g.kh * g.kw);
  std::fill(t, t + g.oh * w, 0.f);
  for (int64_t i = 0; i < g.oh; ++i) {
    float* tr = t + i * w;
    const float* gr = gy + i * g.ow;
    auto edge = [&](int64_t j) {
      const WindowSpan s = window_span(g, i, j);
      for (int64_t q = s.q0; q < s.q1; ++q) tr[s.c0 + q] += gr[j];
    };
    for (int64_t j = 0; j < first; ++j) edge(j);
    for (int64_t j = end; j < g.ow; ++j) edge(j);
    for (int64_t q = 0; q < g.kw && n > 0; ++q) {
      float* dst = tr + first * sw - g.pw + q;  // window `first`'s column q
      if (sw == 1)  // contiguous: vectorizes
        for (int64_t j = 0; j < n; ++j) dst[j] += gr[first + j];
      else
        for (int64_t j = 0; j < n; ++j) dst[j * sw] += gr[first + j];
    }
    for (int64_t c = 0; c < w; ++c) tr[c] /= k;
  }
  std::fill(gx, gx + g.h * w, 0.f);
  for (int64_t i = 0; i < g.oh; ++i) {
    const WindowSpan s = window_span(g, i, 0);
    const float* tr = t + i * w;
    for (int64_t p = s.p0; p < s.p1; ++p) {
      float* dr = gx + (s.r0 + p) * w;
      for (int64_t c = 0; c < w; ++c) dr[c] += tr[c];
    }
  }
}

// ---- registry entries ----

Shape pooled_shape(const PoolGeom& g) { return {g.n, g.c, g.oh, g.ow}; }

Tensor max_pool_select(const Tensor& x, const Tensor& z, const Attrs& a) { return apply("max_pool2d_select", {x, z}, a); }

Attrs window_attrs(const Attrs& a) {
  return {{"kernel", a.at("kernel")}, {"stride", a.at("stride")}, {"padding", a.at("padding")}};
}

// The input shape avg_pool2d_backward writes: the cotangent's N and C, the "size" attribute's H and W.
PoolGeom avg_backward_geom(const Shape& gy, const Attrs& a) {
  const auto& size = attr_ints(a, "size");
  if (gy.size() != 4 || size.size() != 2)
    throw ShapeError(fmt::format("avg_pool2d_backward needs a rank-4 cotangent and a two-value size, got {}", shape_str(gy)));
  auto g = pool_geom({gy[0], gy[1], size[0], size[1]}, a);
  if (pooled_shape(g) != gy)
    throw ShapeError(fmt::format("avg_pool2d_backward: cotangent {} does not match {} pooled from {}x{}", shape_str(gy),
                                 shape_str(pooled_shape(g)), size[0], size[1]));
  return g;
}

// The general-window test cases of a derivative op, plus one large enough for the threads
// (kernel against reference only).
template <typename F>
std::vector<OpTestCase> derivative_cases(F&& make) {
  std::vector<OpTestCase> cases;
  for (const PoolCase& pc : pool_test_cases()) {
    OpTestCase t = make(pc);
    t.note = pc.note;
    cases.push_back(t);
  }
  for (const PoolCase& big : {PoolCase{{2, 64, 32, 32}, {2, 2}, {2, 2}, {0, 0}, "threaded 2x2"},
                              PoolCase{{2, 32, 32, 32}, {3, 3}, {2, 2}, {1, 1}, "threaded general windows"}}) {
    OpTestCase t = make(big);
    t.note = big.note;
    t.differentiable.assign(t.inputs.size(), false);
    cases.push_back(t);
  }
  return cases;
}

void add_max_pool_backward(OpRegistry& r) {
  OpDef d;
  d.name = "max_pool2d_backward";
  d.num_inputs = 2;
  d.attrs = pool_attr_schema();
  d.shape = [](const std::vector<TensorType>& in, const Attrs& a) {
    auto g = pool_geom(in[0].shape, a);
    if (in[1].shape != pooled_shape(g))
      throw ShapeError(fmt::format("max_pool2d_backward: cotangent {} does not match pooled {}", shape_str(in[1].shape),
                                   shape_str(pooled_shape(g))));
    return std::vector<TensorType>{{DType::f32, in[0].shape}};
  };
  d.grad = [](const GradCtx& c) {
    return std::vector<Tensor>{Tensor(), max_pool_select(c.inputs[0], c.cotangents[0], c.attrs)};
  };
  d.reference = [](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
    const PoolGeom g = pool_geom(in[0]->shape, n.attrs);
    const int64_t ip = g.h * g.w, op = g.oh * g.ow;
    std::vector<double> top(size_t(g.ow));
    std::vector<int32_t> win(static_cast<size_t>(op));
    std::fill(out[0].data.begin(), out[0].data.end(), 0.0);
    for (int64_t pl = 0; pl < g.planes(); ++pl) {
      plane_winners(g, in[0]->data.data() + pl * ip, top.data(), win.data());
      for (int64_t o = 0; o < op; ++o) out[0].data[size_t(pl * ip + win[size_t(o)])] += in[1]->data[size_t(pl * op + o)];
    }
  };
  d.kernel = [](const KernelCtx& ctx) -> std::unique_ptr<Kernel> {
    const PoolGeom g = pool_geom(ctx.in_types[0].shape, ctx.node.attrs);
    const float* x = ctx.in_f32(0);
    const float* gy = ctx.in_f32(1);
    float* gx = ctx.out_f32();
    if (g.tiles_2x2()) return std::make_unique<LoopKernel>([=] { max_pool_backward_2x2(g, x, gy, gx); }, "loop:max_pool_backward");
    auto s = request_scratch(ctx, g, winners_bytes(g));
    return std::make_unique<LoopKernel>([s, x, gy, gx] { max_backward_windows(*s, x, gy, gx); }, "loop:max_pool_backward_windows");
  };
  // The pooled input usually dies here (relu's output in a conv block): its buffer takes the
  // result, one activation-sized buffer less at the peak of the backward pass.
  d.inplace = true;
  d.tests = derivative_cases([](const PoolCase& pc) {
    OpTestCase t = tcase({pc.x, pooled_shape(pool_geom(pc.x, pool_attrs(pc)))}, pool_attrs(pc));
    t.differentiable = {false, true};
    return t;
  });
  r.add(std::move(d));
}

void add_max_pool_select(OpRegistry& r) {
  OpDef d;
  d.name = "max_pool2d_select";
  d.num_inputs = 2;
  d.attrs = pool_attr_schema();
  d.shape = [](const std::vector<TensorType>& in, const Attrs& a) {
    auto g = pool_geom(in[0].shape, a);
    if (in[1].shape != in[0].shape)
      throw ShapeError(fmt::format("max_pool2d_select: values {} do not match the pooled input {}", shape_str(in[1].shape),
                                   shape_str(in[0].shape)));
    return std::vector<TensorType>{{DType::f32, pooled_shape(g)}};
  };
  d.grad = [](const GradCtx& c) {
    return std::vector<Tensor>{Tensor(), max_pool_backward(c.inputs[0], c.cotangents[0], c.attrs)};
  };
  d.reference = [](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
    const PoolGeom g = pool_geom(in[0]->shape, n.attrs);
    const int64_t ip = g.h * g.w, op = g.oh * g.ow;
    std::vector<double> top(size_t(g.ow));
    std::vector<int32_t> win(static_cast<size_t>(op));
    for (int64_t pl = 0; pl < g.planes(); ++pl) {
      plane_winners(g, in[0]->data.data() + pl * ip, top.data(), win.data());
      for (int64_t o = 0; o < op; ++o) out[0].data[size_t(pl * op + o)] = in[1]->data[size_t(pl * ip + win[size_t(o)])];
    }
  };
  d.kernel = [](const KernelCtx& ctx) -> std::unique_ptr<Kernel> {
    const PoolGeom g = pool_geom(ctx.in_types[0].shape, ctx.node.attrs);
    const float* x = ctx.in_f32(0);
    const float* z = ctx.in_f32(1);
    float* y = ctx.out_f32();
    if (g.tiles_2x2()) return std::make_unique<LoopKernel>([=] { max_pool_select_2x2(g, x, z, y); }, "loop:max_pool_select");
    auto s = request_scratch(ctx, g, winners_bytes(g));
    return std::make_unique<LoopKernel>([s, x, z, y] { max_select_windows(*s, x, z, y); }, "loop:max_pool_select_windows");
  };
  d.tests = derivative_cases([](const PoolCase& pc) {
    OpTestCase t = tcase({pc.x, pc.x}, pool_attrs(pc));
    t.differentiable = {false, true};
    return t;
  });
  r.add(std::move(d));
}

void add_avg_pool_backward(OpRegistry& r) {
  OpDef d;
  d.name = "avg_pool2d_backward";
  d.attrs = pool_attr_schema();
  d.attrs.push_back({"size", AttrKind::Ints, std::nullopt});
  d.shape = [](const std::vector<TensorType>& in, const Attrs& a) {
    auto g = avg_backward_geom(in[0].shape, a);
    return std::vector<TensorType>{{DType::f32, {g.n, g.c, g.h, g.w}}};
  };
  // Linear, and the adjoint of avg_pool2d: its own derivative is avg_pool2d again.
  d.grad = [](const GradCtx& c) { return std::vector<Tensor>{apply("avg_pool2d", {c.cotangents[0]}, window_attrs(c.attrs))}; };
  d.reference = [](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
    const PoolGeom g = avg_backward_geom(in[0]->shape, n.attrs);
    for (int64_t pl = 0; pl < g.planes(); ++pl)
      avg_backward_plane_ref(g, in[0]->data.data() + pl * g.oh * g.ow, out[0].data.data() + pl * g.h * g.w);
  };
  d.kernel = [](const KernelCtx& ctx) -> std::unique_ptr<Kernel> {
    const PoolGeom g = avg_backward_geom(ctx.in_types[0].shape, ctx.node.attrs);
    const float* gy = ctx.in_f32(0);
    float* gx = ctx.out_f32();
    auto s = request_scratch(ctx, g, size_t(g.oh * g.w) * sizeof(float));
    return std::make_unique<LoopKernel>(
        [s, gy, gx] {
          const PoolGeom& g = s->g;
          for_planes(g, s->threads, [&](int64_t pl, int t) {
            avg_backward_plane(g, gy + pl * g.oh * g.ow, gx + pl * g.h * g.w, reinterpret_cast<float*>(s->of(t)));
          });
        },
        "loop:avg_pool_backward");
  };
  d.tests = derivative_cases([](const PoolCase& pc) {
    Attrs a = pool_attrs(pc);
    a["size"] = IntList{pc.x[2], pc.x[3]};
    return tcase({pooled_shape(pool_geom(pc.x, a))}, a);
  });
  r.add(std::move(d));
}

}  // namespace

Tensor max_pool_backward(const Tensor& x, const Tensor& gy, const Attrs& a) { return apply("max_pool2d_backward", {x, gy}, a); }

Tensor avg_pool_backward(const Tensor& gy, const Shape& x_shape, const Attrs& a) {
  Attrs b = window_attrs(a);
  b["size"] = IntList{x_shape.at(2), x_shape.at(3)};
  return apply("avg_pool2d_backward", {gy}, b);
}

void add_pool_derivative_ops(OpRegistry& r) {
  add_max_pool_backward(r);
  add_max_pool_select(r);
  add_avg_pool_backward(r);
}

}  // namespace metagrad
