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

#include <cmath>

#include "ops/families.h"
#include "ops/op_helpers.h"
#include "ops/ops.h"
#include "passes/autodiff.h"

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

// ---- f32 kernels: one channel at a time, channels split over the OpenMP threads ----

constexpr int kLanes = 16;
constexpr int64_t kParallelMin = 1 << 16;

// Mean and 1/sqrt(var + eps) of one channel, accumulated relative to its first element so that
// E[x^2] - E[x]^2 does not cancel for data far from zero.
void channel_stats(const float* x, const Geom& g, int64_t ch, double eps, float& mean, float& rstd) {
  const float x0 = x[ch * g.inner];
  double s = 0, ss = 0;
  for (int64_t i = 0; i < g.n; ++i) {
    const float* p = x + (i * g.c + ch) * g.inner;
    float ls[kLanes] = {}, lss[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= g.inner; j += kLanes)
      for (int l = 0; l < kLanes; ++l) {
        const float d = p[j + l] - x0;
        ls[l] += d;
        lss[l] += d * d;
      }
    for (; j < g.inner; ++j) {
      const float d = p[j] - x0;
      s += d;
      ss += double(d) * d;
    }
    for (int l = 0; l < kLanes; ++l) s += ls[l], ss += lss[l];
  }
  const double m = s / double(g.count());
  mean = float(x0 + m);
  rstd = float(1.0 / std::sqrt(std::max(0.0, ss / double(g.count()) - m * m) + eps));
}

struct BnArgs {
  const float *x, *gamma, *beta, *dy, *stats;
  float* out;
  Geom g;
  double eps;
  bool relu;
};

// The inner loops run over one contiguous run of a channel through __restrict pointers, with
// relu's mask as a select, so the compiler vectorizes them.
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
  float l_dx[kLanes] = {}, l_d[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const float xh = (p[j + l] - mean) * rstd;
      const float dz = masked<kRelu>(d[j + l], xh, gamma, beta);
      l_dx[l] += dz * xh;
      l_d[l] += dz;
    }
  for (; j < n; ++j) {
    const float xh = (p[j] - mean) * rstd;
    const float dz = masked<kRelu>(d[j], xh, gamma, beta);
    s_dx += dz * xh;
    s_d += dz;
  }
  for (int l = 0; l < kLanes; ++l) s_dx += l_dx[l], s_d += l_d[l];
}

template <bool kRelu>
void dx_run(const float* __restrict p, const float* __restrict d, float* __restrict q, int64_t n, float mean, float rstd,
            float gamma, float beta, float mean_dz, float mean_dzx) {
  const float k = gamma * rstd;
  for (int64_t j = 0; j < n; ++j) {
    const float xh = (p[j] - mean) * rstd;
    q[j] = k * (masked<kRelu>(d[j], xh, gamma, beta) - mean_dz - xh * mean_dzx);
  }
}

template <bool kRelu>
void bn_forward_f32(const BnArgs& a) {
  const Geom g = a.g;
#pragma omp parallel for schedule(static) if (g.n * g.c * g.inner >= kParallelMin)
  for (int64_t ch = 0; ch < g.c; ++ch) {
    float mean, rstd;
    channel_stats(a.x, g, ch, a.eps, mean, rstd);
    const float scale = a.gamma[ch] * rstd, shift = a.beta[ch] - mean * scale;
    for (int64_t i = 0; i < g.n; ++i)
      affine_run<kRelu>(a.x + (i * g.c + ch) * g.inner, a.out + (i * g.c + ch) * g.inner, g.inner, scale, shift);
  }
}

template <bool kRelu>
void bn_stats_f32(const BnArgs& a) {
  const Geom g = a.g;
#pragma omp parallel for schedule(static) if (g.n * g.c * g.inner >= kParallelMin)
  for (int64_t ch = 0; ch < g.c; ++ch) {
    float mean, rstd;
    channel_stats(a.x, g, ch, a.eps, mean, rstd);
    double s_dx = 0, s_d = 0;
    for (int64_t i = 0; i < g.n; ++i) {
      const int64_t at = (i * g.c + ch) * g.inner;
      stats_run<kRelu>(a.x + at, a.dy + at, g.inner, mean, rstd, a.gamma[ch], a.beta[ch], s_dx, s_d);
    }
    a.out[ch] = float(s_dx);
    a.out[g.c + ch] = float(s_d);
    a.out[2 * g.c + ch] = mean;
    a.out[3 * g.c + ch] = rstd;
  }
}

template <bool kRelu>
void bn_dx_f32(const BnArgs& a) {
  const Geom g = a.g;
  const float inv_count = 1.f / float(g.count());
#pragma omp parallel for schedule(static) if (g.n * g.c * g.inner >= kParallelMin)
  for (int64_t ch = 0; ch < g.c; ++ch) {
    const float dgamma = a.stats[ch], dbeta = a.stats[g.c + ch], mean = a.stats[2 * g.c + ch],
                rstd = a.stats[3 * g.c + ch];
    for (int64_t i = 0; i < g.n; ++i) {
      const int64_t at = (i * g.c + ch) * g.inner;
      dx_run<kRelu>(a.x + at, a.dy + at, a.out + at, g.inner, mean, rstd, a.gamma[ch], a.beta[ch], dbeta * inv_count,
                    dgamma * inv_count);
    }
  }
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
      OpTestCase t = tcase(shapes, {{"eps", 1e-3}, {"relu", relu}});
      out.push_back(t);
    }
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
    d.tests = bn_tests(1, true);
    r.add(std::move(d));
  }
}

}  // namespace metagrad
