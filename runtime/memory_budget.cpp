// The memory reducers tried under CompileOptions::memory_budget, and the forced loop policies.
// One row per reducer, in the order they are tried: the loops' checkpointing first, as it costs
// one recomputed body step per saved carry and reaches what straight-line recomputation cannot
// (the carries a loop stores); then early accumulation of many-way sums, which costs nothing to
// run; then straight-line rematerialization on what remains, which
// recomputes values of the enclosing graph cheapest per byte first.
#include "runtime/memory_budget.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>

#include "graph/op_def.h"
#include "metagrad/error.h"
#include "ops/scan.h"
#include "ops/scan_schedule.h"
#include "passes/accumulate_early.h"
#include "passes/checkpoint_loops.h"
#include "runtime/arena_plan.h"

namespace metagrad {

int64_t max_revolve_slots(int64_t length) {
  const int64_t cap = int64_t(2e7) / std::max<int64_t>(1, length * length);
  return std::clamp<int64_t>(cap, 1, length);
}

namespace {

int64_t ceil_sqrt(int64_t n) { return std::max<int64_t>(1, int64_t(std::ceil(std::sqrt(double(n))))); }

// Forward steps the checkpointed backward loops of `g` run again, in all.
int64_t recomputed_steps(const Graph& g) {
  int64_t r = 0;
  for (const Node& n : g.nodes())
    if (n.kind == NodeKind::Op && n.body && attr_int(n.attrs, "num_advance") > 0)
      r += schedule_advances(scan_schedule(scan_sig(n.attrs, n.inputs.size(), *n.body)));
  return r;
}

// A policy's parameter p (1 every-k: the segment length; 2 revolve: the slots) for a loop of n
// steps: at most n, and revolve at most the slots its compile-time program allows.
int64_t capped(int64_t policy, int64_t p, int64_t n) { return std::min(p, policy == 1 ? n : max_revolve_slots(n)); }

// The checkpointable loops under `policy` with parameter p, capped per loop.
Graph with_policy(const Graph& g, int64_t policy, int64_t p) {
  Graph c = g;
  checkpoint_loops(c, policy, [policy, p](int64_t n) { return capped(policy, p, n); });
  return c;
}

// The form of one policy that fits with the least recomputation: p searched over [lo, hi], over
// which the peak falls as p moves toward `lean` (revolve: fewer slots; every-k: segments up to
// sqrt(n) long, beyond which the stored segment starts are fewer than the slots a segment needs).
std::optional<Graph> least_recomputation_that_fits(const Graph& g, int64_t policy, int64_t lo, int64_t hi, bool lean_is_lo,
                                                   size_t budget, const PlannedPeak& planned_peak) {
  Graph best = with_policy(g, policy, lean_is_lo ? lo : hi);
  if (planned_peak(best) > budget) return std::nullopt;
  while (lo < hi) {
    const int64_t mid = lean_is_lo ? (lo + hi + 1) / 2 : (lo + hi) / 2;
    Graph c = with_policy(g, policy, mid);
    const bool fits = planned_peak(c) <= budget;
    if (fits) best = std::move(c);
    if (lean_is_lo == fits) lo = fits ? mid : mid + 1;
    else hi = fits ? mid : mid - 1;
  }
  return best;
}

// The backward loops under the policy that fits with the least recomputation: revolve with the
// most slots that fit, or every-k with the shortest segments that fit (every-k's forward stores
// its segment starts, so for as many stored carries it can recompute less than revolve, which
// re-runs the forward to place its slots). Nothing fits: revolve with one slot, the leanest.
bool checkpoint_loops_to_budget(Graph& g, size_t budget, const PlannedPeak& planned_peak, RematReport&) {
  const std::vector<LoopPair> pairs = checkpointable_loops(g);
  if (pairs.empty()) return false;
  int64_t longest = 0;
  for (const LoopPair& p : pairs) longest = std::max(longest, p.length);
  Graph leanest = leanest_loops(g);
  // A checkpointed loop's region holds what a plain one's does not (the working carry, the staged
  // carries, the larger of two body plans): with few steps of a body whose carries are small next
  // to its activations that can cost more than the carries it saves, and storing every carry
  // stays leaner.
  const size_t leanest_peak = planned_peak(leanest);  // planning a graph is costly: once per candidate
  if (leanest_peak >= planned_peak(g)) return false;
  if (leanest_peak > budget) {
    g = std::move(leanest);
    return true;
  }
  std::optional<Graph> best = least_recomputation_that_fits(g, 2, 1, max_revolve_slots(longest), true, budget, planned_peak);
  if (longest >= 4) {
    std::optional<Graph> every = least_recomputation_that_fits(g, 1, 2, ceil_sqrt(longest), false, budget, planned_peak);
    if (every && (!best || recomputed_steps(*every) < recomputed_steps(*best))) best = std::move(every);
  }
  g = best ? std::move(*best) : std::move(leanest);
  return true;
}

// Addends held until one late sum cost memory without any recomputation: summed as they are made,
// when that lowers the plan.
bool accumulate_sums_to_budget(Graph& g, size_t, const PlannedPeak& planned_peak, RematReport&) {
  Graph acc = g;
  if (!accumulate_sums_early(acc) || planned_peak(acc) >= planned_peak(g)) return false;
  g = std::move(acc);
  return true;
}

bool rematerialize_values_to_budget(Graph& g, size_t budget, const PlannedPeak& planned_peak, RematReport& remat) {
  return rematerialize_to_budget(g, budget, planned_peak, &remat);
}

}  // namespace

Graph leanest_loops(const Graph& g) { return with_policy(g, 2, 1); }

// Sound over every graph the reducers make, because of what they may change:
// - checkpoint-loops rewrites the loop pairs of checkpointable_loops, all under one policy. Every
//   form of one policy has the same ops and operands (only the slots differ); revolve's backward
//   reads the forward's initial carries where every-k's reads its stored segment starts (at least
//   one carry each) and its forward stores none, and revolve over one slot keeps the fewest slots
//   in its region of any checkpointed loop, the rest of the region (the bodies' plans, staging,
//   the working carry) being the same under either policy: no step of any checkpointed form holds
//   less than the same step of leanest_loops, which stands for them all.
// - accumulate-early, applied or not, rewrites the many-way sums of either form, once.
// - rematerialize adds copies of ops, each reading values of the types its original read and
//   none of them fed in place of a value an op made, and keeps every needed value made by its
//   original or a copy: every step it makes holds what a step of its form's own ops does, and
//   the fed inputs stay the same.
// Each of these forms' arena peak is over its form_floor, so the least of them bounds them all.
// The graph outputs made before the largest step, though held to the end, are not added:
// recomputation may make an output again after that step.
PeakFloor planned_floor(const Graph& g, const std::vector<std::string>& fetches, bool check_numerics,
                        const std::vector<std::string>& bound) {
  std::vector<Graph> forms = {g, leanest_loops(g)};
  for (size_t i = 0; i < 2; ++i) {
    Graph acc = forms[i];
    if (accumulate_sums_early(acc)) forms.push_back(std::move(acc));
  }
  PeakFloor best;
  best.bytes = SIZE_MAX;
  for (const Graph& form : forms) {
    const FormFloor f = form_floor(form, fetches, check_numerics, bound);
    if (f.fed + f.step >= best.bytes) continue;
    best.bytes = f.fed + f.step;
    best.fed = f.fed, best.step_bytes = f.step;
    best.node_desc = f.node < 0 ? "" : form.describe(f.node);
  }
  return best;
}

const std::vector<MemoryReducer>& memory_reducers() {
  static const std::vector<MemoryReducer> table = {
      {"checkpoint-loops", checkpoint_loops_to_budget, true},
      {"accumulate-early", accumulate_sums_to_budget, false},
      {"rematerialize", rematerialize_values_to_budget, false},
  };
  return table;
}

std::string format_bytes(size_t bytes) {
  if (bytes >= (size_t(1) << 30)) return fmt::format("{:.2f} GiB", double(bytes) / double(size_t(1) << 30));
  if (bytes >= (size_t(1) << 20)) return fmt::format("{:.2f} MiB", double(bytes) / double(size_t(1) << 20));
  if (bytes >= 1024) return fmt::format("{:.1f} KiB", double(bytes) / 1024.0);
  return fmt::format("{} B", bytes);
}

RematReport fit_memory_budget(Graph& g, const std::vector<std::string>& fetches, const CompileOptions& options) {
  using LC = CompileOptions::LoopCheckpoint;
  if (options.loop_checkpoint == LC::every_k || options.loop_checkpoint == LC::revolve) {
    const bool every = options.loop_checkpoint == LC::every_k;
    const int64_t fixed = options.loop_slots, policy = every ? 1 : 2;
    checkpoint_loops(g, policy, [every, fixed, policy](int64_t n) {
      return capped(policy, fixed > 0 ? fixed : every ? ceil_sqrt(n) : 2 * ceil_sqrt(n), n);
    });
  }
  RematReport remat;
  if (options.memory_budget == 0) return remat;
  const bool numerics = options.check_numerics;
  const std::vector<std::string> bound = bound_input_names(options.bound_inputs);
  PlannedPeak peak = [&fetches, &bound, numerics](const Graph& c) { return planned_peak_bytes(c, fetches, numerics, bound); };
  size_t now = peak(g);
  if (now <= options.memory_budget) return remat;
  const Graph given = g;  // what the floor is of, should nothing fit
  std::string tried;
  // A forced loop policy is the caller's choice: the loops are not re-planned, but the
  // straight-line graph around them may still be rematerialized.
  for (const MemoryReducer& r : memory_reducers()) {
    if (options.loop_checkpoint != LC::automatic && r.plans_loops) continue;
    const bool changed = r.reduce(g, options.memory_budget, peak, remat);
    tried += fmt::format("{}{}{}", tried.empty() ? "" : ", ", r.name, changed ? "" : " (no change)");
    if (!changed) continue;
    now = peak(g);  // each reducer keeps its leanest form, so this is the smallest peak reached
    if (now <= options.memory_budget) return remat;
  }
  const PeakFloor floor = planned_floor(given, fetches, numerics, bound);
  const std::string step =
      floor.node_desc.empty()
          ? ""
          : fmt::format(" and {} that {} alone needs at once", format_bytes(floor.step_bytes), floor.node_desc);
  throw Error(fmt::format("memory budget {} ({} bytes) is below the smallest plan found, {} ({} bytes{}{}); "
                          "no plan of these ops is below {} ({} bytes: {} of fed inputs{}); "
                          "give a budget of at least {} bytes",
                          format_bytes(options.memory_budget), options.memory_budget, format_bytes(now), now,
                          tried.empty() ? "" : ", after trying ", tried, format_bytes(floor.bytes), floor.bytes,
                          format_bytes(floor.fed), step, now));
}

}  // namespace metagrad
