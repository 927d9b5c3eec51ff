// Reductions over axes (sum, mean, max) with keepdims, and sum_to_shape.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "metagrad/ops.h"
#include "ops/families.h"
#include "ops/op_helpers.h"

namespace metagrad {

namespace {

std::vector<TensorType> reduce_rule(const std::vector<TensorType>& in, const Attrs& a) {
  if (in[0].dtype != DType::f32) throw ShapeError("reductions take f32 inputs");
  auto axes = canonical_axes(attr_ints(a, "axes"), in[0].shape.size());
  return {{DType::f32, reduced_shape(in[0].shape, axes, attr_int(a, "keepdims") != 0)}};
}

Tensor reduce(const std::string& op, const Tensor& x, std::vector<int64_t> axes, bool keepdims) {
  return apply(op, {x}, {{"axes", canonical_axes(std::move(axes), x.shape().size())}, {"keepdims", int64_t(keepdims)}});
}

// The cotangent of a reduction's output, broadcast back over the reduced axes.
Tensor expand(const GradCtx& c, const Tensor& g) {
  auto axes = canonical_axes(attr_ints(c.attrs, "axes"), size_t(c.inputs[0].rank()));
  return broadcast_to(reshape(g, keep_shape(c.inputs[0].shape(), axes)), c.inputs[0].shape());
}

enum class Kind { Sum, Mean, Max };

void reference(Kind kind, const Node& n, const RefTensor& x, RefTensor& out) {
  auto axes = canonical_axes(attr_ints(n.attrs, "axes"), x.shape.size());
  if (kind != Kind::Max) return reduce_reference(x, axes, kind == Kind::Mean, out);
  auto strides = broadcast_strides(keep_shape(x.shape, axes), x.shape);
  std::fill(out.data.begin(), out.data.end(), -std::numeric_limits<double>::infinity());
  for_each_broadcast_n(x.shape, {strides}, [&](int64_t i, const int64_t* off) {
    double& o = out.data[size_t(off[0])];
    o = std::max(o, x.data[size_t(i)]);
  });
}

// Max of a contiguous run in 16 independent lanes (see sum_run in ops/op_helpers.h).
constexpr int kLanes = 16;
float max_run(const float* x, int64_t n) {
  float lane[kLanes];
  std::fill(lane, lane + kLanes, -std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) lane[k] = std::max(lane[k], x[i + k]);
  float acc = -std::numeric_limits<float>::infinity();
  for (; i < n; ++i) acc = std::max(acc, x[i]);
  for (int k = 0; k < kLanes; ++k) acc = std::max(acc, lane[k]);
  return acc;
}

// Reduction over coalesced axes: each run of the innermost axis either folds into one output
// element (a reduced axis) or into a row of outputs (a kept axis). Used where oneDNN 2.6 offers
// only its reference implementation, which is one to two orders of magnitude slower here.
class ReduceLoopKernel final : public Kernel {
 public:
  ReduceLoopKernel(const KernelCtx& ctx, Kind kind) : kind_(kind), x_(ctx.in_f32(0)), y_(ctx.out_f32()) {
    const Shape& in = ctx.in_types[0].shape;
    auto axes = canonical_axes(attr_ints(ctx.node.attrs, "axes"), in.size());
    shape_ = in;
    strides_ = {broadcast_strides(in, in), broadcast_strides(keep_shape(in, axes), in)};
    coalesce_axes(shape_, strides_);
    n_in_ = ctx.in_types[0].numel();
    n_out_ = ctx.out_type().numel();
  }
  void run(dnnl::stream&) override {
    const float init = kind_ == Kind::Max ? -std::numeric_limits<float>::infinity() : 0.f;
    std::fill(y_, y_ + n_out_, init);
    const size_t rank = shape_.size(), last = rank - 1;
    const int64_t inner = shape_[last], so = strides_[1][last];
    int64_t idx[kMaxRank] = {}, oi = 0;
    for (int64_t xi = 0; xi < n_in_; xi += inner) {
      const float* x = x_ + xi;
      float* y = y_ + oi;
      if (so == 0) {
        *y = kind_ == Kind::Max ? std::max(*y, max_run(x, inner)) : *y + sum_run(x, inner);
      } else if (kind_ == Kind::Max) {
        for (int64_t i = 0; i < inner; ++i) y[i * so] = std::max(y[i * so], x[i]);
      } else {
        for (int64_t i = 0; i < inner; ++i) y[i * so] += x[i];
      }
      for (size_t d = last; d-- > 0;) {
        oi += strides_[1][d];
        if (++idx[d] < shape_[d]) break;
        oi -= strides_[1][d] * shape_[d];
        idx[d] = 0;
      }
    }
    if (kind_ == Kind::Mean) {
      const float scale = float(n_out_) / float(n_in_);
      for (int64_t i = 0; i < n_out_; ++i) y_[i] *= scale;
    }
  }
  std::string impl() const override { return "loop:reduce"; }

 private:
  Kind kind_;
  const float* x_;
  float* y_;
  Shape shape_;
  std::vector<std::vector<int64_t>> strides_;  // {input (dense), output seen over the input}
  int64_t n_in_ = 0, n_out_ = 0;
};

std::unique_ptr<Kernel> reduce_kernel(const KernelCtx& ctx, dnnl::algorithm alg, Kind kind) {
  const TensorType& in = ctx.in_types[0];
  if (in.numel() == ctx.out_type().numel()) {  // nothing reduced (size-1 axes): a copy
    const float* src = ctx.in_f32(0);
    float* dst = ctx.out_f32();
    size_t bytes = in.bytes();
    return std::make_unique<LoopKernel>([=] { std::memmove(dst, src, bytes); }, "copy");
  }
  auto axes = canonical_axes(attr_ints(ctx.node.attrs, "axes"), in.shape.size());
  auto src = dense_desc(in.shape), dst = dense_desc(keep_shape(in.shape, axes));
  dnnl::reduction::primitive_desc pd(dnnl::reduction::desc(alg, src, dst, 0.f, 0.f), dnnl_attr(), ctx.engine);
  if (std::string(pd.impl_info_str()).rfind("ref", 0) == 0) return std::make_unique<ReduceLoopKernel>(ctx, kind);
  return std::make_unique<DnnlKernel>(
      dnnl::reduction(pd), pd,
      std::vector<DnnlKernel::Arg>{{DNNL_ARG_SRC, src, ctx.in[0]}, {DNNL_ARG_DST, dst, ctx.out[0]}}, ctx.engine, ctx.workspace);
}

void add_reduction(OpRegistry& r, const char* name, Kind kind, dnnl::algorithm alg, GradFn grad) {
  OpDef d;
  d.name = name;
  d.attrs = {{"axes", AttrKind::Ints, AttrValue(std::vector<int64_t>{})}, {"keepdims", AttrKind::Int, AttrValue(int64_t(0))}};
  d.shape = reduce_rule;
  d.grad = std::move(grad);
  d.reference = [kind](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
    reference(kind, n, *in[0], out[0]);
  };
  d.kernel = [alg, kind](const KernelCtx& ctx) { return reduce_kernel(ctx, alg, kind); };
  auto ax = [](std::vector<int64_t> a, int64_t keep) { return Attrs{{"axes", a}, {"keepdims", keep}}; };
  d.tests = {tcase({{3, 4}}, ax({1}, 0)),         tcase({{3, 4}}, ax({0}, 1)),
             tcase({{2, 3, 4}}, ax({0, 2}, 0)),   tcase({{2, 3, 4}}, ax({0, 1, 2}, 0)),
             tcase({{2, 3, 4}}, ax({1}, 1)),      tcase({{5}}, ax({}, 0)),
             tcase({{3, 1}}, ax({1}, 0)),         tcase({{2, 3, 4}}, ax({-1}, 1)),
             tcase({{2, 3, 4}}, ax({-3, -1}, 0))};
  r.add(std::move(d));
}

}  // namespace

Tensor sum(const Tensor& x, std::vector<int64_t> axes, bool keepdims) { return reduce("sum", x, std::move(axes), keepdims); }
Tensor mean(const Tensor& x, std::vector<int64_t> axes, bool keepdims) { return reduce("mean", x, std::move(axes), keepdims); }
Tensor max(const Tensor& x, std::vector<int64_t> axes, bool keepdims) { return reduce("max", x, std::move(axes), keepdims); }

Tensor sum_to_shape(const Tensor& x, const Shape& shape) {
  const Shape& xs = x.shape();
  if (xs == shape) return x;
  // Ranks are right-aligned; a target may also carry leading 1s that x lacks.
  const size_t rank = std::max(xs.size(), shape.size()), lead = rank - xs.size();
  const Shape px = pad_rank(xs, rank), ps = pad_rank(shape, rank);
  bool ok = true;
  std::vector<int64_t> axes;
  for (size_t i = 0; i < rank; ++i) {
    if (ps[i] == px[i]) continue;
    if (ps[i] != 1) ok = false;
    else axes.push_back(int64_t(i - lead));  // px[i] != 1, so axis i exists in x
  }
  if (!ok) throw ShapeError(fmt::format("sum_to_shape: {} is not a broadcast of {}", shape_str(xs), shape_str(shape)));
  Tensor s = axes.empty() ? x : sum(x, axes, false);
  return s.shape() == shape ? s : reshape(s, shape);
}

void register_reduce_ops(OpRegistry& r) {
  add_reduction(r, "sum", Kind::Sum, dnnl::algorithm::reduction_sum,
                [](const GradCtx& c) { return std::vector<Tensor>{expand(c, c.cotangents[0])}; });
  add_reduction(r, "mean", Kind::Mean, dnnl::algorithm::reduction_mean, [](const GradCtx& c) {
    double count = double(c.inputs[0].numel()) / double(std::max<int64_t>(1, c.outputs[0].numel()));
    return std::vector<Tensor>{expand(c, c.cotangents[0]) / count};
  });
  // Random test inputs have no ties, so the mask selects exactly the maximum.
  add_reduction(r, "max", Kind::Max, dnnl::algorithm::reduction_max, [](const GradCtx& c) {
    Tensor mask = equal(c.inputs[0], expand(c, c.outputs[0]));
    return std::vector<Tensor>{expand(c, c.cotangents[0]) * mask};
  });
}

}  // namespace metagrad
