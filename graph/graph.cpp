// Graph construction, lookup and the verifier.
#include "metagrad/graph.h"

#include <fmt/format.h>

#include <set>

#include "graph/op_def.h"
#include "metagrad/error.h"

namespace metagrad {

const char* node_kind_name(NodeKind k) {
  switch (k) {
    case NodeKind::Input: return "input";
    case NodeKind::Parameter: return "param";
    case NodeKind::Constant: return "const";
    case NodeKind::Op: return "op";
  }
  return "?";
}

std::string Graph::describe(int id) const {
  if (id < 0 || size_t(id) >= nodes_.size()) return fmt::format("%{} (no such node)", id);
  const Node& n = nodes_[size_t(id)];
  std::string what = n.kind == NodeKind::Op ? n.op->name : node_kind_name(n.kind);
  return n.name.empty() ? fmt::format("%{} ({})", id, what) : fmt::format("%{} ({} \"{}\")", id, what, n.name);
}

void Graph::check_new_name(const std::string& name) const {
  if (name.empty()) throw GraphError("inputs and parameters need a name");
  if (find(name) >= 0) throw GraphError(fmt::format("name \"{}\" is already used by {}", name, describe(find(name))));
}

int Graph::find(const std::string& name) const {
  for (const Node& n : nodes_)
    if ((n.kind == NodeKind::Input || n.kind == NodeKind::Parameter) && n.name == name) return n.id;
  return -1;
}

int Graph::append(Node n) {
  n.id = int(nodes_.size());
  nodes_.push_back(std::move(n));
  return nodes_.back().id;
}

Value Graph::add_input(const std::string& name, TensorType type) {
  check_new_name(name);
  Node n;
  n.kind = NodeKind::Input;
  n.name = name;
  n.outputs = {std::move(type)};
  return {append(std::move(n)), 0};
}

Value Graph::add_parameter(const std::string& name, TensorType type, const std::string& init,
                           Attrs init_attrs, bool trainable) {
  check_new_name(name);
  if (type.dtype != DType::f32) throw GraphError(fmt::format("parameter \"{}\" must be f32", name));
  Node n;
  n.kind = NodeKind::Parameter;
  n.name = name;
  n.outputs = {std::move(type)};
  n.init = init;
  n.attrs = std::move(init_attrs);
  n.trainable = trainable;
  return {append(std::move(n)), 0};
}

Value Graph::add_constant(TensorType type, std::vector<double> data, const std::string& name) {
  if (int64_t(data.size()) != type.numel())
    throw GraphError(fmt::format("constant {} of type {} given {} values", name, type_str(type), data.size()));
  Node n;
  n.kind = NodeKind::Constant;
  n.name = name;
  n.outputs = {std::move(type)};
  n.data = std::move(data);
  return {append(std::move(n)), 0};
}

namespace {
std::string types_str(const std::vector<TensorType>& ts) {
  std::string s;
  for (size_t i = 0; i < ts.size(); ++i) s += (i ? ", " : "") + type_str(ts[i]);
  return s;
}

// The op's shape rule, or its body rule with the body's signature, for add_op_multi and verify.
std::vector<TensorType> infer_types(const OpDef& op, const std::vector<TensorType>& in, const Attrs& attrs,
                                    const Graph* body) {
  if (op.body_shape) {
    if (!body) throw GraphError(fmt::format("op {} needs a body graph", op.name));
    return op.body_shape(in, attrs, *body);
  }
  if (body) throw GraphError(fmt::format("op {} takes no body graph", op.name));
  return op.shape(in, attrs);
}

}  // namespace

std::vector<Value> Graph::add_op_multi(const std::string& opname, std::vector<Value> inputs, Attrs attrs,
                                       const std::string& name, std::shared_ptr<const Graph> body) {
  const OpDef& op = OpRegistry::get().at(opname);
  std::string where = name.empty() ? fmt::format("op {} (new node %{})", opname, nodes_.size())
                                   : fmt::format("op {} (node \"{}\")", opname, name);
  if (op.num_inputs >= 0 && int(inputs.size()) != op.num_inputs)
    throw ShapeError(fmt::format("{}: expects {} inputs, got {}", where, op.num_inputs, inputs.size()));
  if (op.num_inputs < 0 && inputs.empty()) throw ShapeError(fmt::format("{}: needs at least one input", where));
  std::vector<TensorType> in;
  for (Value v : inputs) {
    if (v.node < 0 || size_t(v.node) >= nodes_.size() || size_t(v.index) >= node(v.node).outputs.size())
      throw GraphError(fmt::format("{}: input refers to a value that does not exist (%{}.{})", where, v.node, v.index));
    in.push_back(type(v));
  }
  try {
    attrs = normalize_attrs(op, attrs);
  } catch (const GraphError& e) {
    throw GraphError(fmt::format("{}: {}", where, e.what()));
  }
  std::vector<TensorType> out;
  try {
    out = infer_types(op, in, attrs, body.get());
  } catch (const Error& e) {
    throw ShapeError(fmt::format("{}: {} (input types: {})", where, e.what(), types_str(in)));
  }
  Node n;
  n.body = std::move(body);
  n.kind = NodeKind::Op;
  n.name = name;
  n.op = &op;
  n.inputs = std::move(inputs);
  n.attrs = std::move(attrs);
  n.outputs = std::move(out);
  int id = append(std::move(n));
  std::vector<Value> vals;
  for (size_t i = 0; i < nodes_[size_t(id)].outputs.size(); ++i) vals.push_back({id, int(i)});
  return vals;
}

Value Graph::add_op(const std::string& op, std::vector<Value> inputs, Attrs attrs, const std::string& name) {
  auto vals = add_op_multi(op, std::move(inputs), std::move(attrs), name);
  if (vals.size() != 1) throw GraphError(fmt::format("op {} has {} outputs; use add_op_multi", op, vals.size()));
  return vals[0];
}

void Graph::add_output(const std::string& name, Value v) {
  if (v.node < 0 || size_t(v.node) >= nodes_.size()) throw GraphError(fmt::format("output \"{}\" refers to no node", name));
  for (auto& o : outputs_)
    if (o.name == name) throw GraphError(fmt::format("output \"{}\" is declared twice", name));
  outputs_.push_back({name, v});
}

Value Graph::output(const std::string& name) const {
  for (auto& o : outputs_)
    if (o.name == name) return o.value;
  throw GraphError(fmt::format("graph has no output \"{}\"", name));
}

void Graph::add_update(int param, Value v) {
  if (param < 0 || size_t(param) >= nodes_.size() || node(param).kind != NodeKind::Parameter)
    throw GraphError(fmt::format("update target {} is not a parameter", describe(param)));
  if (type(v) != node(param).type())
    throw ShapeError(fmt::format("update of {} has type {}, parameter is {}", describe(param), type_str(type(v)),
                                 type_str(node(param).type())));
  for (auto& u : updates_)
    if (u.param == param) throw GraphError(fmt::format("parameter {} is updated twice", describe(param)));
  updates_.push_back({param, v});
}

void verify(const Graph& g) {
  std::set<std::string> names;
  for (const Node& n : g.nodes()) {
    auto fail = [&](const std::string& msg) { throw GraphError(fmt::format("{}: {}", g.describe(n.id), msg)); };
    if (n.outputs.empty()) fail("has no outputs");
    if (n.kind == NodeKind::Input || n.kind == NodeKind::Parameter) {
      if (n.name.empty()) fail("inputs and parameters need a name");
      if (!names.insert(n.name).second) fail(fmt::format("name \"{}\" is used twice", n.name));
      if (!n.inputs.empty()) fail("a leaf node cannot have inputs");
    }
    if (n.kind == NodeKind::Constant && int64_t(n.data.size()) != n.type().numel())
      fail(fmt::format("constant holds {} values for type {}", n.data.size(), type_str(n.type())));
    if (n.kind != NodeKind::Op) continue;
    if (!n.op) fail("op node without an op");
    const OpDef& op = *n.op;
    if (op.num_inputs >= 0 && int(n.inputs.size()) != op.num_inputs)
      fail(fmt::format("expects {} inputs, has {}", op.num_inputs, n.inputs.size()));
    std::vector<TensorType> in;
    for (Value v : n.inputs) {
      if (v.node < 0 || v.node >= n.id) fail(fmt::format("input %{} is not an earlier node", v.node));
      if (size_t(v.index) >= g.node(v.node).outputs.size()) fail(fmt::format("input %{}.{} does not exist", v.node, v.index));
      in.push_back(g.type(v));
    }
    if (n.body) {
      try {
        verify(*n.body);
      } catch (const Error& e) {
        fail(fmt::format("in its body: {}", e.what()));
      }
    }
    Attrs normalized;
    try {
      normalized = normalize_attrs(op, n.attrs);
    } catch (const Error& e) {
      fail(e.what());
    }
    if (normalized != n.attrs) fail("attributes differ from the op's schema (defaults not filled?)");
    std::vector<TensorType> out;
    try {
      out = infer_types(op, in, n.attrs, n.body.get());
    } catch (const Error& e) {
      fail(fmt::format("shape rule fails: {}", e.what()));
    }
    if (out != n.outputs) fail(fmt::format("stored output types {} differ from inferred {}", types_str(n.outputs), types_str(out)));
  }
  for (const auto& o : g.outputs())
    if (o.value.node < 0 || size_t(o.value.node) >= g.size() ||
        size_t(o.value.index) >= g.node(o.value.node).outputs.size())
      throw GraphError(fmt::format("output \"{}\" refers to a value that does not exist", o.name));
  std::set<int> updated;
  for (const auto& u : g.updates()) {
    if (u.param < 0 || size_t(u.param) >= g.size() || g.node(u.param).kind != NodeKind::Parameter)
      throw GraphError(fmt::format("update target %{} is not a parameter", u.param));
    if (u.value.node < 0 || size_t(u.value.node) >= g.size())
      throw GraphError(fmt::format("update of {} refers to a value that does not exist", g.describe(u.param)));
    if (g.type(u.value) != g.node(u.param).type())
      throw GraphError(fmt::format("update of {} has type {}, parameter is {}", g.describe(u.param),
                                   type_str(g.type(u.value)), type_str(g.node(u.param).type())));
    if (!updated.insert(u.param).second) throw GraphError(fmt::format("{} is updated twice", g.describe(u.param)));
  }
}

}  // namespace metagrad
