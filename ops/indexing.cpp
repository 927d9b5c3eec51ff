// Indexing ops: gather along an axis, its adjoint scatter_add, and one_hot.
#include <fmt/format.h>

#include <cstring>

#include "metagrad/ops.h"
#include "ops/families.h"
#include "ops/op_helpers.h"

namespace metagrad {

namespace {

// ---- gather / scatter_add ----
struct GatherDims {
  int64_t outer, n_idx, axis_size, inner;
};
GatherDims gather_dims(const Shape& data, int64_t axis, int64_t n_idx) {
  GatherDims d{1, n_idx, data[size_t(axis)], 1};
  for (int64_t i = 0; i < axis; ++i) d.outer *= data[size_t(i)];
  for (size_t i = size_t(axis) + 1; i < data.size(); ++i) d.inner *= data[i];
  return d;
}

std::vector<TensorType> gather_rule(const std::vector<TensorType>& in, const Attrs& a) {
  if (in[1].dtype != DType::i32) throw ShapeError("gather indices must be i32, got " + type_str(in[1]));
  int64_t axis = normalize_axis(attr_int(a, "axis"), in[0].shape.size());
  Shape out(in[0].shape.begin(), in[0].shape.begin() + axis);
  out.insert(out.end(), in[1].shape.begin(), in[1].shape.end());
  out.insert(out.end(), in[0].shape.begin() + axis + 1, in[0].shape.end());
  return {{in[0].dtype, out}};
}

std::vector<TensorType> scatter_rule(const std::vector<TensorType>& in, const Attrs& a) {
  if (in[1].dtype != DType::i32) throw ShapeError("scatter_add indices must be i32, got " + type_str(in[1]));
  const Shape &u = in[0].shape, &ix = in[1].shape;
  int64_t axis = attr_int(a, "axis"), size = attr_int(a, "size");
  if (axis < 0 || size_t(axis) + ix.size() > u.size()) throw ShapeError("scatter_add axis out of range");
  Shape expect_ix(u.begin() + axis, u.begin() + axis + long(ix.size()));
  if (expect_ix != ix)
    throw ShapeError(fmt::format("scatter_add updates {} do not match indices {} at axis {}", shape_str(u), shape_str(ix), axis));
  Shape out(u.begin(), u.begin() + axis);
  out.push_back(size);
  out.insert(out.end(), u.begin() + axis + long(ix.size()), u.end());
  return {{in[0].dtype, out}};
}

void check_index(double v, int64_t limit, const char* op) {
  if (v < 0 || v >= double(limit))
    throw RuntimeError(fmt::format("{}: index {} out of range [0, {})", op, int64_t(v), limit));
}

// ---- one_hot ----
std::vector<TensorType> one_hot_rule(const std::vector<TensorType>& in, const Attrs& a) {
  if (in[0].dtype != DType::i32) throw ShapeError("one_hot labels must be i32, got " + type_str(in[0]));
  int64_t depth = attr_int(a, "depth");
  if (depth <= 0) throw ShapeError("one_hot depth must be positive");
  Shape out = in[0].shape;
  out.push_back(depth);
  return {{DType::f32, out}};
}

OpTestCase int_case(std::vector<TensorType> inputs, Attrs attrs, int64_t lo, int64_t hi) {
  OpTestCase c;
  c.inputs = std::move(inputs);
  c.attrs = std::move(attrs);
  c.int_range = {lo, hi};
  for (const TensorType& t : c.inputs) c.differentiable.push_back(t.dtype == DType::f32);
  return c;
}

}  // namespace

Tensor gather(const Tensor& x, const Tensor& indices, int64_t axis) {
  return apply("gather", {x, indices}, {{"axis", normalize_axis(axis, size_t(x.rank()))}});
}
Tensor scatter_add(const Tensor& updates, const Tensor& indices, int64_t axis, int64_t size) {
  return apply("scatter_add", {updates, indices}, {{"axis", axis}, {"size", size}});
}
Tensor one_hot(const Tensor& labels, int64_t depth) { return apply("one_hot", {labels}, {{"depth", depth}}); }

void register_indexing_ops(OpRegistry& r) {
  {
    OpDef d;
    d.name = "gather";
    d.num_inputs = 2;
    d.attrs = {{"axis", AttrKind::Int, AttrValue(int64_t(0))}};
    d.shape = gather_rule;
    d.grad = [](const GradCtx& c) {
      int64_t axis = axis_attr(c.attrs, size_t(c.inputs[0].rank()));
      return std::vector<Tensor>{scatter_add(c.cotangents[0], c.inputs[1], axis, c.inputs[0].shape()[size_t(axis)]),
                                 none()};
    };
    d.reference = [](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
      auto gd = gather_dims(in[0]->shape, axis_attr(n.attrs, in[0]->shape.size()), int64_t(in[1]->data.size()));
      for (int64_t o = 0; o < gd.outer; ++o)
        for (int64_t j = 0; j < gd.n_idx; ++j) {
          double ix = in[1]->data[size_t(j)];
          check_index(ix, gd.axis_size, "gather");
          for (int64_t k = 0; k < gd.inner; ++k)
            out[0].data[size_t((o * gd.n_idx + j) * gd.inner + k)] =
                in[0]->data[size_t((o * gd.axis_size + int64_t(ix)) * gd.inner + k)];
        }
    };
    d.kernel = [](const KernelCtx& ctx) -> std::unique_ptr<Kernel> {
      auto gd = gather_dims(ctx.in_types[0].shape, axis_attr(ctx.node.attrs, ctx.in_types[0].shape.size()), ctx.in_types[1].numel());
      const float* x = ctx.in_f32(0);
      const int32_t* idx = ctx.in_i32(1);
      float* y = ctx.out_f32();
      return std::make_unique<LoopKernel>([=] {
        for (int64_t o = 0; o < gd.outer; ++o)
          for (int64_t j = 0; j < gd.n_idx; ++j) {
            check_index(idx[j], gd.axis_size, "gather");
            std::memcpy(y + (o * gd.n_idx + j) * gd.inner, x + (o * gd.axis_size + idx[j]) * gd.inner,
                        size_t(gd.inner) * sizeof(float));
          }
      });
    };
    auto c1 = int_case({{DType::f32, {5, 3}}, {DType::i32, {4}}}, {{"axis", int64_t(0)}}, 0, 5);
    auto c2 = int_case({{DType::f32, {2, 4, 3}}, {DType::i32, {2, 2}}}, {{"axis", int64_t(1)}}, 0, 4);
    auto c3 = int_case({{DType::f32, {3, 4}}, {DType::i32, {2, 3}}}, {{"axis", int64_t(-1)}}, 0, 4);
    d.tests = {c1, c2, c3};
    r.add(std::move(d));
  }
  {
    OpDef d;
    d.name = "scatter_add";
    d.num_inputs = 2;
    d.attrs = {{"axis", AttrKind::Int, std::nullopt}, {"size", AttrKind::Int, std::nullopt}};
    d.shape = scatter_rule;
    d.grad = [](const GradCtx& c) {
      return std::vector<Tensor>{gather(c.cotangents[0], c.inputs[1], attr_int(c.attrs, "axis")), none()};
    };
    d.reference = [](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
      auto gd = gather_dims(out[0].shape, attr_int(n.attrs, "axis"), int64_t(in[1]->data.size()));
      std::fill(out[0].data.begin(), out[0].data.end(), 0.0);
      for (int64_t o = 0; o < gd.outer; ++o)
        for (int64_t j = 0; j < gd.n_idx; ++j) {
          double ix = in[1]->data[size_t(j)];
          check_index(ix, gd.axis_size, "scatter_add");
          for (int64_t k = 0; k < gd.inner; ++k)
            out[0].data[size_t((o * gd.axis_size + int64_t(ix)) * gd.inner + k)] +=
                in[0]->data[size_t((o * gd.n_idx + j) * gd.inner + k)];
        }
    };
    d.kernel = [](const KernelCtx& ctx) -> std::unique_ptr<Kernel> {
      auto gd = gather_dims(ctx.out_type().shape, attr_int(ctx.node.attrs, "axis"), ctx.in_types[1].numel());
      const float* u = ctx.in_f32(0);
      const int32_t* idx = ctx.in_i32(1);
      float* y = ctx.out_f32();
      int64_t n = ctx.out_type().numel();
      return std::make_unique<LoopKernel>([=] {
        std::fill(y, y + n, 0.f);
        for (int64_t o = 0; o < gd.outer; ++o)
          for (int64_t j = 0; j < gd.n_idx; ++j) {
            check_index(idx[j], gd.axis_size, "scatter_add");
            float* dst = y + (o * gd.axis_size + idx[j]) * gd.inner;
            const float* src = u + (o * gd.n_idx + j) * gd.inner;
            for (int64_t k = 0; k < gd.inner; ++k) dst[k] += src[k];
          }
      });
    };
    d.tests = {int_case({{DType::f32, {4, 3}}, {DType::i32, {4}}}, {{"axis", int64_t(0)}, {"size", int64_t(5)}}, 0, 5),
               int_case({{DType::f32, {2, 2, 2, 3}}, {DType::i32, {2, 2}}}, {{"axis", int64_t(1)}, {"size", int64_t(3)}}, 0, 3)};
    r.add(std::move(d));
  }
  {
    OpDef d;
    d.name = "one_hot";
    d.attrs = {{"depth", AttrKind::Int, std::nullopt}};
    d.shape = one_hot_rule;
    d.grad_kind = GradKind::Zero;
    d.reference = [](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
      int64_t depth = attr_int(n.attrs, "depth");
      std::fill(out[0].data.begin(), out[0].data.end(), 0.0);
      for (size_t i = 0; i < in[0]->data.size(); ++i) {
        check_index(in[0]->data[i], depth, "one_hot");
        out[0].data[i * size_t(depth) + size_t(in[0]->data[i])] = 1.0;
      }
    };
    d.kernel = [](const KernelCtx& ctx) -> std::unique_ptr<Kernel> {
      int64_t depth = attr_int(ctx.node.attrs, "depth"), n = ctx.in_types[0].numel();
      const int32_t* lab = ctx.in_i32(0);
      float* y = ctx.out_f32();
      return std::make_unique<LoopKernel>([=] {
        std::fill(y, y + n * depth, 0.f);
        for (int64_t i = 0; i < n; ++i) {
          check_index(lab[i], depth, "one_hot");
          y[i * depth + lab[i]] = 1.f;
        }
      });
    };
    d.tests = {int_case({{DType::i32, {5}}}, {{"depth", int64_t(3)}}, 0, 3),
               int_case({{DType::i32, {2, 3}}}, {{"depth", int64_t(4)}}, 0, 4)};
    r.add(std::move(d));
  }
}

}  // namespace metagrad
