// Hypergradient descent on an optimizer rule's learning rate: the rate update, the MARTHE horizon
// tangent, the loss-spike guard and the rise limit (options in metagrad/hypergradient.h).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "meta/optim/optimizer_rules.h"

namespace metagrad {

// One optimizer step as the HD machinery sees it, built by optimizer_step before the rate is
// known: the update will be p' = p - lr * steps[i].
struct HdStepInputs {
  const RuleRow& variant;                 // the HD row (name, default beta)
  const RuleRow& base;                    // the rule whose rate is adapted
  const std::vector<Tensor>& params;
  const std::vector<Tensor>& grads;       // as the rule saw them
  const std::vector<Direction>& dirs;     // the rule's directions d
  const std::vector<Tensor>& steps;       // scale * d
  const std::vector<Tensor>& terms;       // the rule's per-step terms
  std::function<Tensor(size_t param, const Tensor& x)> scaled;  // x times parameter i's lr scale
  Tensor t;                               // steps taken before this one
  size_t rule_state_begin = 0;            // out.state[begin, begin + size): the rule's own state,
  std::vector<bool> rule_state_velocity;  //   and whether each entry is a velocity
};

// What optimizer_step finishes the update with: the rate this step uses and, with the guard, the
// 0/1 spike that undoes the previous step (undefined without the guard).
struct HdRate {
  Tensor lr;
  Tensor spike;
};

// Appends the rate, the tangent u (and the rule state's tangents with a horizon) and the guard's
// statistics to out.state, and with the guard replaces the rule state's new values on a spike.
HdRate hypergradient_rate(Graph& g, const HypergradientOptions& o, const OptimizerConfig& cfg, const Hyper& h,
                          const HdStepInputs& in, const std::string& prefix, OptimizerStep& out);

// With the guard, parameter p's new value: on a spike the copy "<prefix>.<p>.guard_prev" from
// before the previous step (kept as state), else `next`.
Tensor guard_restore(Graph& g, const Tensor& spike, const Tensor& p, const Tensor& next, const std::string& prefix,
                     OptimizerStep& out);

}  // namespace metagrad
