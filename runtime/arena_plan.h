// The arena plan of a graph without building it: which nodes run, their buffers and offsets, and
// the planned peak (arena plus the loop kernels' own storage) that a memory budget is held to.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "metagrad/executable.h"
#include "metagrad/graph.h"
#include "runtime/memory_plan.h"

namespace metagrad {

struct ArenaPlan {
  std::vector<NamedOutput> wanted;  // the fetched outputs
  std::vector<char> needed;         // per node: runs (or is read) for the fetches and updates
  std::vector<BufferRequest> requests;
  std::map<Value, size_t> request_of;
  MemoryPlan memory;
  // With `separate_fed`: the fed inputs lie in a block of their own, [0, fed_bytes), and
  // memory.offsets of every other buffer (in_fed 0) are offsets in a second region of
  // memory.peak_bytes. Otherwise fed_bytes is 0 and memory is the one arena.
  size_t fed_bytes = 0;
  std::vector<char> in_fed;  // per request
};

// The graph's outputs named by `fetches` (empty: every output); throws RuntimeError on unknown names.
std::vector<NamedOutput> wanted_outputs(const Graph& g, const std::vector<std::string>& fetches);

// What Executable plans: the schedule is node order restricted to needed nodes; fed inputs live
// through the whole run; an in-place op may take over an operand dying at it (not when
// `check_numerics`, which keeps a faulty kernel's operands intact). `separate_fed` keeps the fed
// inputs out of the planned region (CompileOptions::scratch_arena), so that the region can be
// shared with another executable while the inputs hold between runs. The inputs named in `bound`
// read caller memory (CompileOptions::bound_inputs) and get no buffer.
ArenaPlan plan_arena(const Graph& g, const std::vector<NamedOutput>& wanted, bool check_numerics,
                     bool separate_fed = false, const std::vector<std::string>& bound = {});

// The planned peak in parts: the fed block and the rest of the arena (as plan_arena with
// separate_fed places them), and the loop kernels' own storage.
struct PeakParts {
  size_t fed = 0, scratch = 0, loops = 0;
};
PeakParts planned_peak_parts(const Graph& g, const std::vector<std::string>& fetches, bool check_numerics,
                             const std::vector<std::string>& bound = {});

// The arena peak plus the storage the loop kernels allocate for themselves (their bodies' own
// plans, checkpoint slots), as the compiled executable would report it. Workspace (oneDNN
// scratch) is not included.
size_t planned_peak_bytes(const Graph& g, const std::vector<std::string>& fetches, bool check_numerics,
                          const std::vector<std::string>& bound = {});

// A lower bound of the planned peak of every graph the memory reducers can make from `g`
// (runtime/memory_budget.h), so that a budget below it is known to be out of reach rather than
// merely not found: the fed inputs, plus the most that one op's step holds at once, plus the loops'
// storage at its least. `node` is the op whose step sets it (-1 when the fed inputs and loops alone
// do), numbered in `g`, or in the early-accumulated form of g when only that form's step is lower
// (`node_desc` names it either way, as Graph::describe does); `step_bytes` is what that step holds.
struct PeakFloor {
  size_t bytes = 0;
  int node = -1;
  std::string node_desc;
  size_t fed = 0, step_bytes = 0, loops = 0;
};
PeakFloor planned_floor(const Graph& g, const std::vector<std::string>& fetches, bool check_numerics,
                        const std::vector<std::string>& bound = {});

// The loop scratch an executable allocates for its largest loop's `largest` bytes (ops/scan.h).
size_t loop_scratch_bytes(size_t largest);

// The names of CompileOptions::bound_inputs, as the planner takes them.
std::vector<std::string> bound_input_names(const std::vector<CompileOptions::BoundInput>& bound);

}  // namespace metagrad
