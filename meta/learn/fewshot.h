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

namespace metagrad {

struct FewShotConfig {
  std::string algo = "maml";  // one of fewshot_algorithms()
  int64_t ways = 5, shots = 1, query = 15;
  int64_t meta_batch = 4, inner_steps = 1;
  double inner_lr = 0.4;      // Finn et al.'s Omniglot step size; Meta-SGD's initial per-element rate
  double meta_lr = 1e-3;
  int64_t metric_rank = 8;    // learned metric: rank of its low-rank Mahalanobis term
  ConvNetConfig net;          // net.classes is set to `ways` (0, an embedding, for the prototype methods)
  bool inner_loop = false;    // each task's inner steps as one loop node (scan) instead of unrolled
};

// maml fomaml metasgd anil reptile protonet protonet-metric protomaml-metric
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
