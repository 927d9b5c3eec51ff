#include "bench/drivers/learned_schedule.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <random>

#include "meta/train/progress.h"
#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/ops.h"
#include "metagrad/optimizers.h"
#include "metagrad/pipeline.h"
#include "metagrad/scan.h"

namespace metagrad {

namespace {

// Final validation loss after `unroll` SGD steps from the fixed initialisation with rates lrs[k].
// Inputs: xtr [K, B, 1, H, W], ytr [K, B], xval [V, 1, H, W], yval [V].
Tensor unrolled_val_loss(Graph& g, const LearnedScheduleConfig& cfg, const Tensor& lrs) {
  const int64_t K = cfg.unroll, B = cfg.batch, H = cfg.model.image;
  Tensor xtr = input(g, "xtr", {K, B, 1, H, H}), ytr = input(g, "ytr", {K, B}, DType::i32);
  Tensor xval = input(g, "xval", {cfg.val_batch, 1, H, H}), yval = input(g, "yval", {cfg.val_batch}, DType::i32);
  // The initial weights are state, not trained: every unroll starts from the same point.
  std::vector<Tensor> w = classifier_params(g, cfg.model, "init", /*trainable=*/false);
  if (cfg.inner_loop) {
    // One loop node over the K steps: the minibatches and rates are its stacked inputs.
    Tensor rates = reshape(lrs, {K, 1});
    w = scan_closure(K, w, {xtr, ytr, rates}, [&](const std::vector<Tensor>& ws, const std::vector<Tensor>& s) {
          std::vector<Tensor> gr = grad(cross_entropy(classifier_logits(s[0], ws, cfg.model), s[1]), ws);
          Tensor lr = reshape(s[2], {});
          std::vector<Tensor> next;
          for (size_t i = 0; i < ws.size(); ++i) next.push_back(ws[i] - lr * gr[i]);
          return ScanStep{next, {}};
        }).carries;
    return cross_entropy(classifier_logits(xval, w, cfg.model), yval);
  }
  for (int64_t k = 0; k < K; ++k) {
    Tensor xb = reshape(slice(xtr, {k, 0, 0, 0, 0}, {k + 1, B, 1, H, H}), {B, 1, H, H});
    Tensor yb = reshape(slice(ytr, {k, 0}, {k + 1, B}), {B});
    std::vector<Tensor> gr = grad(cross_entropy(classifier_logits(xb, w, cfg.model), yb), w);
    Tensor lr = reshape(slice(lrs, {k}, {k + 1}), {});
    for (size_t i = 0; i < w.size(); ++i) w[i] = w[i] - lr * gr[i];
  }
  return cross_entropy(classifier_logits(xval, w, cfg.model), yval);
}

struct Sampler {
  const LearnedScheduleConfig& cfg;
  std::mt19937_64 rng;
  std::vector<float> xtr, xval;
  std::vector<int32_t> ytr, yval;
  void draw(const ImageSet& train, const ImageSet& val) {
    const int64_t ppi = train.pixels_per_image(), n = cfg.unroll * cfg.batch;
    xtr.resize(size_t(n * ppi));
    ytr.resize(size_t(n));
    xval.resize(size_t(cfg.val_batch * ppi));
    yval.resize(size_t(cfg.val_batch));
    auto fill = [&](const ImageSet& s, int64_t count, std::vector<float>& x, std::vector<int32_t>& y) {
      std::uniform_int_distribution<int64_t> pick(0, s.count - 1);
      for (int64_t i = 0; i < count; ++i) {
        const int64_t j = pick(rng);
        std::copy_n(s.pixels.begin() + j * ppi, ppi, x.begin() + i * ppi);
        y[size_t(i)] = s.labels[size_t(j)];
      }
    };
    fill(train, n, xtr, ytr);
    fill(val, cfg.val_batch, xval, yval);
  }
  void feed(Executable& e) const {
    e.set_input(e.input_slot("xtr"), std::span<const float>(xtr));
    e.set_input(e.input_slot("ytr"), std::span<const int32_t>(ytr));
    e.set_input(e.input_slot("xval"), std::span<const float>(xval));
    e.set_input(e.input_slot("yval"), std::span<const int32_t>(yval));
  }
};

// Scores schedules on the same fresh unrolls (the same batches for every schedule).
class Scorer {
 public:
  Scorer(const LearnedScheduleConfig& cfg, ParamStore& store) : cfg_(cfg) {
    Tensor lrs = input(g_, "lrs", {cfg.unroll});
    g_.add_output("loss", unrolled_val_loss(g_, cfg, lrs).value());
    optimize(g_);
    exe_ = std::make_unique<Executable>(g_, store, std::vector<std::string>{}, cfg.run.compile);
  }
  ScheduleScore score(const std::vector<double>& lrs, const ImageSet& train, const ImageSet& val, const ImageSet& test) {
    std::vector<float> l(lrs.begin(), lrs.end());
    Sampler s{cfg_, std::mt19937_64(cfg_.seed * 7919 + 5), {}, {}, {}, {}};
    std::vector<double> v, t;
    for (int64_t u = 0; u < cfg_.eval_unrolls; ++u) {
      s.draw(train, val);
      v.push_back(run(s, l));
      s.draw(train, test);
      t.push_back(run(s, l));
    }
    const MeanCi mv = mean_ci95(v), mt = mean_ci95(t);
    return {mv.mean, mv.ci95, mt.mean};
  }

 private:
  double run(Sampler& s, const std::vector<float>& l) {
    s.feed(*exe_);
    exe_->set_input(exe_->input_slot("lrs"), std::span<const float>(l));
    exe_->run();
    const double loss = exe_->fetch(0)[0];
    return std::isfinite(loss) ? loss : 1e9;  // a diverging rate scores as hopeless, not as an error
  }
  const LearnedScheduleConfig& cfg_;
  Graph g_;
  std::unique_ptr<Executable> exe_;
};

}  // namespace

LearnedScheduleResult learn_schedule(const LearnedScheduleConfig& cfg, const ImageSet& train, const ImageSet& val,
                                     const ImageSet& test) {
  if (cfg.unroll <= 0 || cfg.batch <= 0 || cfg.val_batch <= 0 || cfg.eval_unrolls <= 0 || cfg.grid.empty())
    throw Error("learned schedule: unroll, batch, val-batch, eval-unrolls must be positive and the grid non-empty");
  auto t0 = std::chrono::steady_clock::now();
  ParamStore store;
  Scorer scorer(cfg, store);
  LearnedScheduleResult r;
  ProgressBar gbar(cfg.run.progress, int64_t(cfg.grid.size()), "constant-rate grid");
  for (size_t i = 0; i < cfg.grid.size(); ++i) {
    ScheduleScore s = scorer.score(std::vector<double>(size_t(cfg.unroll), cfg.grid[i]), train, val, test);
    r.grid_val_loss.push_back(s.val_loss);
    if (i == 0 || s.val_loss < r.best_constant.val_loss) r.best_constant = s, r.best_constant_lr = cfg.grid[i];
    gbar.update(int64_t(i + 1), fmt::format("lr {} -> {:.4f}", cfg.grid[i], s.val_loss));
  }
  gbar.finish(fmt::format("best constant lr {} (val loss {:.4f})", r.best_constant_lr, r.best_constant.val_loss));

  // Meta-training: rates parameterised by their logarithm (positive, scale-free steps),
  // started from the best constant, trained by Adam on the unrolled validation loss.
  TrainSpec step;
  step.build_step = [&](const GradientCombiner& combine) {
    Graph g;
    Tensor log_lr = parameter(g, "schedule.log_lr", {cfg.unroll}, Init::constant(std::log(r.best_constant_lr)));
    Tensor loss = unrolled_val_loss(g, cfg, exp(log_lr));
    OptimizerConfig adam;
    adam.lr = cfg.meta_lr;
    adam.combine_gradients = combine;
    add_updates(g, {log_lr}, optimizer_step(g, adam, {log_lr}, grad(loss, {log_lr}), {}, "meta"));
    g.add_output("loss", loss.value());
    return g;
  };
  Sampler s{cfg, std::mt19937_64(cfg.seed * 104729 + 3), {}, {}, {}, {}};
  step.feed = [&](Executable& exe, int64_t, TaskRange) {
    s.draw(train, val);
    s.feed(exe);
  };
  step.after_step = [&](int64_t, const std::vector<double>& m) { r.meta_loss_curve.push_back(m[0]); };
  r.train = train_loop(cfg.run, step, store);
  for (float v : store.data("schedule.log_lr")) r.schedule.push_back(std::exp(double(v)));
  r.learned = scorer.score(r.schedule, train, val, test);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace metagrad
