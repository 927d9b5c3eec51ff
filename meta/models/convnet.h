// The standard few-shot convolutional network (Vinyals et al. 2016; Finn et al. 2017): blocks of
// 3x3 convolution, batch norm with batch statistics, ReLU and 2x2 max pooling, then a linear head.
#pragma once
#include <string>
#include <vector>

#include "metagrad/builder.h"

namespace metagrad {

struct ConvNetConfig {
  int64_t channels = 1, image = 28;  // input [N, channels, image, image]
  int64_t filters = 64, blocks = 4;
  int64_t classes = 5;               // 0: no head (an embedding network)
  uint64_t seed = 1;
};

// Parameters in forward order: per block conv weight [F, C, 3, 3] (no bias: batch norm follows),
// gamma [F], beta [F]; then, when classes > 0, the head weight [features, classes] and bias
// [1, classes] as the last two tensors. Names are "<prefix>.<block>.w" etc.
std::vector<Tensor> convnet_params(Graph& g, const ConvNetConfig& cfg, const std::string& prefix = "net");

// Spatial size after the blocks and the flattened feature width.
int64_t convnet_feature_size(const ConvNetConfig& cfg);

// x [N, C, H, W] through the blocks -> [N, features].
Tensor convnet_features(const Tensor& x, const std::vector<Tensor>& weights, const ConvNetConfig& cfg);
// Features through the head -> logits [N, classes].
Tensor convnet_logits(const Tensor& x, const std::vector<Tensor>& weights, const ConvNetConfig& cfg);

}  // namespace metagrad
