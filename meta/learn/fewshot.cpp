// Few-shot algorithms as graph. Each task is unrolled on its own (its own batch statistics, adapted
// weights and query loss) and the meta-objective is the mean over tasks.
#include "meta/learn/fewshot.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <functional>

#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/learner.h"
#include "metagrad/ops.h"
#include "metagrad/optimizers.h"

namespace metagrad {

const std::vector<FewShotAlgorithm>& fewshot_algorithm_table() {
  using A = Adapts;
  static const std::vector<FewShotAlgorithm> table = {
      {.name = "maml", .sinusoid = true},
      {.name = "fomaml", .first_order = true, .sinusoid = true, .ms_per_iter = 76},
      {.name = "metasgd", .learned_rates = true, .sinusoid = true, .ms_per_iter = 100},
      {.name = "anil", .adapts = A::head, .sinusoid = true, .ms_per_iter = 76},
      {.name = "reptile", .first_order = true, .reptile = true, .sinusoid = true, .ms_per_iter = 86, .min_eval_steps = 10},
      {.name = "protonet", .adapts = A::nothing, .head = false, .ms_per_iter = 76, .min_eval_steps = 0},
      {.name = "protonet-metric", .adapts = A::nothing, .head = false, .metric = true, .ms_per_iter = 76, .min_eval_steps = 0},
      {.name = "protomaml-metric", .adapts = A::network_and_prototypes, .head = false, .metric = true, .ms_per_iter = 124},
  };
  return table;
}

const std::vector<std::string>& fewshot_algorithms() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const FewShotAlgorithm& a : fewshot_algorithm_table()) v.push_back(a.name);
    return v;
  }();
  return names;
}

const FewShotAlgorithm& fewshot_algorithm(const std::string& name) {
  for (const FewShotAlgorithm& a : fewshot_algorithm_table())
    if (a.name == name) return a;
  throw GraphError(fmt::format("unknown few-shot algorithm '{}' (expected one of: {})", name, fmt::join(fewshot_algorithms(), ", ")));
}

bool adapts_by_gradient(const std::string& algo) { return fewshot_algorithm(algo).adapts_by_gradient(); }

namespace {

struct Task {
  Tensor xs, ys, xq, yq;
};

struct EpisodeInputs {
  Tensor xs, ys, xq, yq;
};

EpisodeInputs episode_inputs(Graph& g, const FewShotConfig& cfg, int64_t tasks) {
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

Task task_of(const EpisodeInputs& in, int64_t t) {
  return {task_rows(in.xs, t), task_rows(in.ys, t), task_rows(in.xq, t), task_rows(in.yq, t)};
}

ConvNetConfig net_of(const FewShotConfig& cfg) {
  ConvNetConfig n = cfg.net;
  n.classes = fewshot_algorithm(cfg.algo).head ? cfg.ways : 0;
  return n;
}

void check(const FewShotConfig& cfg) {
  const FewShotAlgorithm& a = fewshot_algorithm(cfg.algo);
  if (cfg.ways < 2 || cfg.shots <= 0 || cfg.query <= 0 || cfg.meta_batch <= 0 || cfg.inner_steps < 0)
    throw GraphError("few-shot: ways must be >= 2, shots, query and meta-batch positive, inner steps non-negative");
  if (a.metric && cfg.metric_rank < 0) throw GraphError("few-shot: metric rank must be non-negative");
}

// The learned metric d(q, c) = (q - c)^T (diag(s) + L L^T) (q - c), scaled by a temperature. Writing
// the matrix as A A^T with A = [diag(sqrt s) | L] turns it into a Euclidean distance between the
// projections A^T q and A^T c, so each embedding is projected once rather than every difference.
struct Metric {
  Tensor log_scale, proj, log_temp;  // [1, D], [D, r], [1, 1]
  bool defined() const { return log_scale.defined(); }
};

struct MetaParams {
  std::vector<Tensor> net;
  std::vector<Tensor> rates;  // Meta-SGD: one learned step size per element of each network tensor
  Metric metric;

  std::vector<Tensor> all() const {
    std::vector<Tensor> p = net;
    p.insert(p.end(), rates.begin(), rates.end());
    if (metric.defined()) {
      p.push_back(metric.log_scale);
      if (metric.proj.defined()) p.push_back(metric.proj);
      p.push_back(metric.log_temp);
    }
    return p;
  }
};

MetaParams meta_params(Graph& g, const FewShotConfig& cfg) {
  MetaParams p;
  const FewShotAlgorithm& a = fewshot_algorithm(cfg.algo);
  const ConvNetConfig net = net_of(cfg);
  p.net = convnet_params(g, net);
  if (a.learned_rates) p.rates = metasgd_rates(g, p.net, Init::constant(cfg.inner_lr));
  if (a.metric) {
    const int64_t d = convnet_feature_size(net);
    p.metric.log_scale = parameter(g, "metric.log_scale", {1, d}, Init::zeros());
    // Small but not zero: at L = 0 the gradient of L L^T vanishes and the low-rank term could never grow.
    if (cfg.metric_rank > 0)
      p.metric.proj = parameter(g, "metric.proj", {d, cfg.metric_rank},
                                Init::normal(0.0, 0.05, int64_t(cfg.net.seed * 64 + 62)));
    p.metric.log_temp = parameter(g, "metric.log_temp", {1, 1}, Init::zeros());
  }
  return p;
}

Tensor metric_logits(const Tensor& q, const Tensor& protos, const Metric& m) {
  if (!m.defined()) return -pairwise_sq_dist(q, protos);
  auto project = [&](const Tensor& x) {
    Tensor diag = x * exp(0.5 * m.log_scale);
    return m.proj.defined() ? concat({diag, matmul(x, m.proj)}, 1) : diag;
  };
  return -(exp(m.log_temp) * pairwise_sq_dist(project(q), project(protos)));
}

// Class means of embeddings [N*K, D] with labels [N*K] -> [N, D].
Tensor prototypes(const Tensor& emb, const Tensor& labels, int64_t ways, int64_t shots) {
  return matmul(one_hot(labels, ways), emb, /*transpose_a=*/true) * (1.0 / double(shots));
}

Learner make_learner(const MetaParams& p, const Task& t, const FewShotConfig& cfg) {
  const ConvNetConfig net = net_of(cfg);
  Learner l;
  const Adapts adapts = fewshot_algorithm(cfg.algo).adapts;
  if (adapts == Adapts::head) {
    // The body is not adapted, so its features are computed once per task.
    std::vector<Tensor> body(p.net.begin(), p.net.end() - 2);
    Tensor fs = convnet_features(t.xs, body, net), fq = convnet_features(t.xq, body, net);
    l.initial = {p.net[p.net.size() - 2], p.net.back()};
    l.support_loss = [fs, ys = t.ys](const std::vector<Tensor>& w) { return cross_entropy(linear(fs, w[0], w[1]), ys); };
    l.predict = [fq](const std::vector<Tensor>& w) { return linear(fq, w[0], w[1]); };
  } else if (adapts == Adapts::network_and_prototypes) {
    // Proto-MAML: the prototypes become adapted weights next to the embedding network, and the
    // inner loop descends the learned-metric prototype loss.
    // The adapted network starts from copies of the weights: the prototypes are made from the
    // weights themselves, and were the weights the inner loop's own starting values, the first
    // inner gradient would also follow the prototypes back into them (a total derivative where
    // every later step, and the loop form, take the partial one).
    for (const Tensor& w : p.net) l.initial.push_back(reshape(w, w.shape()));
    l.initial.push_back(prototypes(convnet_features(t.xs, p.net, net), t.ys, cfg.ways, cfg.shots));
    const size_t n = p.net.size();
    auto logits = [net, n, m = p.metric](const Tensor& x, const std::vector<Tensor>& w) {
      return metric_logits(convnet_features(x, std::vector<Tensor>(w.begin(), w.begin() + long(n)), net), w[n], m);
    };
    l.support_loss = [logits, xs = t.xs, ys = t.ys](const std::vector<Tensor>& w) {
      return cross_entropy(logits(xs, w), ys);
    };
    l.predict = [logits, xq = t.xq](const std::vector<Tensor>& w) { return logits(xq, w); };
  } else {
    l.initial = p.net;
    l.support_loss = [net, xs = t.xs, ys = t.ys](const std::vector<Tensor>& w) {
      return cross_entropy(convnet_logits(xs, w, net), ys);
    };
    l.predict = [net, xq = t.xq](const std::vector<Tensor>& w) { return convnet_logits(xq, w, net); };
    l.rates = p.rates;
  }
  return l;
}

// Query logits of a prototypical network: support and query embedded in one pass, so batch
// statistics cover the whole episode as they do in the gradient-based methods' query pass.
Tensor protonet_logits(const MetaParams& p, const Task& t, const FewShotConfig& cfg) {
  const int64_t s = t.xs.dim(0), q = t.xq.dim(0);
  Tensor emb = convnet_features(concat({t.xs, t.xq}, 0), p.net, net_of(cfg));
  const int64_t d = emb.dim(1);
  Tensor es = slice(emb, {0, 0}, {s, d}), eq = slice(emb, {s, 0}, {s + q, d});
  return metric_logits(eq, prototypes(es, t.ys, cfg.ways, cfg.shots), p.metric);
}

// Reptile adapts on all of a training task's examples; there is no support/query split to respect.
Learner reptile_training_learner(const MetaParams& p, const Task& t, const FewShotConfig& cfg) {
  Task all{concat({t.xs, t.xq}, 0), concat({t.ys, t.yq}, 0), t.xq, t.yq};
  return make_learner(p, all, cfg);
}

Tensor accumulate(const Tensor& total, const Tensor& x) { return total.defined() ? total + x : x; }

struct Objective {
  MetaParams params;
  Tensor loss, accuracy;
  std::vector<Tensor> grads;  // of the mean query loss, or Reptile's pseudo-gradient
};

Objective build_objective(Graph& g, const FewShotConfig& cfg) {
  check(cfg);
  const int64_t T = cfg.meta_batch;
  EpisodeInputs in = episode_inputs(g, cfg, T);
  Objective o;
  o.params = meta_params(g, cfg);
  const double inv = 1.0 / double(T);
  const FewShotAlgorithm& a = fewshot_algorithm(cfg.algo);
  std::vector<Tensor> pseudo;  // Reptile: mean over tasks of (parameters - adapted weights)
  for (int64_t ti = 0; ti < T; ++ti) {
    Task t = task_of(in, ti);
    Tensor logits;
    if (!a.adapts_by_gradient()) {
      logits = protonet_logits(o.params, t, cfg);
    } else {
      Learner l = a.reptile ? reptile_training_learner(o.params, t, cfg) : make_learner(o.params, t, cfg);
      std::vector<Tensor> fast = adapt(l, cfg.inner_steps, cfg.inner_lr, a.first_order, cfg.inner_loop);
      logits = l.predict(fast);
      if (a.reptile) {
        std::vector<Tensor> d = reptile_direction(l.initial, fast, T);
        pseudo.resize(d.size());
        for (size_t i = 0; i < d.size(); ++i) pseudo[i] = accumulate(pseudo[i], d[i]);
      }
    }
    o.loss = accumulate(o.loss, cross_entropy(logits, t.yq));
    o.accuracy = accumulate(o.accuracy, classification_accuracy(logits, t.yq));
  }
  o.loss = o.loss * inv;
  o.accuracy = o.accuracy * inv;
  if (a.reptile) {
    o.grads = pseudo;
  } else {
    o.grads = grad(o.loss, o.params.all());
  }
  return o;
}

}  // namespace

Tensor classification_accuracy(const Tensor& logits, const Tensor& labels) {
  Tensor label_logit = sum(logits * one_hot(labels, logits.dim(-1)), {-1});
  return mean(greater_equal(label_logit, max(logits, {-1})));
}

Graph build_fewshot_step(const FewShotConfig& cfg) {
  Graph g;
  Objective o = build_objective(g, cfg);
  add_meta_update(g, o.params.all(), o.grads, cfg.meta_lr, cfg.combine);
  g.add_output("loss", o.loss.value());
  g.add_output("accuracy", o.accuracy.value());
  return g;
}

Graph build_fewshot_objective(const FewShotConfig& cfg) {
  Graph g;
  Objective o = build_objective(g, cfg);
  g.add_output("loss", o.loss.value());
  add_gradient_outputs(g, o.params.all(), o.grads);
  return g;
}

Graph build_fewshot_eval(const FewShotConfig& cfg, int64_t tasks, int64_t steps) {
  check(cfg);
  if (!adapts_by_gradient(cfg.algo)) steps = 0;
  Graph g;
  EpisodeInputs in = episode_inputs(g, cfg, tasks);
  MetaParams p = meta_params(g, cfg);
  std::vector<std::vector<Tensor>> acc(size_t(steps + 1)), loss(size_t(steps + 1));
  auto record = [&](int64_t s, const Tensor& logits, const Tensor& labels) {
    acc[size_t(s)].push_back(reshape(classification_accuracy(logits, labels), {1}));
    loss[size_t(s)].push_back(reshape(cross_entropy(logits, labels), {1}));
  };
  for (int64_t ti = 0; ti < tasks; ++ti) {
    Task t = task_of(in, ti);
    if (!adapts_by_gradient(cfg.algo)) {
      record(0, protonet_logits(p, t, cfg), t.yq);
      continue;
    }
    Learner l = make_learner(p, t, cfg);
    std::vector<Tensor> fast = l.initial;
    for (int64_t s = 0; s <= steps; ++s) {
      record(s, l.predict(fast), t.yq);
      if (s < steps) fast = inner_step(l, fast, cfg.inner_lr, true);
    }
  }
  for (int64_t s = 0; s <= steps; ++s) {
    g.add_output(fmt::format("accuracy_{}", s), concat(acc[size_t(s)], 0).value());
    g.add_output(fmt::format("loss_{}", s), concat(loss[size_t(s)], 0).value());
  }
  return g;
}

}  // namespace metagrad
