#include "meta/models/classifier.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "metagrad/error.h"
#include "metagrad/ops.h"

namespace metagrad {

namespace {

struct LayerSpec {
  std::string name;
  Shape w, b;
  int64_t fan_in;
};

std::vector<LayerSpec> layer_specs(const ClassifierConfig& c) {
  if (c.model == "lenet5") {
    if (c.image < 16) throw GraphError(fmt::format("lenet5 needs images of at least 16x16, got {}", c.image));
    const int64_t s = ((c.image / 2) - 4) / 2;  // conv 5x5 same, pool 2, conv 5x5 valid, pool 2
    return {{"conv1", {6, 1, 5, 5}, {1, 6, 1, 1}, 25},
            {"conv2", {16, 6, 5, 5}, {1, 16, 1, 1}, 150},
            {"fc1", {16 * s * s, 120}, {1, 120}, 16 * s * s},
            {"fc2", {120, 84}, {1, 84}, 120},
            {"fc3", {84, c.classes}, {1, c.classes}, 84}};
  }
  if (c.model == "mlp") {
    const int64_t in = c.image * c.image, h1 = c.hidden, h2 = std::max<int64_t>(1, c.hidden / 2);
    return {{"fc1", {in, h1}, {1, h1}, in}, {"fc2", {h1, h2}, {1, h2}, h1}, {"fc3", {h2, c.classes}, {1, c.classes}, h2}};
  }
  throw GraphError(fmt::format("unknown model '{}' (expected lenet5 or mlp)", c.model));
}

}  // namespace

const std::vector<std::string>& classifier_models() {
  static const std::vector<std::string> names = {"lenet5", "mlp"};
  return names;
}

std::vector<std::string> classifier_layers(const ClassifierConfig& cfg) {
  std::vector<std::string> out;
  for (const LayerSpec& l : layer_specs(cfg)) out.push_back(l.name);
  return out;
}

std::vector<Tensor> classifier_params(Graph& g, const ClassifierConfig& cfg, const std::string& prefix, bool trainable) {
  std::vector<Tensor> params;
  int64_t seed = int64_t(cfg.seed) * 16;
  for (const LayerSpec& l : layer_specs(cfg)) {
    // PyTorch's default (Kaiming-uniform with a = sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    const double bound = 1.0 / std::sqrt(double(l.fan_in));
    params.push_back(parameter(g, fmt::format("{}.{}.w", prefix, l.name), l.w, Init::uniform(-bound, bound, seed++), trainable));
    params.push_back(parameter(g, fmt::format("{}.{}.b", prefix, l.name), l.b, Init::uniform(-bound, bound, seed++), trainable));
  }
  return params;
}

Tensor classifier_layer(const Tensor& h, const Tensor& w, const Tensor& b, const ClassifierConfig& cfg, size_t index) {
  const size_t layers = layer_specs(cfg).size();
  if (index >= layers) throw GraphError(fmt::format("{} has {} layers, layer {} asked for", cfg.model, layers, index));
  Tensor x = h;
  if (index == 0 && !(cfg.input_mean == 0.0 && cfg.input_std == 1.0)) x = (x - cfg.input_mean) * (1.0 / cfg.input_std);
  const bool conv = cfg.model == "lenet5" && index < 2;
  if (conv) return max_pool2d(relu(conv2d(x, w, {1, 1}, index == 0 ? std::vector<int64_t>{2, 2} : std::vector<int64_t>{0, 0}) + b), {2, 2});
  if (x.rank() != 2) x = reshape(x, {x.dim(0), -1});
  Tensor y = linear(x, w, b);
  return index + 1 == layers ? y : relu(y);
}

Tensor classifier_logits(const Tensor& x, const std::vector<Tensor>& w, const ClassifierConfig& cfg) {
  const size_t layers = layer_specs(cfg).size();
  if (w.size() != 2 * layers)
    throw GraphError(fmt::format("{}: {} weight tensors given, {} expected", cfg.model, w.size(), 2 * layers));
  Tensor h = x;
  for (size_t i = 0; i < layers; ++i) h = classifier_layer(h, w[2 * i], w[2 * i + 1], cfg, i);
  return h;
}

}  // namespace metagrad
