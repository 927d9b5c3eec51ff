// Image classifiers for the supervised benchmarks: LeNet-5 (LeCun et al. 1998, with ReLU and
// max pooling as it is usually trained today) and a two-hidden-layer MLP.
#pragma once
#include <string>
#include <vector>

#include "metagrad/builder.h"

namespace metagrad {

struct ClassifierConfig {
  std::string model = "lenet5";  // lenet5 | mlp
  int64_t image = 28, classes = 10;
  int64_t hidden = 256;           // mlp: widths hidden, hidden / 2
  uint64_t seed = 1;
  // Inputs are standardised inside the graph, (x - mean) / std, so callers feed raw pixels.
  double input_mean = 0.0, input_std = 1.0;
};

const std::vector<std::string>& classifier_models();

// Parameters in layer order, named "<prefix>.<layer>.w" / ".b"; biases of convolutions are
// [1, C, 1, 1] and of linear layers [1, N], so they broadcast without reshapes.
std::vector<Tensor> classifier_params(Graph& g, const ClassifierConfig& cfg, const std::string& prefix = "net",
                                      bool trainable = true);

// Layer names of the parameters, in the same order (two tensors per layer).
std::vector<std::string> classifier_layers(const ClassifierConfig& cfg);

// Layer `index` (in classifier_layers order) applied to h: the first standardises its input, the
// first linear layer flattens, every layer but the last ends in ReLU (convolutions also pool).
// Chaining all layers is classifier_logits; multi-task models step through them one by one.
Tensor classifier_layer(const Tensor& h, const Tensor& w, const Tensor& b, const ClassifierConfig& cfg, size_t index);

// x [N, 1, image, image] -> logits [N, classes].
Tensor classifier_logits(const Tensor& x, const std::vector<Tensor>& w, const ClassifierConfig& cfg);

}  // namespace metagrad
