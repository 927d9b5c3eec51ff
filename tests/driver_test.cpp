// The driver (metagrad/driver.h) on a model of a user's own: divergence, periodic checkpoints,
// resumed training, the gradient combiner, shards and batched evaluation with a gather hook.
#include "metagrad/driver.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "bench/drivers/conv_bench.h"
#include "meta/learn/maml.h"
#include "meta/data/sinusoid.h"
#include "metagrad/autodiff.h"
#include "metagrad/checkpoint.h"
#include "metagrad/error.h"
#include "metagrad/ops.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

// Regression y = x . w_true with Adam (counter "opt.t"); the combiner reaches the optimizer step.
Graph regression_step(const GradientCombiner& combine) {
  Graph g;
  Tensor x = input(g, "x", {8, 3}), y = input(g, "y", {8, 1});
  Tensor w = parameter(g, "w", {3, 4}, Init::normal(0, 0.5, 1)), v = parameter(g, "v", {4, 1}, Init::normal(0, 0.5, 2));
  Tensor loss = mse(matmul(tanh(matmul(x, w)), v), y);
  OptimizerConfig opt;
  opt.lr = 0.01;
  opt.combine_gradients = combine;
  add_updates(g, {w, v}, optimizer_step(g, opt, {w, v}, grad(loss, {w, v})));
  g.add_output("loss", loss.value());
  return g;
}

// Batch `index` depends on the index only, so a resumed run draws what an uninterrupted one does.
// `poison_at` puts a NaN into that batch.
TrainSpec regression_spec(int64_t poison_at = -1) {
  TrainSpec s;
  s.build_step = regression_step;
  s.batch = 8;
  s.feed = [poison_at](Executable& exe, int64_t index, TaskRange) {
    std::vector<float> x(24), y(8);
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::sin(0.37 * double(index * 24 + int64_t(i))));
    for (size_t i = 0; i < y.size(); ++i) y[i] = float(std::cos(0.11 * double(index * 8 + int64_t(i))));
    if (index == poison_at) x[0] = std::numeric_limits<float>::quiet_NaN();
    exe.set_input(exe.input_slot("x"), std::span<const float>(x));
    exe.set_input(exe.input_slot("y"), std::span<const float>(y));
  };
  return s;
}

DriverConfig config(int64_t iters) {
  DriverConfig c;
  c.iters = iters;
  c.step_counter = "opt.t";
  c.label = "regression";
  return c;
}

std::vector<float> values(const ParamStore& s, const std::string& name) {
  auto d = s.data(name);
  return {d.begin(), d.end()};
}

std::string temp(const std::string& name) { return ::testing::TempDir() + "metagrad_driver_" + name; }

TEST(Driver, TrainsTimesAndAveragesTheLastTenthOfTheLoss) {
  ParamStore store;
  std::vector<double> losses;
  TrainSpec spec = regression_spec();
  spec.after_step = [&](int64_t, const std::vector<double>& m) { losses.push_back(m[0]); };
  const TrainResult r = train_loop(config(40), spec, store);
  ASSERT_EQ(losses.size(), 40u);
  EXPECT_NEAR(r.final_metrics[0], (losses[36] + losses[37] + losses[38] + losses[39]) / 4, 1e-12);
  EXPECT_EQ(r.iters, 40);
  EXPECT_GT(r.ms_per_run, 0.0);
  EXPECT_GE(r.ms_per_iter, r.ms_per_run) << "a step is its feeding plus its run()";
  EXPECT_GT(r.compile.kernels, 0u);
  EXPECT_EQ(store.data("opt.t")[0], 40.0f);
}

TEST(Driver, DivergenceStopsWithAMessageNamingTheStep) {
  ParamStore store;
  TrainSpec spec = regression_spec(/*poison_at=*/6);
  spec.describe = [](int64_t index) { return "batch " + std::to_string(index); };
  const std::string msg = testing::error_of([&] { train_loop(config(20), spec, store); });
  EXPECT_NE(msg.find("regression: training diverged at step 7 (batch 6) (loss nan)"), std::string::npos) << msg;
  EXPECT_EQ(store.data("opt.t")[0], 7.0f) << "training stops at the step that diverged";
}

TEST(Driver, SaveEveryWritesLoadableCheckpoints) {
  const std::string path = temp("every");
  ParamStore store;
  DriverConfig cfg = config(5);
  cfg.checkpoint = path;
  cfg.save_every = 2;
  std::vector<float> counters;
  cfg.on_save = [&](const ParamStore& s, const std::string& p) {
    EXPECT_EQ(p, path);
    ParamStore loaded;
    loaded.ensure(regression_step({}));
    load_checkpoint(loaded, p);  // a complete, valid checkpoint at every write
    EXPECT_EQ(values(loaded, "w"), values(s, "w"));
    counters.push_back(loaded.data("opt.t")[0]);
  };
  train_loop(cfg, regression_spec(), store);
  EXPECT_EQ(counters, (std::vector<float>{2, 4, 5}));  // every 2 steps, and after the last
  std::filesystem::remove(path);
}

TEST(Driver, ResumedTrainingEqualsAnUninterruptedRun) {
  const std::string path = temp("resume");
  ParamStore straight;
  train_loop(config(6), regression_spec(), straight);

  ParamStore first;
  DriverConfig a = config(3);
  a.checkpoint = path;
  train_loop(a, regression_spec(), first);
  ParamStore resumed;
  resumed.ensure(regression_step({}));
  load_checkpoint(resumed, path);
  const TrainResult r = train_loop(config(3), regression_spec(), resumed);
  EXPECT_EQ(r.first_index, 3);
  for (const std::string& name : straight.names()) EXPECT_EQ(values(resumed, name), values(straight, name)) << name;
  EXPECT_NE(values(first, "w"), values(straight, "w"));
  std::filesystem::remove(path);
}

TEST(Driver, TheGradientCombinerIsApplied) {
  int built = 0;
  DriverConfig cfg = config(5);
  cfg.combine_gradients = [&](Graph&, const std::vector<Tensor>& grads) {
    ++built;
    std::vector<Tensor> out;
    for (const Tensor& g : grads) out.push_back(g * 0.0);
    return out;
  };
  ParamStore init, zeroed, plain;
  init.ensure(regression_step({}));
  train_loop(cfg, regression_spec(), zeroed);
  EXPECT_EQ(built, 1) << "the step is built (and the combiner called) once";
  EXPECT_EQ(values(zeroed, "w"), values(init, "w")) << "zero gradients leave the parameters where they start";
  train_loop(config(5), regression_spec(), plain);
  EXPECT_NE(values(plain, "w"), values(init, "w"));
}

std::vector<Tensor> zero_gradients(Graph&, const std::vector<Tensor>& grads) {
  std::vector<Tensor> out;
  for (const Tensor& g : grads) out.push_back(g * 0.0);
  return out;
}

// Two steps of a benchmark's meta-step with zeroed gradients leave its weights at their start.
template <class Config, class Build, class Feed>
void expect_combined(Config cfg, Build build, Feed feed, const std::string& weight) {
  ParamStore init, zeroed, plain;
  init.ensure(build(cfg));
  for (bool zero : {true, false}) {
    Config c = cfg;
    if (zero) c.combine = zero_gradients;
    Graph g = build(c);
    ParamStore& store = zero ? zeroed : plain;
    Executable exe(g, store, {"loss"});
    for (int s = 0; s < 2; ++s) {
      feed(exe);
      exe.run();
    }
  }
  EXPECT_EQ(values(zeroed, weight), values(init, weight)) << weight;
  EXPECT_NE(values(plain, weight), values(init, weight)) << weight;
}

TEST(Driver, TheCombinerReachesTheMetaUpdatesOfTheStepBuilders) {
  MamlConfig m;
  m.meta_batch = 2;
  SinusoidSampler tasks(1);
  SinusoidBatch b;
  expect_combined(m, build_meta_step, [&](Executable& exe) {
    tasks.sample(b, 2, m.shots, m.query);
    for (const auto& [name, v] : {std::pair{"xs", &b.xs}, {"ys", &b.ys}, {"xq", &b.xq}, {"yq", &b.yq}})
      exe.set_input(exe.input_slot(name), std::span<const float>(*v));
  }, "w1");

  FewShotConfig f;
  f.ways = 2;
  f.query = 1;
  f.meta_batch = 1;
  f.net.filters = 2;
  f.net.blocks = 2;
  SyntheticEpisodes episodes(f, 3);
  EpisodeBatch e;
  expect_combined(f, build_fewshot_step, [&](Executable& exe) {
    episodes.sample(e, 1);
    exe.set_input(exe.input_slot("xs"), std::span<const float>(e.xs));
    exe.set_input(exe.input_slot("ys"), std::span<const int32_t>(e.ys));
    exe.set_input(exe.input_slot("xq"), std::span<const float>(e.xq));
    exe.set_input(exe.input_slot("yq"), std::span<const int32_t>(e.yq));
  }, "net.0.w");
}

TEST(Driver, ShardsSplitTheBatchContiguously) {
  EXPECT_EQ(Shard{}.of(10).begin, 0);
  EXPECT_EQ(Shard{}.of(10).end, 10);
  std::vector<int64_t> bounds;
  for (int r = 0; r < 3; ++r) bounds.push_back(Shard{r, 3}.of(10).begin), bounds.push_back(Shard{r, 3}.of(10).end);
  EXPECT_EQ(bounds, (std::vector<int64_t>{0, 3, 3, 6, 6, 10}));
  EXPECT_THROW(Shard({3, 3}).of(10), Error);
  int64_t seen = -1;
  TrainSpec spec = regression_spec();
  auto inner = spec.feed;
  spec.feed = [&](Executable& exe, int64_t index, TaskRange tasks) {
    seen = tasks.size();
    inner(exe, index, tasks);
  };
  DriverConfig cfg = config(1);
  cfg.shard = {1, 2};
  ParamStore store;
  train_loop(cfg, spec, store);
  EXPECT_EQ(seen, 4) << "rank 1 of 2 draws half of the batch of 8";
}

// Evaluation graph: per episode t, output "v" = 10 * t-th fed value, in batches of 4.
EvalSpec counting_eval(int64_t episodes) {
  EvalSpec e;
  e.episodes = episodes;
  e.per_batch = 4;
  e.outputs = {"v"};
  e.build = [](int64_t tasks) {
    Graph g;
    g.add_output("v", (input(g, "x", {tasks}) * 10.0).value());
    return g;
  };
  e.feed = [](Executable& exe, int64_t, TaskRange tasks) {
    std::vector<float> x;
    for (int64_t t = tasks.begin; t < tasks.end; ++t) x.push_back(float(t));
    exe.set_input(exe.input_slot("x"), std::span<const float>(x));
  };
  return e;
}

TEST(Driver, EvaluatesInBatchesAndDropsTheLastBatchsSurplus) {
  ParamStore store;
  const EvalReport r = eval_loop(DriverConfig{}, counting_eval(10), store);
  ASSERT_EQ(r.values[0].size(), 10u);
  for (size_t t = 0; t < 10; ++t) EXPECT_EQ(r.values[0][t], 10.0 * double(t));
  EXPECT_DOUBLE_EQ(r.summary[0].mean, 45.0);
  EXPECT_DOUBLE_EQ(r.summary[0].ci95, mean_ci95(r.values[0]).ci95);
}

TEST(Driver, GatherCombinesTheShardsEpisodes) {
  // Two "processes" in one: rank 1's share is evaluated, and the gather hook adds rank 0's.
  ParamStore store;
  EvalSpec e = counting_eval(10);
  DriverConfig cfg;
  cfg.shard = {1, 2};
  e.gather = [](std::vector<std::vector<double>>& v) {
    std::vector<double> all = {0, 10, 20, 30, 40};
    all.insert(all.end(), v[0].begin(), v[0].end());
    v[0] = all;
  };
  const EvalReport r = eval_loop(cfg, e, store);
  ASSERT_EQ(r.values[0].size(), 10u);
  EXPECT_EQ(r.values[0][5], 50.0) << "rank 1 evaluates episodes 5..9";
  EXPECT_DOUBLE_EQ(r.summary[0].mean, 45.0);
}

}  // namespace
}  // namespace metagrad
