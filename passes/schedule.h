// Scheduling: reorders the graph's nodes (its execution order) to lower peak live memory.
#pragma once
#include <vector>

#include "metagrad/graph.h"

namespace metagrad {

// Greedy list scheduling, two ways: among ready ops, run the one that grows live memory least
// (then the one enabled most recently); or run a memory-freeing op when there is one and
// otherwise continue the most recently enabled chain, so one task's forward and backward in a
// meta-step complete and free their intermediates before the next task's begin. The order with
// the lower estimated peak is kept if it beats the current one. Returns whether the order changed.
bool schedule_for_memory(Graph& g);

// Peak of the bytes live at any step when executing `order` (a topological order of g): op
// outputs from their step to their last read; outputs and updates to the end. Inputs,
// parameters and constants are not counted (they live outside the arena's reuse).
size_t estimated_peak_bytes(const Graph& g, const std::vector<int>& order);

}  // namespace metagrad
