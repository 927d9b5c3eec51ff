// Common subexpression elimination by hashing each node's remapped signature.
#include "passes/common_subexpr_elim.h"

#include <map>
#include <tuple>

#include "graph/op_def.h"
#include "passes/rebuild.h"

namespace metagrad {

bool eliminate_common_subexpressions(Graph& g) {
  Rebuilder rb(g);
  using OpKey = std::tuple<const OpDef*, std::vector<Value>, Attrs>;
  using ConstKey = std::tuple<TensorType, std::vector<double>>;
  std::map<OpKey, int> ops;
  std::map<ConstKey, int> consts;
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
    std::vector<Value> ins;
    for (Value v : n.inputs) ins.push_back(rb.map(v));
    OpKey key{n.op, std::move(ins), n.attrs};
    auto it = ops.find(key);
    if (it != ops.end()) {
      for (size_t k = 0; k < n.outputs.size(); ++k) rb.set({n.id, int(k)}, {it->second, int(k)});
      changed = true;
    } else {
      ops.emplace(std::move(key), rb.copy(n));
    }
  }
  if (changed) g = rb.finish();
  return changed;
}

}  // namespace metagrad
