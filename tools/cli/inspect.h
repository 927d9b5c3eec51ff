// `metagrad inspect`: what the passes did to a workload's graph, its fusion groups, its memory
// plan and a per-kernel profile.
#pragma once
#include <string>

#include "metagrad/executable.h"

namespace metagrad {

struct InspectOptions {
  std::string workload;  // "sinusoid" or a path to a graph in the text IR
  int opt_level = 1;
  int64_t inner_steps = 1;
  std::string algo = "maml";
  bool inner_loop = false;  // the built-in workloads' inner steps as one loop (scan)
  CompileOptions compile;   // --memory-budget, --loop-checkpoint, --loop-slots
  bool passes = false, fusion = false, memory_plan = false;
  int profile_runs = 0;
  std::string json_path;
};

int run_inspect(const InspectOptions& o);

}  // namespace metagrad
