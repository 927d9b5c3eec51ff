// The Learner's inner loop as one loop node against the unrolled inner loop: meta-gradients of
// every MAML-family algorithm on the sinusoid MLP and on the conv network, in f64 (reference) and
// compiled in f32, and the loop keeps the kernel count flat in the number of inner steps.
#include <gtest/gtest.h>

#include <cmath>

#include "meta/learn/fewshot.h"
#include "meta/learn/maml.h"
#include "metagrad/executable.h"
#include "metagrad/pipeline.h"
#include "metagrad/reference.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

int count_loops(const Graph& g) {
  int n = 0;
  for (const Node& node : g.nodes()) n += node.body != nullptr;
  return n;
}

struct Fed {
  std::map<std::string, std::vector<float>> f32;
  std::map<std::string, std::vector<int32_t>> i32;
  std::vector<Feed> feeds;
};
Fed to_feeds(const RefValues& v) {
  Fed f;
  for (const auto& [name, t] : v) {
    if (name[0] == 'y' && t.shape.size() == 2) {  // few-shot labels
      f.i32[name].assign(t.data.begin(), t.data.end());
      f.feeds.push_back(Feed::i32(name, t.shape, f.i32[name]));
    } else {
      f.f32[name] = testing::to_f32(t);
      f.feeds.push_back(Feed::f32(name, t.shape, f.f32[name]));
    }
  }
  return f;
}

// Compiles both objectives at -O1 and compares the loss and every "grad:" output, relative to its largest
// element; also compares the f64 reference of both.
void expect_same_meta_gradients(const Graph& unrolled, const Graph& loop, const RefValues& feeds, double f32_tol) {
  ASSERT_EQ(count_loops(unrolled), 0);
  ASSERT_GE(count_loops(loop), 1);
  std::vector<Value> gu, gl;
  std::vector<std::string> names;
  for (const auto& o : unrolled.outputs())
    if (o.name == "loss" || o.name.rfind("grad:", 0) == 0)
      names.push_back(o.name), gu.push_back(o.value), gl.push_back(loop.output(o.name));
  ASSERT_FALSE(names.empty());
  auto ru = reference_eval(unrolled, gu, feeds), rl = reference_eval(loop, gl, feeds);
  for (size_t i = 0; i < names.size(); ++i) {
    double scale = 1e-30;
    for (double v : ru[i].data) scale = std::max(scale, std::abs(v));
    for (size_t e = 0; e < ru[i].data.size(); ++e)
      ASSERT_NEAR(rl[i].data[e], ru[i].data[e], 1e-10 * scale) << "f64 " << names[i] << "[" << e << "]";
  }
  Graph ou = unrolled, ol = loop;
  optimize(ou);
  optimize(ol);
  ParamStore su, sl;
  Executable eu(ou, su, names), el(ol, sl, names);
  Fed f = to_feeds(feeds);
  eu.run(f.feeds);
  el.run(f.feeds);
  for (size_t i = 0; i < names.size(); ++i) {
    auto a = eu.fetch(i), b = el.fetch(i);
    double scale = 1e-30;
    for (float v : a) scale = std::max(scale, double(std::abs(v)));
    for (size_t e = 0; e < a.size(); ++e) ASSERT_NEAR(b[e], a[e], f32_tol * scale) << "f32 " << names[i] << "[" << e << "]";
  }
}

MamlConfig sinusoid_config(const std::string& algo) {
  MamlConfig c;
  c.algo = algo;
  c.shots = 5;
  c.query = 5;
  c.meta_batch = 3;
  c.hidden = 8;
  c.inner_lr = 0.1;
  c.inner_steps = 3;
  return c;
}

RefValues sinusoid_feeds(const MamlConfig& c) {
  RefValues f;
  f["xs"] = testing::random_ref({c.meta_batch, c.shots, 1}, 1, -2, 2);
  f["ys"] = testing::random_ref({c.meta_batch, c.shots, 1}, 2, -2, 2);
  f["xq"] = testing::random_ref({c.meta_batch, c.query, 1}, 3, -2, 2);
  f["yq"] = testing::random_ref({c.meta_batch, c.query, 1}, 4, -2, 2);
  return f;
}

class SinusoidInnerLoop : public ::testing::TestWithParam<std::string> {};

TEST_P(SinusoidInnerLoop, MetaGradientsEqualTheUnrolledLoop) {
  MamlConfig c = sinusoid_config(GetParam());
  Graph unrolled = build_maml_objective(c);
  c.inner_loop = true;
  Graph loop = build_maml_objective(c);
  expect_same_meta_gradients(unrolled, loop, sinusoid_feeds(c), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, SinusoidInnerLoop, ::testing::ValuesIn(sinusoid_algorithms()));

FewShotConfig conv_config(const std::string& algo) {
  FewShotConfig c;
  c.algo = algo;
  c.ways = 2;
  c.shots = 1;
  c.query = 2;
  c.meta_batch = 2;
  c.inner_steps = 2;
  c.inner_lr = 0.3;
  c.metric_rank = 2;
  c.net.channels = 1;
  c.net.image = 8;
  c.net.filters = 3;
  c.net.blocks = 2;
  return c;
}

RefValues conv_feeds(const FewShotConfig& c) {
  RefValues f;
  const int64_t T = c.meta_batch, s = c.ways * c.shots, q = c.ways * c.query, px = c.net.image;
  f["xs"] = testing::random_ref({T, s, 1, px, px}, 5, 0, 1);
  f["xq"] = testing::random_ref({T, q, 1, px, px}, 6, 0, 1);
  RefTensor ys{{T, s}, {}}, yq{{T, q}, {}};
  for (int64_t i = 0; i < T * s; ++i) ys.data.push_back(double((i % s) / c.shots));
  for (int64_t i = 0; i < T * q; ++i) yq.data.push_back(double((i % q) / c.query));
  f["ys"] = ys;
  f["yq"] = yq;
  return f;
}

class ConvInnerLoop : public ::testing::TestWithParam<std::string> {};

TEST_P(ConvInnerLoop, MetaGradientsEqualTheUnrolledLoop) {
  FewShotConfig c = conv_config(GetParam());
  Graph unrolled = build_fewshot_objective(c);
  c.inner_loop = true;
  Graph loop = build_fewshot_objective(c);
  expect_same_meta_gradients(unrolled, loop, conv_feeds(c), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, ConvInnerLoop,
                         ::testing::Values("maml", "fomaml", "metasgd", "anil", "reptile", "protomaml-metric"));

TEST(InnerLoop, KernelCountIsFlatInTheNumberOfSteps) {
  std::vector<size_t> kernels;
  for (int64_t steps : {2, 20}) {
    MamlConfig c = sinusoid_config("maml");
    c.inner_steps = steps;
    c.inner_loop = true;
    Graph g = build_meta_step(c);
    optimize(g);
    ParamStore store;
    Executable exe(g, store);
    kernels.push_back(exe.kernel_count());
  }
  EXPECT_EQ(kernels[0], kernels[1]);
}

}  // namespace
}  // namespace metagrad
