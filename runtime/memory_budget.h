// Fitting a graph into CompileOptions::memory_budget by a table of memory reducers, each tried in
// turn until the planned peak fits.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "metagrad/executable.h"
#include "metagrad/graph.h"
#include "passes/rematerialize_to_budget.h"

namespace metagrad {

// A reducer rewrites `g` towards `budget` (least recomputation that fits, or, when nothing it can
// do fits, its leanest form) and returns whether it changed `g`; what it recomputed goes into
// `remat` when it recomputes straight-line values.
struct MemoryReducer {
  const char* name;
  bool (*reduce)(Graph& g, size_t budget, const PlannedPeak& planned_peak, RematReport& remat);
  bool plans_loops;  // chooses the loops' checkpointing: skipped when loop_checkpoint forces a policy
};
const std::vector<MemoryReducer>& memory_reducers();

// A lower bound of the planned peak of every graph the memory reducers can make from `g`, so that
// a budget below it is known to be out of reach rather than merely not found: the least, over the
// forms those reducers start from, of the fed inputs plus the most one op's step holds at once
// (form_floor, runtime/arena_plan.h). `node_desc` names the op whose step sets it (empty when
// none does), as Graph::describe does in the form it was found in; `step_bytes` is what that step
// holds.
struct PeakFloor {
  size_t bytes = 0;
  std::string node_desc;
  size_t fed = 0, step_bytes = 0;
};
PeakFloor planned_floor(const Graph& g, const std::vector<std::string>& fetches, bool check_numerics,
                        const std::vector<std::string>& bound = {});

// Applies a forced loop_checkpoint policy, then, with a budget over the planned peak, the
// reducers in table order, the planned peak recomputed after each. Throws Error naming every
// reducer tried, the smallest peak reached and the floor no plan goes below (planned_floor,
// runtime/arena_plan.h) when none fits. Returns what was rematerialized.
RematReport fit_memory_budget(Graph& g, const std::vector<std::string>& fetches, const CompileOptions& options);

// `g` with its checkpointable loops in their leanest form, revolve over one slot: the form the
// checkpoint-loops reducer falls back on when nothing fits.
Graph leanest_loops(const Graph& g);

// The revolve slots of one loop that the budget search may give it: the schedule's dynamic
// program costs length^2 * slots at compile time, so long loops get fewer.
int64_t max_revolve_slots(int64_t length);

// "1.5 MiB" for error messages.
std::string format_bytes(size_t bytes);

}  // namespace metagrad
