// Optimizers as graph: each builds (params, grads, state) -> (params', state') from ordinary
// nodes, with state held in persistent (non-trainable) parameters, so an update can be fused,
// inspected, and differentiated with respect to its hyperparameters.
#pragma once
#include <string>
#include <vector>

#include "graph/builder.h"

namespace metagrad {

struct OptimizerConfig {
  std::string name = "adam";  // sgd momentum nesterov adagrad rmsprop rmsprop_centered adam adamw nadam
  double lr = 1e-3;
  double momentum = 0.9;      // momentum, nesterov
  double beta1 = 0.9, beta2 = 0.999;  // adam family
  double rho = 0.9;           // rmsprop decay
  double eps = 1e-8;
  double weight_decay = 0.0;  // L2 added to the gradient; decoupled (p -= lr*wd*p) for adamw
  double clip_value = 0.0;    // clip each gradient element to [-v, v]; 0 = off
  double clip_norm = 0.0;     // rescale gradients whose global L2 norm exceeds this; 0 = off
};

const std::vector<std::string>& optimizer_names();

// Hyperparameters as scalar tensors, so schedules, hypergradients or a meta-learner can drive
// them. Undefined members are filled from the config as constants.
struct Hyper {
  Tensor lr, momentum, beta1, beta2, rho, eps, weight_decay;
};

struct OptimizerStep {
  std::vector<Tensor> new_params;
  std::vector<std::pair<Tensor, Tensor>> state;  // (state parameter, its new value)
  Tensor step;                                   // the step counter after this step (1 on the first)
};

// Builds one optimizer step. State parameters are named "<prefix>.<param>.<slot>" and
// "<prefix>.t". Throws on unknown optimizer names or mismatched lists.
OptimizerStep optimizer_step(Graph& g, const OptimizerConfig& cfg, const std::vector<Tensor>& params,
                             const std::vector<Tensor>& grads, Hyper hyper = {}, const std::string& prefix = "opt");

// Registers the step's parameter and state updates on the graph.
void add_updates(Graph& g, const std::vector<Tensor>& params, const OptimizerStep& step);

// Gradient clipping helpers (also used inside optimizer_step).
std::vector<Tensor> clip_by_value(const std::vector<Tensor>& grads, double v);
std::vector<Tensor> clip_by_global_norm(const std::vector<Tensor>& grads, double max_norm);

}  // namespace metagrad
