// Rematerialization under a memory budget: values are dropped after a read and made again just
// before a later one, cheapest per byte first, until the planned peak fits.
#pragma once
#include <cstddef>
#include <functional>

#include "metagrad/executable.h"
#include "metagrad/graph.h"

namespace metagrad {

// The peak a graph's compiled plan would have (runtime/arena_plan.h's planned_peak_bytes with the
// fetches and options bound).
using PlannedPeak = std::function<size_t(const Graph&)>;

// (The memory budget runs early accumulation of n-ary sums, passes/accumulate_early.h, as its
// own reducer row before this one.) A candidate is one value and one gap between its reads (or
// between its making and its first read): the value dies at the read before the gap and is made
// again just before the read after it, from operands alive there, or through a chain of at most
// 16 recomputed nodes whose leaves are. Rounds against a liveness estimate of `g`'s node order
// take the candidates spanning the estimated peak step, the fewest FLOPs per byte they free
// first, up to four at once with disjoint chains and copies before different reads; the planned
// peak is checked once every 16 applications and when the estimate says it fits. Never
// recomputed: inputs, parameters, constants, loops (scan), collectives (allreduce_sum),
// multi-output ops; the registry has no random op. Ends when the planned peak fits or nothing at
// the peak step can be recomputed, leaving the leanest graph checked. Returns whether it changed
// `g` (only when that lowered the planned peak); adds what it recomputed to `report`.
bool rematerialize_to_budget(Graph& g, size_t budget, const PlannedPeak& planned_peak, RematReport* report = nullptr);

}  // namespace metagrad
