#include "meta/train/supervised.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <random>

#include "meta/learn/fewshot.h"
#include "meta/train/progress.h"
#include "metagrad/autodiff.h"
#include "metagrad/driver.h"
#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/ops.h"
#include "metagrad/pipeline.h"

namespace metagrad {

namespace {

Graph train_step_graph(const SupervisedConfig& cfg, int64_t image) {
  const TransferOptions& tr = cfg.transfer;
  Graph g;
  Tensor x = input(g, "x", {cfg.batch, 1, image, image});
  Tensor y = input(g, "y", {cfg.batch}, DType::i32);
  std::vector<Tensor> params = classifier_params(g, cfg.model);
  const std::vector<ParamTransfer> plan = tr.params.empty() ? std::vector<ParamTransfer>(params.size()) : tr.params;
  Tensor loss;
  if (tr.distilling()) {
    // Student and teacher see the labelled batch and the unlabelled one stacked.
    Tensor all = x;
    if (tr.unlabelled_batch > 0) all = concat({x, input(g, "xu", {tr.unlabelled_batch, 1, image, image})}, 0);
    Tensor student = classifier_logits(all, params, cfg.model);
    Tensor teacher = classifier_logits(all, classifier_params(g, cfg.model, "teacher", false), cfg.model);
    loss = distillation_loss(student, teacher, y, tr.temperature, tr.distill_alpha);
  } else {
    loss = cross_entropy(classifier_logits(x, params, cfg.model), y);
  }
  if (tr.l2sp_alpha > 0 || tr.l2sp_beta > 0) loss = loss + l2sp_penalty(g, params, plan, tr.l2sp_alpha, tr.l2sp_beta);
  Hyper h;
  h.loss = loss;
  if (!is_hypergradient(cfg.opt.name))
    h.lr = cfg.opt.lr * schedule_factor(g, cfg.schedule, step_counter(g, "opt"), "sched");
  else if (cfg.schedule.kind != "constant" || cfg.schedule.warmup > 0)
    throw Error(fmt::format("{} adapts its own learning rate: it takes no --schedule", cfg.opt.name));
  const std::vector<Tensor> scales =
      combine_scales(lr_scales(g, cfg.lr_plan, params), transfer_lr_scales(g, plan, params, step_counter(g, "opt")));
  // Frozen parameters (multiplier 0) get no gradient, no optimizer state and no update at all.
  std::vector<Tensor> trained;
  for (size_t i = 0; i < params.size(); ++i)
    if (plan[i].lr_multiplier != 0.0) {
      trained.push_back(params[i]);
      h.lr_scale.push_back(scales[i]);
    }
  if (trained.empty()) throw Error("every parameter is frozen: nothing to train");
  OptimizerStep step = optimizer_step(g, cfg.opt, trained, grad(loss, trained), h, "opt");
  add_updates(g, trained, step);
  g.add_output("loss", loss.value());
  g.add_output("lr", step.lr.value());
  return g;
}

Graph eval_graph(const ClassifierConfig& model, int64_t batch, int64_t image) {
  Graph g;
  Tensor x = input(g, "x", {batch, 1, image, image});
  Tensor y = input(g, "y", {batch}, DType::i32);
  Tensor logits = classifier_logits(x, classifier_params(g, model), model);
  g.add_output("loss", cross_entropy(logits, y).value());
  g.add_output("accuracy", classification_accuracy(logits, y).value());
  return g;
}

void check_set(const ImageSet& s, const ClassifierConfig& model, const char* what) {
  if (s.count == 0) throw RuntimeError(fmt::format("the {} set is empty", what));
  if (s.rows != model.image || s.cols != model.image)
    throw RuntimeError(fmt::format("{} images are {}x{}, the model expects {}x{}", what, s.rows, s.cols, model.image, model.image));
  for (int32_t y : s.labels)
    if (y < 0 || y >= model.classes)
      throw RuntimeError(fmt::format("{} label {} outside the model's {} classes", what, y, model.classes));
}

}  // namespace

std::vector<double> evaluate_outputs(const std::function<Graph(int64_t)>& make_graph, ParamStore& store, const ImageSet& set,
                                     int64_t batch, const std::vector<std::string>& names, const DriverConfig* driver) {
  if (set.count == 0) throw RuntimeError("evaluation on an empty set");
  const int64_t ppi = set.pixels_per_image();
  const int64_t full = std::min(batch, set.count), chunks = (set.count + full - 1) / full;
  const TaskRange mine = (driver ? driver->shard : Shard{}).balanced(chunks);
  std::vector<std::vector<double>> sums(names.size());  // per output, per chunk of this process: mean x images
  std::unique_ptr<Executable> exe;  // for chunks of `compiled` images: the full ones, then the remainder
  int64_t compiled = 0;
  int xs = -1, ys = -1;
  for (int64_t c = mine.begin; c < mine.end; ++c) {
    const int64_t begin = c * full, n = std::min(full, set.count - begin);
    if (n != compiled) {
      Graph g = make_graph(n);
      optimize(g);
      exe = std::make_unique<Executable>(g, store, names);
      compiled = n;
      xs = exe->input_slot("x"), ys = exe->input_slot("y");
    }
    exe->set_input(xs, std::span<const float>(set.pixels.data() + begin * ppi, size_t(n * ppi)));
    exe->set_input(ys, std::span<const int32_t>(set.labels.data() + begin, size_t(n)));
    exe->run();
    for (size_t k = 0; k < names.size(); ++k) sums[k].push_back(exe->fetch(int(k))[0] * double(n));
  }
  if (driver && driver->gather) driver->gather(sums);
  std::vector<double> means(names.size(), 0.0);
  for (size_t k = 0; k < names.size(); ++k) {
    for (double s : sums[k]) means[k] += s;
    means[k] /= double(set.count);
  }
  return means;
}

EvalResult evaluate_classifier(const ClassifierConfig& model, ParamStore& store, const ImageSet& test, int64_t eval_batch,
                               const DriverConfig* driver) {
  check_set(test, model, "test");
  const std::vector<double> m = evaluate_outputs([&](int64_t n) { return eval_graph(model, n, model.image); }, store, test,
                                                 eval_batch, {"loss", "accuracy"}, driver);
  return {m[0], m[1]};
}

SupervisedResult run_training(const std::function<Graph(const GradientCombiner&)>& build_step, ParamStore& store,
                              const ImageSet& train, const LoopConfig& cfg, std::ostream* progress,
                              const EpochHook& after_epoch, const StepHook& before_step) {
  if (cfg.batch <= 0 || cfg.batch > train.count)
    throw Error(fmt::format("batch size {} must be between 1 and the {} training images", cfg.batch, train.count));
  SupervisedResult res;
  const int64_t ppi = train.pixels_per_image(), steps = train.count / cfg.batch;
  std::vector<int64_t> order(size_t(train.count));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(cfg.seed);
  // Every process shuffles the same order and copies its share of each batch.
  const TaskRange share = cfg.driver.shard.of(cfg.batch, "batch");
  std::vector<float> bx(size_t(share.size() * ppi));
  std::vector<int32_t> by(size_t(share.size()));
  double window = 0, loss_sum = 0;
  int64_t in_window = 0;
  res.curve_window = std::max<int64_t>(1, std::min(cfg.curve_every, steps / 5));
  // An epoch's time covers shuffling, batch copies and steps; evaluation is excluded.
  auto epoch_start = std::chrono::steady_clock::now();

  DriverConfig run = cfg.driver;
  run.iters = cfg.epochs * steps;
  run.opt_level = cfg.opt_level;
  run.step_counter = "";  // data order is one shuffled stream: a run always starts at step 0
  if (cfg.combine) run.combine_gradients = cfg.combine;
  run.compile = cfg.compile;
  run.compile.collective = cfg.driver.compile.collective;  // the job's, set with the plug points
  run.label = cfg.label.empty() ? "train" : cfg.label;
  run.progress = progress;
  TrainSpec spec;
  spec.build_step = build_step;
  spec.metrics = {"loss", "lr"};
  spec.batch = cfg.batch;
  spec.describe = [&](int64_t step) { return fmt::format("epoch {} of {}, its step {}", step / steps + 1, cfg.epochs, step % steps + 1); };
  spec.feed = [&](Executable& exe, int64_t step, TaskRange) {
    const int64_t s = step % steps;
    if (s == 0) {
      epoch_start = std::chrono::steady_clock::now();
      std::shuffle(order.begin(), order.end(), rng);
    }
    for (int64_t i = 0; i < share.size(); ++i) {
      const int64_t src = order[size_t(s * cfg.batch + share.begin + i)];
      std::copy_n(train.pixels.begin() + src * ppi, ppi, bx.begin() + i * ppi);
      by[size_t(i)] = train.labels[size_t(src)];
    }
    exe.set_input(exe.input_slot("x"), std::span<const float>(bx));
    exe.set_input(exe.input_slot("y"), std::span<const int32_t>(by));
    if (before_step) before_step(exe, step);
  };
  spec.after_step = [&](int64_t step, const std::vector<double>& m) {
    loss_sum += m[0];
    window += m[0];
    if (++in_window == res.curve_window) {
      res.loss_curve.push_back(window / double(in_window));
      window = 0;
      in_window = 0;
    }
    if (step % steps + 1 < steps) return;
    const int64_t epoch = step / steps + 1;
    EpochRecord rec;
    rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    rec.train_loss = loss_sum / double(steps);
    rec.lr = m[1];
    loss_sum = 0;
    if (after_epoch) after_epoch(epoch, rec);
    if (progress)
      *progress << fmt::format("\r{} epoch {}/{}: loss {:.4f}{} ({:.1f} s)\x1b[K\n", run.label, epoch, cfg.epochs,
                               rec.train_loss,
                               std::isnan(rec.test_accuracy) ? "" : fmt::format(" test acc {:.4f}", rec.test_accuracy),
                               rec.seconds);
    res.train_seconds += rec.seconds;
    res.best_accuracy = std::max(res.best_accuracy, rec.test_accuracy);
    if (res.epochs_to_85 < 0 && rec.test_accuracy >= 0.85) res.epochs_to_85 = epoch;
    res.epochs.push_back(rec);
  };
  const TrainResult t = train_loop(run, spec, store);
  res.iters = t.iters;
  res.ms_per_iter = t.ms_per_iter;
  res.ms_per_run = t.ms_per_run;
  res.cpu_ms_per_iter = t.cpu_ms_per_iter;
  res.compile = t.compile;
  return res;
}

void init_classifier(ParamStore& store, const ClassifierConfig& model, const std::string& prefix, bool trainable) {
  Graph g;
  classifier_params(g, model, prefix, trainable);
  store.ensure(g);
}

int64_t count_parameters(const ParamStore& store, const std::string& prefix) {
  int64_t n = 0;
  for (const std::string& name : store.names())
    if (name.rfind(prefix, 0) == 0) n += int64_t(store.data(name).size());
  return n;
}

SupervisedResult train_classifier(const SupervisedConfig& cfg, const ImageSet& train, const ImageSet& test,
                                  std::ostream* progress, ParamStore* external) {
  check_set(train, cfg.model, "training");
  ParamStore local;
  ParamStore& store = external ? *external : local;
  const TransferOptions& tr = cfg.transfer;
  if (!tr.params.empty() && tr.params.size() != classifier_layers(cfg.model).size() * 2)
    throw Error(fmt::format("transfer plan has {} entries, {} has {} parameters", tr.params.size(), cfg.model.model,
                            classifier_layers(cfg.model).size() * 2));
  if (tr.distilling() && !store.has("teacher." + classifier_layers(cfg.model).back() + ".w"))
    throw Error("distillation needs the teacher's weights in the store under 'teacher.'");
  // The unlabelled images would be counted once per process in the mean loss of the global batch.
  if (tr.distilling() && tr.unlabelled_batch > 0 && cfg.driver.shard.ranks > 1)
    throw Error("distillation on unlabelled images does not run data-parallel yet: start it without mpirun, or "
                "without unlabelled images");
  if (tr.unlabelled_batch > 0 && (!tr.unlabelled || tr.unlabelled->count < tr.unlabelled_batch))
    throw Error(fmt::format("{} unlabelled images per step asked for, {} available", tr.unlabelled_batch,
                            tr.unlabelled ? tr.unlabelled->count : 0));
  std::unique_ptr<Executable> plateau;
  if (cfg.schedule.kind == "plateau") plateau = std::make_unique<Executable>(plateau_update(cfg.schedule, "sched"), store);

  // L2-SP anchors hold the weights training starts from; they exist once the step is compiled.
  bool anchored = tr.l2sp_alpha <= 0;
  auto set_anchors = [&] {
    Graph g;
    std::vector<Tensor> params = classifier_params(g, cfg.model);
    for (size_t i = 0; i < params.size(); ++i)
      if (!tr.params.empty() && tr.params[i].pretrained) store.set(anchor_name(params[i]), store.data(params[i].node().name));
    anchored = true;
  };
  std::vector<float> xu;
  std::mt19937_64 pick(cfg.seed ^ 0x5eedu);
  const bool feed_unlabelled = tr.distilling() && tr.unlabelled_batch > 0;
  if (feed_unlabelled) xu.resize(size_t(tr.unlabelled_batch * train.pixels_per_image()));
  StepHook before_step = [&](Executable& exe, int64_t) {
    if (!anchored) set_anchors();
    if (!feed_unlabelled) return;
    const ImageSet& u = *tr.unlabelled;
    const int64_t ppi = u.pixels_per_image();
    for (int64_t i = 0; i < tr.unlabelled_batch; ++i)
      std::copy_n(u.pixels.begin() + int64_t(pick() % uint64_t(u.count)) * ppi, ppi, xu.begin() + i * ppi);
    exe.set_input(exe.input_slot("xu"), std::span<const float>(xu));
  };
  LoopConfig loop{cfg.epochs, cfg.batch, cfg.seed, cfg.label, cfg.curve_every, cfg.opt_level, cfg.combine, cfg.driver, cfg.compile};
  auto build = [&](const GradientCombiner& combine) {
    SupervisedConfig c = cfg;
    c.batch = cfg.driver.shard.of(cfg.batch, "batch").size();
    if (combine) c.opt.combine_gradients = combine;
    return train_step_graph(c, cfg.model.image);
  };
  SupervisedResult res = run_training(build, store, train, loop, progress, [&](int64_t epoch, EpochRecord& rec) {
    if (epoch != cfg.epochs && (cfg.eval_every <= 0 || epoch % cfg.eval_every != 0)) {
      rec.test_loss = rec.test_accuracy = std::numeric_limits<double>::quiet_NaN();
      return;
    }
    const EvalResult ev = evaluate_classifier(cfg.model, store, test, cfg.eval_batch, &cfg.driver);
    rec.test_loss = ev.loss;
    rec.test_accuracy = ev.accuracy;
    if (plateau) {
      // The plateau schedule watches the epoch's training loss.
      const float metric = float(rec.train_loss);
      plateau->run({Feed::f32("metric", {}, std::span<const float>(&metric, 1))});
    }
  }, before_step);
  res.parameters = count_parameters(store, "net.");
  if (store.has("opt.hd_cuts")) res.hd_guard_cuts = int64_t(store.data("opt.hd_cuts")[0]);
  return res;
}

}  // namespace metagrad
