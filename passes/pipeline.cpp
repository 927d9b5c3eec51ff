// Pass manager.
#include "metagrad/pipeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "metagrad/error.h"
#include "passes/common_subexpr_elim.h"
#include "passes/constant_fold.h"
#include "passes/dead_code_elim.h"
#include "passes/fuse_elementwise.h"
#include "passes/rematerialize.h"
#include "passes/schedule.h"
#include "passes/simplify.h"

namespace metagrad {

const std::vector<PassInfo>& all_passes() {
  static const std::vector<PassInfo> passes = {
      {"simplify", "algebraic identities (x*1, x+0, reshape/transpose chains, ...)", simplify},
      {"fold", "evaluate small all-constant subgraphs", [](Graph& g) { return fold_constants(g); }},
      {"cse", "merge equal nodes and equal constants", eliminate_common_subexpressions},
      {"dce", "drop nodes no output or update reads", eliminate_dead_code},
      {"remat", "recompute large elementwise values at late elementwise readers", rematerialize, true},
      {"fuse", "merge chains of elementwise ops into single-pass kernels", fuse_elementwise, true},
      {"schedule", "reorder execution depth-first to lower peak live memory", schedule_for_memory, true},
  };
  return passes;
}

std::vector<PassRecord> optimize(Graph& g, const PipelineOptions& opts) {
  std::vector<PassRecord> records;
  if (opts.opt_level <= 0) return records;
  for (const auto& name : opts.disabled)
    if (std::none_of(all_passes().begin(), all_passes().end(), [&](const PassInfo& p) { return p.name == name; }))
      throw GraphError(fmt::format("unknown pass '{}'", name));
  // A malformed graph is reported as the caller's, before any pass can turn it into another.
  if (opts.verify_each) {
    try {
      verify(g);
    } catch (const GraphError& e) {
      throw GraphError(fmt::format("before the first pass: {}", e.what()));
    }
  }
  auto run = [&](const PassInfo& p) {
    PassRecord r{p.name, g.size(), 0, 0, false};
    auto t0 = std::chrono::steady_clock::now();
    r.changed = p.run(g);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.nodes_after = g.size();
    if (opts.verify_each) {
      try {
        verify(g);
      } catch (const GraphError& e) {
        throw GraphError(fmt::format("after pass {}: {}", p.name, e.what()));
      }
    }
    if (opts.dump && p.name == opts.dump_after) opts.dump(p.name, g);
    records.push_back(r);
    return r.changed;
  };
  auto enabled = [&](const PassInfo& p) {
    return std::find(opts.disabled.begin(), opts.disabled.end(), p.name) == opts.disabled.end();
  };
  for (int round = 0; round < 4; ++round) {
    bool any = false;
    for (const PassInfo& p : all_passes())
      if (!p.once_at_end && enabled(p)) any |= run(p);
    if (!any) break;
  }
  for (const PassInfo& p : all_passes())
    if (p.once_at_end && enabled(p)) run(p);
  return records;
}

}  // namespace metagrad
