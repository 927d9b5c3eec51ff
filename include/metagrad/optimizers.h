// Optimizers as graph: each builds (params, grads, state) -> (params', state') from ordinary
// nodes, with state held in persistent (non-trainable) parameters, so an update can be fused,
// inspected, and differentiated with respect to its hyperparameters.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "metagrad/builder.h"
#include "metagrad/hypergradient.h"

namespace metagrad {

// Combines a step's gradients before the update sees them (one tensor per parameter, same shapes
// out as in): the place where data-parallel training sums gradients across processes. It builds
// graph, so the whole step stays one compiled graph. Empty: the gradients are used as they are.
using GradientCombiner = std::function<std::vector<Tensor>(Graph& g, const std::vector<Tensor>& grads)>;

struct OptimizerConfig {
  // One of optimizer_names(): sgd momentum nesterov adagrad rmsprop rmsprop_centered adam adamw
  // nadam, and the hypergradient-descent variants sgd_hd sgdn_hd adam_hd (Baydin et al. 2018)
  std::string name = "adam";
  double lr = 1e-3;
  double momentum = 0.9;      // momentum, nesterov
  double beta1 = 0.9, beta2 = 0.999;  // adam family
  double rho = 0.9;           // rmsprop decay
  double eps = 1e-8;
  double weight_decay = 0.0;  // L2 added to the gradient; decoupled (p -= lr*wd*p) for adamw
  double clip_value = 0.0;    // clip each gradient element to [-v, v]; 0 = off
  double clip_norm = 0.0;     // rescale gradients whose global L2 norm exceeds this; 0 = off
  HypergradientOptions hd;     // HD variants: the rate's own update (metagrad/hypergradient.h)
  GradientCombiner combine_gradients;  // applied first, before weight decay and clipping
};

// The rules of the table in meta/optim/optimizer_rules.cpp, in its order.
const std::vector<std::string>& optimizer_names();
// Whether the named rule is a hypergradient variant (keeps its rate as state); false for
// unknown names.
bool is_hypergradient(const std::string& optimizer);

// Hyperparameters as scalar tensors, so schedules, hypergradients or a meta-learner can drive
// them. Undefined members are filled from the config as constants.
struct Hyper {
  Tensor lr, momentum, beta1, beta2, rho, eps, weight_decay;
  // Optional per-parameter multipliers of lr (scalar or the parameter's shape): parameter
  // groups, learned scales, freezing masks. Empty or undefined entries mean 1.
  std::vector<Tensor> lr_scale;
  // The loss this step's gradients came from: read by the HD safeguard (HypergradientOptions::guard).
  Tensor loss;
};

struct OptimizerStep {
  std::vector<Tensor> new_params;
  std::vector<std::pair<Tensor, Tensor>> state;  // (state parameter, its new value)
  Tensor step;                                   // the step counter after this step (1 on the first)
  Tensor lr;                                     // the global learning rate this step used
};

// Builds one optimizer step. State parameters are named "<prefix>.<param>.<slot>" and
// "<prefix>.t". HD variants keep their learning rate as the state "<prefix>.lr" (so hyper.lr
// must stay undefined) and update it from the dot product of this step's gradient with the
// previous step's update direction; with hd.guard, "<prefix>.hd_cuts" counts the guard's cuts.
// Throws on unknown optimizer names or mismatched lists.
OptimizerStep optimizer_step(Graph& g, const OptimizerConfig& cfg, const std::vector<Tensor>& params,
                             const std::vector<Tensor>& grads, Hyper hyper = {}, const std::string& prefix = "opt");

// The step counter "<prefix>.t" (steps taken so far), created on first use; schedules read it
// before optimizer_step advances it.
Tensor step_counter(Graph& g, const std::string& prefix = "opt");

// Registers the step's parameter and state updates on the graph.
void add_updates(Graph& g, const std::vector<Tensor>& params, const OptimizerStep& step);

// Gradient clipping helpers (also used inside optimizer_step).
std::vector<Tensor> clip_by_value(const std::vector<Tensor>& grads, double v);
std::vector<Tensor> clip_by_global_norm(const std::vector<Tensor>& grads, double max_norm);

}  // namespace metagrad
