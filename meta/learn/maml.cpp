// MAML meta-step and evaluation graphs.
#include "meta/learn/maml.h"

#include "meta/learn/fewshot.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/learner.h"
#include "metagrad/ops.h"
#include "metagrad/scan.h"
#include "metagrad/optimizers.h"

namespace metagrad {

std::vector<Tensor> sinusoid_mlp_params(Graph& g, int64_t hidden, uint64_t seed) {
  // Finn et al.'s initialisation: truncated normal (std 0.01) weights, zero biases.
  const uint64_t s = seed * 16;  // unsigned: any seed wraps instead of overflowing
  return {parameter(g, "w1", {1, hidden}, Init::truncated_normal(0, 0.01, int64_t(s + 1))),
          parameter(g, "b1", {1, hidden}, Init::zeros()),
          parameter(g, "w2", {hidden, hidden}, Init::truncated_normal(0, 0.01, int64_t(s + 2))),
          parameter(g, "b2", {1, hidden}, Init::zeros()),
          parameter(g, "w3", {hidden, 1}, Init::truncated_normal(0, 0.01, int64_t(s + 3))),
          parameter(g, "b3", {1, 1}, Init::zeros())};
}

Tensor sinusoid_mlp(const Tensor& x, const std::vector<Tensor>& w) {
  Tensor h = relu(matmul(x, w[0]) + w[1]);
  h = relu(matmul(h, w[2]) + w[3]);
  return matmul(h, w[4]) + w[5];
}

const std::vector<std::string>& sinusoid_algorithms() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const FewShotAlgorithm& a : fewshot_algorithm_table())
      if (a.sinusoid) v.push_back(a.name);
    return v;
  }();
  return names;
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

namespace {

struct SinusoidMeta {
  std::vector<Tensor> weights, rates;  // rates: Meta-SGD only
  std::vector<Tensor> all() const {
    std::vector<Tensor> p = weights;
    p.insert(p.end(), rates.begin(), rates.end());
    return p;
  }
};

SinusoidMeta sinusoid_meta(Graph& g, const MamlConfig& cfg) {
  SinusoidMeta m;
  m.weights = sinusoid_mlp_params(g, cfg.hidden, cfg.seed);
  // Li et al. draw Meta-SGD's initial rates uniformly from [0.005, 0.1].
  if (fewshot_algorithm(cfg.algo).learned_rates) m.rates = metasgd_rates(g, m.weights, Init::uniform(0.005, 0.1, int64_t(cfg.seed * 16 + 8)));
  return m;
}

// The learner of a batch of tasks: per-task copies [T, ...] of what is adapted, the summed
// support MSE and the query predictions [T, Q, 1].
Learner sinusoid_learner(const SinusoidMeta& m, const std::string& algo, const Tensor& xs, const Tensor& ys,
                         const Tensor& xq) {
  const int64_t tasks = xs.dim(0);
  Learner l;
  if (fewshot_algorithm(algo).adapts == Adapts::head) {
    // Only the output layer adapts; the hidden features are shared by every task and step.
    std::vector<Tensor> body(m.weights.begin(), m.weights.begin() + 4);
    auto features = [body](const Tensor& x) {
      Tensor h = relu(matmul(x, body[0]) + body[1]);
      return relu(matmul(h, body[2]) + body[3]);
    };
    Tensor hs = features(xs), hq = features(xq);
    l.initial = task_copies({m.weights[4], m.weights[5]}, tasks);
    l.support_loss = [hs, ys](const std::vector<Tensor>& w) { return summed_task_mse(matmul(hs, w[0]) + w[1], ys); };
    l.predict = [hq](const std::vector<Tensor>& w) { return matmul(hq, w[0]) + w[1]; };
    return l;
  }
  l.initial = task_copies(m.weights, tasks);
  l.support_loss = [xs, ys](const std::vector<Tensor>& w) { return summed_task_mse(sinusoid_mlp(xs, w), ys); };
  l.predict = [xq](const std::vector<Tensor>& w) { return sinusoid_mlp(xq, w); };
  l.rates = m.rates;
  return l;
}

void check(const MamlConfig& cfg) {
  const auto& names = sinusoid_algorithms();
  if (std::find(names.begin(), names.end(), cfg.algo) == names.end())
    throw GraphError(fmt::format("unknown algorithm '{}' (expected one of: {})", cfg.algo, fmt::join(names, ", ")));
  if (cfg.shots <= 0 || cfg.query <= 0 || cfg.meta_batch <= 0 || cfg.inner_steps < 0 || cfg.hidden <= 0)
    throw GraphError("shots, query, meta-batch and hidden must be positive; inner steps non-negative");
}

struct SinusoidObjective {
  SinusoidMeta meta;
  Tensor loss, pre_loss;
  std::vector<Tensor> grads;
};

SinusoidObjective sinusoid_objective(Graph& g, const MamlConfig& cfg) {
  check(cfg);
  const int64_t B = cfg.meta_batch;
  Tensor xs = input(g, "xs", {B, cfg.shots, 1}), ys = input(g, "ys", {B, cfg.shots, 1});
  Tensor xq = input(g, "xq", {B, cfg.query, 1}), yq = input(g, "yq", {B, cfg.query, 1});
  SinusoidObjective o;
  o.meta = sinusoid_meta(g, cfg);
  o.pre_loss = mean(square(sinusoid_mlp(xq, o.meta.weights) - yq));
  const FewShotAlgorithm& a = fewshot_algorithm(cfg.algo);
  if (a.reptile) {
    // Reptile has no support/query split to respect in training: it adapts on all of a task's points.
    Learner l = sinusoid_learner(o.meta, cfg.algo, concat({xs, xq}, 1), concat({ys, yq}, 1), xq);
    std::vector<Tensor> fast = adapt(l, cfg.inner_steps, cfg.inner_lr, true, cfg.inner_loop);
    o.loss = mean(square(l.predict(fast) - yq));
    o.grads = reptile_direction(o.meta.weights, fast, B);
    return o;
  }
  Learner l = sinusoid_learner(o.meta, cfg.algo, xs, ys, xq);
  std::vector<Tensor> fast = adapt(l, cfg.inner_steps, cfg.inner_lr, a.first_order, cfg.inner_loop);
  o.loss = mean(square(l.predict(fast) - yq));
  o.grads = grad(o.loss, o.meta.all());
  return o;
}

}  // namespace

std::vector<Tensor> adapt(const std::vector<Tensor>& params, const Tensor& xs, const Tensor& ys, int64_t steps,
                          double lr, bool first_order) {
  SinusoidMeta m{params, {}};
  Learner l = sinusoid_learner(m, "maml", xs, ys, xs);
  return adapt(l, steps, lr, first_order);
}

Graph build_meta_step(const MamlConfig& cfg) {
  Graph g;
  SinusoidObjective o = sinusoid_objective(g, cfg);
  add_meta_update(g, o.meta.all(), o.grads, cfg.meta_lr, cfg.combine);
  g.add_output("loss", o.loss.value());
  g.add_output("pre_loss", o.pre_loss.value());
  return g;
}

Graph build_maml_objective(const MamlConfig& cfg) {
  Graph g;
  SinusoidObjective o = sinusoid_objective(g, cfg);
  g.add_output("loss", o.loss.value());
  add_gradient_outputs(g, o.meta.all(), o.grads);
  return g;
}

Graph build_maml_eval(const MamlConfig& cfg, int64_t tasks, int64_t shots, int64_t query, int64_t steps) {
  check(cfg);
  Graph g;
  Tensor xs = input(g, "xs", {tasks, shots, 1}), ys = input(g, "ys", {tasks, shots, 1});
  Tensor xq = input(g, "xq", {tasks, query, 1}), yq = input(g, "yq", {tasks, query, 1});
  SinusoidMeta m = sinusoid_meta(g, cfg);
  Learner l = sinusoid_learner(m, cfg.algo, xs, ys, xq);
  std::vector<Tensor> fast = l.initial;
  if (cfg.inner_loop && steps > 0) {
    // Many evaluation steps stay one loop; its stacked output is the error before each step.
    auto mse = [&](const std::vector<Tensor>& w) { return mean(square(l.predict(w) - yq), {1, 2}); };
    ScanResult r = scan_closure(steps, fast, {}, [&](const std::vector<Tensor>& w, const std::vector<Tensor>&) {
      return ScanStep{inner_step(l, w, cfg.inner_lr, true), {mse(w)}};
    });
    for (int64_t step = 0; step < steps; ++step)
      g.add_output(fmt::format("mse_{}", step), reshape(slice(r.ys[0], {step, 0}, {step + 1, tasks}), {tasks}).value());
    g.add_output(fmt::format("mse_{}", steps), mse(r.carries).value());
    return g;
  }
  for (int64_t step = 0; step <= steps; ++step) {
    g.add_output(fmt::format("mse_{}", step), mean(square(l.predict(fast) - yq), {1, 2}).value());
    if (step < steps) fast = inner_step(l, fast, cfg.inner_lr, true);
  }
  return g;
}

}  // namespace metagrad
