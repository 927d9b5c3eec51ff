// Shared kernel and test-case builders for op registry entries.
#include "ops/op_helpers.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "ops/broadcast.h"

namespace metagrad {

OpTestCase tcase(std::vector<Shape> shapes, Attrs attrs, double lo, double hi) {
  OpTestCase c;
  for (auto& s : shapes) c.inputs.push_back({DType::f32, s});
  c.attrs = std::move(attrs);
  c.lo = lo;
  c.hi = hi;
  return c;
}

int64_t normalize_axis(int64_t axis, size_t rank) {
  if (axis < 0) axis += int64_t(rank);
  if (axis < 0 || axis >= int64_t(rank)) throw ShapeError(fmt::format("axis {} out of range for rank {}", axis, rank));
  return axis;
}

int64_t axis_attr(const Attrs& a, size_t rank) { return normalize_axis(attr_int(a, "axis"), rank); }

Shape pad_rank(const Shape& s, size_t rank) {
  Shape out(rank - std::min(rank, s.size()), 1);
  out.insert(out.end(), s.begin(), s.end());
  return out;
}

namespace {

// An elementwise function over operands that need broadcasting: broadcast operands are gathered
// block by block into small buffers, so the kernel holds a few KiB rather than a full-size copy
// of each broadcast operand.
class GatherLoopKernel final : public Kernel {
 public:
  static constexpr int64_t kBlock = 4096;
  static constexpr int64_t kParallelMin = 1 << 16;
  GatherLoopKernel(const KernelCtx& ctx, EltwiseFn fn, float param) : fn_(fn), param_(param), out_(ctx.out_f32()) {
    const Shape& out = ctx.out_type().shape;
    n_ = num_elements(out);
    bufs_.resize(ctx.in.size());
    for (size_t k = 0; k < ctx.in.size(); ++k) {
      const float* src = ctx.in_f32(k);
      if (ctx.in_types[k].shape == out || (ctx.in_types[k].numel() == n_)) {
        full_.push_back(src);
        continue;
      }
      bufs_[k].assign(size_t(std::min(n_, kBlock)), 0.f);
      Shape shape = out;
      std::vector<std::vector<int64_t>> st{broadcast_strides(ctx.in_types[k].shape, out), broadcast_strides(out, out)};
      coalesce_axes(shape, st);
      gathers_.push_back({src, bufs_[k].data(), st[0], shape, k});
      full_.push_back(nullptr);
    }
    args_.assign(ctx.in.size(), nullptr);
  }
  void run(dnnl::stream&) override {
    if (gathers_.empty() && n_ >= kParallelMin) {
      // Large dense operands: blocks split over the OpenMP threads oneDNN also runs on (the
      // accurate transcendental loops replaced its two-threaded eltwise primitives).
      const int64_t blocks = (n_ + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t start = b * kBlock, n = std::min(kBlock, n_ - start);
        const float* args[kMaxOperands];
        for (size_t k = 0; k < full_.size(); ++k) args[k] = full_[k] + start;
        fn_(n, args, out_ + start, param_);
      }
      return;
    }
    for (int64_t start = 0; start < n_; start += kBlock) {
      const int64_t n = std::min(kBlock, n_ - start);
      for (size_t k = 0; k < full_.size(); ++k)
        if (full_[k]) args_[k] = full_[k] + start;
      for (const Gather& gth : gathers_) {
        gather_broadcast(gth.src, gth.strides, gth.shape, start, n, gth.dst);
        args_[gth.arg] = gth.dst;
      }
      fn_(n, args_.data(), out_ + start, param_);
    }
  }
  std::string impl() const override { return "loop"; }

 private:
  struct Gather {
    const float* src;
    float* dst;
    std::vector<int64_t> strides;
    Shape shape;  // coalesced iteration shape
    size_t arg;
  };
  EltwiseFn fn_;
  float param_;
  float* out_;
  int64_t n_ = 0;
  std::vector<std::vector<float>> bufs_;
  std::vector<Gather> gathers_;
  std::vector<const float*> full_;  // operands read in place (null: gathered)
  std::vector<const float*> args_;
};

}  // namespace

std::unique_ptr<Kernel> loop_eltwise_kernel(const KernelCtx& ctx, EltwiseFn fn, float param) {
  return std::make_unique<GatherLoopKernel>(ctx, fn, param);
}

std::unique_ptr<Kernel> binary_kernel(const KernelCtx& ctx, dnnl::algorithm alg, EltwiseFn fallback, bool commutative) {
  const Shape& out = ctx.out_type().shape;
  const size_t rank = std::max<size_t>(out.size(), 1);
  Shape a = pad_rank(ctx.in_types[0].shape, rank), b = pad_rank(ctx.in_types[1].shape, rank);
  Shape o = pad_rank(out, rank);
  void* pa = ctx.in[0];
  void* pb = ctx.in[1];
  if (a != o && b == o && commutative) {
    std::swap(a, b);
    std::swap(pa, pb);
  }
  if (a != o) return loop_eltwise_kernel(ctx, fallback);
  auto md_a = dense_desc(a), md_b = dense_desc(b), md_o = dense_desc(o);
  dnnl::binary::primitive_desc pd(dnnl::binary::desc(alg, md_a, md_b, md_o), dnnl_attr(), ctx.engine);
  return std::make_unique<DnnlKernel>(dnnl::binary(pd), pd,
                                      std::vector<DnnlKernel::Arg>{{DNNL_ARG_SRC_0, md_a, pa},
                                                                   {DNNL_ARG_SRC_1, md_b, pb},
                                                                   {DNNL_ARG_DST, md_o, ctx.out[0]}},
                                      ctx.engine, ctx.workspace);
}

std::unique_ptr<Kernel> eltwise_kernel(const KernelCtx& ctx, dnnl::algorithm alg, float alpha, float beta) {
  auto md = dense_desc({ctx.out_type().numel()});
  dnnl::eltwise_forward::primitive_desc pd(
      dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_inference, alg, md, alpha, beta), dnnl_attr(), ctx.engine);
  return std::make_unique<DnnlKernel>(
      dnnl::eltwise_forward(pd), pd,
      std::vector<DnnlKernel::Arg>{{DNNL_ARG_SRC, md, ctx.in[0]}, {DNNL_ARG_DST, md, ctx.out[0]}}, ctx.engine, ctx.workspace);
}

std::vector<int64_t> canonical_axes(std::vector<int64_t> axes, size_t rank) {
  if (axes.empty())
    for (size_t i = 0; i < rank; ++i) axes.push_back(int64_t(i));
  for (int64_t& a : axes) {
    if (a < 0) a += int64_t(rank);
    if (a < 0 || a >= int64_t(rank)) throw ShapeError(fmt::format("axis out of range for rank {}", rank));
  }
  std::sort(axes.begin(), axes.end());
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end()) throw ShapeError("an axis is listed twice");
  return axes;
}

Shape keep_shape(const Shape& in, const std::vector<int64_t>& axes) {
  Shape s = in;
  for (int64_t a : axes) s[size_t(a)] = 1;
  return s;
}

Shape reduced_shape(const Shape& in, const std::vector<int64_t>& axes, bool keepdims) {
  if (keepdims) return keep_shape(in, axes);
  Shape s;
  for (size_t i = 0; i < in.size(); ++i)
    if (!std::binary_search(axes.begin(), axes.end(), int64_t(i))) s.push_back(in[i]);
  return s;
}

float sum_run(const float* x, int64_t n) {
  constexpr int kLanes = 16;
  float lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) lane[k] += x[i + k];
  float acc = 0.f;
  for (; i < n; ++i) acc += x[i];
  for (int k = 0; k < kLanes; ++k) acc += lane[k];
  return acc;
}

void reduce_reference(const RefTensor& x, const std::vector<int64_t>& axes, bool mean, RefTensor& out) {
  auto strides = broadcast_strides(keep_shape(x.shape, axes), x.shape);
  std::fill(out.data.begin(), out.data.end(), 0.0);
  for_each_broadcast_n(x.shape, {strides}, [&](int64_t i, const int64_t* off) { out.data[size_t(off[0])] += x.data[size_t(i)]; });
  if (mean) {
    const double count = double(x.data.size()) / double(std::max<size_t>(1, out.data.size()));
    for (double& o : out.data) o /= count;
  }
}

dnnl::memory::dims right_pad(int64_t oh, int64_t ow, int64_t sh, int64_t sw, int64_t kh, int64_t kw, int64_t h, int64_t w,
                             int64_t ph, int64_t pw) {
  return {(oh - 1) * sh + kh - h - ph, (ow - 1) * sw + kw - w - pw};
}

}  // namespace metagrad
