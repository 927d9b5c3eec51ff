// Rebuilder: value-remapping graph copy shared by the passes.
#include "passes/rebuild.h"

#include <fmt/format.h>

#include "metagrad/error.h"

namespace metagrad {

Rebuilder::Rebuilder(const Graph& src) : src_(src), map_(src.size()) {
  for (const Node& n : src.nodes()) map_[size_t(n.id)].assign(n.outputs.size(), Value{});
}

Value Rebuilder::map(Value old) const {
  Value v = map_.at(size_t(old.node)).at(size_t(old.index));
  if (!v.valid()) throw GraphError(fmt::format("pass rebuild: {} used before it was copied", src_.describe(old.node)));
  return v;
}

int Rebuilder::copy(const Node& n) {
  Node c = n;
  for (Value& v : c.inputs) v = map(v);
  int id = dst_.append(std::move(c));
  for (size_t k = 0; k < n.outputs.size(); ++k) set({n.id, int(k)}, {id, int(k)});
  return id;
}

Graph Rebuilder::finish() {
  std::vector<NamedOutput> outs;
  for (const auto& o : src_.outputs()) outs.push_back({o.name, map(o.value)});
  std::vector<Update> ups;
  for (const auto& u : src_.updates()) ups.push_back({map({u.param, 0}).node, map(u.value)});
  dst_.set_outputs(std::move(outs));
  dst_.set_updates(std::move(ups));
  return std::move(dst_);
}

std::vector<char> live_nodes(const Graph& g) {
  std::vector<char> live(g.size(), 0);
  for (const auto& o : g.outputs()) live[size_t(o.value.node)] = 1;
  for (const auto& u : g.updates()) live[size_t(u.value.node)] = live[size_t(u.param)] = 1;
  for (size_t i = g.size(); i-- > 0;)
    if (live[i])
      for (Value v : g.node(int(i)).inputs) live[size_t(v.node)] = 1;
  return live;
}

std::vector<std::vector<int>> node_readers(const Graph& g, const std::vector<char>* live) {
  std::vector<std::vector<int>> readers(g.size());
  for (const Node& node : g.nodes()) {
    if (live && !(*live)[size_t(node.id)]) continue;
    for (Value v : node.inputs)
      if (readers[size_t(v.node)].empty() || readers[size_t(v.node)].back() != node.id)
        readers[size_t(v.node)].push_back(node.id);
  }
  return readers;
}

std::vector<char> pinned_nodes(const Graph& g) {
  std::vector<char> pinned(g.size(), 0);
  for (const auto& o : g.outputs()) pinned[size_t(o.value.node)] = 1;
  for (const auto& u : g.updates()) pinned[size_t(u.value.node)] = 1;
  return pinned;
}

Graph rebuild_with_recomputation(const Graph& g, const std::vector<std::vector<Recompute>>& again) {
  Rebuilder rb(g);
  std::vector<std::pair<Value, Value>> restore;  // (old value, what it mapped to before u)
  for (const Node& node : g.nodes()) {
    restore.clear();
    if (size_t(node.id) < again.size())
      for (const Recompute& r : again[size_t(node.id)])
        for (int src : r.nodes) {
          const Node& s = g.node(src);
          if (!r.for_every_later_reader)
            for (size_t k = 0; k < s.outputs.size(); ++k) restore.push_back({{src, int(k)}, rb.map({src, int(k)})});
          rb.copy(s);  // maps src to the copy while `node` (and, if kept, later nodes) are copied
        }
    rb.copy(node);
    for (auto it = restore.rbegin(); it != restore.rend(); ++it) rb.set(it->first, it->second);
  }
  return rb.finish();
}

}  // namespace metagrad
