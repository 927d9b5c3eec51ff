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

#include "metagrad/error.h"
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

// The backward loops under revolve with the most slots (at most `s` each) whose plan fits.
bool checkpoint_loops_to_budget(Graph& g, size_t budget, const PlannedPeak& planned_peak, RematReport&) {
  const std::vector<LoopPair> pairs = checkpointable_loops(g);
  if (pairs.empty()) return false;
  int64_t longest = 0;
  for (const LoopPair& p : pairs) longest = std::max(longest, p.length);
  auto with_slots = [&](int64_t s) {
    Graph c = g;
    checkpoint_loops(c, 2, [s](int64_t n) { return std::min(s, max_revolve_slots(n)); });
    return c;
  };
  int64_t lo = 1, hi = max_revolve_slots(longest);
  Graph best = with_slots(lo);
  // A checkpointed loop holds fixed storage a plain one does not (the advance's fed block, the
  // working carry, a slot, the staged carries): with few steps of a body whose carries are small
  // next to its activations that costs more than the carries it saves, and storing every carry
  // stays leaner.
  const size_t leanest = planned_peak(best);  // planning a graph is costly: once per candidate
  if (leanest >= planned_peak(g)) return false;
  if (leanest <= budget) {
    while (lo < hi) {  // the peak grows with the slots: the most slots that fit
      const int64_t mid = (lo + hi + 1) / 2;
      Graph c = with_slots(mid);
      if (planned_peak(c) <= budget) lo = mid, best = std::move(c);
      else hi = mid - 1;
    }
  }
  g = std::move(best);
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
    const int64_t fixed = options.loop_slots;
    checkpoint_loops(g, every ? 1 : 2, [every, fixed](int64_t n) {
      const int64_t s = fixed > 0 ? fixed : every ? ceil_sqrt(n) : 2 * ceil_sqrt(n);
      return every ? std::min(s, n) : std::min(s, max_revolve_slots(n));
    });
  }
  RematReport remat;
  if (options.memory_budget == 0) return remat;
  const bool numerics = options.check_numerics;
  const std::vector<std::string> bound = bound_input_names(options.bound_inputs);
  PlannedPeak peak = [&fetches, &bound, numerics](const Graph& c) { return planned_peak_bytes(c, fetches, numerics, bound); };
  size_t now = peak(g);
  if (now <= options.memory_budget) return remat;
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
  throw Error(fmt::format("memory budget {} ({} bytes) is below the smallest plan found, {} ({} bytes{}{}); "
                          "give a budget of at least {} bytes",
                          format_bytes(options.memory_budget), options.memory_budget, format_bytes(now), now,
                          tried.empty() ? "" : ", after trying ", tried, now));
}

}  // namespace metagrad
