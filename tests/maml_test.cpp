// MAML: meta-gradients against finite differences of the post-adaptation loss, first-order MAML
// against its analytic definition, the compiled f32 step against the f64 reference, and training.
#include "meta/learn/maml.h"

#include <gtest/gtest.h>

#include "bench/drivers/sinusoid_bench.h"
#include "meta/data/sinusoid.h"
#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/ops.h"
#include "metagrad/pipeline.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

constexpr int64_t kTasks = 2, kShots = 3, kHidden = 4;

struct TinyMaml {
  Graph g;
  std::vector<Tensor> weights;  // fed as inputs so finite differences can perturb them
  Tensor xs, ys, xq, yq;
  RefValues feeds;
};

TinyMaml tiny(uint64_t seed) {
  TinyMaml t;
  Graph& g = t.g;
  std::vector<Shape> shapes{{1, kHidden}, {1, kHidden}, {kHidden, kHidden}, {1, kHidden}, {kHidden, 1}, {1, 1}};
  for (size_t i = 0; i < shapes.size(); ++i) {
    std::string name = "w" + std::to_string(i);
    t.weights.push_back(input(g, name, shapes[i]));
    t.feeds[name] = testing::random_ref(shapes[i], seed + i, -0.8, 0.8);
  }
  t.xs = input(g, "xs", {kTasks, kShots, 1});
  t.ys = input(g, "ys", {kTasks, kShots, 1});
  t.xq = input(g, "xq", {kTasks, kShots, 1});
  t.yq = input(g, "yq", {kTasks, kShots, 1});
  for (const char* n : {"xs", "ys", "xq", "yq"}) t.feeds[n] = testing::random_ref({kTasks, kShots, 1}, seed * 31 + n[1], -2, 2);
  return t;
}

Tensor query_loss(TinyMaml& t, const std::vector<Tensor>& fast) { return mean(square(sinusoid_mlp(t.xq, fast) - t.yq)); }

class MamlMetaGradient : public ::testing::TestWithParam<int64_t> {};

TEST_P(MamlMetaGradient, MatchesFiniteDifferencesOfPostAdaptationLoss) {
  TinyMaml t = tiny(11);
  // A large inner step makes the second-order terms matter.
  Tensor loss = query_loss(t, adapt(t.weights, t.xs, t.ys, GetParam(), 0.3, false));
  auto grads = grad(loss, t.weights);
  for (size_t i = 0; i < t.weights.size(); ++i) {
    std::string name = "w" + std::to_string(i);
    auto analytic = reference_eval(t.g, {grads[i].value()}, t.feeds)[0].data;
    auto fd = testing::finite_diff(t.g, loss.value(), t.feeds, name);
    for (size_t k = 0; k < fd.size(); ++k)
      EXPECT_NEAR(analytic[k], fd[k], 1e-7 * std::max(1.0, std::abs(fd[k]))) << name << "[" << k << "]";
  }
}

INSTANTIATE_TEST_SUITE_P(InnerSteps, MamlMetaGradient, ::testing::Values(1, 3));

TEST(Fomaml, EqualsFirstOrderGradientAndDiffersFromSecondOrder) {
  TinyMaml t = tiny(5);
  auto fo_fast = adapt(t.weights, t.xs, t.ys, 2, 0.3, true);
  auto fo = grad(query_loss(t, fo_fast), t.weights);
  // Analytic first-order MAML: the query gradient at the adapted weights, summed over tasks.
  auto so_fast = adapt(t.weights, t.xs, t.ys, 2, 0.3, false);
  Tensor so_loss = query_loss(t, so_fast);
  auto at_adapted = grad(so_loss, so_fast);
  auto so = grad(so_loss, t.weights);
  double max_gap = 0;
  for (size_t i = 0; i < t.weights.size(); ++i) {
    Tensor expected = sum_to_shape(at_adapted[i], t.weights[i].shape());
    auto r = reference_eval(t.g, {fo[i].value(), expected.value(), so[i].value()}, t.feeds);
    for (size_t k = 0; k < r[0].data.size(); ++k) {
      EXPECT_NEAR(r[0].data[k], r[1].data[k], 1e-12 * std::max(1.0, std::abs(r[1].data[k])));
      max_gap = std::max(max_gap, std::abs(r[0].data[k] - r[2].data[k]));
    }
  }
  EXPECT_GT(max_gap, 1e-3) << "second-order terms should change the meta-gradient";
}

TEST(MamlStep, CompiledStepEqualsReferenceStep) {
  MamlConfig cfg;
  cfg.meta_batch = 3;
  cfg.shots = cfg.query = 4;
  cfg.hidden = 8;
  cfg.inner_steps = 2;
  cfg.meta_lr = 0.01;
  Graph g = build_meta_step(cfg);
  Graph opt = g;
  optimize(opt);
  SinusoidSampler s(3);
  SinusoidBatch b;
  s.sample(b, 3, 4, 4);
  ParamStore store;
  Executable exe(opt, store);
  Shape sh{3, 4, 1};
  RefValues feeds;
  for (auto [name, v] : {std::pair{"xs", &b.xs}, {"ys", &b.ys}, {"xq", &b.xq}, {"yq", &b.yq}})
    feeds[name] = RefTensor{sh, std::vector<double>(v->begin(), v->end())};
  RefValues params;
  for (int step = 0; step < 3; ++step) {
    exe.run({Feed::f32("xs", sh, b.xs), Feed::f32("ys", sh, b.ys), Feed::f32("xq", sh, b.xq), Feed::f32("yq", sh, b.yq)});
    params = reference_step(g, feeds, params);
  }
  for (const auto& [name, ref] : params) {
    auto got = store.data(name);
    for (size_t i = 0; i < ref.data.size(); ++i)
      ASSERT_NEAR(got[i], ref.data[i], 1e-4 * std::max(1.0, std::abs(ref.data[i]))) << name << "[" << i << "]";
  }
}

TEST(MamlTraining, MetaTrainingLowersPostAdaptationError) {
  SinusoidBenchConfig cfg;
  cfg.maml.meta_lr = 0.01;
  cfg.eval_tasks = 200;
  cfg.run.iters = 0;
  auto before = run_sinusoid_bench(cfg);
  cfg.run.iters = 400;
  auto after = run_sinusoid_bench(cfg);
  EXPECT_LT(after.post.mean, 0.8 * before.post.mean)
      << "before " << before.post.mean << " after " << after.post.mean;
  EXPECT_LT(after.post.mean, after.pre.mean) << "one adaptation step should help";
  EXPECT_LT(after.train.compile.arena_bytes, after.train.compile.naive_bytes);
}

TEST(MamlConfigErrors, AreClear) {
  MamlConfig cfg;
  cfg.algo = "reptiles";
  EXPECT_THROW(build_meta_step(cfg), Error);
  cfg.algo = "maml";
  cfg.shots = 0;
  EXPECT_THROW(build_meta_step(cfg), Error);
}

}  // namespace
}  // namespace metagrad
