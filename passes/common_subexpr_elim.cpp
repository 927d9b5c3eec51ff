// Common subexpression elimination by hashing each node's remapped signature.
#include "passes/common_subexpr_elim.h"

#include <map>
#include <tuple>

#include "graph/op_def.h"
#include "passes/rebuild.h"

namespace metagrad {

namespace {

// A loop that also saves its carries (the twin autodiff makes of a forward loop) computes
// everything the plain loop does: the two share body, inputs and attributes but `save_carries`.
using TwinKey = std::tuple<const Graph*, std::vector<Value>, Attrs>;
TwinKey twin_key(const Node& n) {
  Attrs a = n.attrs;
  a.erase("save_carries");
  return {n.body.get(), n.inputs, std::move(a)};
}

}  // namespace

bool eliminate_common_subexpressions(Graph& g) {
  Rebuilder rb(g);
  // Bodies are immutable and shared, so equal loops hold the same body pointer.
  using OpKey = std::tuple<const OpDef*, std::vector<Value>, Attrs, const Graph*>;
  using ConstKey = std::tuple<TensorType, std::vector<double>>;
  std::map<OpKey, int> ops;
  std::map<ConstKey, int> consts;
  std::map<TwinKey, int> saving_twin;  // loops with save_carries, by the rest of their signature
  for (const Node& n : g.nodes())
    if (n.body && n.attrs.count("save_carries") && attr_int(n.attrs, "save_carries") == 1)
      saving_twin.emplace(twin_key(n), n.id);
  bool changed = false;
  for (const Node& n : g.nodes()) {
    if (n.kind == NodeKind::Constant) {
      ConstKey key{n.type(), n.data};
      auto it = consts.find(key);
      if (it != consts.end()) {
        rb.set({n.id, 0}, {it->second, 0});
        changed = true;
      } else {
        consts.emplace(std::move(key), rb.copy(n));
      }
      continue;
    }
    if (n.kind != NodeKind::Op) {
      rb.copy(n);
      continue;
    }
    const Node* src = &n;
    if (n.body && attr_int(n.attrs, "save_carries") == 0) {
      // Run the saving twin here instead: its inputs are this loop's, so they exist already;
      // the plain loop's outputs are the twin's leading ones.
      auto twin = saving_twin.find(twin_key(n));
      if (twin != saving_twin.end() && twin->second > n.id) {
        src = &g.node(twin->second);
        changed = true;
      }
    }
    std::vector<Value> ins;
    for (Value v : src->inputs) ins.push_back(rb.map(v));
    OpKey key{src->op, std::move(ins), src->attrs, src->body.get()};
    auto it = ops.find(key);
    if (it != ops.end()) {
      for (size_t k = 0; k < n.outputs.size(); ++k) rb.set({n.id, int(k)}, {it->second, int(k)});
      changed = true;
    } else {
      int id = rb.copy(*src);
      if (src != &n)
        for (size_t k = 0; k < n.outputs.size(); ++k) rb.set({n.id, int(k)}, {id, int(k)});
      ops.emplace(std::move(key), id);
    }
  }
  if (changed) g = rb.finish();
  return changed;
}

}  // namespace metagrad
