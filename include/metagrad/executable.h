// Compile a graph once into kernels over a pre-planned arena, then run it many times.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "metagrad/graph.h"
#include "metagrad/param_store.h"

namespace metagrad {

// A caller's tensor handed to run(): the data must hold shape's element count of dtype.
struct Feed {
  std::string name;
  DType dtype;
  Shape shape;
  const void* data;
  static Feed f32(std::string name, Shape shape, std::span<const float> v) {
    return {std::move(name), DType::f32, std::move(shape), v.data()};
  }
  static Feed i32(std::string name, Shape shape, std::span<const int32_t> v) {
    return {std::move(name), DType::i32, std::move(shape), v.data()};
  }
};

// One arena buffer of the memory plan, for inspection.
struct BufferInfo {
  Value value;
  size_t offset = 0, bytes = 0;
  int first = 0, last = 0;  // schedule steps: written, last read (-1: fed before the first step)
  bool inplace = false;     // shares an operand's space by in-place execution
};

struct KernelProfile {
  std::string op, node, impl;
  double seconds = 0;  // total over the profiled runs
};

class Collective;
class Workspace;  // runtime/kernel.h

// How a graph is compiled; the defaults are what every benchmark uses.
struct CompileOptions {
  // What `allreduce_sum` nodes sum over (metagrad/collective.h); not owned, must outlive the
  // executable. Null: one process, and allreduce_sum is the identity.
  Collective* collective = nullptr;
  // After every kernel, scan its f32 outputs and stop at the first NaN or Inf with a
  // RuntimeError naming the node, its op, the output and the ranges of its inputs. Off: the run
  // loop is the plain one, no cost. On: the planner gives no kernel an in-place partner, so the
  // inputs of the kernel at fault are still intact to be reported (the arena may grow).
  bool check_numerics = false;
  // The most the compiled plan may take (its arena, the loop kernels' regions in it), in bytes; 0:
  // no limit. Over it, the memory reducers of runtime/memory_budget.cpp are tried in turn (the
  // loops' checkpointing first); if none brings the plan within it, compilation throws an Error
  // that names the smallest budget that would have worked.
  std::size_t memory_budget = 0;
  // How the backward loops store the carries they read. automatic: every carry unless
  // memory_budget needs less; the others force one policy on every loop that admits it.
  enum class LoopCheckpoint { automatic, store_all, every_k, revolve };
  LoopCheckpoint loop_checkpoint = LoopCheckpoint::automatic;
  // every_k: the segment length k; revolve: the slots. 0: ceil(sqrt(length)) (revolve: twice that).
  int64_t loop_slots = 0;
  // Caller-owned memory (64-byte aligned, not owned, outliving the executable) for every arena
  // buffer but the fed inputs, which stay in a block of the executable's own so that they hold
  // between runs; then arena_bytes() counts that block only. Executables that never run at once
  // share one region (the body executables of all the loop kernels of one executable); it is
  // sized from their plans (runtime/arena_plan.h, planned_peak_parts), and a smaller one is an
  // error.
  void* scratch_arena = nullptr;
  std::size_t scratch_arena_bytes = 0;
  // Internal, for loop kernels: the fed inputs lie in scratch_arena too, so they do not hold
  // between runs (every input is fed before every run) and arena_bytes() is 0. A loop kernel
  // feeds its body's carries and slices before each run of it, so its body executables need no
  // memory beyond its region of the enclosing arena.
  bool inputs_in_scratch = false;
  // Internal, for loop kernels: fetch `output` is written over input `input` (a carry passed on
  // in place, without a copy) where that is safe: every read of the input comes before the step
  // that makes the output, or at it through an in-place kernel. The planner decides per pair; where
  // it agrees, fetch() of that output is the input's slot (a fed input: with inputs_in_scratch or
  // no scratch) or the bound input's memory, which the run then writes.
  struct OutputOverInput {
    std::string output, input;
  };
  std::vector<OutputOverInput> outputs_over_inputs{};
  // Inputs read in place from caller memory instead of fed: the kernels that read input `name`
  // read `data` itself (not owned, not copied), which must hold the input's type, stay unchanged
  // while the executable runs and outlive it. A bound input has no slot and no arena space. A
  // loop kernel binds its body's invariants to the loop's own input buffers this way, so the
  // loop's weights and data are not copied into every body executable.
  struct BoundInput {
    std::string name;
    const void* data = nullptr;
  };
  std::vector<BoundInput> bound_inputs{};
  // Internal, for loop kernels: the workspace (oneDNN scratchpads, reordered operands) of the
  // executable this one runs inside. Its kernels run only while one kernel of that executable
  // runs, so they share its workspace, which that executable sizes and allocates. Null: its own.
  Workspace* shared_workspace = nullptr;
};

// How one backward loop of a compiled graph gets the forward carries it reads.
struct LoopReport {
  std::string node;       // `%12 (scan)`
  int64_t length = 0;
  std::string policy;     // store-all, every-k, revolve
  int64_t slots = 0;      // carries stored (store-all: length, in the arena)
  int64_t recomputed = 0; // forward steps the backward loop runs again
  double recompute_factor = 1;  // (length + recomputed) / length: forward body runs per step
};

// What rematerialization under memory_budget recomputed (zero when it did not run).
struct RematReport {
  int64_t values = 0;      // values dropped after a read and made again before a later one
  int64_t nodes = 0;       // nodes run again for them (each value and the chain it is made from)
  double extra_flops = 0;  // their estimated cost (passes/rematerialize_to_budget.cpp's cost table)
};

// For trainers' divergence messages when the guard was off.
inline constexpr const char* kCheckNumericsHint =
    "run again with --check-numerics to name the first kernel that produced a NaN or Inf";

class Executable {
 public:
  // Verifies `g`, keeps the nodes needed for `fetches` (output names; empty = every output)
  // and the graph's updates, plans the arena and builds every kernel.
  Executable(const Graph& g, ParamStore& store, const std::vector<std::string>& fetches = {},
             const CompileOptions& options = {});
  ~Executable();
  Executable(const Executable&) = delete;
  Executable& operator=(const Executable&) = delete;

  // Fast path: copy inputs into their arena slots, then run(). No heap allocation.
  int input_slot(const std::string& name) const;  // throws on unknown names
  // The slot of input `name`, or -1 when the compiled fetches do not read it or there is none:
  // for callers that feed whatever a graph happens to need.
  int find_input_slot(const std::string& name) const noexcept;
  void set_input(int slot, std::span<const float> v);
  void set_input(int slot, std::span<const int32_t> v);
  void run();  // throws RuntimeError if an input was never set

  // Checked path: every input fed exactly once, with the right dtype and shape.
  void run(const std::vector<Feed>& feeds);

  std::span<const float> fetch(const std::string& name) const;
  std::span<const float> fetch(size_t index) const;

  const std::vector<std::string>& fetch_names() const;

  size_t arena_bytes() const;
  // Scratch shared by the kernels, those of loop bodies included (they share it).
  size_t workspace_bytes() const;
  size_t naive_bytes() const;
  size_t kernel_count() const;
  // The largest region of the arena a loop kernel uses during its run (its carries, checkpoint
  // slots and body plans; OpDef::kernel_scratch), for reports: it is part of arena_bytes().
  size_t loop_storage_bytes() const;
  // The peak a memory budget is held to: arena_bytes(), the loops' regions included.
  size_t peak_bytes() const;
  // The backward loops (scans whose forward carries they read), in graph order.
  std::vector<LoopReport> loops() const;
  // What the memory budget's rematerialization recomputed.
  const RematReport& remat() const;
  const std::vector<BufferInfo>& buffers() const;
  const Graph& graph() const;
  // Runs `n` times, timing each kernel.
  std::vector<KernelProfile> profile(int n);

 private:
  // The compiled state (oneDNN engine and stream, kernels, arena) lives in executable.cpp, so
  // that a user of this header never compiles against oneDNN.
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace metagrad
