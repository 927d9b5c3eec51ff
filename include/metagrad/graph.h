// The static graph IR: an append-only list of nodes in topological order, plus the graph's
// declared outputs and the persistent-state updates a step writes back.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "metagrad/attrs.h"
#include "metagrad/types.h"

namespace metagrad {

struct OpDef;
class Graph;
class Tensor;  // builder.h

enum class NodeKind : uint8_t {
  Input,      // fed by the caller on every run
  Parameter,  // persistent tensor owned by a ParamStore (weights and optimizer state)
  Constant,   // data stored in the graph
  Op,         // application of a registered op
};
const char* node_kind_name(NodeKind k);

struct Node {
  int id = -1;
  NodeKind kind = NodeKind::Op;
  std::string name;              // unique among inputs and parameters; optional for ops
  const OpDef* op = nullptr;     // Op nodes only
  std::vector<Value> inputs;     // Op nodes only
  Attrs attrs;                   // op attributes; for parameters the initializer's
  std::vector<TensorType> outputs;
  // Parameter nodes: the initializer name ("zeros", "normal", ...) and whether the
  // parameter is trained (weights) or carried state (optimizer moments, step counter).
  std::string init;
  bool trainable = true;
  std::vector<double> data;      // Constant nodes: row-major values
  // Ops that hold a graph (`scan`): the body, immutable and shared by every copy of the node,
  // so graph copies and pass rebuilds stay cheap and equal bodies are recognised by pointer.
  std::shared_ptr<const Graph> body;
  const TensorType& type(int index = 0) const { return outputs.at(size_t(index)); }
};

// A persistent tensor's new value after a step: the runtime writes `value` into `param`.
struct Update {
  int param;
  Value value;
};

struct NamedOutput {
  std::string name;
  Value value;
};

class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = default;
  Graph& operator=(const Graph&) = default;
  Graph(Graph&&) = default;
  Graph& operator=(Graph&&) = default;

  // Node constructors. add_op infers and checks output types through the op's shape rule and
  // throws ShapeError naming the op, the node and the offending shapes.
  Value add_input(const std::string& name, TensorType type);
  Value add_parameter(const std::string& name, TensorType type, const std::string& init,
                      Attrs init_attrs, bool trainable = true);
  Value add_constant(TensorType type, std::vector<double> data, const std::string& name = "");
  // `body` is required by ops that hold a graph (scan) and refused by every other op.
  std::vector<Value> add_op_multi(const std::string& op, std::vector<Value> inputs, Attrs attrs = {},
                                  const std::string& name = "", std::shared_ptr<const Graph> body = nullptr);
  Value add_op(const std::string& op, std::vector<Value> inputs, Attrs attrs = {},
               const std::string& name = "");

  const Node& node(int id) const { return nodes_.at(size_t(id)); }
  Node& node(int id) { return nodes_.at(size_t(id)); }
  const std::vector<Node>& nodes() const { return nodes_; }
  size_t size() const { return nodes_.size(); }
  const TensorType& type(Value v) const { return node(v.node).type(v.index); }

  // Lookup of inputs and parameters by name; -1 when absent.
  int find(const std::string& name) const;

  // What a user calls: a named output and a parameter's new value after a step, as Tensors of
  // this graph (defined in builder.cpp). Both throw GraphError naming the output or parameter.
  void add_output(const std::string& name, const Tensor& t);
  void add_update(const Tensor& param, const Tensor& new_value);

  // The same by node id and Value, for passes and the parser that rebuild graphs.
  void add_output(const std::string& name, Value v);
  const std::vector<NamedOutput>& outputs() const { return outputs_; }
  Value output(const std::string& name) const;  // throws when absent

  void add_update(int param, Value v);  // checks kind and type
  const std::vector<Update>& updates() const { return updates_; }

  // Raw append used by the parser and by passes that rebuild graphs; does no inference.
  int append(Node n);
  void set_outputs(std::vector<NamedOutput> o) { outputs_ = std::move(o); }
  void set_updates(std::vector<Update> u) { updates_ = std::move(u); }

  // A short description used in error messages: `%12 (matmul "h1")`.
  std::string describe(int id) const;

 private:
  void check_new_name(const std::string& name) const;
  std::vector<Node> nodes_;
  std::vector<NamedOutput> outputs_;
  std::vector<Update> updates_;
};

// Checks structural invariants: inputs refer to earlier nodes, arity and attributes match the
// op's schema, stored types equal re-inferred types, names are unique, updates are typed right.
// Throws GraphError naming the first offending node.
void verify(const Graph& g);

}  // namespace metagrad
