#include "meta/models/multitask.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "meta/transfer/sharing.h"
#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/ops.h"
#include "metagrad/pipeline.h"

namespace metagrad {

namespace {

// Leading convolutions, which the moe mode keeps as its trunk (the MLP has none).
size_t conv_layers(const ClassifierConfig& model) { return model.model == "lenet5" ? 2 : 0; }

// classifier_params' tensors of layers [first, last). The whole set is declared in a scratch graph
// and only the wanted ones re-declared in g, so a mode creates no parameter it never reads (it would
// be counted, and stepped by the optimizer) while keeping classifier_params' initialisation exactly.
std::vector<Tensor> layer_params(Graph& g, const ClassifierConfig& model, const std::string& prefix, size_t first,
                                 size_t last) {
  Graph scratch;
  const std::vector<Tensor> all = classifier_params(scratch, model, prefix);
  std::vector<Tensor> out;
  for (size_t i = 2 * first; i < 2 * last; ++i) {
    const Node& n = all[i].node();
    out.emplace_back(&g, g.add_parameter(n.name, all[i].type(), n.init, n.attrs, n.trainable));
  }
  return out;
}

// Inputs x, y of a batch of n and the mode's model on them.
MultitaskModel model_on_inputs(Graph& g, const MultitaskConfig& cfg, int64_t n) {
  Tensor x = input(g, "x", {n, 1, cfg.model.image, cfg.model.image});
  Tensor y = input(g, "y", {n}, DType::i32);
  return multitask_model(g, x, y, multitask_weights(g, cfg), cfg);
}

void check_labels(const ImageSet& set, const MultitaskConfig& cfg, const char* what) {
  for (const TaskSpec& t : cfg.tasks)
    for (int32_t y : set.labels)
      if (y < 0 || size_t(y) >= t.label_map.size())
        throw RuntimeError(fmt::format("{} label {} is outside task '{}', which maps labels 0..{}", what, y, t.name,
                                       t.label_map.size() - 1));
}

}  // namespace

const std::vector<TaskSpec>& fashion_tasks() {
  static const std::vector<TaskSpec> tasks = {
      {"class", 10, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
      //            T-shirt trouser pullover dress coat sandal shirt sneaker bag boot
      {"group", 3, {1, 2, 1, 2, 1, 0, 1, 0, 2, 0}},
  };
  return tasks;
}

const std::vector<MultitaskMode>& multitask_mode_table() {
  using T = TrunkSharing;
  static const std::vector<MultitaskMode> table = {
      {.name = "single"},
      {.name = "hard", .trunk = T::shared},
      {.name = "hard-uncertainty", .trunk = T::shared, .uncertainty = true},
      {.name = "soft", .tie = true},
      {.name = "cross-stitch", .cross_stitch = true},
      {.name = "moe", .trunk = T::convolutions_then_experts},
  };
  return table;
}

const std::vector<std::string>& multitask_modes() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const MultitaskMode& m : multitask_mode_table()) v.push_back(m.name);
    return v;
  }();
  return names;
}

const MultitaskMode& multitask_mode(const std::string& name) {
  for (const MultitaskMode& m : multitask_mode_table())
    if (m.name == name) return m;
  throw GraphError(fmt::format("unknown multi-task mode '{}' (expected {})", name, fmt::join(multitask_modes(), ", ")));
}

Tensor task_targets(const Tensor& y, const TaskSpec& task) {
  const int64_t in = int64_t(task.label_map.size()), out = task.classes;
  if (in == 0 || out <= 0) throw GraphError(fmt::format("task '{}' has an empty label map or no classes", task.name));
  std::vector<double> map(size_t(in * out), 0.0);
  for (int64_t c = 0; c < in; ++c) {
    const int32_t l = task.label_map[size_t(c)];
    if (l < 0 || l >= out)
      throw GraphError(fmt::format("task '{}' maps label {} to {}, outside its {} classes", task.name, c, l, out));
    map[size_t(c * out + l)] = 1.0;
  }
  return matmul(one_hot(y, in), constant(y.graph(), {in, out}, map));
}

Tensor target_cross_entropy(const Tensor& logits, const Tensor& target) {
  if (logits.shape() != target.shape() || logits.rank() != 2)
    throw ShapeError(fmt::format("target_cross_entropy: logits {} and targets {} must both be [N, C]",
                                 shape_str(logits.shape()), shape_str(target.shape())));
  return -mean(sum(target * log_softmax(logits, -1), {1}));
}

Tensor target_accuracy(const Tensor& logits, const Tensor& target) {
  return mean(greater_equal(sum(logits * target, {-1}), max(logits, {-1})));
}

ClassifierConfig task_model(const MultitaskConfig& cfg, size_t task) {
  ClassifierConfig m = cfg.model;
  m.classes = cfg.tasks.at(task).classes;
  m.seed = cfg.model.seed * cfg.tasks.size() + task;
  return m;
}

MultitaskWeights multitask_weights(Graph& g, const MultitaskConfig& cfg) {
  const MultitaskMode& mode = multitask_mode(cfg.mode);
  if (cfg.tasks.empty()) throw GraphError("multi-task model without tasks");
  const size_t layers = classifier_layers(cfg.model).size();
  MultitaskWeights w;
  if (mode.trunk == TrunkSharing::shared) {
    w.trunks.push_back(layer_params(g, task_model(cfg, 0), "net.trunk", 0, layers - 1));
  } else if (mode.trunk == TrunkSharing::convolutions_then_experts) {
    if (conv_layers(cfg.model) == 0)
      throw GraphError(
          fmt::format("multi-task mode 'moe' needs a convolutional trunk; model '{}' has none", cfg.model.model));
    w.trunks.push_back(layer_params(g, task_model(cfg, 0), "net.trunk", 0, conv_layers(cfg.model)));
  } else {
    for (size_t t = 0; t < cfg.tasks.size(); ++t)
      w.trunks.push_back(layer_params(g, task_model(cfg, t), "net." + cfg.tasks[t].name, 0, layers - 1));
  }
  for (size_t t = 0; t < cfg.tasks.size(); ++t)
    w.heads.push_back(layer_params(g, task_model(cfg, t), "net." + cfg.tasks[t].name, layers - 1, layers));
  return w;
}

MultitaskModel multitask_model(Graph& g, const Tensor& x, const Tensor& y, const MultitaskWeights& w,
                               const MultitaskConfig& cfg) {
  const size_t tasks = cfg.tasks.size(), layers = classifier_layers(cfg.model).size();
  if (w.heads.size() != tasks || w.trunks.empty())
    throw GraphError(
        fmt::format("multi-task model: {} heads and {} trunks for {} tasks", w.heads.size(), w.trunks.size(), tasks));
  auto trunk_layer = [&](const Tensor& h, size_t trunk, size_t i) {
    return classifier_layer(h, w.trunks[trunk][2 * i], w.trunks[trunk][2 * i + 1], cfg.model, i);
  };
  const MultitaskMode& mode = multitask_mode(cfg.mode);
  std::vector<Tensor> h(tasks, x);  // each task's activation
  Tensor extra;                     // tie penalty or balance loss
  if (mode.trunk == TrunkSharing::shared) {
    Tensor s = x;
    for (size_t i = 0; i + 1 < layers; ++i) s = trunk_layer(s, 0, i);
    h.assign(tasks, s);
  } else if (mode.trunk == TrunkSharing::convolutions_then_experts) {
    Tensor s = x;
    for (size_t i = 0; i < conv_layers(cfg.model); ++i) s = trunk_layer(s, 0, i);
    if (s.rank() != 2) s = reshape(s, {s.dim(0), -1});
    // The experts take the place of every fully connected layer before the heads.
    // Its initialiser seeds (seed * 8 + k, k < 3) stay clear of the towers' ((seed * T + t) * 16 + k) for seed >= 1.
    MoeLayer moe = mixture_of_experts(g, s, cfg.experts, w.heads[0][0].dim(0), cfg.top_k, "net.moe", cfg.model.seed);
    h.assign(tasks, relu(moe.output));
    extra = moe.balance_loss * cfg.balance_weight;
  } else {
    if (w.trunks.size() != tasks)
      throw GraphError(fmt::format("multi-task mode '{}' needs one trunk per task: {} for {} tasks", cfg.mode,
                                   w.trunks.size(), tasks));
    for (size_t i = 0; i + 1 < layers; ++i) {
      for (size_t t = 0; t < tasks; ++t) h[t] = trunk_layer(h[t], t, i);
      if (mode.cross_stitch)
        h = cross_stitch(g, h, fmt::format("net.stitch{}", i + 1), cfg.stitch_self_weight);
    }
    if (mode.tie) extra = l2_tie_penalty(w.trunks, cfg.tie_strength);
  }
  MultitaskModel m;
  for (size_t t = 0; t < tasks; ++t) {
    Tensor logits = classifier_layer(h[t], w.heads[t][0], w.heads[t][1], cfg.model, layers - 1);
    Tensor target = task_targets(y, cfg.tasks[t]);
    m.logits.push_back(logits);
    m.losses.push_back(target_cross_entropy(logits, target));
    m.accuracies.push_back(target_accuracy(logits, target));
  }
  // Towers that share nothing ("single") train exactly as separate networks under the summed loss:
  // each tower's gradient is its own task's, and the optimizer acts elementwise.
  m.loss = weighted_task_loss(g, m.losses, mode.uncertainty ? "uncertainty" : "fixed", {}, "net.mtl");
  if (extra.defined()) m.loss = m.loss + extra;
  return m;
}

int64_t multitask_parameter_count(const MultitaskConfig& cfg) {
  Graph g;
  model_on_inputs(g, cfg, 1);
  ParamStore store;
  store.ensure(g);
  return count_parameters(store, "net.");
}

TaskMetrics evaluate_multitask(const MultitaskConfig& cfg, ParamStore& store, const ImageSet& set) {
  std::vector<std::string> names;
  for (const TaskSpec& t : cfg.tasks) {
    names.push_back("loss." + t.name);
    names.push_back("accuracy." + t.name);
  }
  const std::vector<double> v = evaluate_outputs(
      [&](int64_t n) {
        Graph g;
        MultitaskModel m = model_on_inputs(g, cfg, n);
        for (size_t t = 0; t < cfg.tasks.size(); ++t) {
          g.add_output(names[2 * t], m.losses[t].value());
          g.add_output(names[2 * t + 1], m.accuracies[t].value());
        }
        return g;
      },
      store, set, cfg.eval_batch, names, &cfg.driver);
  TaskMetrics out;
  for (size_t t = 0; t < cfg.tasks.size(); ++t) {
    out.loss.push_back(v[2 * t]);
    out.accuracy.push_back(v[2 * t + 1]);
  }
  return out;
}

MultitaskResult train_multitask(const MultitaskConfig& cfg, const ImageSet& train, const ImageSet& test,
                                std::ostream* progress, ParamStore* external) {
  check_labels(train, cfg, "training");
  check_labels(test, cfg, "test");
  ParamStore local;
  ParamStore& store = external ? *external : local;
  auto build = [&](const GradientCombiner& combine) {
    Graph g;
    MultitaskModel m = model_on_inputs(g, cfg, cfg.driver.shard.of(cfg.batch, "batch").size());
    // Every trainable parameter, including those the sharing blocks created.
    std::vector<Tensor> params;
    for (const Node& n : g.nodes())
      if (n.kind == NodeKind::Parameter && n.trainable) params.emplace_back(&g, Value{n.id, 0});
    Hyper h;
    h.loss = m.loss;
    OptimizerConfig opt = cfg.opt;
    if (combine) opt.combine_gradients = combine;
    OptimizerStep step = optimizer_step(g, opt, params, grad(m.loss, params), h, "opt");
    add_updates(g, params, step);
    g.add_output("loss", m.loss.value());
    g.add_output("lr", step.lr.value());
    return g;
  };

  MultitaskResult res;
  LoopConfig loop;
  loop.epochs = cfg.epochs;
  loop.batch = cfg.batch;
  loop.seed = cfg.seed;
  loop.label = cfg.label;
  loop.combine = cfg.combine;
  loop.driver = cfg.driver;
  loop.compile = cfg.compile;
  res.training = run_training(build, store, train, loop, progress, [&](int64_t, EpochRecord& rec) {
    res.epoch_test.push_back(evaluate_multitask(cfg, store, test));
    rec.test_loss = res.epoch_test.back().loss[0];
    rec.test_accuracy = res.epoch_test.back().accuracy[0];
  });
  res.test = res.epoch_test.empty() ? evaluate_multitask(cfg, store, test) : res.epoch_test.back();
  res.parameters = res.training.parameters = count_parameters(store, "net.");
  if (multitask_mode(cfg.mode).uncertainty)
    for (size_t t = 0; t < cfg.tasks.size(); ++t)
      res.task_weights.push_back(std::exp(-double(store.data(fmt::format("net.mtl.log_var.{}", t))[0])));
  return res;
}

}  // namespace metagrad
