// Internal pieces of the scan op shared by its entry (ops/scan.cpp) and its derivative
// (ops/scan_grad.cpp).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "graph/op_def.h"
#include "metagrad/graph.h"
#include "runtime/kernel.h"

namespace metagrad {

// A scan node's signature: inputs are [carries (nc), stacked slices (nx), invariants (nk)];
// the body's inputs (ids in order) match them one to one, its outputs are [next carries (nc),
// per-iteration outputs (ny)]; the node's outputs are [final carries, stacked outputs, and with
// `save`, the stacked carries each iteration started from]. With `save_every` = k > 1 (made at
// compile time for an every-k checkpointed pair) the stacked carries are only those of the
// iterations the loop runs as its 0th, kth, 2kth, ... (the every-k segment starts): ceil(length/k)
// rows, the rows of the store-all output at those iterations, in the same (loop index) order.
//
// A checkpointed backward loop (made at compile time by passes/checkpoint_loops.cpp) has
// `num_advance` = na > 0: its first na slices are the forward carries it reads, not one per
// iteration but its checkpoints: every-k (`checkpoint` 1, k = `slots`) reads the forward loop's
// carries saved every k steps (`save_every` = k, ceil(length/k) rows); revolve (`checkpoint` 2,
// over `slots` slots) reads the forward loop's initial carries, unstacked. Its body has na more
// outputs at the end, the forward step from those carries ("advance"), and its kernel recomputes
// the carries it needs between the checkpoints by the schedule.
struct ScanSig {
  int64_t length = 0;
  size_t nc = 0, nx = 0, nk = 0, ny = 0, na = 0;
  bool reverse = false, save = false;
  int64_t save_every = 1;
  int64_t checkpoint = 0, slots = 0;
  std::vector<int> body_inputs;
};
ScanSig scan_sig(const Attrs& attrs, size_t num_inputs, const Graph& body);

// Rows of the saved carries of a loop saving every `every`-th carry: ceil(length / every).
int64_t scan_saved_rows(int64_t length, int64_t every);
// The row of the saved carries that iteration t (loop index) of a saving loop writes, or -1 when
// it saves none (save_every > 1 and it is not a segment start).
int64_t scan_saved_row(const ScanSig& s, int64_t t);
// The row of an every-k checkpointed loop's advance slices that holds checkpoint `seg` (the
// forward carry at step seg * k), the forward having run the other way and saved it there;
// revolve's one checkpoint, the forward's initial carries, is unstacked (row 0).
int64_t scan_checkpoint_row(const ScanSig& s, int64_t seg);

std::vector<Tensor> scan_grad(const GradCtx& ctx);

// Copies `body` into `b`, its inputs standing for `ins` (one per body input, in id order);
// returns the copies of its outputs.
std::vector<Tensor> inline_body(const Graph& body, Graph& b, const std::vector<Tensor>& ins);

// The schedule a checkpointed loop runs, from its signature.
struct LoopAction;
std::vector<LoopAction> scan_schedule(const ScanSig& s);
// The carries its kernel stores in slots of its region, whatever the schedule: every-k k - 2,
// revolve one fewer than its slots (the initial carry is the loop's input).
size_t scan_slot_count(const ScanSig& s);
// The forward carries held for it in all: the checkpoints it reads from the arena (every-k's
// segment starts) and the slots its schedule uses.
int64_t scan_stored_carries(const ScanSig& s);

// The names of the body's invariant inputs: a loop kernel binds them to its own input buffers
// (CompileOptions::bound_inputs) rather than copying them into its body executables.
std::vector<std::string> scan_invariant_names(const Graph& body, const ScanSig& s);

// The region of the arena a scan kernel uses during its run (OpDef::kernel_scratch), computed from
// its bodies' plans without building them: its carry staging (and, checkpointed, its slots and
// working carry), then the plan its body executables share, fed inputs included (they are fed
// before every run of a body). A loop leaves nothing there, so the planner overlaps the region
// with whatever is dead while it runs, and the inner loops of a meta-batch overlap each other.
size_t scan_kernel_scratch(const Node& n);
// The body outputs a checkpointed loop's two executables fetch: the reverse step and the advance.
std::vector<std::string> scan_step_fetches(const Graph& body, const ScanSig& s);
std::vector<std::string> scan_advance_fetches(const Graph& body, const ScanSig& s);

std::unique_ptr<Kernel> make_checkpointed_scan_kernel(const KernelCtx& ctx);

}  // namespace metagrad
