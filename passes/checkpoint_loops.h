// Checkpointing of backward loops: a forward loop that stores every carry for the loop that
// reverses it is made to store none, and the reverse loop recomputes the carries it reads by a
// schedule over a few slots. Leaves every other node alone.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "metagrad/graph.h"

namespace metagrad {

// A forward loop (scan with save_carries) whose stored carries only its reverse loop reads, as
// scan_grad builds them, the reverse reading the forward's slices and invariants too.
struct LoopPair {
  int forward = -1, backward = -1;
  int64_t length = 0;
};
std::vector<LoopPair> checkpointable_loops(const Graph& g);

// policy 1: every-k (`slots(length)` = k); 2: revolve over `slots(length)` slots. Rewrites every
// pair of checkpointable_loops(g); returns whether it changed anything.
bool checkpoint_loops(Graph& g, int64_t policy, const std::function<int64_t(int64_t length)>& slots);

}  // namespace metagrad
