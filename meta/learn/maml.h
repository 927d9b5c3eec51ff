// Gradient-based meta-learning on sinusoid regression (MAML, first-order MAML, Meta-SGD, ANIL,
// Reptile), with the whole meta-step (every task, every inner step, the outer gradient and the Adam
// update) built as one graph.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "metagrad/builder.h"
#include "metagrad/optimizers.h"

namespace metagrad {

struct MamlConfig {
  std::string algo = "maml";  // one of sinusoid_algorithms()
  int64_t shots = 10, query = 10;
  int64_t inner_steps = 1;
  double inner_lr = 0.01;
  int64_t meta_batch = 25;
  double meta_lr = 1e-3;
  int64_t hidden = 40;
  uint64_t seed = 1;
  bool inner_loop = false;  // the inner steps as one loop node (scan) instead of unrolled
  GradientCombiner combine;  // applied to the meta-gradients before the Adam update (DriverConfig::combine_gradients)
};

// The rows of fewshot_algorithm_table() built for the MLP: maml fomaml metasgd anil reptile
const std::vector<std::string>& sinusoid_algorithms();

// Parameters of the 1-hidden-hidden-1 ReLU MLP, biases shaped [1, width] so a per-task copy is
// just a broadcast to [tasks, ...].
std::vector<Tensor> sinusoid_mlp_params(Graph& g, int64_t hidden, uint64_t seed);
// x [tasks, points, 1] through weights that are either shared ([in, out]) or per task ([tasks, in, out]).
Tensor sinusoid_mlp(const Tensor& x, const std::vector<Tensor>& weights);

// Per-task copies of shared parameters: [tasks, ...shape], by broadcasting.
std::vector<Tensor> task_copies(const std::vector<Tensor>& params, int64_t tasks);

// Adapts per-task copies of `params` with `steps` SGD steps on the summed support MSE and returns the
// adapted (fast) weights. `first_order` cuts the inner gradients out of the outer derivative.
std::vector<Tensor> adapt(const std::vector<Tensor>& params, const Tensor& xs, const Tensor& ys, int64_t steps,
                          double lr, bool first_order);

// The meta-step graph: inputs xs, ys [B,K,1] and xq, yq [B,Q,1]; outputs "loss" (query MSE after
// adaptation, mean over tasks) and "pre_loss" (before); updates every meta-parameter (weights and
// Meta-SGD's rates) and its Adam state. Reptile adapts on support and query together and moves
// toward the adapted weights.
Graph build_meta_step(const MamlConfig& cfg);
// The same objective without the update: outputs "loss" and "grad:<param>" per meta-parameter.
Graph build_maml_objective(const MamlConfig& cfg);

// The evaluation graph: adapts with `steps` SGD steps and outputs "mse_0" ... "mse_<steps>",
// each [tasks], the per-task query MSE after that many steps.
Graph build_maml_eval(const MamlConfig& cfg, int64_t tasks, int64_t shots, int64_t query, int64_t steps);

}  // namespace metagrad
