// MAML meta-step and evaluation graphs.
#include "meta/maml.h"

#include <fmt/format.h>

#include "graph/error.h"
#include "meta/optimizers.h"
#include "ops/ops.h"
#include "passes/autodiff.h"

namespace metagrad {

std::vector<Tensor> sinusoid_mlp_params(Graph& g, int64_t hidden, uint64_t seed) {
  // Finn et al.'s initialisation: truncated normal (std 0.01) weights, zero biases.
  const int64_t s = int64_t(seed) * 16;
  return {parameter(g, "w1", {1, hidden}, Init::truncated_normal(0, 0.01, s + 1)),
          parameter(g, "b1", {1, hidden}, Init::zeros()),
          parameter(g, "w2", {hidden, hidden}, Init::truncated_normal(0, 0.01, s + 2)),
          parameter(g, "b2", {1, hidden}, Init::zeros()),
          parameter(g, "w3", {hidden, 1}, Init::truncated_normal(0, 0.01, s + 3)),
          parameter(g, "b3", {1, 1}, Init::zeros())};
}

Tensor sinusoid_mlp(const Tensor& x, const std::vector<Tensor>& w) {
  Tensor h = relu(matmul(x, w[0]) + w[1]);
  h = relu(matmul(h, w[2]) + w[3]);
  return matmul(h, w[4]) + w[5];
}

// Sum over tasks of each task's mean squared error: its gradient with respect to per-task
// weights is each task's own gradient.
static Tensor summed_task_mse(const Tensor& pred, const Tensor& y) { return sum(mean(square(pred - y), {1, 2})); }

std::vector<Tensor> task_copies(const std::vector<Tensor>& params, int64_t tasks) {
  std::vector<Tensor> copies;
  for (const Tensor& p : params) {
    Shape s{tasks};
    s.insert(s.end(), p.shape().begin(), p.shape().end());
    copies.push_back(broadcast_to(p, s));
  }
  return copies;
}

std::vector<Tensor> inner_sgd_step(const std::vector<Tensor>& fast, const Tensor& xs, const Tensor& ys, double lr,
                                   bool first_order) {
  Tensor loss = summed_task_mse(sinusoid_mlp(xs, fast), ys);
  std::vector<Tensor> grads = grad(loss, fast);
  std::vector<Tensor> next;
  for (size_t i = 0; i < fast.size(); ++i) next.push_back(fast[i] - lr * (first_order ? stop_gradient(grads[i]) : grads[i]));
  return next;
}

std::vector<Tensor> adapt(const std::vector<Tensor>& params, const Tensor& xs, const Tensor& ys, int64_t steps,
                          double lr, bool first_order) {
  std::vector<Tensor> fast = task_copies(params, xs.dim(0));
  for (int64_t step = 0; step < steps; ++step) fast = inner_sgd_step(fast, xs, ys, lr, first_order);
  return fast;
}

Graph build_meta_step(const MamlConfig& cfg) {
  if (cfg.algo != "maml" && cfg.algo != "fomaml")
    throw GraphError(fmt::format("unknown algorithm '{}' (expected maml or fomaml)", cfg.algo));
  if (cfg.shots <= 0 || cfg.query <= 0 || cfg.meta_batch <= 0 || cfg.inner_steps < 0 || cfg.hidden <= 0)
    throw GraphError("shots, query, meta-batch and hidden must be positive; inner steps non-negative");
  Graph g;
  const int64_t B = cfg.meta_batch;
  Tensor xs = input(g, "xs", {B, cfg.shots, 1}), ys = input(g, "ys", {B, cfg.shots, 1});
  Tensor xq = input(g, "xq", {B, cfg.query, 1}), yq = input(g, "yq", {B, cfg.query, 1});
  auto params = sinusoid_mlp_params(g, cfg.hidden, cfg.seed);
  auto fast = adapt(params, xs, ys, cfg.inner_steps, cfg.inner_lr, cfg.algo == "fomaml");
  Tensor loss = mean(square(sinusoid_mlp(xq, fast) - yq));
  Tensor pre_loss = mean(square(sinusoid_mlp(xq, params) - yq));
  auto grads = grad(loss, params);
  OptimizerConfig adam;
  adam.name = "adam";
  adam.lr = cfg.meta_lr;
  add_updates(g, params, optimizer_step(g, adam, params, grads, {}, "adam"));
  g.add_output("loss", loss.value());
  g.add_output("pre_loss", pre_loss.value());
  return g;
}

Graph build_maml_eval(const MamlConfig& cfg, int64_t tasks, int64_t shots, int64_t query, int64_t steps) {
  Graph g;
  Tensor xs = input(g, "xs", {tasks, shots, 1}), ys = input(g, "ys", {tasks, shots, 1});
  Tensor xq = input(g, "xq", {tasks, query, 1}), yq = input(g, "yq", {tasks, query, 1});
  auto params = sinusoid_mlp_params(g, cfg.hidden, cfg.seed);
  auto fast = task_copies(params, tasks);
  for (int64_t step = 0; step <= steps; ++step) {
    g.add_output(fmt::format("mse_{}", step), mean(square(sinusoid_mlp(xq, fast) - yq), {1, 2}).value());
    if (step < steps) fast = inner_sgd_step(fast, xs, ys, cfg.inner_lr, false);
  }
  return g;
}

}  // namespace metagrad
