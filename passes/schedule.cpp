// Memory-aware scheduling: depth-first list scheduling, kept when it lowers the estimated peak.
#include "passes/schedule.h"

#include <algorithm>
#include <numeric>
#include <tuple>

#include "graph/op_def.h"
#include "passes/rebuild.h"

namespace metagrad {

size_t estimated_peak_bytes(const Graph& g, const std::vector<int>& order) {
  const size_t n = g.size();
  std::vector<int> step(n, -1), last(n, -1);
  for (size_t s = 0; s < order.size(); ++s) step[size_t(order[s])] = int(s);
  const int end = int(order.size());
  for (int id : order)
    for (Value v : g.node(id).inputs) last[size_t(v.node)] = std::max(last[size_t(v.node)], step[size_t(id)]);
  for (const auto& o : g.outputs()) last[size_t(o.value.node)] = end;
  for (const auto& u : g.updates()) last[size_t(u.value.node)] = end;
  std::vector<int64_t> delta(order.size() + 2, 0);
  for (int id : order) {
    const Node& node = g.node(id);
    if (node.kind != NodeKind::Op) continue;
    int64_t bytes = 0;
    for (const auto& t : node.outputs) bytes += int64_t(t.bytes());
    delta[size_t(step[size_t(id)])] += bytes;
    delta[size_t(std::max(last[size_t(id)], step[size_t(id)]) + 1)] -= bytes;
  }
  int64_t live = 0, peak = 0;
  for (int64_t d : delta) peak = std::max(peak, live += d);
  return size_t(peak);
}

namespace {

// Greedy list scheduling. An op's growth is its outputs minus the operands it reads last.
// kLeastGrowth: run the ready op that grows live memory least; among equals, the one enabled most
// recently, which keeps a chain of work (one task's forward and backward) together.
// kChainFirst: run the least-growing op only when some op frees memory (growth <= 0); otherwise
// continue the most recently enabled chain. Least growth alone starts every task's first large
// activation before finishing any (each frees a small input, so each "grows less" than the next
// step of the current chain); chain-first finishes one task before the next begins.
// Ties fall back to the builder's order.
enum class Heuristic { kLeastGrowth, kChainFirst };

std::vector<int> memory_greedy_order(const Graph& g, Heuristic heuristic) {
  const size_t n = g.size();
  std::vector<std::vector<int>> consumers(n);
  std::vector<int> waiting(n, 0), readers_left(n, 0);
  for (const Node& node : g.nodes())
    for (Value v : node.inputs) {
      consumers[size_t(v.node)].push_back(node.id);
      ++waiting[size_t(node.id)];
      ++readers_left[size_t(v.node)];
    }
  std::vector<char> pinned(n, 0);  // outputs and updates live to the end
  for (const auto& o : g.outputs()) pinned[size_t(o.value.node)] = 1;
  for (const auto& u : g.updates()) pinned[size_t(u.value.node)] = 1;
  auto bytes_of = [&](int id) {
    const Node& node = g.node(id);
    if (node.kind != NodeKind::Op) return int64_t(0);
    int64_t b = 0;
    for (const auto& t : node.outputs) b += int64_t(t.bytes());
    return b;
  };
  std::vector<int> order, ready;
  std::vector<int64_t> enabled_at(n, 0);
  int64_t clock = 0;
  auto retire = [&](int id) {
    order.push_back(id);
    ++clock;
    for (Value v : g.node(id).inputs) --readers_left[size_t(v.node)];
    for (int c : consumers[size_t(id)])
      if (--waiting[size_t(c)] == 0) {
        ready.push_back(c);
        enabled_at[size_t(c)] = clock;
      }
  };
  // Inputs, parameters and constants take no arena memory: they come first.
  for (const Node& node : g.nodes())
    if (node.kind != NodeKind::Op) retire(node.id);
  for (const Node& node : g.nodes())
    if (node.kind == NodeKind::Op && node.inputs.empty()) ready.push_back(node.id);
  std::vector<int> last_reads;
  std::vector<int64_t> growth_of;
  while (!ready.empty()) {
    growth_of.resize(ready.size());
    for (size_t r = 0; r < ready.size(); ++r) {
      const int id = ready[r];
      int64_t growth = bytes_of(id);
      last_reads.clear();
      for (Value v : g.node(id).inputs) {
        int src = v.node;
        if (std::find(last_reads.begin(), last_reads.end(), src) != last_reads.end()) continue;
        int reads = 0;
        for (Value w : g.node(id).inputs) reads += w.node == src;
        if (!pinned[size_t(src)] && readers_left[size_t(src)] == reads) growth -= bytes_of(src);
        last_reads.push_back(src);
      }
      growth_of[r] = growth;
    }
    const bool by_growth = heuristic == Heuristic::kLeastGrowth ||
                           *std::min_element(growth_of.begin(), growth_of.end()) <= 0;
    // The smallest key wins: least growth first, or the most recently enabled chain first.
    auto key = [&](size_t r) {
      const int id = ready[r];
      const int64_t recency = -enabled_at[size_t(id)];
      return by_growth ? std::tuple(growth_of[r], recency, id) : std::tuple(recency, growth_of[r], id);
    };
    size_t best = 0;
    for (size_t r = 1; r < ready.size(); ++r)
      if (key(r) < key(best)) best = r;
    const int id = ready[best];
    ready.erase(ready.begin() + std::ptrdiff_t(best));
    retire(id);
  }
  return order;
}

}  // namespace

bool schedule_for_memory(Graph& g) {
  std::vector<int> current(g.size());
  std::iota(current.begin(), current.end(), 0);
  std::vector<int> order = current;
  size_t peak = estimated_peak_bytes(g, current);
  for (Heuristic h : {Heuristic::kLeastGrowth, Heuristic::kChainFirst}) {
    std::vector<int> candidate = memory_greedy_order(g, h);
    const size_t candidate_peak = estimated_peak_bytes(g, candidate);
    if (candidate_peak < peak) {
      order = std::move(candidate);
      peak = candidate_peak;
    }
  }
  if (order == current) return false;
  Rebuilder rb(g);
  for (int id : order) rb.copy(g.node(id));
  g = rb.finish();
  return true;
}

}  // namespace metagrad
