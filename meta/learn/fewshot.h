// The few-shot learning family on the convolutional network: MAML (second and first order),
// Meta-SGD, ANIL, Reptile, prototypical networks, prototypical networks with a learned metric, and
// Proto-MAML adapting through that learned metric. One interface for all: a task sampler fills
// (support, query) episodes, an algorithm builds the whole meta-step (every task's inner loop, the
// outer gradient and the Adam update) as one graph, and the runtime replays it.
#pragma once
#include <string>
#include <vector>

#include "meta/models/convnet.h"
#include "metagrad/graph.h"
#include "metagrad/optimizers.h"

namespace metagrad {

// What the inner loop adapts: nothing (prototypical networks classify by distance to class means),
// the whole network, only its linear head (ANIL), or the network and the prototypes (Proto-MAML).
enum class Adapts { nothing, network, head, network_and_prototypes };

// One row per algorithm: everything the step builders, the benchmarks and the command line derive
// from an algorithm's name is read from here.
struct FewShotAlgorithm {
  std::string name;
  Adapts adapts = Adapts::network;
  bool head = true;            // a linear head sized for `ways` (false: an embedding, any number of ways)
  bool metric = false;         // the learned Mahalanobis metric between embeddings and prototypes
  bool first_order = false;    // inner gradients cut out of the outer derivative
  bool learned_rates = false;  // Meta-SGD: a learned step size per element
  bool reptile = false;        // outer direction parameters - adapted weights, adapted on support and query
  bool sinusoid = false;       // also built for the sinusoid MLP (meta/learn/maml.h)
  // Default budget: measured ms per Omniglot meta-iteration at 5-way 1-shot, 5 queries per class,
  // meta-batch 4 (docs/ARCHITECTURE.md, "Budgets"); Reptile's is per inner step.
  double ms_per_iter = 98;
  int64_t min_eval_steps = 3;  // inner steps at evaluation: at least this many, at least the training's
  bool adapts_by_gradient() const { return adapts != Adapts::nothing; }
};

// maml fomaml metasgd anil reptile protonet protonet-metric protomaml-metric
const std::vector<FewShotAlgorithm>& fewshot_algorithm_table();
// The row of `name`; GraphError listing the known names otherwise.
const FewShotAlgorithm& fewshot_algorithm(const std::string& name);

struct FewShotConfig {
  std::string algo = "maml";  // one of fewshot_algorithms()
  int64_t ways = 5, shots = 1, query = 15;
  int64_t meta_batch = 4, inner_steps = 1;
  double inner_lr = 0.4;      // Finn et al.'s Omniglot step size; Meta-SGD's initial per-element rate
  double meta_lr = 1e-3;
  int64_t metric_rank = 8;    // learned metric: rank of its low-rank Mahalanobis term
  ConvNetConfig net;          // net.classes is set to `ways` (0, an embedding, for the prototype methods)
  bool inner_loop = false;    // each task's inner steps as one loop node (scan) instead of unrolled
  GradientCombiner combine;   // applied to the meta-gradients before the Adam update (DriverConfig::combine_gradients)
};

// The names of fewshot_algorithm_table(), in its order.
const std::vector<std::string>& fewshot_algorithms();
// Whether the algorithm adapts by inner gradient steps (everything but the prototypical networks).
bool adapts_by_gradient(const std::string& algo);

// Inputs: "xs" [T, N*K, C, H, W] f32 and "ys" [T, N*K] i32 (labels in [0, N)), "xq" [T, N*Q, C, H, W]
// and "yq" [T, N*Q]. Outputs "loss" and "accuracy" on the query sets after adaptation (the mean over
// tasks). Updates every meta-parameter (network, Meta-SGD rates, metric) and its Adam state. The
// accuracy before adaptation is the evaluation graph's "accuracy_0": a training step does not pay
// for a second query pass per task.
Graph build_fewshot_step(const FewShotConfig& cfg);

// The meta-objective without the update, for checking meta-gradients: outputs "loss" and, for each
// meta-parameter P, "grad:P" (for Reptile, its pseudo-gradient: parameters minus adapted weights).
Graph build_fewshot_objective(const FewShotConfig& cfg);

// Evaluation of `tasks` episodes: outputs "accuracy_<s>" and "loss_<s>" [tasks] after s = 0..steps
// inner steps (prototype methods: only s = 0, their only step).
Graph build_fewshot_eval(const FewShotConfig& cfg, int64_t tasks, int64_t steps);

// Fraction of rows whose label has the largest logit (ties count as correct): logits [N, C], labels [N] i32.
Tensor classification_accuracy(const Tensor& logits, const Tensor& labels);

}  // namespace metagrad
