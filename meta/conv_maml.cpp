#include "meta/conv_maml.h"

#include <fmt/format.h>

#include "graph/error.h"
#include "meta/optimizers.h"
#include "ops/ops.h"
#include "passes/autodiff.h"

namespace metagrad {

namespace {

struct EpisodeInputs {
  Tensor xs, ys, xq, yq;
};

EpisodeInputs episode_inputs(Graph& g, const ConvMamlConfig& cfg, int64_t tasks) {
  const ConvNetConfig& n = cfg.net;
  const int64_t support = cfg.ways * cfg.shots, query = cfg.ways * cfg.query;
  return {input(g, "xs", {tasks, support, n.channels, n.image, n.image}), input(g, "ys", {tasks, support}, DType::i32),
          input(g, "xq", {tasks, query, n.channels, n.image, n.image}), input(g, "yq", {tasks, query}, DType::i32)};
}

// Task t's rows of an episode tensor [T, rows, ...] -> [rows, ...].
Tensor task_rows(const Tensor& x, int64_t t) {
  std::vector<int64_t> begin(size_t(x.rank()), 0), end(x.shape().begin(), x.shape().end());
  begin[0] = t;
  end[0] = t + 1;
  Shape rest(x.shape().begin() + 1, x.shape().end());
  return reshape(slice(x, begin, end), rest);
}

ConvNetConfig net_of(const ConvMamlConfig& cfg) {
  ConvNetConfig n = cfg.net;
  n.classes = cfg.ways;
  return n;
}

void check(const ConvMamlConfig& cfg) {
  if (cfg.algo != "maml" && cfg.algo != "fomaml")
    throw GraphError(fmt::format("unknown algorithm '{}' (expected maml or fomaml)", cfg.algo));
  if (cfg.ways < 2 || cfg.shots <= 0 || cfg.query <= 0 || cfg.meta_batch <= 0 || cfg.inner_steps < 0)
    throw GraphError("conv-maml: ways must be >= 2, shots, query and meta-batch positive, inner steps non-negative");
}

std::vector<Tensor> inner_step(const std::vector<Tensor>& w, const Tensor& x, const Tensor& y, const ConvNetConfig& net,
                               double lr, bool first_order) {
  std::vector<Tensor> g = grad(cross_entropy(convnet_logits(x, w, net), y), w);
  std::vector<Tensor> next;
  for (size_t i = 0; i < w.size(); ++i) next.push_back(w[i] - lr * (first_order ? stop_gradient(g[i]) : g[i]));
  return next;
}

}  // namespace

Tensor classification_accuracy(const Tensor& logits, const Tensor& labels) {
  Tensor label_logit = sum(logits * one_hot(labels, logits.dim(-1)), {-1});
  return mean(greater_equal(label_logit, max(logits, {-1})));
}

Graph build_conv_maml_step(const ConvMamlConfig& cfg) {
  check(cfg);
  Graph g;
  const ConvNetConfig net = net_of(cfg);
  const int64_t T = cfg.meta_batch;
  EpisodeInputs in = episode_inputs(g, cfg, T);
  std::vector<Tensor> params = convnet_params(g, net);
  // Tasks are unrolled: each has its own adapted weights, batch statistics and query loss; the
  // meta-objective is their mean.
  Tensor loss, acc, pre_loss, pre_acc;
  for (int64_t t = 0; t < T; ++t) {
    Tensor xs = task_rows(in.xs, t), ys = task_rows(in.ys, t), xq = task_rows(in.xq, t), yq = task_rows(in.yq, t);
    std::vector<Tensor> fast = params;
    for (int64_t s = 0; s < cfg.inner_steps; ++s) fast = inner_step(fast, xs, ys, net, cfg.inner_lr, cfg.algo == "fomaml");
    Tensor logits = convnet_logits(xq, fast, net);
    Tensor l = cross_entropy(logits, yq), a = classification_accuracy(logits, yq);
    Tensor pre_logits = stop_gradient(convnet_logits(xq, params, net));
    Tensor pl = cross_entropy(pre_logits, yq), pa = classification_accuracy(pre_logits, yq);
    loss = t == 0 ? l : loss + l;
    acc = t == 0 ? a : acc + a;
    pre_loss = t == 0 ? pl : pre_loss + pl;
    pre_acc = t == 0 ? pa : pre_acc + pa;
  }
  const double inv = 1.0 / double(T);
  loss = loss * inv;
  std::vector<Tensor> grads = grad(loss, params);
  OptimizerConfig adam;
  adam.lr = cfg.meta_lr;
  add_updates(g, params, optimizer_step(g, adam, params, grads, {}, "adam"));
  g.add_output("loss", loss.value());
  g.add_output("accuracy", (acc * inv).value());
  g.add_output("pre_loss", (pre_loss * inv).value());
  g.add_output("pre_accuracy", (pre_acc * inv).value());
  return g;
}

Graph build_conv_maml_eval(const ConvMamlConfig& cfg, int64_t tasks, int64_t steps) {
  check(cfg);
  Graph g;
  const ConvNetConfig net = net_of(cfg);
  EpisodeInputs in = episode_inputs(g, cfg, tasks);
  std::vector<Tensor> params = convnet_params(g, net);
  std::vector<std::vector<Tensor>> acc(size_t(steps + 1)), loss(size_t(steps + 1));
  for (int64_t t = 0; t < tasks; ++t) {
    Tensor xs = task_rows(in.xs, t), ys = task_rows(in.ys, t), xq = task_rows(in.xq, t), yq = task_rows(in.yq, t);
    std::vector<Tensor> fast = params;
    for (int64_t s = 0; s <= steps; ++s) {
      Tensor logits = convnet_logits(xq, fast, net);
      acc[size_t(s)].push_back(reshape(classification_accuracy(logits, yq), {1}));
      loss[size_t(s)].push_back(reshape(cross_entropy(logits, yq), {1}));
      if (s < steps) fast = inner_step(fast, xs, ys, net, cfg.inner_lr, true);
    }
  }
  for (int64_t s = 0; s <= steps; ++s) {
    g.add_output(fmt::format("accuracy_{}", s), concat(acc[size_t(s)], 0).value());
    g.add_output(fmt::format("loss_{}", s), concat(loss[size_t(s)], 0).value());
  }
  return g;
}

}  // namespace metagrad
