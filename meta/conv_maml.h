// Second- and first-order MAML for N-way K-shot classification with the few-shot conv network,
// the whole meta-step (every task's inner steps, the outer gradient, the Adam update) as one graph.
#pragma once
#include <string>

#include "graph/graph.h"
#include "meta/convnet.h"

namespace metagrad {

struct ConvMamlConfig {
  std::string algo = "maml";  // maml | fomaml
  int64_t ways = 5, shots = 1, query = 15;
  int64_t meta_batch = 4, inner_steps = 1;
  double inner_lr = 0.4;      // Finn et al.'s Omniglot step size
  double meta_lr = 1e-3;
  ConvNetConfig net;          // net.classes is set to `ways`
};

// Inputs: "xs" [T, N*K, C, H, W] f32 and "ys" [T, N*K] i32 (labels in [0, N)), "xq" [T, N*Q, C, H, W]
// and "yq" [T, N*Q]. Outputs "loss" and "accuracy" on the query sets after adaptation and
// "pre_loss" / "pre_accuracy" before, each the mean over tasks. Updates every parameter (Adam).
Graph build_conv_maml_step(const ConvMamlConfig& cfg);

// Evaluation: same inputs for `tasks` tasks; outputs "accuracy_<s>" and "loss_<s>" [tasks] after
// s = 0..steps inner steps.
Graph build_conv_maml_eval(const ConvMamlConfig& cfg, int64_t tasks, int64_t steps);

// Fraction of rows whose label has the largest logit (ties count as correct), and the shared
// per-row helper: logits [N, C], labels [N] i32.
Tensor classification_accuracy(const Tensor& logits, const Tensor& labels);

}  // namespace metagrad
