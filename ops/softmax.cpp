// Softmax and log-softmax along one axis.
#include <fmt/format.h>
#include <omp.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "metagrad/ops.h"
#include "ops/accurate_math.h"
#include "ops/families.h"
#include "ops/op_helpers.h"

namespace metagrad {

namespace {

using IntList = std::vector<int64_t>;

// The builders store a non-negative axis; graphs written by hand may count from the end.
int64_t softmax_axis(const Attrs& a, size_t rank) {
  int64_t axis = attr_int(a, "axis");
  return axis < 0 ? axis + int64_t(rank) : axis;
}

std::vector<TensorType> softmax_rule(const std::vector<TensorType>& in, const Attrs& a) {
  int64_t axis = softmax_axis(a, in[0].shape.size());
  if (in[0].dtype != DType::f32 || axis < 0 || axis >= int64_t(in[0].shape.size()))
    throw ShapeError(fmt::format("softmax axis {} invalid for {}", attr_int(a, "axis"), type_str(in[0])));
  return {in[0]};
}

// Rows of the tensor along `axis`: `outer` x `inner` rows of `len` entries, `inner` apart.
struct Rows {
  int64_t outer = 1, len = 1, inner = 1;
};
Rows rows_of(const Shape& shape, int64_t axis) {
  Rows r;
  r.len = shape[size_t(axis)];
  for (int64_t i = 0; i < axis; ++i) r.outer *= shape[size_t(i)];
  for (size_t i = size_t(axis) + 1; i < shape.size(); ++i) r.inner *= shape[i];
  return r;
}

// With m the first maximum and T = sum of e^(x - x_m) over the other entries, log_softmax =
// x - x_m - log1p(T) and softmax = e^(x - x_m) / (1 + T): log(sum) would carry the rounding
// error of 1 + T, which is larger than the whole value of a dominant entry (-T).
void softmax_reference(bool log_space, const Node& n, const RefTensor& x, RefTensor& y) {
  const Rows rw = rows_of(x.shape, softmax_axis(n.attrs, x.shape.size()));
  for (int64_t o = 0; o < rw.outer; ++o)
    for (int64_t k = 0; k < rw.inner; ++k) {
      auto at = [&](int64_t j) { return size_t((o * rw.len + j) * rw.inner + k); };
      int64_t m = 0;
      for (int64_t j = 1; j < rw.len; ++j)
        if (x.data[at(j)] > x.data[at(m)]) m = j;
      const double mx = x.data[at(m)];
      double t = 0;
      for (int64_t j = 0; j < rw.len; ++j)
        if (j != m) t += std::exp(x.data[at(j)] - mx);
      for (int64_t j = 0; j < rw.len; ++j)
        y.data[at(j)] = log_space ? x.data[at(j)] - mx - std::log1p(t) : std::exp(x.data[at(j)] - mx) / (1.0 + t);
    }
}

// The f32 kernel: the reference's formulation in f64 (ops/accurate_math.h), so every entry is
// within 1 ulp, and a dominant log-probability is -T rounded (oneDNN 2.6's logsoftmax returned
// +1.4e-6 for [0, -30, -30], and its softmax flushes probabilities below 2^-126 to zero).
class SoftmaxKernel final : public Kernel {
 public:
  static constexpr int64_t kParallelMin = 1 << 15;
  SoftmaxKernel(const KernelCtx& ctx, bool log_space)
      : log_space_(log_space),
        rows_(rows_of(ctx.in_types[0].shape, softmax_axis(ctx.node.attrs, ctx.in_types[0].shape.size()))),
        x_(ctx.in_f32(0)),
        y_(ctx.out_f32()) {
    threads_ = ctx.in_types[0].numel() >= kParallelMin ? std::max(1, omp_get_max_threads()) : 1;
    stride_ = size_t(rows_.len + 1) & ~size_t(1);  // even, for two-lane steps
    buf_.assign(size_t(threads_) * 2 * stride_, 0.0);
  }
  void run(dnnl::stream&) override {
    const int64_t n = rows_.outer * rows_.inner;
    if (threads_ == 1) {
      for (int64_t r = 0; r < n; ++r) row(r, buf_.data());
      return;
    }
#pragma omp parallel num_threads(threads_)
    {
      double* buf = buf_.data() + size_t(omp_get_thread_num()) * 2 * stride_;
#pragma omp for schedule(static)
      for (int64_t r = 0; r < n; ++r) row(r, buf);
    }
  }
  std::string impl() const override { return log_space_ ? "loop:log_softmax" : "loop:softmax"; }

 private:
  void row(int64_t r, double* buf) const {
    const int64_t len = rows_.len, step = rows_.inner;
    const int64_t base = (r / step) * len * step + r % step;
    const float* x = x_ + base;
    float* y = y_ + base;
    double *d = buf, *e = buf + stride_;
    int64_t m = 0;
    for (int64_t j = 1; j < len; ++j)
      if (x[j * step] > x[m * step]) m = j;
    const double xm = x[m * step];
    for (int64_t j = 0; j < len; ++j) d[j] = double(x[j * step]) - xm;  // exact
    if (len % 2) d[len] = 0;
    for (int64_t j = 0; j < len; j += 2) {
      const amath::d2 v = amath::exp(amath::d2{d[j], d[j + 1]});
      e[j] = v[0], e[j + 1] = v[1];
    }
    double t = 0;
    for (int64_t j = 0; j < len; ++j) t += j == m ? 0.0 : e[j];
    if (log_space_) {
      const double l = amath::log1p(amath::splat(t))[0];
      for (int64_t j = 0; j < len; ++j) y[j * step] = float(d[j] - l);
    } else {
      const double inv = 1.0 / (1.0 + t);
      for (int64_t j = 0; j < len; ++j) y[j * step] = float(e[j] * inv);
    }
  }

  bool log_space_;
  Rows rows_;
  const float* x_;
  float* y_;
  int threads_ = 1;
  size_t stride_ = 0;
  std::vector<double> buf_;  // per thread: x - max and its exponential, one row each
};

int64_t norm_axis(const Tensor& x, int64_t axis) {
  if (axis < 0) axis += x.rank();
  return axis;
}

void add_softmax(OpRegistry& r, const char* name, bool log_space) {
  OpDef d;
  d.name = name;
  d.attrs = {{"axis", AttrKind::Int, AttrValue(int64_t(-1))}};
  d.shape = softmax_rule;
  d.grad = [log_space](const GradCtx& c) {
    int64_t axis = softmax_axis(c.attrs, size_t(c.inputs[0].rank()));
    const Tensor &g = c.cotangents[0], &y = c.outputs[0];
    if (log_space) return std::vector<Tensor>{g - exp(y) * sum(g, {axis}, true)};
    return std::vector<Tensor>{y * (g - sum(g * y, {axis}, true))};
  };
  d.reference = [log_space](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
    softmax_reference(log_space, n, *in[0], out[0]);
  };
  d.kernel = [log_space](const KernelCtx& ctx) -> std::unique_ptr<Kernel> {
    return std::make_unique<SoftmaxKernel>(ctx, log_space);
  };
  d.tests = {tcase({{3, 5}}, {{"axis", int64_t(1)}}), tcase({{4, 3}}, {{"axis", int64_t(0)}}),
             tcase({{2, 3, 4}}, {{"axis", int64_t(1)}}), tcase({{2, 1, 4}}, {{"axis", int64_t(-1)}}),
             tcase({{3, 1}}, {{"axis", int64_t(1)}}),  // a one-element axis: y = 1 (or 0), zero derivative
             // Saturated rows, and confident logits as in issue 23 (a dominant entry of -1e-13).
             tcase({{4, 5}}, {{"axis", int64_t(1)}}, -60, 60), tcase({{3, 4}}, {{"axis", int64_t(1)}}, -700, -600)};
  d.tests[5].note = "saturated rows";
  d.tests[6].note = "confident logits";
  for (OpTestCase& c : d.tests) c.kernel_ulp = kKernelUlp;
  r.add(std::move(d));
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t axis) { return apply("softmax", {x}, {{"axis", norm_axis(x, axis)}}); }
Tensor log_softmax(const Tensor& x, int64_t axis) { return apply("log_softmax", {x}, {{"axis", norm_axis(x, axis)}}); }

void register_softmax_ops(OpRegistry& r) {
  add_softmax(r, "softmax", false);
  add_softmax(r, "log_softmax", true);
}

}  // namespace metagrad
