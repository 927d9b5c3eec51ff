// The pass manager: named pipelines of passes, with verification and dumps between passes.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "metagrad/graph.h"

namespace metagrad {

struct PassInfo {
  std::string name;
  std::string summary;  // the pass's one line
  std::function<bool(Graph&)> run;
  bool once_at_end = false;  // runs once after the others reach their fixed point (scheduling)
};

// Every pass by name, in default-pipeline order.
const std::vector<PassInfo>& all_passes();

struct PassRecord {
  std::string name;
  size_t nodes_before = 0, nodes_after = 0;
  double seconds = 0;
  bool changed = false;
};

struct PipelineOptions {
  int opt_level = 1;                    // 0: no passes; 1: the default pipeline
  bool verify_each = true;              // verify() before the first pass and after every pass
  std::vector<std::string> disabled;    // pass names to skip
  std::string dump_after;               // pass name whose output is handed to `dump`
  std::function<void(const std::string& pass, const Graph&)> dump;
};

// Runs the pipeline on `g` in place, to a fixed point (at most a few rounds), and reports
// each pass application.
std::vector<PassRecord> optimize(Graph& g, const PipelineOptions& opts = {});

}  // namespace metagrad
