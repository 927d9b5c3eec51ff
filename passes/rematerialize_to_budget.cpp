// Rematerialization under a memory budget: one value and one gap between its reads at a time,
// cheapest per freed byte first, against a liveness estimate checked by the planner.
#include "passes/rematerialize_to_budget.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "graph/op_def.h"
#include "metagrad/attrs.h"
#include "passes/dead_code_elim.h"
#include "passes/rebuild.h"

namespace metagrad {

namespace {

constexpr size_t kMaxChain = 16;        // nodes made again for one candidate, the value included
constexpr int kCheckEvery = 16;         // applications between planner checks of the leanest graph
constexpr int kPerRound = 4;            // candidates applied together in one round

double numel(const TensorType& t) { return double(t.numel()); }

// FLOPs of one node, for ranking candidates. Contractions by their shapes; every other op costs
// the elements it touches (its largest operand or output), which is what a memory-bound kernel's
// time follows.
double touched(const Graph& g, const Node& n) {
  double m = 0;
  for (Value v : n.inputs) m = std::max(m, numel(g.type(v)));
  for (const TensorType& t : n.outputs) m = std::max(m, numel(t));
  return m;
}
// The three convolutions: 2 * (output-sized side) * (weight elements per output channel).
double conv_flops(double out_side, const TensorType& w) { return 2.0 * out_side * numel(w) / double(std::max<int64_t>(1, w.shape[0])); }

// A fused program ("mul,add,relu") runs each of its ops over every element.
double fused_flops(const Graph& g, const Node& n) {
  const std::string& ops = attr_string(n.attrs, "ops");
  return touched(g, n) * double(1 + std::count(ops.begin(), ops.end(), ','));
}

using CostFn = double (*)(const Graph& g, const Node& n);
const std::map<std::string, CostFn>& cost_table() {
  static const std::map<std::string, CostFn> table = {
      {"matmul",
       [](const Graph& g, const Node& n) {
         const Shape& a = g.type(n.inputs[0]).shape;
         const int64_t k = attr_int(n.attrs, "transpose_a") ? a[a.size() - 2] : a.back();
         return 2.0 * numel(n.type()) * double(k);
       }},
      {"conv2d", [](const Graph& g, const Node& n) { return conv_flops(numel(n.type()), g.type(n.inputs[1])); }},
      {"conv2d_backward_data",
       [](const Graph& g, const Node& n) { return conv_flops(numel(g.type(n.inputs[0])), g.type(n.inputs[1])); }},
      {"conv2d_backward_weights", [](const Graph& g, const Node& n) { return conv_flops(numel(g.type(n.inputs[1])), n.type()); }},
      {"fused_elementwise", fused_flops},
      {"fused_reduce", fused_flops},
  };
  return table;
}
double flops(const Graph& g, const Node& n) {
  const auto it = cost_table().find(n.op->name);
  return it != cost_table().end() ? it->second(g, n) : touched(g, n);
}

// Loops, collectives and multi-output ops are never made again (the registry has no random op).
bool recomputable(const Node& n) { return n.kind == NodeKind::Op && !n.op->collective && !n.body && n.outputs.size() == 1; }

size_t node_bytes(const Node& n) {
  size_t b = 0;
  for (const TensorType& t : n.outputs) b += t.bytes();
  return b;
}

// The operand whose buffer an in-place op writes over, by the planner's rule: an op operand of
// the output's type read for the last time here (`dies_here`); -1 if none.
template <class DiesHere>
int inplace_operand(const Graph& g, const Node& n, DiesHere dies_here) {
  if (n.kind != NodeKind::Op || !n.op->inplace || n.outputs.size() != 1) return -1;
  for (Value v : n.inputs)
    if (g.node(v.node).kind == NodeKind::Op && g.type(v) == n.type() && dies_here(v.node)) return v.node;
  return -1;
}

// The planner's rule over node order (runtime/arena_plan.cpp): an op's outputs are live from its
// step to its last read, outputs and updates to the end, fed inputs throughout, a kernel's region
// (a loop's storage) at its step; parameters and constants are outside the arena; an in-place
// op's output takes over its operand's bytes.
struct Liveness {
  std::vector<char> live;
  std::vector<std::vector<int>> readers;  // live readers, in node order
  std::vector<int> step, last;            // per node (-1: not run)
  std::vector<size_t> at, dying;          // per step: live bytes; bytes whose last read it is
  int peak_step = -1;
  size_t peak = 0;
};

Liveness analyse(const Graph& g) {
  Liveness L;
  const size_t n = g.size();
  L.live = live_nodes(g);
  L.readers = node_readers(g, &L.live);
  const std::vector<char> pinned = pinned_nodes(g);
  L.step.assign(n, -1);
  L.last.assign(n, -1);
  int steps = 0;
  for (size_t i = 0; i < n; ++i)
    if (L.live[i]) L.step[i] = steps++;
  std::vector<int64_t> diff(size_t(steps) + 2, 0);
  L.dying.assign(size_t(steps) + 1, 0);
  size_t fed = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!L.live[i]) continue;
    const Node& node = g.node(int(i));
    const auto& rs = L.readers[i];
    L.last[i] = pinned[i] ? steps : rs.empty() ? L.step[i] : L.step[size_t(rs.back())];
    if (node.kind == NodeKind::Input) fed += node_bytes(node);
    if (node.kind != NodeKind::Op) continue;
    if (node.op->kernel_scratch) {
      const auto r = int64_t(node.op->kernel_scratch(node));
      diff[size_t(L.step[i])] += r;
      diff[size_t(L.step[i]) + 1] -= r;
    }
    const size_t b = node_bytes(node);
    const bool takes_over = inplace_operand(g, node, [&](int p) { return L.last[size_t(p)] == L.step[i]; }) >= 0;
    diff[size_t(L.step[i]) + (takes_over ? 1 : 0)] += int64_t(b);
    diff[size_t(L.last[i]) + 1] -= int64_t(b);
    L.dying[size_t(L.last[i])] += b;
  }
  L.at.assign(size_t(steps), 0);
  int64_t run = 0;
  for (int s = 0; s < steps; ++s) {
    run += diff[size_t(s)];
    L.at[size_t(s)] = size_t(run) + fed;
    if (L.peak_step < 0 || L.at[size_t(s)] > L.peak) L.peak = L.at[size_t(s)], L.peak_step = s;
  }
  return L;
}

struct Candidate {
  int reader = -1;         // the first read after the gap: the copies are made just before it
  std::vector<int> chain;  // the nodes made again, operands first, the value last
  double cost = 0;         // extra FLOPs
  double per_byte = 0;
};

// The nodes to make again so that `value` exists just before step t: operands alive there are
// read as they are; dead ones are made again themselves, up to kMaxChain nodes in all.
std::optional<std::vector<int>> chain_for(const Graph& g, const Liveness& L, int value, int t) {
  std::vector<int> chain;
  std::vector<int> stack{value};  // depth-first, children before parents
  std::vector<size_t> next_input{0};
  std::vector<char> seen(g.size(), 0);
  seen[size_t(value)] = 1;
  while (!stack.empty()) {
    const Node& n = g.node(stack.back());
    size_t& k = next_input.back();
    if (k == n.inputs.size()) {
      chain.push_back(n.id);
      stack.pop_back();
      next_input.pop_back();
      continue;
    }
    const int p = n.inputs[k++].node;
    const Node& operand = g.node(p);
    if (operand.kind != NodeKind::Op || L.last[size_t(p)] >= t || seen[size_t(p)]) continue;
    if (!recomputable(operand) || stack.size() + chain.size() >= kMaxChain) return std::nullopt;
    seen[size_t(p)] = 1;
    stack.push_back(p);
    next_input.push_back(0);
  }
  return chain;
}

// The most bytes the copies of `chain` hold at once while they are made (the last stays).
size_t chain_peak(const Graph& g, const std::vector<int>& chain) {
  std::map<int, int> reads;  // chain member -> reads by later members
  for (int c : chain)
    for (Value v : g.node(c).inputs) reads[v.node] += 1;
  std::map<int, char> in_chain;
  for (int c : chain) in_chain[c] = 1;
  size_t live = 0, top = 0;
  for (int c : chain) {
    const Node& n = g.node(c);
    const int shared = inplace_operand(g, n, [&](int p) {
      int left = 0;
      for (Value v : n.inputs) left += v.node == p;
      return in_chain.count(p) && reads[p] == left;
    });
    if (shared < 0) live += node_bytes(n);
    top = std::max(top, live);
    for (Value v : n.inputs)
      if (in_chain.count(v.node) && --reads[v.node] == 0 && v.node != shared) live -= node_bytes(g.node(v.node));
  }
  return top;
}

// The candidates spanning the estimated peak step, the fewest FLOPs per freed byte first (ties in
// node order).
std::vector<Candidate> candidates_at_peak(const Graph& g, const Liveness& L, const std::vector<char>& pinned) {
  const int P = L.peak_step;
  std::vector<Candidate> found;
  for (const Node& v : g.nodes()) {
    const size_t id = size_t(v.id);
    if (!L.live[id] || !recomputable(v) || pinned[id] || L.step[id] >= P || L.last[id] <= P) continue;
    // The gap holding P: the first read after it, and whether v is read before it at all.
    const auto& rs = L.readers[id];
    auto after = std::find_if(rs.begin(), rs.end(), [&](int r) { return L.step[size_t(r)] >= P; });
    if (after == rs.end() || L.step[size_t(*after)] == P) continue;  // read at the peak: needed there
    const bool read_before = after != rs.begin();
    const int t = L.step[size_t(*after)];
    std::optional<std::vector<int>> chain = chain_for(g, L, v.id, t);
    if (!chain) continue;
    double cost = 0;
    for (int c : *chain) cost += flops(g, g.node(c));
    if (!read_before) cost -= flops(g, v);  // all its reads move to the copy: the original no longer runs
    // The copies are made after step t-1's dying values are freed, where v's original no longer
    // is: they must not make a new peak.
    const int64_t there = int64_t(L.at[size_t(t - 1)]) - int64_t(L.dying[size_t(t - 1)]) - int64_t(v.type().bytes());
    if (there + int64_t(chain_peak(g, *chain)) >= int64_t(L.peak)) continue;
    const double per_byte = std::max(0.0, cost) / double(v.type().bytes());
    found.push_back(Candidate{*after, std::move(*chain), std::max(0.0, cost), per_byte});
  }
  std::stable_sort(found.begin(), found.end(), [](const Candidate& a, const Candidate& b) { return a.per_byte < b.per_byte; });
  return found;
}

}  // namespace

bool rematerialize_to_budget(Graph& g, size_t budget, const PlannedPeak& planned_peak, RematReport* report) {
  const size_t start = planned_peak(g);
  if (start <= budget) return false;
  Graph cur = g, best = g;
  size_t best_peak = start;
  RematReport done, best_done;
  // The planned peak differs from the estimate by the planner's fragmentation (and, where the
  // reducers left them, in-place pairs the estimate does not see); learnt at every check, so the estimate is driven to where the plan fits.
  int64_t offset = int64_t(best_peak) - int64_t(analyse(cur).peak);
  // Checks once every kCheckEvery applications whatever the budget, so that compiling again with
  // the smallest budget a run reached retraces the same graphs and finds the same fit.
  int64_t checked = -1;  // the application count last checked
  int64_t next_periodic = kCheckEvery;
  auto check = [&](const Graph& c) {
    const size_t p = planned_peak(c);
    if (p < best_peak) best = c, best_peak = p, best_done = done;
    checked = done.values;
    return p;
  };
  const size_t max_rounds = 4 * g.size();
  for (size_t round = 0; round < max_rounds; ++round) {
    const Liveness L = analyse(cur);
    const bool periodic = done.values >= next_periodic;
    if (periodic) next_periodic = (done.values / kCheckEvery + 1) * kCheckEvery;
    if (checked != done.values && (int64_t(L.peak) + offset <= int64_t(budget) || periodic)) {
      const size_t p = check(cur);
      if (p <= budget) break;
      offset = int64_t(p) - int64_t(L.peak);
    }
    const std::vector<Candidate> cs = candidates_at_peak(cur, L, pinned_nodes(cur));
    if (cs.empty()) break;
    // The peak step is usually held up by many values: the cheapest few are applied together,
    // as long as no node is in two of their chains and their copies are made before different
    // reads (each one's new-peak test was made without the others). A fixed count, not what the
    // budget still needs, so that the graphs a run passes through do not depend on the budget.
    std::vector<std::vector<Recompute>> again(cur.size());
    std::vector<char> used(cur.size(), 0);
    int taken = 0;
    for (const Candidate& c : cs) {
      if (taken == kPerRound) break;
      if (!again[size_t(c.reader)].empty() ||
          std::any_of(c.chain.begin(), c.chain.end(), [&](int n) { return used[size_t(n)] != 0; }))
        continue;
      for (int n : c.chain) used[size_t(n)] = 1;
      again[size_t(c.reader)].push_back({c.chain, true});
      taken += 1;
      done.values += 1;
      done.nodes += int64_t(c.chain.size());
      done.extra_flops += c.cost;
    }
    cur = rebuild_with_recomputation(cur, again);
  }
  if (checked != done.values) check(cur);
  if (best_peak >= start) return false;
  eliminate_dead_code(best);  // originals whose every read moved to a copy
  g = std::move(best);
  if (report) {
    report->values += best_done.values;
    report->nodes += best_done.nodes;
    report->extra_flops += best_done.extra_flops;
  }
  return true;
}

}  // namespace metagrad
