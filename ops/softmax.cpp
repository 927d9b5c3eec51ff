// Softmax and log-softmax along one axis.
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

void softmax_reference(bool log_space, const Node& n, const RefTensor& x, RefTensor& y) {
  int64_t axis = softmax_axis(n.attrs, x.shape.size());
  int64_t outer = 1, len = x.shape[size_t(axis)], inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.shape[size_t(i)];
  for (size_t i = size_t(axis) + 1; i < x.shape.size(); ++i) inner *= x.shape[i];
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t k = 0; k < inner; ++k) {
      auto at = [&](int64_t j) { return size_t((o * len + j) * inner + k); };
      double mx = -std::numeric_limits<double>::infinity(), total = 0;
      for (int64_t j = 0; j < len; ++j) mx = std::max(mx, x.data[at(j)]);
      for (int64_t j = 0; j < len; ++j) total += std::exp(x.data[at(j)] - mx);
      for (int64_t j = 0; j < len; ++j)
        y.data[at(j)] = log_space ? x.data[at(j)] - mx - std::log(total) : std::exp(x.data[at(j)] - mx) / total;
    }
}

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
    auto md = dense_desc(ctx.out_type().shape);
    int axis = int(softmax_axis(ctx.node.attrs, ctx.in_types[0].shape.size()));
    std::vector<DnnlKernel::Arg> args{{DNNL_ARG_SRC, md, ctx.in[0]}, {DNNL_ARG_DST, md, ctx.out[0]}};
    if (log_space) {
      dnnl::logsoftmax_forward::primitive_desc pd(
          dnnl::logsoftmax_forward::desc(dnnl::prop_kind::forward_inference, md, axis), dnnl_attr(), ctx.engine);
      return std::make_unique<DnnlKernel>(dnnl::logsoftmax_forward(pd), pd, args, ctx.engine, ctx.workspace);
    }
    dnnl::softmax_forward::primitive_desc pd(dnnl::softmax_forward::desc(dnnl::prop_kind::forward_inference, md, axis),
                                             dnnl_attr(), ctx.engine);
    return std::make_unique<DnnlKernel>(dnnl::softmax_forward(pd), pd, args, ctx.engine, ctx.workspace);
  };
  d.tests = {tcase({{3, 5}}, {{"axis", int64_t(1)}}), tcase({{4, 3}}, {{"axis", int64_t(0)}}),
             tcase({{2, 3, 4}}, {{"axis", int64_t(1)}}), tcase({{2, 1, 4}}, {{"axis", int64_t(-1)}}),
             tcase({{3, 1}}, {{"axis", int64_t(1)}})};  // a one-element axis: y = 1 (or 0), zero derivative
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
