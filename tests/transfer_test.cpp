// Weight transfer: the update scales (freezing, masks, gradual unfreezing, multipliers) and their
// gradients, L2-SP and distillation against hand computations, what training with them leaves in
// the store, sampling, and the transfer benchmark's reproducibility.
#include "meta/transfer/transfer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "bench/drivers/transfer_bench.h"
#include "meta/train/supervised.h"
#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/ops.h"
#include "metagrad/optimizers.h"
#include "metagrad/param_store.h"
#include "metagrad/stats.h"
#include "tests/grad_check.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

using testing::check_gradients;
using testing::error_of;
using testing::eval;
using testing::eval1;
using testing::leaf;
using testing::random_ref;
using testing::readout;

std::vector<float> values(const ParamStore& s, const std::string& name) {
  auto d = s.data(name);
  return {d.begin(), d.end()};
}

TEST(TransferScales, MultiplierUnfreezeStepAndMaskCompose) {
  Graph g;
  Tensor a = parameter(g, "a", {2}, Init::zeros()), b = parameter(g, "b", {3}, Init::zeros()), c = parameter(g, "c", {2}, Init::zeros());
  Tensor step = input(g, "step", {});
  std::vector<ParamTransfer> plan(3);
  plan[0].lr_multiplier = 0.1;
  plan[1].unfreeze_step = 4;
  plan[1].lr_multiplier = 2;
  plan[1].element_mask = true;
  std::vector<Tensor> s = transfer_lr_scales(g, plan, {a, b, c}, step);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_FALSE(s[2].defined());  // the constant 1 adds nothing to the graph
  const RefTensor mask{{3}, {1, 0, 1}};
  for (double t : {0.0, 3.0, 4.0, 9.0}) {
    std::vector<RefTensor> got = eval(g, {s[0], s[1]}, {{"step", {{}, {t}}}, {"mask.b", mask}});
    EXPECT_DOUBLE_EQ(got[0].data[0], 0.1);
    const double open = t >= 4 ? 1.0 : 0.0;
    EXPECT_EQ(got[1].data, (std::vector<double>{2 * open, 0, 2 * open})) << "step " << t;
  }
  std::vector<Tensor> both = combine_scales(s, {scalar(g, 3.0), Tensor(), Tensor()});
  EXPECT_DOUBLE_EQ(eval1(g, both[0], {{"step", {{}, {0}}}}), 0.3);
  EXPECT_EQ(both[1].value(), s[1].value());
  EXPECT_FALSE(both[2].defined());
  EXPECT_NE(error_of([&] { transfer_lr_scales(g, {ParamTransfer{}}, {a, b}, step); }).find("1 entries for 2"), std::string::npos);
  plan[0].lr_multiplier = -1;
  EXPECT_NE(error_of([&] { transfer_lr_scales(g, plan, {a, b, c}, step); }).find("negative"), std::string::npos);
}

// One masked, scaled SGD step inside the graph, then a loss of the stepped weights: the gradient
// with respect to the start weights (through the update, second order) matches finite differences.
TEST(TransferScales, GradientsThroughAMaskedUpdateFirstAndSecondOrder) {
  Graph g;
  Tensor x = input(g, "x", {3, 2});
  Tensor w = parameter(g, "w", {2, 2}, Init::zeros()), v = parameter(g, "v", {2, 1}, Init::zeros());
  auto loss_of = [&](const Tensor& w_, const Tensor& v_) { return sum(square(matmul(tanh(matmul(x, w_)), v_))); };
  Tensor inner = loss_of(w, v);
  std::vector<ParamTransfer> plan(2);
  plan[0].element_mask = true;
  plan[1].lr_multiplier = 0.5;
  Hyper h;
  h.lr = scalar(g, 0.3);
  h.lr_scale = transfer_lr_scales(g, plan, {w, v}, scalar(g, 0.0));
  OptimizerConfig sgd;
  sgd.name = "sgd";
  OptimizerStep st = optimizer_step(g, sgd, {w, v}, grad(inner, {w, v}), h);
  Tensor outer = loss_of(st.new_params[0], st.new_params[1]);
  RefValues vals{{"x", random_ref({3, 2}, 1)}, {"w", random_ref({2, 2}, 2)}, {"v", random_ref({2, 1}, 3)},
                 {"mask.w", RefTensor{{2, 2}, {1, 0, 0, 1}}}, {"opt.t", {{}, {0}}}};
  check_gradients(g, outer, {w, v, x}, vals);
  // Masked elements do not move; the others move by lr * scale * gradient.
  std::vector<RefTensor> got = eval(g, {st.new_params[0], grad(inner, {w})[0]}, vals);
  for (size_t k : {size_t(1), size_t(2)}) EXPECT_EQ(got[0].data[k], vals["w"].data[k]);
  for (size_t k : {size_t(0), size_t(3)}) EXPECT_NEAR(got[0].data[k], vals["w"].data[k] - 0.3 * got[1].data[k], 1e-12);
}

TEST(L2sp, ValueIsHalfAlphaDistanceToAnchorPlusHalfBetaNormAndGradientsCheck) {
  Graph g;
  Tensor a = parameter(g, "net.a", {2, 2}, Init::zeros()), b = parameter(g, "net.b", {3}, Init::zeros());
  std::vector<ParamTransfer> plan(2);
  plan[0].pretrained = true;
  Tensor pen = l2sp_penalty(g, {a, b}, plan, 0.4, 0.1);
  EXPECT_EQ(anchor_name(a), "sp.net.a");
  RefValues vals{{"net.a", random_ref({2, 2}, 4)}, {"net.b", random_ref({3}, 5)}, {"sp.net.a", random_ref({2, 2}, 6)}};
  double want = 0;
  for (size_t k = 0; k < 4; ++k) want += 0.2 * std::pow(vals["net.a"].data[k] - vals["sp.net.a"].data[k], 2);
  for (double v : vals["net.b"].data) want += 0.05 * v * v;
  EXPECT_NEAR(eval1(g, pen, vals), want, 1e-12);
  check_gradients(g, pen * pen, {a, b}, vals);
  EXPECT_NE(error_of([&] { l2sp_penalty(g, {a, b}, plan, -1, 0); }).find(">= 0"), std::string::npos);
}

TEST(Distillation, SoftTargetLossIsTSquaredKlAndTheTeacherGetsNoGradient) {
  Graph g;
  Tensor s = input(g, "s", {2, 3}), t = input(g, "t", {2, 3});
  Tensor y = input(g, "y", {2}, DType::i32);
  const double T = 2.5;
  Tensor soft = soft_target_loss(s, t, T);
  RefValues vals{{"s", random_ref({2, 3}, 7, -2, 2)}, {"t", random_ref({2, 3}, 8, -2, 2)}};
  double want = 0;
  for (int r = 0; r < 2; ++r) {
    double zs = 0, zt = 0;
    for (int c = 0; c < 3; ++c) {
      zs += std::exp(vals["s"].data[size_t(3 * r + c)] / T);
      zt += std::exp(vals["t"].data[size_t(3 * r + c)] / T);
    }
    for (int c = 0; c < 3; ++c) {
      const double p = std::exp(vals["t"].data[size_t(3 * r + c)] / T) / zt;
      const double q = std::exp(vals["s"].data[size_t(3 * r + c)] / T) / zs;
      want += p * std::log(p / q);
    }
  }
  want *= T * T / 2;
  EXPECT_NEAR(eval1(g, soft, vals), want, 1e-12);
  check_gradients(g, soft, {s}, vals);
  std::vector<RefTensor> dt = eval(g, {grad(soft, {t})[0]}, vals);
  for (double v : dt[0].data) EXPECT_EQ(v, 0.0);
  // Identical logits: no soft loss. alpha = 0: the plain cross-entropy.
  EXPECT_NEAR(eval1(g, soft_target_loss(s, s, T), vals), 0.0, 1e-12);
  vals["y"] = RefTensor{{2}, {2, 0}};
  EXPECT_NEAR(eval1(g, distillation_loss(s, t, y, T, 0.0), vals), eval1(g, cross_entropy(s, y), vals), 1e-12);
  EXPECT_NEAR(eval1(g, distillation_loss(s, t, y, T, 0.25), vals), 0.75 * eval1(g, cross_entropy(s, y), vals) + 0.25 * want, 1e-12);
  EXPECT_NE(error_of([&] { soft_target_loss(s, t, 0); }).find("temperature"), std::string::npos);
  EXPECT_NE(error_of([&] { distillation_loss(s, t, y, T, 1.5); }).find("[0, 1]"), std::string::npos);
  Tensor wide = input(g, "w", {2, 4});
  EXPECT_NE(error_of([&] { soft_target_loss(s, wide, T); }).find("[2,4]"), std::string::npos);
}

// A small slice of Fashion-MNIST, loaded once.
const ImageSet& small_train() {
  static const ImageSet s = [] {
    ImageSet all = load_fashion_mnist(kFashionMnistDir, true);
    std::vector<int64_t> idx(320);
    for (int64_t i = 0; i < 320; ++i) idx[size_t(i)] = i;
    return subset(all, idx);
  }();
  return s;
}

SupervisedConfig lenet_config(int64_t batch) {
  SupervisedConfig c;
  c.model.model = "lenet5";
  c.epochs = 1;
  c.batch = batch;
  c.opt.name = "adam";
  c.opt.lr = 1e-2;
  c.eval_every = 0;
  return c;
}

TEST(TransferTraining, FrozenWeightsStayBitIdenticalMaskedElementsStayAndTheRestTrain) {
  const ImageSet& train = small_train();
  SupervisedConfig cfg = lenet_config(32);  // 10 steps
  cfg.transfer.params.resize(10);
  cfg.transfer.params[0].lr_multiplier = 0;  // conv1.w frozen
  cfg.transfer.params[1].lr_multiplier = 0;  // conv1.b frozen
  cfg.transfer.params[2].element_mask = true;  // conv2.w: half its elements masked
  cfg.transfer.params[4].unfreeze_step = 1000;  // fc1.w: not yet unfrozen
  cfg.transfer.params[6].lr_multiplier = 0.1;
  ParamStore store;
  {
    Graph g;
    classifier_params(g, cfg.model);
    parameter(g, "mask.net.conv2.w", {16, 6, 5, 5}, Init::ones(), false);
    store.ensure(g);
  }
  std::vector<float> mask(16 * 6 * 5 * 5);
  for (size_t k = 0; k < mask.size(); ++k) mask[k] = float(k % 2);
  store.set("mask.net.conv2.w", mask);
  ParamStore start = store;
  train_classifier(cfg, train, train, nullptr, &store);
  EXPECT_EQ(values(store, "net.conv1.w"), values(start, "net.conv1.w"));
  EXPECT_EQ(values(store, "net.conv1.b"), values(start, "net.conv1.b"));
  EXPECT_EQ(values(store, "net.fc1.w"), values(start, "net.fc1.w"));
  EXPECT_FALSE(store.has("opt.net.conv1.w.m"));  // frozen parameters get no optimizer state
  const std::vector<float> before = values(start, "net.conv2.w"), after = values(store, "net.conv2.w");
  size_t moved = 0;
  for (size_t k = 0; k < after.size(); ++k) {
    if (mask[k] == 0) {
      EXPECT_EQ(after[k], before[k]) << k;
    }
    moved += after[k] != before[k];
  }
  EXPECT_GT(moved, after.size() / 4);
  EXPECT_NE(values(store, "net.fc2.w"), values(start, "net.fc2.w"));
  EXPECT_NE(values(store, "net.fc3.w"), values(start, "net.fc3.w"));
}

// A transfer multiplier composes with the optimizer's parameter groups: 0.5 from each trains
// exactly as 0.25 from either.
TEST(TransferTraining, MultipliersComposeWithParameterGroups) {
  const ImageSet& train = small_train();
  auto run = [&](double group, double transfer) {
    SupervisedConfig cfg = lenet_config(32);
    cfg.lr_plan.groups.push_back({"conv", {0, 1, 2, 3}, group});
    cfg.transfer.params.resize(10);
    for (int k = 0; k < 4; ++k) cfg.transfer.params[size_t(k)].lr_multiplier = transfer;
    ParamStore store;
    train_classifier(cfg, train, train, nullptr, &store);
    return values(store, "net.conv2.w");
  };
  const std::vector<float> quarter = run(0.25, 1.0);
  EXPECT_EQ(run(0.5, 0.5), quarter);
  EXPECT_EQ(run(1.0, 0.25), quarter);
  EXPECT_NE(run(1.0, 1.0), quarter);
}

TEST(TransferTraining, GradualUnfreezingStartsAtItsStep) {
  const ImageSet& train = small_train();
  for (int64_t steps : {3, 4}) {
    SupervisedConfig cfg = lenet_config(32);
    ImageSet part = subset(train, [&] {
      std::vector<int64_t> idx(size_t(32 * steps));
      for (size_t i = 0; i < idx.size(); ++i) idx[i] = int64_t(i);
      return idx;
    }());
    cfg.transfer.params.resize(10);
    cfg.transfer.params[0].unfreeze_step = 3;  // the fourth step (step counter 3) is its first update
    ParamStore store;
    init_classifier(store, cfg.model);
    ParamStore start = store;
    train_classifier(cfg, part, part, nullptr, &store);
    if (steps == 3) {
      EXPECT_EQ(values(store, "net.conv1.w"), values(start, "net.conv1.w"));
    } else {
      EXPECT_NE(values(store, "net.conv1.w"), values(start, "net.conv1.w"));
    }
    EXPECT_NE(values(store, "net.conv2.w"), values(start, "net.conv2.w"));
  }
}

TEST(TransferTraining, L2spAnchorsHoldTheStartAndDistillationNeedsItsTeacher) {
  const ImageSet& train = small_train();
  SupervisedConfig cfg = lenet_config(32);
  cfg.transfer.params.resize(10);
  for (int k = 0; k < 8; ++k) cfg.transfer.params[size_t(k)].pretrained = true;
  cfg.transfer.l2sp_alpha = 0.5;
  ParamStore store;
  init_classifier(store, cfg.model);
  ParamStore start = store;
  train_classifier(cfg, train, train, nullptr, &store);
  EXPECT_EQ(values(store, "sp.net.fc1.w"), values(start, "net.fc1.w"));
  EXPECT_FALSE(store.has("sp.net.fc3.w"));  // the head is new: no anchor

  SupervisedConfig d = lenet_config(32);
  d.transfer.distill_alpha = 0.5;
  ParamStore empty;
  EXPECT_NE(error_of([&] { train_classifier(d, train, train, nullptr, &empty); }).find("teacher"), std::string::npos);
  d.transfer.unlabelled_batch = 8;
  copy_params(store, "net", store, "net", {"fc1.w"});  // a no-op copy is allowed
  init_classifier(empty, d.model, "teacher", false);
  EXPECT_NE(error_of([&] { train_classifier(d, train, train, nullptr, &empty); }).find("8 unlabelled images"), std::string::npos);
  // With the teacher equal to the student and only soft targets, the first loss is 0 and training
  // on the unlabelled images alone keeps it tiny.
  std::vector<std::string> all;
  for (const std::string& l : classifier_layers(d.model)) all.insert(all.end(), {l + ".w", l + ".b"});
  init_classifier(empty, d.model);
  copy_params(empty, "net", empty, "teacher", all);
  d.transfer.distill_alpha = 1.0;
  d.transfer.unlabelled = &train;
  d.curve_every = 1;
  d.opt.lr = 1e-4;
  SupervisedResult r = train_classifier(d, train, train, nullptr, &empty);
  ASSERT_FALSE(r.loss_curve.empty());
  EXPECT_NEAR(r.loss_curve[0], 0.0, 1e-6);
  EXPECT_NE(error_of([&] { copy_params(store, "net", empty, "net", {"conv9.w"}); }).find("net.conv9.w"), std::string::npos);
}

TEST(Sampling, PerClassSampleIsBalancedDisjointAndSeeded) {
  const ImageSet& set = small_train();
  auto [a, rest] = sample_per_class(set, 10, 5, 3);
  EXPECT_EQ(a.count, 50);
  EXPECT_EQ(a.count + rest.count, set.count);
  std::vector<int> per(10, 0);
  for (int32_t y : a.labels) ++per[size_t(y)];
  for (int n : per) EXPECT_EQ(n, 5);
  // Every sampled image is an image of the set, and none of them is in the rest.
  std::set<std::vector<float>> sampled;
  const int64_t ppi = a.pixels_per_image();
  for (int64_t i = 0; i < a.count; ++i) sampled.insert({a.pixels.begin() + i * ppi, a.pixels.begin() + (i + 1) * ppi});
  for (int64_t i = 0; i < rest.count; ++i)
    EXPECT_FALSE(sampled.count({rest.pixels.begin() + i * ppi, rest.pixels.begin() + (i + 1) * ppi}));
  EXPECT_EQ(sample_per_class(set, 10, 5, 3).first.pixels, a.pixels);
  EXPECT_NE(sample_per_class(set, 10, 5, 4).first.pixels, a.pixels);
  testing::expect_runtime_error([&] { sample_per_class(set, 10, 200, 1); }, {"class", "200 asked for"});
  testing::expect_runtime_error([&] { subset(set, {0, 400}); }, {"index 400"});
}

TEST(TransferBench, MeanCi95UsesStudentT) {
  auto [m, ci] = mean_ci95({1, 2, 3});
  EXPECT_DOUBLE_EQ(m, 2);
  EXPECT_NEAR(ci, 4.303 * 1.0 / std::sqrt(3.0), 1e-12);
  EXPECT_DOUBLE_EQ(mean_ci95({5}).ci95, 0);
}

TEST(TransferBench, EveryStrategyRunsAndTheSearchIsReproducibleFromItsSeed) {
  TransferBenchConfig c;
  c.seeds = 1;
  c.max_source = 640;
  c.max_test = 300;
  c.source_epochs = 1;
  c.target_samples = 5;
  c.target_epochs = 2;
  c.target_batch = 5;
  c.search_epochs = 1;
  c.search_budget = 5;
  c.unlabelled_batch = 5;
  TransferBenchResult a = run_transfer_bench(c, nullptr), b = run_transfer_bench(c, nullptr);
  ASSERT_EQ(a.strategies.size(), transfer_strategies().size());
  EXPECT_EQ(a.labelled, 25);
  EXPECT_EQ(a.target_test, 300);
  for (size_t i = 0; i < a.strategies.size(); ++i) {
    const StrategyResult& s = a.strategies[i];
    ASSERT_EQ(s.accuracy.size(), 1u) << s.strategy;
    EXPECT_GE(s.accuracy[0], 0.0);
    EXPECT_LE(s.accuracy[0], 1.0);
    EXPECT_EQ(s.accuracy, b.strategies[i].accuracy) << s.strategy;
    EXPECT_EQ(s.chosen, b.strategies[i].chosen) << s.strategy;
    EXPECT_EQ(s.search_score, b.strategies[i].search_score) << s.strategy;
    if (s.strategy == "ga" || s.strategy == "sa") {
      EXPECT_EQ(s.chosen.size(), 1u);
      EXPECT_GE(s.evaluations, 2);
      EXPECT_LE(s.evaluations, 5);
    }
  }
  c.strategies = {"finetune", "nope"};
  EXPECT_NE(error_of([&] { run_transfer_bench(c, nullptr); }).find("unknown transfer strategy 'nope'"), std::string::npos);
  c.strategies = {"finetune"};
  c.data = "/nonexistent/fashion";
  EXPECT_NE(error_of([&] { run_transfer_bench(c, nullptr); }).find("/nonexistent/fashion"), std::string::npos);
}

}  // namespace
}  // namespace metagrad
