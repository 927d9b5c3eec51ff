// Builder API: Tensor handles, leaves and arithmetic operators.
#include "metagrad/builder.h"

#include <fmt/format.h>

#include "metagrad/error.h"

namespace metagrad {

Graph& Tensor::graph() const {
  if (!g_) throw GraphError("use of an undefined Tensor");
  return *g_;
}

int64_t Tensor::dim(int64_t axis) const {
  int64_t r = rank();
  if (axis < 0) axis += r;
  if (axis < 0 || axis >= r)
    throw ShapeError(fmt::format("axis {} out of range for shape {}", axis, shape_str(shape())));
  return shape()[size_t(axis)];
}

Tensor& Tensor::named(const std::string& name) {
  Node& n = graph().node(v_.node);
  if (n.kind == NodeKind::Op || n.kind == NodeKind::Constant) n.name = name;
  else if (n.name != name) throw GraphError(fmt::format("cannot rename {}", graph().describe(n.id)));
  return *this;
}

// Tensors of another graph would silently refer to unrelated node ids of this one.
static Value own_value(const Graph& g, const Tensor& t, const std::string& what) {
  if (!t.defined()) throw GraphError(fmt::format("{} is an undefined Tensor", what));
  if (&t.graph() != &g) throw GraphError(fmt::format("{} belongs to another graph", what));
  return t.value();
}

void Graph::add_output(const std::string& name, const Tensor& t) {
  add_output(name, own_value(*this, t, fmt::format("output \"{}\"", name)));
}

void Graph::add_update(const Tensor& param, const Tensor& new_value) {
  Value p = own_value(*this, param, "update target");
  if (p.index != 0 || node(p.node).kind != NodeKind::Parameter)
    throw GraphError(fmt::format("update target {} is not a parameter", describe(p.node)));
  add_update(p.node, own_value(*this, new_value, fmt::format("new value of {}", describe(p.node))));
}

Tensor apply(const std::string& op, const std::vector<Tensor>& inputs, Attrs attrs, const std::string& name) {
  if (inputs.empty()) throw GraphError(fmt::format("op {} applied to no inputs", op));
  Graph* g = &inputs[0].graph();
  std::vector<Value> vals;
  for (const Tensor& t : inputs) {
    if (&t.graph() != g) throw GraphError(fmt::format("op {}: inputs come from different graphs", op));
    vals.push_back(t.value());
  }
  return Tensor(g, g->add_op(op, std::move(vals), std::move(attrs), name));
}

Tensor input(Graph& g, const std::string& name, const Shape& shape, DType dtype) {
  return Tensor(&g, g.add_input(name, {dtype, shape}));
}

Tensor constant(Graph& g, const Shape& shape, std::vector<double> data, const std::string& name) {
  return Tensor(&g, g.add_constant({DType::f32, shape}, std::move(data), name));
}

Tensor scalar(Graph& g, double v) { return constant(g, {}, {v}); }

Tensor full(Graph& g, const Shape& shape, double v) {
  Tensor s = scalar(g, v);
  if (shape.empty()) return s;
  return apply("broadcast_to", {s}, {{"shape", shape}});
}

Tensor parameter(Graph& g, const std::string& name, const Shape& shape, const Init& init, bool trainable) {
  return Tensor(&g, g.add_parameter(name, {DType::f32, shape}, init.name, init.attrs, trainable));
}

Tensor operator+(const Tensor& a, const Tensor& b) { return apply("add", {a, b}); }
Tensor operator-(const Tensor& a, const Tensor& b) { return apply("sub", {a, b}); }
Tensor operator*(const Tensor& a, const Tensor& b) { return apply("mul", {a, b}); }
Tensor operator/(const Tensor& a, const Tensor& b) { return apply("div", {a, b}); }
Tensor operator-(const Tensor& a) { return apply("neg", {a}); }
Tensor operator+(const Tensor& a, double b) { return a + scalar(a.graph(), b); }
Tensor operator-(const Tensor& a, double b) { return a - scalar(a.graph(), b); }
Tensor operator*(const Tensor& a, double b) { return a * scalar(a.graph(), b); }
Tensor operator/(const Tensor& a, double b) { return a / scalar(a.graph(), b); }
Tensor operator+(double a, const Tensor& b) { return scalar(b.graph(), a) + b; }
Tensor operator-(double a, const Tensor& b) { return scalar(b.graph(), a) - b; }
Tensor operator*(double a, const Tensor& b) { return scalar(b.graph(), a) * b; }
Tensor operator/(double a, const Tensor& b) { return scalar(b.graph(), a) / b; }

}  // namespace metagrad
