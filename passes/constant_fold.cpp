// Constant folding through the ops' reference implementations.
#include "passes/constant_fold.h"

#include "graph/op_def.h"
#include "passes/rebuild.h"

namespace metagrad {

bool fold_constants(Graph& g, int64_t max_elements) {
  Rebuilder rb(g);
  bool changed = false;
  for (const Node& n : g.nodes()) {
    bool foldable = n.kind == NodeKind::Op && n.outputs.size() == 1 && n.op->name != "broadcast_to" && !n.op->collective &&
                    n.type().numel() <= max_elements;
    if (foldable)
      for (Value v : n.inputs) foldable &= rb.dst().node(rb.map(v).node).kind == NodeKind::Constant;
    if (!foldable) {
      rb.copy(n);
      continue;
    }
    std::vector<RefTensor> ins;
    for (Value v : n.inputs) {
      const Node& c = rb.dst().node(rb.map(v).node);
      ins.push_back({c.type().shape, c.data});
    }
    std::vector<const RefTensor*> ptrs;
    for (const RefTensor& t : ins) ptrs.push_back(&t);
    std::vector<RefTensor> out(1);
    out[0].shape = n.type().shape;
    out[0].data.assign(size_t(n.type().numel()), 0.0);
    n.op->reference(n, ptrs, out);
    Value c = rb.dst().add_constant(n.type(), std::move(out[0].data), n.name);
    rb.set({n.id, 0}, c);
    changed = true;
  }
  if (changed) g = rb.finish();
  return changed;
}

}  // namespace metagrad
