// Batch normalization with batch statistics over [N, C, ...] inputs (channels on axis 1),
// optionally followed by relu, as three registry ops whose kernels make few passes over memory:
//   batch_norm(x, gamma, beta)                 -> y        statistics pass + normalizing pass
//   batch_norm_stats(x, gamma, beta, dy)       -> [4, C]   rows: dgamma, dbeta, mean, rstd
//   batch_norm_dx(x, gamma, beta, dy, stats)   -> dx       one pass, from the statistics
// The composite of primitives in batch_norm_train computes the same function in about ten passes
// and keeps more large values alive. The backward ops' own derivatives are the derivatives of
// their composite definitions below, taken by the autodiff pass, so every order exists.
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "metagrad/autodiff.h"
#include "metagrad/ops.h"
#include "ops/families.h"
#include "ops/op_helpers.h"
#include "ops/vec4.h"

namespace metagrad {

namespace {

struct Geom {
  int64_t n = 0, c = 0, inner = 0;  // x viewed as [n, c, inner]
  int64_t count() const { return n * inner; }  // elements per channel
};

Geom geom_of(const Shape& s) {
  Geom g{s[0], s[1], 1};
  for (size_t i = 2; i < s.size(); ++i) g.inner *= s[i];
  return g;
}

void check_x_gamma_beta(const std::vector<TensorType>& in, const char* op) {
  const Shape& x = in[0].shape;
  if (x.size() < 2) throw ShapeError(fmt::format("{}: input {} needs a batch and a channel axis", op, shape_str(x)));
  for (size_t i = 0; i < in.size(); ++i)
    if (in[i].dtype != DType::f32) throw ShapeError(fmt::format("{}: inputs must be f32", op));
  for (size_t i : {size_t(1), size_t(2)})
    if (in[i].shape != Shape{x[1]})
      throw ShapeError(fmt::format("{}: gamma and beta must be [{}] for input {}, got {}", op, x[1], shape_str(x),
                                   shape_str(in[i].shape)));
  if (in.size() > 3 && in[3].shape != x)
    throw ShapeError(fmt::format("{}: cotangent {} does not match input {}", op, shape_str(in[3].shape), shape_str(x)));
}

std::vector<AttrSpec> bn_attrs() {
  return {{"eps", AttrKind::Float, AttrValue(1e-5)}, {"relu", AttrKind::Int, AttrValue(int64_t(0))}};
}

// ---- composite definitions (primitive ops): the meaning, and the source of derivatives ----

struct Parts {
  Tensor xhat, dz;  // normalized input; cotangent of the affine output (relu mask applied)
};

Shape channel_shape(const Tensor& x) {
  Shape s(size_t(x.rank()), 1);
  s[1] = x.dim(1);
  return s;
}

std::vector<int64_t> non_channel_axes(const Tensor& x) {
  std::vector<int64_t> axes{0};
  for (int64_t i = 2; i < x.rank(); ++i) axes.push_back(i);
  return axes;
}

Parts composite_parts(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& dy, const Tensor& mean_c,
                      const Tensor& rstd_c, bool relu) {
  const Shape cs = channel_shape(x);
  Tensor xhat = (x - reshape(mean_c, cs)) * reshape(rstd_c, cs);
  Tensor dz = dy;
  if (relu) dz = dy * greater(xhat * reshape(gamma, cs) + reshape(beta, cs), scalar(x.graph(), 0.0));
  return {xhat, dz};
}

// [4, C]: sum(dz * xhat), sum(dz), mean, rstd over the non-channel axes.
Tensor composite_stats(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& dy, double eps, bool relu) {
  const auto axes = non_channel_axes(x);
  const int64_t c = x.dim(1);
  Tensor mean_c = mean(x, axes, false);
  Tensor rstd_c = rsqrt(mean(square(x - reshape(mean_c, channel_shape(x))), axes, false) + eps);
  Parts p = composite_parts(x, gamma, beta, dy, mean_c, rstd_c, relu);
  auto row = [c](const Tensor& t) { return reshape(t, {1, c}); };
  return concat({row(sum(p.dz * p.xhat, axes)), row(sum(p.dz, axes)), row(mean_c), row(rstd_c)}, 0);
}

Tensor composite_dx(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& dy, const Tensor& stats,
                    bool relu) {
  const int64_t c = x.dim(1);
  auto row = [&](int64_t r) { return reshape(slice(stats, {r, 0}, {r + 1, c}), {c}); };
  Parts p = composite_parts(x, gamma, beta, dy, row(2), row(3), relu);
  const Shape cs = channel_shape(x);
  const double count = double(x.numel() / c);
  Tensor k = reshape(gamma * row(3), cs);
  return k * (p.dz - reshape(row(1) / count, cs) - p.xhat * reshape(row(0) / count, cs));
}

// ---- f64 reference ----

struct RefStats {
  std::vector<double> mean, rstd;
};

RefStats ref_stats(const RefTensor& x, double eps) {
  const Geom g = geom_of(x.shape);
  RefStats s{std::vector<double>(size_t(g.c), 0.0), std::vector<double>(size_t(g.c), 0.0)};
  for (int64_t ch = 0; ch < g.c; ++ch) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < g.n; ++i)
      for (int64_t j = 0; j < g.inner; ++j) sum += x.data[size_t((i * g.c + ch) * g.inner + j)];
    const double m = sum / double(g.count());
    for (int64_t i = 0; i < g.n; ++i)
      for (int64_t j = 0; j < g.inner; ++j) {
        const double d = x.data[size_t((i * g.c + ch) * g.inner + j)] - m;
        sq += d * d;
      }
    s.mean[size_t(ch)] = m;
    s.rstd[size_t(ch)] = 1.0 / std::sqrt(sq / double(g.count()) + eps);
  }
  return s;
}

// Calls f(flat index, channel) for every element.
template <class F>
void for_each_element(const Geom& g, F&& f) {
  for (int64_t i = 0; i < g.n; ++i)
    for (int64_t ch = 0; ch < g.c; ++ch)
      for (int64_t j = 0; j < g.inner; ++j) f(size_t((i * g.c + ch) * g.inner + j), size_t(ch));
}

// ---- f32 kernels ----
// Every pass streams the tensor in memory order, one (sample, channel) run at a time, with the
// runs split over the OpenMP threads; per-channel sums go to per-thread partials, added after.
// (Walking one channel at a time instead hops between short runs 200 KB apart on the conv
// network's first block, and ran at half the bandwidth.)

constexpr int64_t kParallelMin = 1 << 16;

// Scratch made when the kernel is built: per-thread partial sums and the channel statistics.
struct Scratch {
  int threads = 1;
  std::vector<double> partial;  // [threads][c][2]
  std::vector<float> mean, rstd;
};

struct BnArgs {
  const float *x, *gamma, *beta, *dy, *stats;
  float* out;
  Geom g;
  double eps;
  bool relu;
  std::shared_ptr<Scratch> scratch;
};

// Runs body(first_run, end_run) over the n*c runs, split over the threads, after zeroing the
// per-thread partials; then adds the partials of each channel into partial[0 .. 2c).
template <class F>
void for_runs(const BnArgs& a, bool with_partials, F&& body) {
  Scratch& sc = *a.scratch;
  const int64_t runs = a.g.n * a.g.c, c2 = 2 * a.g.c;
  if (with_partials) std::fill(sc.partial.begin(), sc.partial.end(), 0.0);
  const bool parallel = sc.threads > 1 && runs * a.g.inner >= kParallelMin;
#pragma omp parallel num_threads(sc.threads) if (parallel)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t per = (runs + nt - 1) / nt;
    body(std::min(runs, t * per), std::min(runs, (t + 1) * per), sc.partial.data() + size_t(t) * size_t(c2));
  }
  if (with_partials)
    for (int t = 1; t < sc.threads; ++t)
      for (int64_t k = 0; k < c2; ++k) sc.partial[size_t(k)] += sc.partial[size_t(t * c2 + k)];
}

// The two-accumulator loops below use four-float vectors: GCC's own vectorization of 16-lane
// accumulator arrays spilled them to the stack and ran four times slower.
using vec4::hsum;
using vec4::splat;
using vec4::v4;

// Sum and sum of squares of p[0..n) - x0.
void run_moments(const float* __restrict p, int64_t n, float x0, double& s, double& ss) {
  v4 s0 = {}, s1 = {}, q0 = {}, q1 = {};
  const v4 z = splat(x0);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const v4 d0 = vec4::load(p + j) - z, d1 = vec4::load(p + j + 4) - z;
    s0 += d0, s1 += d1, q0 += d0 * d0, q1 += d1 * d1;
  }
  for (; j < n; ++j) {
    const float d = p[j] - x0;
    s += d;
    ss += double(d) * d;
  }
  s += hsum(s0, s1);
  ss += hsum(q0, q1);
}

// Channel means and 1/sqrt(var + eps) into scratch, accumulated relative to each channel's first
// element so that E[x^2] - E[x]^2 does not cancel for data far from zero.
void channel_stats(const BnArgs& a) {
  const Geom g = a.g;
  for_runs(a, true, [&](int64_t first, int64_t end, double* part) {
    for (int64_t r = first; r < end; ++r) {
      const int64_t ch = r % g.c;
      run_moments(a.x + r * g.inner, g.inner, a.x[ch * g.inner], part[2 * ch], part[2 * ch + 1]);
    }
  });
  Scratch& sc = *a.scratch;
  for (int64_t ch = 0; ch < g.c; ++ch) {
    const double m = sc.partial[size_t(2 * ch)] / double(g.count());
    const double var = std::max(0.0, sc.partial[size_t(2 * ch + 1)] / double(g.count()) - m * m);
    sc.mean[size_t(ch)] = float(a.x[ch * g.inner] + m);
    sc.rstd[size_t(ch)] = float(1.0 / std::sqrt(var + a.eps));
  }
}

// The inner loops run over one contiguous run through __restrict pointers, with relu's mask as
// a select, so the compiler vectorizes them.
template <bool kRelu>
void affine_run(const float* __restrict p, float* __restrict q, int64_t n, float scale, float shift) {
  for (int64_t j = 0; j < n; ++j) {
    const float z = p[j] * scale + shift;
    q[j] = kRelu ? std::max(z, 0.f) : z;
  }
}

// The cotangent of the affine output: dy, masked where relu cut the output.
template <bool kRelu>
inline float masked(float dy, float xh, float gamma, float beta) {
  return kRelu ? (xh * gamma + beta > 0.f ? dy : 0.f) : dy;
}

template <bool kRelu>
void stats_run(const float* __restrict p, const float* __restrict d, int64_t n, float mean, float rstd, float gamma,
               float beta, double& s_dx, double& s_d) {
  v4 a0 = {}, a1 = {}, b0 = {}, b1 = {};
  const v4 m = splat(mean), r = splat(rstd), g = splat(gamma), bt = splat(beta), zero = {};
  int64_t j = 0;
  auto dz_of = [&](v4 xh, v4 dy) {
    if constexpr (kRelu) return xh * g + bt > zero ? dy : zero;
    return dy;
  };
  for (; j + 8 <= n; j += 8) {
    const v4 x0 = (vec4::load(p + j) - m) * r, x1 = (vec4::load(p + j + 4) - m) * r;
    const v4 d0 = dz_of(x0, vec4::load(d + j)), d1 = dz_of(x1, vec4::load(d + j + 4));
    a0 += d0 * x0, a1 += d1 * x1, b0 += d0, b1 += d1;
  }
  for (; j < n; ++j) {
    const float xh = (p[j] - mean) * rstd;
    const float dz = masked<kRelu>(d[j], xh, gamma, beta);
    s_dx += dz * xh;
    s_d += dz;
  }
  s_dx += hsum(a0, a1);
  s_d += hsum(b0, b1);
}

// dx may overwrite x or dy (the op runs in place): each block is computed into registers from
// both before it is stored.
template <bool kRelu>
void dx_run(const float* p, const float* d, float* q, int64_t n, float mean, float rstd, float gamma, float beta,
            float mean_dz, float mean_dzx) {
  const float k = gamma * rstd;
  constexpr int64_t kChunk = 64;
  float out[kChunk];
  for (int64_t j0 = 0; j0 < n; j0 += kChunk) {
    const int64_t m = std::min(kChunk, n - j0);
    const float* __restrict pj = p + j0;
    const float* __restrict dj = d + j0;
    for (int64_t j = 0; j < m; ++j) {
      const float xh = (pj[j] - mean) * rstd;
      out[j] = k * (masked<kRelu>(dj[j], xh, gamma, beta) - mean_dz - xh * mean_dzx);
    }
    std::copy(out, out + m, q + j0);
  }
}

template <bool kRelu>
void bn_forward_f32(const BnArgs& a) {
  channel_stats(a);
  const Geom g = a.g;
  const Scratch& sc = *a.scratch;
  for_runs(a, false, [&](int64_t first, int64_t end, double*) {
    for (int64_t r = first; r < end; ++r) {
      const size_t ch = size_t(r % g.c);
      const float scale = a.gamma[ch] * sc.rstd[ch], shift = a.beta[ch] - sc.mean[ch] * scale;
      affine_run<kRelu>(a.x + r * g.inner, a.out + r * g.inner, g.inner, scale, shift);
    }
  });
}

template <bool kRelu>
void bn_stats_f32(const BnArgs& a) {
  channel_stats(a);
  const Geom g = a.g;
  const Scratch& sc = *a.scratch;
  for_runs(a, true, [&](int64_t first, int64_t end, double* part) {
    for (int64_t r = first; r < end; ++r) {
      const size_t ch = size_t(r % g.c);
      stats_run<kRelu>(a.x + r * g.inner, a.dy + r * g.inner, g.inner, sc.mean[ch], sc.rstd[ch], a.gamma[ch], a.beta[ch],
                       part[2 * ch], part[2 * ch + 1]);
    }
  });
  for (int64_t ch = 0; ch < g.c; ++ch) {
    a.out[ch] = float(sc.partial[size_t(2 * ch)]);
    a.out[g.c + ch] = float(sc.partial[size_t(2 * ch + 1)]);
    a.out[2 * g.c + ch] = sc.mean[size_t(ch)];
    a.out[3 * g.c + ch] = sc.rstd[size_t(ch)];
  }
}

template <bool kRelu>
void bn_dx_f32(const BnArgs& a) {
  const Geom g = a.g;
  const float inv_count = 1.f / float(g.count());
  for_runs(a, false, [&](int64_t first, int64_t end, double*) {
    for (int64_t r = first; r < end; ++r) {
      const int64_t ch = r % g.c;
      const float dgamma = a.stats[ch], dbeta = a.stats[g.c + ch], mean = a.stats[2 * g.c + ch],
                  rstd = a.stats[3 * g.c + ch];
      dx_run<kRelu>(a.x + r * g.inner, a.dy + r * g.inner, a.out + r * g.inner, g.inner, mean, rstd, a.gamma[ch],
                    a.beta[ch], dbeta * inv_count, dgamma * inv_count);
    }
  });
}

// A loop kernel running fn<relu>(args), the relu branch chosen once at compile time.
template <void (*kPlain)(const BnArgs&), void (*kRelu)(const BnArgs&)>
std::unique_ptr<Kernel> bn_kernel(const BnArgs& a, const char* name) {
  return std::make_unique<LoopKernel>([a] { (a.relu ? kRelu : kPlain)(a); }, name);
}

BnArgs args_of(const KernelCtx& ctx) {
  BnArgs a{};
  a.x = ctx.in_f32(0);
  a.gamma = ctx.in_f32(1);
  a.beta = ctx.in_f32(2);
  a.dy = ctx.in.size() > 3 ? ctx.in_f32(3) : nullptr;
  a.stats = ctx.in.size() > 4 ? ctx.in_f32(4) : nullptr;
  a.out = ctx.out_f32();
  a.g = geom_of(ctx.in_types[0].shape);
  a.eps = attr_float(ctx.node.attrs, "eps");
  a.relu = attr_int(ctx.node.attrs, "relu") != 0;
  a.scratch = std::make_shared<Scratch>();
  a.scratch->threads = std::max(1, omp_get_max_threads());
  a.scratch->partial.assign(size_t(a.scratch->threads) * size_t(2 * a.g.c), 0.0);
  a.scratch->mean.assign(size_t(a.g.c), 0.f);
  a.scratch->rstd.assign(size_t(a.g.c), 0.f);
  return a;
}

// A backward op's derivative: the vjp of its composite definition, taken by the autodiff pass.
// The composite reads stand-in copies of the inputs, so the vjp gives partial derivatives: an
// input may depend on another (the statistics on x; in higher orders, dy on x), and the outer
// pass already follows those paths.
using Composite = std::function<Tensor(const std::vector<Tensor>& in, const Attrs& attrs)>;
GradFn composite_grad(Composite composite) {
  return [composite](const GradCtx& c) {
    std::vector<Tensor> leaves;
    for (const Tensor& t : c.inputs) leaves.push_back(reshape(t, t.shape()));
    return vjp(composite(leaves, c.attrs), c.cotangents[0], leaves);
  };
}

double eps_of(const Attrs& a) { return attr_float(a, "eps"); }
bool relu_of(const Attrs& a) { return attr_int(a, "relu") != 0; }

std::vector<OpTestCase> bn_tests(size_t extra_inputs, bool with_stats) {
  std::vector<OpTestCase> out;
  for (Shape x : {Shape{3, 4, 5}, Shape{6, 3}, Shape{2, 3, 2, 3}})
    for (int64_t relu : {0, 1}) {
      std::vector<Shape> shapes{x, {x[1]}, {x[1]}};
      if (extra_inputs >= 1) shapes.push_back(x);
      if (with_stats) shapes.push_back({4, x[1]});
      out.push_back(tcase(shapes, {{"eps", 1e-3}, {"relu", relu}}));
    }
  // Large enough for the threaded passes (kernel against reference only), data off zero.
  std::vector<Shape> big{{4, 16, 32, 32}, {16}, {16}};
  if (extra_inputs >= 1) big.push_back(big[0]);
  if (with_stats) big.push_back({4, 16});
  OpTestCase t = tcase(big, {{"eps", 1e-5}, {"relu", int64_t(1)}}, 3.0, 5.0);
  t.differentiable.assign(big.size(), false);
  out.push_back(t);
  return out;
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, bool relu) {
  return apply("batch_norm", {x, gamma, beta}, {{"eps", eps}, {"relu", int64_t(relu)}});
}

void register_batch_norm_ops(OpRegistry& r) {
  {
    OpDef d;
    d.name = "batch_norm";
    d.num_inputs = 3;
    d.attrs = bn_attrs();
    d.shape = [](const std::vector<TensorType>& in, const Attrs&) {
      check_x_gamma_beta(in, "batch_norm");
      return std::vector<TensorType>{in[0]};
    };
    d.grad = [](const GradCtx& c) {
      const Attrs a{{"eps", eps_of(c.attrs)}, {"relu", int64_t(relu_of(c.attrs))}};
      const Tensor &x = c.inputs[0], &gamma = c.inputs[1], &beta = c.inputs[2], &dy = c.cotangents[0];
      Tensor stats = apply("batch_norm_stats", {x, gamma, beta, dy}, a);
      Tensor dx = apply("batch_norm_dx", {x, gamma, beta, dy, stats}, a);
      const int64_t ch = x.dim(1);
      auto row = [&](int64_t k) { return reshape(slice(stats, {k, 0}, {k + 1, ch}), {ch}); };
      return std::vector<Tensor>{dx, row(0), row(1)};
    };
    d.reference = [](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
      const RefStats s = ref_stats(*in[0], attr_float(n.attrs, "eps"));
      const bool relu = attr_int(n.attrs, "relu") != 0;
      for_each_element(geom_of(in[0]->shape), [&](size_t i, size_t ch) {
        const double y = (in[0]->data[i] - s.mean[ch]) * s.rstd[ch] * in[1]->data[ch] + in[2]->data[ch];
        out[0].data[i] = relu ? std::max(y, 0.0) : y;
      });
    };
    d.kernel = [](const KernelCtx& ctx) -> std::unique_ptr<Kernel> {
      return bn_kernel<bn_forward_f32<false>, bn_forward_f32<true>>(args_of(ctx), "loop:batch_norm");
    };
    d.tests = bn_tests(0, false);
    r.add(std::move(d));
  }
  {
    OpDef d;
    d.name = "batch_norm_stats";
    d.num_inputs = 4;
    d.attrs = bn_attrs();
    d.shape = [](const std::vector<TensorType>& in, const Attrs&) {
      check_x_gamma_beta(in, "batch_norm_stats");
      return std::vector<TensorType>{{DType::f32, Shape{4, in[0].shape[1]}}};
    };
    d.grad = composite_grad([](const std::vector<Tensor>& in, const Attrs& a) {
      return composite_stats(in[0], in[1], in[2], in[3], eps_of(a), relu_of(a));
    });
    d.reference = [](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
      const RefStats s = ref_stats(*in[0], attr_float(n.attrs, "eps"));
      const bool relu = attr_int(n.attrs, "relu") != 0;
      const Geom g = geom_of(in[0]->shape);
      std::fill(out[0].data.begin(), out[0].data.end(), 0.0);
      for_each_element(g, [&](size_t i, size_t ch) {
        const double xh = (in[0]->data[i] - s.mean[ch]) * s.rstd[ch];
        const double dz = relu && !(xh * in[1]->data[ch] + in[2]->data[ch] > 0) ? 0.0 : in[3]->data[i];
        out[0].data[ch] += dz * xh;
        out[0].data[size_t(g.c) + ch] += dz;
      });
      for (size_t ch = 0; ch < size_t(g.c); ++ch) {
        out[0].data[2 * size_t(g.c) + ch] = s.mean[ch];
        out[0].data[3 * size_t(g.c) + ch] = s.rstd[ch];
      }
    };
    d.kernel = [](const KernelCtx& ctx) -> std::unique_ptr<Kernel> {
      return bn_kernel<bn_stats_f32<false>, bn_stats_f32<true>>(args_of(ctx), "loop:batch_norm_stats");
    };
    d.tests = bn_tests(1, false);
    r.add(std::move(d));
  }
  {
    OpDef d;
    d.name = "batch_norm_dx";
    d.num_inputs = 5;
    d.attrs = bn_attrs();
    d.shape = [](const std::vector<TensorType>& in, const Attrs&) {
      check_x_gamma_beta(in, "batch_norm_dx");
      if (in[4].shape != Shape{4, in[0].shape[1]})
        throw ShapeError(fmt::format("batch_norm_dx: statistics must be [4, {}], got {}", in[0].shape[1], shape_str(in[4].shape)));
      return std::vector<TensorType>{in[0]};
    };
    d.grad = composite_grad([](const std::vector<Tensor>& in, const Attrs& a) {
      return composite_dx(in[0], in[1], in[2], in[3], in[4], relu_of(a));
    });
    d.reference = [](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
      const bool relu = attr_int(n.attrs, "relu") != 0;
      const Geom g = geom_of(in[0]->shape);
      const auto& st = in[4]->data;
      const size_t c = size_t(g.c);
      for_each_element(g, [&](size_t i, size_t ch) {
        const double mean = st[2 * c + ch], rstd = st[3 * c + ch];
        const double xh = (in[0]->data[i] - mean) * rstd;
        const double dz = relu && !(xh * in[1]->data[ch] + in[2]->data[ch] > 0) ? 0.0 : in[3]->data[i];
        out[0].data[i] = in[1]->data[ch] * rstd *
                         (dz - st[c + ch] / double(g.count()) - xh * st[ch] / double(g.count()));
      });
    };
    d.kernel = [](const KernelCtx& ctx) -> std::unique_ptr<Kernel> {
      return bn_kernel<bn_dx_f32<false>, bn_dx_f32<true>>(args_of(ctx), "loop:batch_norm_dx");
    };
    d.inplace = true;  // x (or dy) usually dies here: dx takes its buffer
    d.tests = bn_tests(1, true);
    r.add(std::move(d));
  }
}

}  // namespace metagrad
