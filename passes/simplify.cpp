// Algebraic simplification: a table of local rewrites applied to a fixed point.
#include "passes/simplify.h"

#include <functional>
#include <optional>

#include "graph/op_def.h"
#include "ops/broadcast.h"
#include "passes/rebuild.h"

namespace metagrad {

namespace {

// The single value every element of a constant (possibly broadcast) holds, if uniform.
std::optional<double> uniform_constant(const Graph& g, Value v) {
  const Node& n = g.node(v.node);
  if (n.kind == NodeKind::Op && n.op->name == "broadcast_to") return uniform_constant(g, n.inputs[0]);
  if (n.kind != NodeKind::Constant || n.data.empty()) return std::nullopt;
  for (double d : n.data)
    if (d != n.data[0]) return std::nullopt;
  return n.data[0];
}

bool is_const(const Graph& g, Value v, double c) {
  auto u = uniform_constant(g, v);
  return u && *u == c;
}

struct Match {
  const Node& node;           // the node being rewritten (source graph)
  std::vector<Value> in;      // its inputs, already in the destination graph
  Graph& g;                   // destination graph
  const TensorType& out() const { return node.type(); }
  bool same_type(Value v) const { return g.type(v) == out(); }
};

// Each rule returns a replacement value of exactly the node's type, or nothing.
using Rule = std::function<std::optional<Value>(Match&)>;

std::optional<Value> if_same(Match& m, Value v) {
  if (m.same_type(v)) return v;
  return std::nullopt;
}

const std::vector<std::pair<std::string, Rule>>& rules() {
  static const std::vector<std::pair<std::string, Rule>> table = {
      // x + 0 = x, 0 + x = x
      {"add", [](Match& m) -> std::optional<Value> {
         if (is_const(m.g, m.in[1], 0.0)) return if_same(m, m.in[0]);
         if (is_const(m.g, m.in[0], 0.0)) return if_same(m, m.in[1]);
         return std::nullopt;
       }},
      // x - 0 = x
      {"sub", [](Match& m) -> std::optional<Value> {
         if (is_const(m.g, m.in[1], 0.0)) return if_same(m, m.in[0]);
         return std::nullopt;
       }},
      // x * 1 = x, 1 * x = x
      {"mul", [](Match& m) -> std::optional<Value> {
         if (is_const(m.g, m.in[1], 1.0)) return if_same(m, m.in[0]);
         if (is_const(m.g, m.in[0], 1.0)) return if_same(m, m.in[1]);
         return std::nullopt;
       }},
      // x / 1 = x
      {"div", [](Match& m) -> std::optional<Value> {
         if (is_const(m.g, m.in[1], 1.0)) return if_same(m, m.in[0]);
         return std::nullopt;
       }},
      // -(-x) = x
      {"neg", [](Match& m) -> std::optional<Value> {
         const Node& a = m.g.node(m.in[0].node);
         if (a.kind == NodeKind::Op && a.op->name == "neg") return a.inputs[0];
         return std::nullopt;
       }},
      // broadcast_to(x, shape(x)) = x
      {"broadcast_to", [](Match& m) { return if_same(m, m.in[0]); }},
      // stop_gradient(x) = x once no further differentiation happens
      {"stop_gradient", [](Match& m) { return if_same(m, m.in[0]); }},
      // reshape(x, shape(x)) = x; reshape(reshape(x)) = reshape(x)
      {"reshape", [](Match& m) -> std::optional<Value> {
         if (m.same_type(m.in[0])) return m.in[0];
         const Node& a = m.g.node(m.in[0].node);
         if (a.kind == NodeKind::Op && a.op->name == "reshape")
           return m.g.add_op("reshape", {a.inputs[0]}, m.node.attrs);
         return std::nullopt;
       }},
      // transpose(transpose(x, p), q) = transpose(x, p∘q); identity permutations vanish
      {"transpose", [](Match& m) -> std::optional<Value> {
         const auto& perm = attr_ints(m.node.attrs, "perm");
         bool identity = true;
         for (size_t i = 0; i < perm.size(); ++i) identity &= perm[i] == int64_t(i);
         if (identity) return m.in[0];
         const Node& a = m.g.node(m.in[0].node);
         if (a.kind != NodeKind::Op || a.op->name != "transpose") return std::nullopt;
         const auto& inner = attr_ints(a.attrs, "perm");
         std::vector<int64_t> composed(perm.size());
         for (size_t i = 0; i < perm.size(); ++i) composed[i] = inner[size_t(perm[i])];
         return m.g.add_op("transpose", {a.inputs[0]}, {{"perm", composed}});
       }},
      // sum over axes of size 1 only = reshape
      {"sum", [](Match& m) -> std::optional<Value> {
         const Shape& s = m.g.type(m.in[0]).shape;
         for (int64_t ax : attr_ints(m.node.attrs, "axes"))
           if (s[size_t(ax)] != 1) return std::nullopt;
         if (attr_ints(m.node.attrs, "axes").empty() && num_elements(s) != 1) return std::nullopt;
         if (m.same_type(m.in[0])) return m.in[0];
         return m.g.add_op("reshape", {m.in[0]}, {{"shape", m.out().shape}});
       }},
  };
  return table;
}

// An elementwise op broadcasts its operands itself, so an operand that is broadcast_to(y) can
// be y: AD's cotangents of reductions are such broadcasts, and materializing them costs a full
// pass over memory each. When the op's result would then be smaller than before (every large
// operand was a broadcast, as in mean's gradient broadcast_to(g) / n), the op runs on the small
// operands and its result is broadcast instead, for the next reader to read through in turn.
std::optional<Value> read_through_broadcasts(Match& m) {
  // Fused kernels are left alone: their operand layout is fixed when the group is formed.
  if (!m.node.op->elementwise || m.node.outputs.size() != 1 || m.node.op->name == "fused_elementwise")
    return std::nullopt;
  std::vector<Value> in = m.in;
  bool changed = false;
  for (size_t i = 0; i < in.size(); ++i) {
    const Node& a = m.g.node(in[i].node);
    if (a.kind != NodeKind::Op || a.op->name != "broadcast_to") continue;
    in[i] = a.inputs[0];
    changed = true;
  }
  if (!changed) return std::nullopt;
  Shape s;
  for (Value v : in) s = broadcast_shapes(s, m.g.type(v).shape);
  Value op = m.g.add_op(m.node.op->name, in, m.node.attrs);
  if (s == m.out().shape) return op;
  return m.g.add_op("broadcast_to", {op}, {{"shape", m.out().shape}});
}

bool simplify_once(Graph& g) {
  Rebuilder rb(g);
  bool changed = false;
  for (const Node& n : g.nodes()) {
    if (n.kind != NodeKind::Op) {
      rb.copy(n);
      continue;
    }
    Match m{n, {}, rb.dst()};
    for (Value v : n.inputs) m.in.push_back(rb.map(v));
    std::optional<Value> repl = read_through_broadcasts(m);
    if (!repl)
      for (const auto& [op, rule] : rules())
        if (op == n.op->name && (repl = rule(m))) break;
    if (repl) {
      rb.set({n.id, 0}, *repl);
      changed = true;
    } else {
      rb.copy(n);
    }
  }
  if (changed) g = rb.finish();
  return changed;
}

}  // namespace

bool simplify(Graph& g) {
  bool changed = false;
  for (int round = 0; round < 16 && simplify_once(g); ++round) changed = true;
  return changed;
}

}  // namespace metagrad
