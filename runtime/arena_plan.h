// The arena plan of a graph without building it: which nodes run, their buffers and offsets, and
// the planned peak (the arena, the loop kernels' regions in it) that a memory budget is held to.
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
  std::map<int, size_t> scratch_of;  // per op node whose kernel has a region (OpDef::kernel_scratch)
  // Per op node whose output is written over a bound input (`over`): that input's name. The output
  // has no buffer of its own; it is the caller's memory.
  std::map<int, std::string> written_into;
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
// read caller memory (CompileOptions::bound_inputs) and get no buffer. Each pair of `over`
// (CompileOptions::outputs_over_inputs) the schedule allows puts the output where the input is:
// over a planned input, the input's life ends at the step that makes it (not with separate_fed);
// over a bound one, the output is written into the caller's memory (written_into).
using OutputsOverInputs = std::vector<CompileOptions::OutputOverInput>;
ArenaPlan plan_arena(const Graph& g, const std::vector<NamedOutput>& wanted, bool check_numerics,
                     bool separate_fed = false, const std::vector<std::string>& bound = {},
                     const OutputsOverInputs& over = {});

// The planned peak in parts: the fed block and the rest of the arena, as plan_arena with
// separate_fed places them.
struct PeakParts {
  size_t fed = 0, scratch = 0;
};
PeakParts planned_peak_parts(const Graph& g, const std::vector<std::string>& fetches, bool check_numerics,
                             const std::vector<std::string>& bound = {});

// The arena peak, the loop kernels' regions included, as the compiled executable would report
// it. Workspace (oneDNN scratch) is not included.
size_t planned_peak_bytes(const Graph& g, const std::vector<std::string>& fetches, bool check_numerics,
                          const std::vector<std::string>& bound = {}, const OutputsOverInputs& over = {});

// What the arena of `g` holds at least, however its buffers are placed: the fed inputs, which live
// through the whole run, and beside them its largest step (`node`, -1 if none), at which the
// op's operands that ops made, its outputs and its kernel's region are all live at once.
struct FormFloor {
  size_t fed = 0, step = 0;
  int node = -1;
};
FormFloor form_floor(const Graph& g, const std::vector<std::string>& fetches, bool check_numerics,
                     const std::vector<std::string>& bound = {});

// The names of CompileOptions::bound_inputs, as the planner takes them.
std::vector<std::string> bound_input_names(const std::vector<CompileOptions::BoundInput>& bound);

}  // namespace metagrad
