#include "meta/models/convnet.h"

#include <fmt/format.h>

#include <cmath>

#include "metagrad/error.h"
#include "metagrad/ops.h"

namespace metagrad {

namespace {
int64_t spatial_after_blocks(const ConvNetConfig& cfg) {
  int64_t s = cfg.image;
  for (int64_t b = 0; b < cfg.blocks; ++b) s /= 2;  // same-padded conv keeps size, pooling halves (floor)
  return s;
}
}  // namespace

int64_t convnet_feature_size(const ConvNetConfig& cfg) {
  int64_t s = spatial_after_blocks(cfg);
  return cfg.filters * s * s;
}

std::vector<Tensor> convnet_params(Graph& g, const ConvNetConfig& cfg, const std::string& prefix) {
  if (cfg.channels <= 0 || cfg.filters <= 0 || cfg.blocks <= 0 || cfg.classes < 0 || spatial_after_blocks(cfg) < 1)
    throw GraphError(fmt::format("convnet: {} blocks do not fit a {}x{} image (or a size is not positive)", cfg.blocks,
                                 cfg.image, cfg.image));
  std::vector<Tensor> params;
  // Unsigned, so any 64-bit seed wraps (defined) instead of overflowing int64 (found by fuzzing CKPT.json).
  const uint64_t s = cfg.seed * 64;
  int64_t in = cfg.channels;
  for (int64_t b = 0; b < cfg.blocks; ++b) {
    // Glorot-uniform, as the reference MAML implementation initialises its convolutions.
    double limit = std::sqrt(6.0 / double((in + cfg.filters) * 9));
    params.push_back(parameter(g, fmt::format("{}.{}.w", prefix, b), {cfg.filters, in, 3, 3},
                               Init::uniform(-limit, limit, int64_t(s + uint64_t(b)))));
    params.push_back(parameter(g, fmt::format("{}.{}.gamma", prefix, b), {cfg.filters}, Init::ones()));
    params.push_back(parameter(g, fmt::format("{}.{}.beta", prefix, b), {cfg.filters}, Init::zeros()));
    in = cfg.filters;
  }
  if (cfg.classes > 0) {
    const int64_t f = convnet_feature_size(cfg);
    double limit = std::sqrt(6.0 / double(f + cfg.classes));
    params.push_back(parameter(g, prefix + ".head.w", {f, cfg.classes}, Init::uniform(-limit, limit, int64_t(s + 63))));
    params.push_back(parameter(g, prefix + ".head.b", {1, cfg.classes}, Init::zeros()));
  }
  return params;
}

Tensor convnet_features(const Tensor& x, const std::vector<Tensor>& w, const ConvNetConfig& cfg) {
  if (w.size() < size_t(3 * cfg.blocks))
    throw GraphError(fmt::format("convnet: {} weight tensors given, {} blocks need {}", w.size(), cfg.blocks, 3 * cfg.blocks));
  Tensor h = x;
  for (int64_t b = 0; b < cfg.blocks; ++b) {
    h = conv2d(h, w[size_t(3 * b)], {1, 1}, {1, 1});
    h = batch_norm(h, w[size_t(3 * b + 1)], w[size_t(3 * b + 2)], 1e-5, /*relu=*/true);
    h = max_pool2d(h, {2, 2});
  }
  return reshape(h, {h.dim(0), convnet_feature_size(cfg)});
}

Tensor convnet_logits(const Tensor& x, const std::vector<Tensor>& w, const ConvNetConfig& cfg) {
  if (cfg.classes <= 0 || w.size() != size_t(3 * cfg.blocks + 2))
    throw GraphError(fmt::format("convnet: logits need a head ({} weight tensors for {} blocks, classes={})", w.size(),
                                 cfg.blocks, cfg.classes));
  return linear(convnet_features(x, w, cfg), w[w.size() - 2], w.back());
}

}  // namespace metagrad
