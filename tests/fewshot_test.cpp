// The few-shot family: every algorithm's meta-gradient against finite differences of its
// meta-objective on a tiny conv network (f64 reference interpreter), Reptile's direction against its
// definition, the learned metric against the Euclidean one it generalises, the sinusoid variants,
// and the compiled step against the reference.
#include <gtest/gtest.h>

#include <cmath>

#include "meta/learn/fewshot.h"
#include "meta/learn/maml.h"
#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/ops.h"
#include "metagrad/pipeline.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

FewShotConfig tiny_config(const std::string& algo) {
  FewShotConfig c;
  c.algo = algo;
  c.ways = 2;
  c.shots = 1;
  c.query = 2;
  c.meta_batch = 2;
  c.inner_steps = 1;
  c.inner_lr = 0.5;  // large, so that second-order terms matter
  c.metric_rank = 2;
  c.net.channels = 1;
  c.net.image = 4;
  c.net.filters = 2;
  c.net.blocks = 1;
  return c;
}

RefValues episode_feeds(const FewShotConfig& c, uint64_t seed) {
  RefValues f;
  const int64_t T = c.meta_batch, s = c.ways * c.shots, q = c.ways * c.query, px = c.net.image;
  f["xs"] = testing::random_ref({T, s, 1, px, px}, seed, 0, 1);
  f["xq"] = testing::random_ref({T, q, 1, px, px}, seed + 1, 0, 1);
  RefTensor ys{{T, s}, {}}, yq{{T, q}, {}};
  for (int64_t i = 0; i < T * s; ++i) ys.data.push_back(double((i % s) / c.shots));
  for (int64_t i = 0; i < T * q; ++i) yq.data.push_back(double((i % q) / c.query));
  f["ys"] = ys;
  f["yq"] = yq;
  return f;
}

// Random values for every trainable parameter (away from initialisers' special points such as
// zero biases or a unit metric, where some terms vanish).
RefValues random_params(const Graph& g, uint64_t seed) {
  RefValues p;
  for (const Node& n : g.nodes()) {
    if (n.kind != NodeKind::Parameter || !n.trainable) continue;
    double lo = -0.5, hi = 0.5;
    if (n.name.rfind("metasgd.", 0) == 0) lo = 0.1, hi = 0.6;
    if (n.name.find("gamma") != std::string::npos) lo = 0.5, hi = 1.5;
    p[n.name] = testing::random_ref(n.type().shape, seed + uint64_t(n.id), lo, hi);
  }
  return p;
}

// Central differences of the graph's "loss" with respect to every element of one parameter.
std::vector<double> param_finite_diff(const Graph& g, const RefValues& feeds, RefValues params, const std::string& name,
                                      double h = 1e-6) {
  Value loss = g.output("loss");
  std::vector<double> out(params.at(name).data.size());
  for (size_t k = 0; k < out.size(); ++k) {
    const double x0 = params[name].data[k];
    params[name].data[k] = x0 + h;
    const double fp = reference_eval(g, {loss}, feeds, params)[0].data[0];
    params[name].data[k] = x0 - h;
    const double fm = reference_eval(g, {loss}, feeds, params)[0].data[0];
    params[name].data[k] = x0;
    out[k] = (fp - fm) / (2 * h);
  }
  return out;
}

void expect_meta_gradient_matches_finite_differences(const Graph& g, const RefValues& feeds, const RefValues& params) {
  size_t checked = 0;
  for (const NamedOutput& o : g.outputs()) {
    if (o.name.rfind("grad:", 0) != 0) continue;
    const std::string name = o.name.substr(5);
    const auto analytic = reference_eval(g, {o.value}, feeds, params)[0].data;
    const auto fd = param_finite_diff(g, feeds, params, name);
    ASSERT_EQ(analytic.size(), fd.size()) << name;
    for (size_t k = 0; k < fd.size(); ++k)
      EXPECT_NEAR(analytic[k], fd[k], 2e-6 * std::max(1.0, std::abs(fd[k]))) << name << "[" << k << "]";
    ++checked;
  }
  EXPECT_GT(checked, 0u);
}

class FewShotMetaGradient : public ::testing::TestWithParam<std::string> {};

TEST_P(FewShotMetaGradient, MatchesFiniteDifferencesOfTheMetaObjective) {
  FewShotConfig c = tiny_config(GetParam());
  Graph g = build_fewshot_objective(c);
  expect_meta_gradient_matches_finite_differences(g, episode_feeds(c, 3), random_params(g, 40));
}

INSTANTIATE_TEST_SUITE_P(Algorithms, FewShotMetaGradient,
                         ::testing::Values("maml", "metasgd", "anil", "protonet", "protonet-metric", "protomaml-metric"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

TEST(FewShotMetaGradient, TwoInnerStepsOfMaml) {
  FewShotConfig c = tiny_config("maml");
  c.inner_steps = 2;
  c.meta_batch = 1;
  Graph g = build_fewshot_objective(c);
  expect_meta_gradient_matches_finite_differences(g, episode_feeds(c, 5), random_params(g, 50));
}

TEST(FewShotMetaGradient, FirstOrderMamlDropsSecondOrderTerms) {
  FewShotConfig c = tiny_config("fomaml");
  Graph fo = build_fewshot_objective(c);
  c.algo = "maml";
  Graph so = build_fewshot_objective(c);
  RefValues feeds = episode_feeds(c, 7), params = random_params(so, 60);
  const Value fo_w = fo.output("grad:net.0.w"), so_w = so.output("grad:net.0.w");
  auto a = reference_eval(fo, {fo_w}, feeds, params)[0].data, b = reference_eval(so, {so_w}, feeds, params)[0].data;
  double gap = 0, size = 0;
  for (size_t k = 0; k < a.size(); ++k) gap = std::max(gap, std::abs(a[k] - b[k])), size = std::max(size, std::abs(b[k]));
  EXPECT_GT(gap, 1e-4 * size) << "first-order MAML should differ from MAML through the conv weights";
  // ...but both see the same loss: the forward computation is identical.
  EXPECT_DOUBLE_EQ(reference_eval(fo, {fo.output("loss")}, feeds, params)[0].data[0],
                   reference_eval(so, {so.output("loss")}, feeds, params)[0].data[0]);
}

TEST(Reptile, DirectionIsInnerLrTimesTheTaskGradientForOneStep) {
  FewShotConfig c = tiny_config("reptile");
  c.meta_batch = 1;
  Graph g = build_fewshot_objective(c);
  RefValues feeds = episode_feeds(c, 9), params = random_params(g, 70);
  // Independently: one SGD step on all of the task's examples moves theta by lr * gradient.
  Graph ref;
  ConvNetConfig net = c.net;
  net.classes = c.ways;
  auto w = convnet_params(ref, net);
  const int64_t s = c.ways * c.shots, q = c.ways * c.query, px = c.net.image;
  Tensor xs = input(ref, "xs", {1, s, 1, px, px}), xq = input(ref, "xq", {1, q, 1, px, px});
  Tensor ys = input(ref, "ys", {1, s}, DType::i32), yq = input(ref, "yq", {1, q}, DType::i32);
  Tensor x = concat({reshape(xs, {s, 1, px, px}), reshape(xq, {q, 1, px, px})}, 0);
  Tensor y = concat({reshape(ys, {s}), reshape(yq, {q})}, 0);
  auto grads = grad(cross_entropy(convnet_logits(x, w, net), y), w);
  for (size_t i = 0; i < w.size(); ++i) {
    const std::string name = w[i].node().name;
    auto got = reference_eval(g, {g.output("grad:" + name)}, feeds, params)[0].data;
    auto want = reference_eval(ref, {grads[i].value()}, feeds, params)[0].data;
    for (size_t k = 0; k < got.size(); ++k)
      EXPECT_NEAR(got[k], c.inner_lr * want[k], 1e-12 * std::max(1.0, std::abs(want[k]))) << name << "[" << k << "]";
  }
}

TEST(LearnedMetric, AtTheIdentityEqualsTheEuclideanPrototypeLoss) {
  FewShotConfig c = tiny_config("protonet-metric");
  Graph metric = build_fewshot_objective(c);
  c.algo = "protonet";
  Graph plain = build_fewshot_objective(c);
  RefValues feeds = episode_feeds(c, 11), params = random_params(plain, 80);
  const int64_t d = params.at("net.0.w").data.size() ? convnet_feature_size(c.net) : 0;
  params["metric.log_scale"] = RefTensor{{1, d}, std::vector<double>(size_t(d), 0.0)};
  params["metric.proj"] = RefTensor{{d, c.metric_rank}, std::vector<double>(size_t(d * c.metric_rank), 0.0)};
  params["metric.log_temp"] = RefTensor{{1, 1}, {0.0}};
  const double a = reference_eval(metric, {metric.output("loss")}, feeds, params)[0].data[0];
  const double b = reference_eval(plain, {plain.output("loss")}, feeds, params)[0].data[0];
  EXPECT_NEAR(a, b, 1e-12);
  // A non-trivial metric changes the loss.
  params["metric.log_temp"].data[0] = 0.7;
  EXPECT_GT(std::abs(reference_eval(metric, {metric.output("loss")}, feeds, params)[0].data[0] - b), 1e-3);
}

TEST(FewShotStep, CompiledStepEqualsReferenceForEveryAlgorithm) {
  for (const std::string& algo : fewshot_algorithms()) {
    FewShotConfig c = tiny_config(algo);
    c.net.image = 8;
    c.meta_lr = 0.01;
    Graph g = build_fewshot_step(c), opt = g;
    optimize(opt);
    RefValues feeds = episode_feeds(c, 13);
    ParamStore store;
    Executable exe(opt, store);
    // Feeds refer to their values, so the values live as long as the feeds.
    std::map<std::string, std::vector<float>> f32s;
    std::map<std::string, std::vector<int32_t>> i32s;
    std::vector<Feed> fs;
    for (const auto& [name, t] : feeds) {
      if (name[0] == 'y') {
        i32s[name].assign(t.data.begin(), t.data.end());
        fs.push_back(Feed::i32(name, t.shape, i32s[name]));
      } else {
        f32s[name] = testing::to_f32(t);
        fs.push_back(Feed::f32(name, t.shape, f32s[name]));
      }
    }
    RefValues params;
    for (int step = 0; step < 2; ++step) {
      exe.run(fs);
      params = reference_step(g, feeds, params);
    }
    for (const auto& [name, ref] : params) {
      auto got = store.data(name);
      for (size_t i = 0; i < ref.data.size(); ++i)
        ASSERT_NEAR(got[i], ref.data[i], 2e-3 * std::max(1.0, std::abs(ref.data[i]))) << algo << " " << name << "[" << i << "]";
    }
  }
}

TEST(FewShotConfigErrors, AreClear) {
  FewShotConfig c = tiny_config("mamal");
  EXPECT_NE(testing::error_of([&] { build_fewshot_step(c); }).find("unknown few-shot algorithm 'mamal'"),
            std::string::npos);
  c.algo = "maml";
  c.ways = 1;
  EXPECT_NE(testing::error_of([&] { build_fewshot_step(c); }).find("ways"), std::string::npos);
}

// --- sinusoid variants ---

MamlConfig tiny_sinusoid(const std::string& algo) {
  MamlConfig c;
  c.algo = algo;
  c.shots = 3;
  c.query = 3;
  c.meta_batch = 2;
  c.hidden = 4;
  c.inner_lr = 0.3;
  return c;
}

RefValues sinusoid_feeds(const MamlConfig& c, uint64_t seed) {
  RefValues f;
  f["xs"] = testing::random_ref({c.meta_batch, c.shots, 1}, seed, -2, 2);
  f["ys"] = testing::random_ref({c.meta_batch, c.shots, 1}, seed + 1, -2, 2);
  f["xq"] = testing::random_ref({c.meta_batch, c.query, 1}, seed + 2, -2, 2);
  f["yq"] = testing::random_ref({c.meta_batch, c.query, 1}, seed + 3, -2, 2);
  return f;
}

class SinusoidMetaGradient : public ::testing::TestWithParam<std::string> {};

TEST_P(SinusoidMetaGradient, MatchesFiniteDifferences) {
  MamlConfig c = tiny_sinusoid(GetParam());
  c.inner_steps = 2;
  Graph g = build_maml_objective(c);
  expect_meta_gradient_matches_finite_differences(g, sinusoid_feeds(c, 21), random_params(g, 90));
}

INSTANTIATE_TEST_SUITE_P(Algorithms, SinusoidMetaGradient, ::testing::Values("maml", "metasgd", "anil"));

TEST(SinusoidReptile, DirectionIsInnerLrTimesMeanTaskGradient) {
  MamlConfig c = tiny_sinusoid("reptile");
  Graph g = build_maml_objective(c);
  RefValues feeds = sinusoid_feeds(c, 31), params = random_params(g, 100);
  Graph ref;
  auto w = sinusoid_mlp_params(ref, c.hidden, c.seed);
  Tensor xs = input(ref, "xs", {2, 3, 1}), ys = input(ref, "ys", {2, 3, 1});
  Tensor xq = input(ref, "xq", {2, 3, 1}), yq = input(ref, "yq", {2, 3, 1});
  Tensor x = concat({xs, xq}, 1), y = concat({ys, yq}, 1);
  // Each task's own gradient at theta, averaged over tasks: the mean of per-task MSE gradients.
  auto grads = grad(sum(mean(square(sinusoid_mlp(x, w) - y), {1, 2})) * 0.5, w);
  for (size_t i = 0; i < w.size(); ++i) {
    const std::string name = w[i].node().name;
    auto got = reference_eval(g, {g.output("grad:" + name)}, feeds, params)[0].data;
    auto want = reference_eval(ref, {grads[i].value()}, feeds, params)[0].data;
    for (size_t k = 0; k < got.size(); ++k)
      EXPECT_NEAR(got[k], c.inner_lr * want[k], 1e-12 * std::max(1.0, std::abs(want[k]))) << name << "[" << k << "]";
  }
}

}  // namespace
}  // namespace metagrad
