// Pass manager.
#include "metagrad/pipeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>

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

namespace {

// Every loop body is optimized with the same options before the graph that holds it. Bodies are
// shared by pointer (a forward loop and its saving twin, copies made by passes), so each is
// optimized once and every holder gets the same result, which keeps equal loops equal for CSE.
void optimize_bodies(Graph& g, const PipelineOptions& opts,
                     std::map<const Graph*, std::pair<std::shared_ptr<const Graph>, std::shared_ptr<const Graph>>>& done) {
  for (size_t i = 0; i < g.size(); ++i) {
    Node& n = g.node(int(i));
    if (!n.body) continue;
    auto it = done.find(n.body.get());
    if (it == done.end()) {
      auto body = std::make_shared<Graph>(*n.body);
      PipelineOptions inner = opts;
      inner.dump = nullptr;  // dumps show the graph the caller optimizes
      optimize_bodies(*body, inner, done);
      try {
        optimize(*body, inner);
      } catch (const GraphError& e) {
        throw GraphError(fmt::format("in the body of {}: {}", g.describe(n.id), e.what()));
      }
      // The old body is kept alive with its key, so its address cannot be reused meanwhile.
      it = done.emplace(n.body.get(), std::make_pair(n.body, std::move(body))).first;
    }
    n.body = it->second.second;
  }
}

}  // namespace

std::vector<PassRecord> optimize(Graph& g, const PipelineOptions& opts) {
  std::vector<PassRecord> records;
  if (opts.opt_level <= 0) return records;
  std::map<const Graph*, std::pair<std::shared_ptr<const Graph>, std::shared_ptr<const Graph>>> bodies;
  optimize_bodies(g, opts, bodies);
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
