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
  std::vector<std::vector<int>> readers(n);
  for (const Node& node : g.nodes())
    for (Value v : node.inputs)
      if (readers[size_t(v.node)].empty() || readers[size_t(v.node)].back() != node.id)
        readers[size_t(v.node)].push_back(node.id);
  std::vector<char> pinned(n, 0);  // outputs and updates stay materialized anyway
  for (const auto& o : g.outputs()) pinned[size_t(o.value.node)] = 1;
  for (const auto& u : g.updates()) pinned[size_t(u.value.node)] = 1;
  auto last_reader = [&](int id) { return readers[size_t(id)].empty() ? -1 : readers[size_t(id)].back(); };

  // recompute[u] lists the nodes U = u reads through a fresh copy.
  std::vector<std::vector<int>> recompute(n);
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
      recompute[size_t(u.id)].push_back(node.id);
      any = true;
    }
  }
  // Expanding ops: a large value made from small operands (a first-layer convolution of images,
  // for instance) is made again once, just before its second reader, and every later reader
  // reads that copy; the original dies at its first reader. Its operands are small, so keeping
  // them alive longer costs little. Elementwise values are left to the rule above.
  std::vector<std::vector<int>> recompute_from(n);
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
    recompute_from[size_t(rs[1])].push_back(node.id);
    any = true;
  }
  if (!any) return false;

  Rebuilder rb(g);
  for (const Node& node : g.nodes()) {
    for (int src : recompute_from[size_t(node.id)]) rb.copy(g.node(src));  // later readers read the copy
    std::vector<Value> saved;
    for (int src : recompute[size_t(node.id)]) {
      saved.push_back(rb.map({src, 0}));
      rb.copy(g.node(src));  // maps src to the copy while `node` is copied
    }
    rb.copy(node);
    for (size_t k = 0; k < saved.size(); ++k) rb.set({recompute[size_t(node.id)][k], 0}, saved[k]);
  }
  g = rb.finish();
  return true;
}

}  // namespace metagrad
