// Learning-rate schedules as graph nodes driven by the optimizer's step counter, and parameter
// groups that compose a global schedule with per-group multipliers and per-parameter scales.
#pragma once
#include <string>
#include <vector>

#include "metagrad/builder.h"

namespace metagrad {

// A schedule kind and its parameters. Each kind's parameters, with their defaults and bounds, and
// its factor are one row of the table in meta/optim/schedules.cpp (schedule_kinds()); a
// default-constructed spec holds every default.
struct ScheduleSpec {
  ScheduleSpec();
  std::string kind = "constant";  // constant | step | exp | cosine | plateau
  double every, gamma;            // step: lr0 * gamma^floor(t / every)
  double rate, steps;             // exp: lr0 * rate^(t / steps)
  bool staircase = false;         //   ... with floor(t / steps)
  double total, floor;            // cosine: from lr0 to floor*lr0 over `total` steps
  double warmup;                  // any: linear warm-up over the first `warmup` steps
  double factor, patience, threshold;  // plateau: see plateau_update
};

// The kinds with their parameters and defaults, one line each ("cosine: total=10000, floor=0"),
// for help texts.
std::vector<std::string> schedule_kinds();

// Parses "KIND[:key=value,...]", e.g. "exp:rate=0.5,steps=1000,staircase",
// "cosine:total=5000,warmup=200", "plateau:factor=0.5,patience=1". A key belongs to its kind
// (warmup to every kind). Throws Error naming the offending part.
ScheduleSpec parse_schedule(const std::string& text);
// The spec as parse_schedule reads it: the kind's own parameters always, warmup when not 0.
std::string schedule_str(const ScheduleSpec& s);

// The multiplier of lr0 at step t (a scalar tensor counting from 0). For plateau the factor is
// the persistent scale "<prefix>.scale" that plateau_update maintains.
Tensor schedule_factor(Graph& g, const ScheduleSpec& s, const Tensor& t, const std::string& prefix = "sched");

// Reduce-on-plateau as a separate small graph run once per epoch with input "metric" (lower is
// better): when the metric has not improved by `threshold` (relative) for more than `patience`
// evaluations, the scale shrinks by `factor`. It shares its state with the training step through
// the ParamStore. Outputs "scale".
Graph plateau_update(const ScheduleSpec& s, const std::string& prefix = "sched");

// Parameter groups: lr of parameter i = global lr * schedule * group multiplier * its own scale.
struct ParamGroup {
  std::string name;
  std::vector<size_t> params;  // indices into the parameter list
  double multiplier = 1.0;
};

struct LrPlan {
  std::vector<ParamGroup> groups;   // parameters in no group get multiplier 1
  bool learned_scales = false;      // adds a trainable per-tensor scale "<prefix>.<param>.lr_scale" (init 1)
};

// Per-parameter lr multipliers (group multiplier times the optional learned scale) for
// Hyper::lr_scale; undefined entries mean 1.
std::vector<Tensor> lr_scales(Graph& g, const LrPlan& plan, const std::vector<Tensor>& params,
                              const std::string& prefix = "lr");

}  // namespace metagrad
