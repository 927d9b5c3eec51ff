// Dead code elimination.
#include "passes/dead_code_elim.h"

#include "passes/rebuild.h"

namespace metagrad {

bool eliminate_dead_code(Graph& g) {
  std::vector<char> live = live_nodes(g);
  Rebuilder rb(g);
  bool changed = false;
  for (const Node& n : g.nodes()) {
    bool keep = live[size_t(n.id)] || n.kind == NodeKind::Input || n.kind == NodeKind::Parameter;
    if (keep) rb.copy(n);
    else changed = true;
  }
  if (changed) g = rb.finish();
  return changed;
}

}  // namespace metagrad
