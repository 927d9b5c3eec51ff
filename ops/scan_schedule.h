// Checkpointing schedules for a backward loop: the order in which a checkpointed scan kernel
// stores, restores and advances the forward carry while it runs the reverse steps.
#pragma once
#include <cstdint>
#include <vector>

namespace metagrad {

// One action over a working carry `cur` (the forward state at step `j` of the forward loop),
// numbered slots that each hold one stored carry, and the checkpoints the forward loop stored
// (every-k: its carry at every k-th step, an input of the backward loop).
struct LoopAction {
  enum Kind : uint8_t {
    store,     // slot <- cur
    restore,   // cur <- slot (cur becomes the forward state at step `step`)
    load,      // cur <- checkpoint number `slot` (the forward state at step `step`)
    advance,   // cur <- body(cur): one forward step recomputed, step + 1
    backward,  // the reverse body at forward step `step`, reading cur
  } kind;
  int slot = -1;
  int64_t step = 0;
};

// Every-k segments over the forward loop's checkpoints at steps 0, k, 2k, ... (the forward stored
// them as it ran, so there is no first sweep): each segment, last first, is recomputed from its
// checkpoint into k - 2 slots before its reverse steps, k - 1 advances per full segment, n -
// ceil(n/k) in all. every_k_slots: the slots it uses, max(0, min(k, n) - 2).
std::vector<LoopAction> every_k_schedule(int64_t n, int64_t k);
int64_t every_k_slots(int64_t n, int64_t k);

// Binomial checkpointing (Griewank and Walther's revolve) as a recursion over the split point,
// each split chosen by dynamic programming: the least recomputation that reverses n steps with
// `slots` stored carries. The initial carry is one of them: it is checkpoint 0 (loaded, the
// backward loop's input), so the schedule uses slots - 1 slots.
std::vector<LoopAction> revolve_schedule(int64_t n, int64_t slots);
// That least number of recomputed forward steps.
int64_t revolve_cost(int64_t n, int64_t slots);

// Forward steps a schedule recomputes (its advance actions) and the slots it uses (not the
// checkpoints it loads).
int64_t schedule_advances(const std::vector<LoopAction>& s);
int schedule_slots(const std::vector<LoopAction>& s);

}  // namespace metagrad
