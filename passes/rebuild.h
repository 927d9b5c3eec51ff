// Graph rebuilding for passes: copy a graph node by node into a fresh one while values are
// remapped, so a pass can drop, merge or replace nodes without editing in place.
#pragma once
#include <vector>

#include "metagrad/graph.h"

namespace metagrad {

class Rebuilder {
 public:
  explicit Rebuilder(const Graph& src);
  const Graph& src() const { return src_; }
  Graph& dst() { return dst_; }
  // The new value standing for an old one; throws if the old node was not copied.
  Value map(Value old) const;
  void set(Value old, Value now) { map_[size_t(old.node)][size_t(old.index)] = now; }
  bool mapped(int old_node) const { return map_[size_t(old_node)][0].valid(); }
  // A copy of an old node whose inputs are remapped; returns its new id and maps its outputs.
  int copy(const Node& n);
  // The new graph with outputs and updates remapped.
  Graph finish();

 private:
  const Graph& src_;
  Graph dst_;
  std::vector<std::vector<Value>> map_;
};

// Nodes reachable backwards from the graph's outputs and updates.
std::vector<char> live_nodes(const Graph& g);

// Per node, the distinct nodes that read it, in node order; with `live`, only live readers count.
std::vector<std::vector<int>> node_readers(const Graph& g, const std::vector<char>* live = nullptr);

// Per node: whether an output or an update reads it (it stays materialized to the end anyway).
std::vector<char> pinned_nodes(const Graph& g);

// For rematerialization: a copy of `g` in which, just before each node u, the nodes
// `again[u].nodes` (in that order, each reading the copies made before it) are made again.
// `for_every_later_reader`: u and every later reader read the copies; otherwise u alone does.
struct Recompute {
  std::vector<int> nodes;
  bool for_every_later_reader = true;
};
Graph rebuild_with_recomputation(const Graph& g, const std::vector<std::vector<Recompute>>& again);

}  // namespace metagrad
