// Rematerialization of large elementwise values at late elementwise readers.
#include "passes/rematerialize.h"

#include <algorithm>

#include "graph/op_def.h"
#include "passes/rebuild.h"

namespace metagrad {

namespace {

constexpr size_t kMinBytes = 256 * 1024;  // smaller values cost little to keep
constexpr size_t kSmallOperandRatio = 8;  // an operand this many times smaller than N is kept freely

bool elementwise_f32(const Node& n) {
  return n.kind == NodeKind::Op && n.op->eltwise_f32 != nullptr && n.outputs.size() == 1 &&
         n.type().dtype == DType::f32;
}

}  // namespace

bool rematerialize(Graph& g) {
  const size_t n = g.size();
  const std::vector<std::vector<int>> readers = node_readers(g);
  const std::vector<char> pinned = pinned_nodes(g);  // outputs and updates stay materialized anyway
  auto last_reader = [&](int id) { return readers[size_t(id)].empty() ? -1 : readers[size_t(id)].back(); };

  // again[u]: the nodes U = u reads through a fresh copy (for u alone), and the nodes made again
  // before u for every later reader.
  std::vector<std::vector<Recompute>> again(n);
  bool any = false;
  for (const Node& node : g.nodes()) {
    const auto& rs = readers[size_t(node.id)];
    if (!elementwise_f32(node) || pinned[size_t(node.id)] || rs.size() < 2 || node.type().bytes() < kMinBytes) continue;
    for (size_t k = 1; k < rs.size(); ++k) {
      const Node& u = g.node(rs[k]);
      if (!elementwise_f32(u) || u.type().shape != node.type().shape) continue;
      bool operands_alive = true;
      for (Value v : node.inputs) {
        const Node& p = g.node(v.node);
        const bool resident = p.kind != NodeKind::Op;  // inputs, parameters, constants
        const bool small = p.outputs[size_t(v.index)].bytes() * kSmallOperandRatio <= node.type().bytes();
        if (!resident && !small && last_reader(p.id) < u.id) operands_alive = false;
      }
      if (!operands_alive) continue;
      again[size_t(u.id)].push_back({{node.id}, false});
      any = true;
    }
  }
  // Expanding ops: a large value made from small operands (a first-layer convolution of images,
  // for instance) is made again once, just before its second reader, and every later reader
  // reads that copy; the original dies at its first reader. Its operands are small, so keeping
  // them alive longer costs little. Elementwise values are left to the rule above.
  std::vector<size_t> persistent(n, 0);
  for (const Node& node : g.nodes()) {
    const auto& rs = readers[size_t(node.id)];
    if (node.kind != NodeKind::Op || elementwise_f32(node) || node.outputs.size() != 1 || pinned[size_t(node.id)] ||
        rs.size() < 2 || node.type().bytes() < kMinBytes)
      continue;
    bool expanding = true;
    for (Value v : node.inputs) {
      const Node& p = g.node(v.node);
      if (p.kind == NodeKind::Op && p.outputs[size_t(v.index)].bytes() * kSmallOperandRatio > node.type().bytes())
        expanding = false;
    }
    if (!expanding) continue;
    // Before the copies for the reader alone, in node order: later readers read this copy.
    auto& at = again[size_t(rs[1])];
    at.insert(at.begin() + std::ptrdiff_t(persistent[size_t(rs[1])]++), Recompute{{node.id}, true});
    any = true;
  }
  if (!any) return false;

  g = rebuild_with_recomputation(g, again);
  return true;
}

}  // namespace metagrad
