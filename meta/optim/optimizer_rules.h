// The optimizer rules as a table: one row per rule, read by optimizer_step, optimizer_names()
// and is_hypergradient().
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "metagrad/optimizers.h"

namespace metagrad {

// One per-parameter state tensor of a rule, "<prefix>.<param>.<name>", zero at the start.
struct RuleSlot {
  std::string name;
  // A velocity carries the parameters along the path they came; the HD guard zeroes it when it
  // undoes a step, where other state (a moment) is only left as it was.
  bool velocity = false;
};

// What a rule's direction reads for one parameter. state(k) is slot k's current value, created
// on first use (rules create their state when they first read it, so the graph's node order
// follows the formula).
struct DirectionArgs {
  Graph& g;
  const Hyper& h;                       // every hyperparameter defined (constants from the config)
  const OptimizerConfig& cfg;
  const std::vector<Tensor>& terms;     // the rule's per-step terms (RuleRow::step_terms)
  const Tensor& p;                      // the parameter
  const Tensor& grad;                   // its gradient, after combining, clipping and coupled decay
  std::function<Tensor(size_t slot)> state;
};

// The direction d of p' = p - lr * scale * d, the slots' new values (one per slot, in order),
// and intermediate values the rule's HD tangent reads again (Adam's mhat and sqrt(vhat)).
struct Direction {
  Tensor d;
  std::vector<Tensor> next;
  std::vector<Tensor> aux;
};

// What a rule's HD-horizon tangent reads for one parameter: hu is the derivative of the gradient
// along the tangent u (a Hessian-vector product), tangents[k] slot k's tangent state
// "<slot>_tangent", mu the horizon's discount.
struct TangentArgs {
  Graph& g;
  const Hyper& h;
  const std::vector<Tensor>& terms;
  const Tensor& grad;
  const Tensor& hu;
  const Direction& dir;
  const std::vector<Tensor>& tangents;
  double mu;
};

// du, the derivative of the direction along u, and the slots' tangents carried to the next step
// (already discounted by mu, in slot order).
struct Tangent {
  Tensor du;
  std::vector<Tensor> next;
};

struct RuleRow {
  std::string name;
  std::vector<RuleSlot> slots;
  // Terms shared by all parameters of one step (Adam's bias corrections), from the step t1 >= 1.
  std::function<std::vector<Tensor>(Graph&, const Hyper&, const Tensor& t1)> step_terms;
  std::function<Direction(const DirectionArgs&)> direction;
  // The derivative of the direction along the HD horizon's tangent; empty: no HD variant may use
  // a horizon on this rule.
  std::function<Tangent(const TangentArgs&)> tangent;
  // The rule applies weight decay itself (AdamW's decoupled decay) instead of adding it to the
  // gradient.
  bool decoupled_decay = false;
  // A hypergradient variant: the base rule it adapts the rate of (its slots, direction and
  // tangent are the base's), and beta's default for the additive form.
  std::string hd_of;
  double hd_default_beta = 0;
};

// The persistent zero tensor "<prefix>.<param>.<slot>" (the parameter's node id when unnamed).
Tensor slot_state(Graph& g, const std::string& prefix, const Tensor& p, const std::string& slot);

// Every rule, in the order optimizer_names() lists them.
const std::vector<RuleRow>& optimizer_rules();
// The row named `name`; nullptr when there is none.
const RuleRow* find_rule(const std::string& name);

}  // namespace metagrad
