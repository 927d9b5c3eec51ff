// Passes: each rewrite on its own (with a negative twin), and every pipeline checked for meaning
// with the f64 reference interpreter before and after, on random graphs and a gradient graph.
#include <gtest/gtest.h>

#include <random>

#include "graph/op_def.h"
#include "meta/learn/fewshot.h"
#include "meta/learn/maml.h"
#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/ops.h"
#include "metagrad/pipeline.h"
#include "passes/common_subexpr_elim.h"
#include "passes/constant_fold.h"
#include "passes/dead_code_elim.h"
#include "passes/fuse_elementwise.h"
#include "passes/rematerialize.h"
#include "passes/schedule.h"
#include "passes/simplify.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

size_t count_op(const Graph& g, const std::string& op) {
  size_t n = 0;
  for (const Node& node : g.nodes()) n += node.kind == NodeKind::Op && node.op->name == op;
  return n;
}

// Evaluates every output of `g` in f64.
std::vector<RefTensor> eval_outputs(const Graph& g, const RefValues& feeds) {
  std::vector<Value> vs;
  for (const auto& o : g.outputs()) vs.push_back(o.value);
  return reference_eval(g, vs, feeds);
}

void expect_same_meaning(const Graph& before, const Graph& after, const RefValues& feeds) {
  auto a = eval_outputs(before, feeds), b = eval_outputs(after, feeds);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].shape, b[i].shape);
    for (size_t k = 0; k < a[i].data.size(); ++k)
      ASSERT_NEAR(a[i].data[k], b[i].data[k], 1e-9 * std::max(1.0, std::abs(a[i].data[k]))) << "output " << i;
  }
}

TEST(Simplify, RemovesIdentitiesAndKeepsRealWork) {
  Graph g;
  Tensor x = input(g, "x", {2, 3});
  Tensor y = ((x * 1.0 + 0.0) - 0.0) / 1.0;
  Tensor z = reshape(reshape(transpose(transpose(y, {1, 0}), {1, 0}), {3, 2}), {2, 3});
  g.add_output("z", neg(neg(z)).value());
  Graph before = g;
  EXPECT_TRUE(simplify(g));
  eliminate_dead_code(g);
  EXPECT_EQ(g.output("z"), (Value{0, 0})) << "everything was an identity of x";
  expect_same_meaning(before, g, {{"x", testing::random_ref({2, 3}, 1)}});

  // Negative twin: multiplying by 2 and broadcasting by +0 to a larger shape are real work.
  Graph h;
  Tensor a = input(h, "a", {3});
  h.add_output("b", (a * 2.0 + full(h, {2, 3}, 0.0)).value());
  Graph h0 = h;
  simplify(h);
  EXPECT_EQ(count_op(h, "mul"), 1u);
  EXPECT_EQ(h.type(h.output("b")).shape, (Shape{2, 3}));
  expect_same_meaning(h0, h, {{"a", testing::random_ref({3}, 2)}});
}

TEST(Simplify, ElementwiseOpsReadThroughBroadcastsThatKeepTheirShape) {
  Graph g;
  Tensor x = input(g, "x", {4, 3}), y = input(g, "y", {1, 3}), z = input(g, "z", {3});
  Tensor kept = x * broadcast_to(y, {4, 3});                              // x has the full shape
  Tensor needed = broadcast_to(y, {4, 3}) + broadcast_to(z, {4, 3});  // only broadcasts: one must stay
  g.add_output("kept", kept.value());
  g.add_output("needed", needed.value());
  Graph before = g;
  EXPECT_TRUE(simplify(g));
  eliminate_dead_code(g);
  EXPECT_EQ(count_op(g, "broadcast_to"), 1u);
  EXPECT_EQ(g.type(g.output("needed")).shape, (Shape{4, 3}));
  expect_same_meaning(before, g,
                      {{"x", testing::random_ref({4, 3}, 1)}, {"y", testing::random_ref({1, 3}, 2)},
                       {"z", testing::random_ref({3}, 3)}});
}

// mean's gradient is broadcast_to(g) / n: the division moves before the broadcast, and the
// broadcast then disappears into the next full-size reader.
TEST(Simplify, OpsOnBroadcastsRunSmallAndBroadcastTheirResult) {
  Graph g;
  Tensor x = input(g, "x", {4, 3}), y = input(g, "y", {1, 3});
  Tensor scaled = -(broadcast_to(y, {4, 3}) / 12.0);
  g.add_output("out", (x * scaled).value());
  g.add_output("scaled", scaled.value());  // still needed at full size: one broadcast stays
  Graph before = g;
  EXPECT_TRUE(simplify(g));
  eliminate_dead_code(g);
  EXPECT_EQ(count_op(g, "broadcast_to"), 1u);
  for (const Node& n : g.nodes()) {
    if (n.kind == NodeKind::Op && (n.op->name == "div" || n.op->name == "neg")) {
      EXPECT_EQ(n.type().shape, (Shape{1, 3})) << n.op->name << " runs on the small operand";
    }
  }
  EXPECT_EQ(g.type(g.output("scaled")).shape, (Shape{4, 3}));
  expect_same_meaning(before, g, {{"x", testing::random_ref({4, 3}, 1)}, {"y", testing::random_ref({1, 3}, 2)}});
}

// Two independent "tasks", each a big forward chain whose values its own backward-like tail
// reads again; built task-interleaved, so the builder's order holds both tasks' chains at once.
TEST(Schedule, FinishesOneChainBeforeStartingTheNextAndKeepsMeaning) {
  Graph g;
  Tensor x1 = input(g, "x1", {256}), x2 = input(g, "x2", {256});
  Tensor a1 = exp(broadcast_to(reshape(x1, {1, 256}), {64, 256}));
  Tensor a2 = exp(broadcast_to(reshape(x2, {1, 256}), {64, 256}));
  Tensor b1 = tanh(a1), b2 = tanh(a2);
  Tensor s1 = sum(b1 * a1), s2 = sum(b2 * a2);
  g.add_output("s", (s1 + s2).value());
  Graph before = g;
  std::vector<int> order(g.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
  const size_t old_peak = estimated_peak_bytes(g, order);
  ASSERT_TRUE(schedule_for_memory(g));
  for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
  EXPECT_LT(estimated_peak_bytes(g, order), old_peak);
  EXPECT_FALSE(schedule_for_memory(g)) << "a second run finds nothing better";
  expect_same_meaning(before, g, {{"x1", testing::random_ref({256}, 1)}, {"x2", testing::random_ref({256}, 2)}});
}

// Four tasks whose first large activation frees a small input: scheduling by least growth alone
// would start every task's activation before finishing any (peak about 4 large tensors plus their
// partners); continuing the current chain keeps the peak near one task's working set.
TEST(Schedule, ContinuesTheCurrentChainWhenNothingFreesMemory) {
  Graph g;
  constexpr int64_t kTasks = 4, kBig = 64 * 256;
  Tensor x = input(g, "x", {kTasks, 256});
  std::vector<Tensor> bigs;  // built task-interleaved: every task's big tensor first
  for (int64_t t = 0; t < kTasks; ++t) {
    Tensor small = reshape(slice(x, {t, 0}, {t + 1, 256}), {1, 256});
    bigs.push_back(broadcast_to(small * 2.0, {64, 256}));  // frees `small * 2`, grows by kBig
  }
  Tensor total;
  for (const Tensor& big : bigs) {
    Tensor s = sum(tanh(big) * big);  // tanh grows by kBig (big stays live); the product frees both
    total = total.defined() ? total + s : s;
  }
  g.add_output("s", total.value());
  Graph before = g;
  ASSERT_TRUE(schedule_for_memory(g));
  std::vector<int> order(g.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
  EXPECT_LE(estimated_peak_bytes(g, order), size_t(3 * kBig * 4 + 4096)) << "one task's big tensors at a time";
  expect_same_meaning(before, g, {{"x", testing::random_ref({kTasks, 256}, 1)}});
}

// Batch norm's shape: xc = x - mean, x_hat = xc * rstd feeds the forward and, much later, the
// backward, which reads xc too. Recomputing x_hat there lets it die in the forward.
Graph batch_norm_like_graph() {
  Graph g;
  Tensor x = input(g, "x", {16, 8, 32, 32});
  Tensor dy = input(g, "dy", {16, 8, 32, 32});
  Tensor xc = x - mean(x, {0, 2, 3}, true);
  Tensor rstd = rsqrt(mean(square(xc), {0, 2, 3}, true) + 1e-5);
  Tensor x_hat = xc * rstd;
  Tensor y = exp(x_hat);                 // the forward reader
  Tensor loss = sum(y);                  // forward ends: y dies here
  Tensor d_gamma = sum(dy * x_hat, {0, 2, 3});  // the late reader
  Tensor d_x = dy * xc;                  // xc is read in the backward anyway
  g.add_output("loss", loss.value());
  g.add_output("d_gamma", d_gamma.value());
  g.add_output("d_x", sum(d_x, {0, 2, 3}).value());
  return g;
}

TEST(Rematerialize, RecomputesAtLateReaderAndKeepsMeaning) {
  Graph g = batch_norm_like_graph();
  Graph before = g;
  const size_t muls = count_op(g, "mul");
  ASSERT_TRUE(rematerialize(g));
  EXPECT_EQ(count_op(g, "mul"), muls + 1) << "x_hat is computed twice";
  expect_same_meaning(before, g, {{"x", testing::random_ref({16, 8, 32, 32}, 1)}, {"dy", testing::random_ref({16, 8, 32, 32}, 2)}});
}

TEST(Rematerialize, LowersPeakOfThePipelineAndKeepsMeaning) {
  Graph g = batch_norm_like_graph();
  Graph with = g, without = g;
  PipelineOptions no_remat;
  no_remat.disabled = {"remat"};
  optimize(with);
  optimize(without, no_remat);
  auto peak = [](const Graph& h) {
    std::vector<int> order(h.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
    return estimated_peak_bytes(h, order);
  };
  EXPECT_LT(peak(with), peak(without));
  expect_same_meaning(g, with, {{"x", testing::random_ref({16, 8, 32, 32}, 3)}, {"dy", testing::random_ref({16, 8, 32, 32}, 4)}});
}

// A first-layer convolution: a large output from a small image batch and small weights, read in
// the forward and again in the backward. One copy is made before the second reader.
TEST(Rematerialize, RemakesExpandingOpsOnceForTheirLateReaders) {
  Graph g;
  Tensor x = input(g, "x", {8, 1, 16, 16}), w = input(g, "w", {32, 1, 3, 3});
  Tensor img = x * 1.0;                    // an op (not a resident input), still small
  Tensor y = conv2d(img, w, {1, 1}, {1, 1});  // 8*32*16*16 floats = 256 KiB, 32x its operands
  Tensor forward = sum(tanh(y));
  Tensor late1 = sum(y * y), late2 = sum(exp(y));
  g.add_output("s", (forward + late1 + late2).value());
  Graph before = g;
  ASSERT_TRUE(rematerialize(g));
  EXPECT_EQ(count_op(g, "conv2d"), 2u) << "one copy shared by both late readers";
  expect_same_meaning(before, g, {{"x", testing::random_ref({8, 1, 16, 16}, 1)}, {"w", testing::random_ref({32, 1, 3, 3}, 2)}});
}

TEST(Rematerialize, LeavesValuesWhoseOperandsWouldHaveToBeKeptAlive) {
  Graph g;
  Tensor x = input(g, "x", {64, 1024});
  Tensor a = exp(x);         // a large operand read only by b
  Tensor b = a * 2.0;        // read early and late
  Tensor early = sum(tanh(b));
  Tensor other = sum(exp(x * 3.0));
  Tensor late = sum(b * x);  // recomputing b here would need `a` alive until now
  g.add_output("s", (early + other + late).value());
  EXPECT_FALSE(rematerialize(g));
}

TEST(Schedule, ConvMamlStepPeakDropsAndMeaningHolds) {
  FewShotConfig cfg;
  cfg.meta_batch = 2;
  cfg.net.filters = 4;
  cfg.net.blocks = 2;
  cfg.net.image = 8;
  cfg.query = 2;
  Graph g = build_fewshot_step(cfg);
  PipelineOptions no_schedule;
  no_schedule.disabled = {"schedule"};
  Graph plain = g;
  optimize(plain, no_schedule);
  Graph scheduled = plain;
  std::vector<int> order(plain.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
  const size_t old_peak = estimated_peak_bytes(plain, order);
  ASSERT_TRUE(schedule_for_memory(scheduled));
  EXPECT_LT(estimated_peak_bytes(scheduled, order), old_peak);
  RefValues feeds{{"xs", testing::random_ref({2, 5, 1, 8, 8}, 1)}, {"xq", testing::random_ref({2, 10, 1, 8, 8}, 2)}};
  RefTensor ys{{2, 5}, {}}, yq{{2, 10}, {}};
  for (int i = 0; i < 10; ++i) ys.data.push_back(i % 5);
  for (int i = 0; i < 20; ++i) yq.data.push_back((i * 3) % 5);
  feeds["ys"] = ys;
  feeds["yq"] = yq;
  expect_same_meaning(plain, scheduled, feeds);
  expect_same_meaning(g, scheduled, feeds);  // the raw second-order step vs the whole pipeline
}

TEST(CommonSubexprElim, MergesEqualNodesOnly) {
  Graph g;
  Tensor x = input(g, "x", {4});
  Tensor a = exp(x) * 2.0, b = exp(x) * 2.0, c = exp(x) * 3.0;
  g.add_output("s", (a + b + c).value());
  Graph before = g;
  EXPECT_TRUE(eliminate_common_subexpressions(g));
  eliminate_dead_code(g);
  EXPECT_EQ(count_op(g, "exp"), 1u);
  EXPECT_EQ(count_op(g, "mul"), 2u) << "x*2 merged, x*3 kept";
  expect_same_meaning(before, g, {{"x", testing::random_ref({4}, 3)}});
  EXPECT_FALSE(eliminate_common_subexpressions(g)) << "a second run finds nothing";
}

TEST(ConstantFold, FoldsSmallConstantSubgraphsOnly) {
  Graph g;
  Tensor x = input(g, "x", {3});
  Tensor k = exp(scalar(g, 1.0)) * 2.0;  // foldable
  g.add_output("y", (x * k).value());
  g.add_output("big", (x + full(g, {3}, 1.0)).value());
  Graph before = g;
  EXPECT_TRUE(fold_constants(g));
  eliminate_dead_code(g);
  EXPECT_EQ(count_op(g, "exp"), 0u);
  EXPECT_EQ(count_op(g, "broadcast_to"), 1u) << "broadcasts are not folded";
  expect_same_meaning(before, g, {{"x", testing::random_ref({3}, 4)}});
}

TEST(DeadCodeElim, KeepsInterfaceDropsUnread) {
  Graph g;
  Tensor x = input(g, "x", {3});
  Tensor unused_in = input(g, "unused", {2});
  Tensor w = parameter(g, "w", {3}, Init::ones());
  exp(x);  // dead
  g.add_output("y", (x * w).value());
  EXPECT_TRUE(eliminate_dead_code(g));
  EXPECT_EQ(count_op(g, "exp"), 0u);
  EXPECT_GE(g.find("unused"), 0);
  EXPECT_FALSE(eliminate_dead_code(g));
  (void)unused_in;
}

TEST(FuseElementwise, ChainsBecomeOneNodeSharedValuesStay) {
  Graph g;
  Tensor x = input(g, "x", {4, 5});
  Tensor b = input(g, "b", {5});
  Tensor h = relu(x * 2.0 + b);          // mul, add, relu: one group
  Tensor shared = exp(x);                // read twice: stays materialized
  g.add_output("y", (h * shared + shared).value());
  Graph before = g;
  EXPECT_TRUE(fuse_elementwise(g));
  EXPECT_EQ(count_op(g, "exp"), 1u);
  EXPECT_EQ(count_op(g, "relu"), 0u);
  EXPECT_GE(count_op(g, "fused_elementwise"), 1u);
  expect_same_meaning(before, g, {{"x", testing::random_ref({4, 5}, 12)}, {"b", testing::random_ref({5}, 13)}});

  // Negative twin: a lone op, and a reduction of a value something else reads too, are left alone.
  Graph h2;
  Tensor a = input(h2, "a", {3});
  Tensor e = exp(a);
  h2.add_output("s", sum(e).value());
  h2.add_output("e", e.value());
  EXPECT_FALSE(fuse_elementwise(h2));
}

TEST(FuseElementwise, ReductionsOfElementwiseChainsBecomeOneFusedReduce) {
  Graph g;
  Tensor x = input(g, "x", {6, 4, 3, 5}), dy = input(g, "dy", {6, 4, 3, 5}), s = input(g, "s", {1, 4, 1, 1});
  Tensor d_gamma = sum(dy * (x * s), {0, 2, 3});       // batch norm's scale gradient
  Tensor var = mean(square(x - s), {0, 2, 3}, true);   // and its variance
  g.add_output("d_gamma", d_gamma.value());
  g.add_output("var", var.value());
  Graph before = g;
  EXPECT_TRUE(fuse_elementwise(g));
  EXPECT_EQ(count_op(g, "fused_reduce"), 2u);
  EXPECT_EQ(count_op(g, "sum") + count_op(g, "mean") + count_op(g, "mul"), 0u);
  expect_same_meaning(before, g,
                      {{"x", testing::random_ref({6, 4, 3, 5}, 1)}, {"dy", testing::random_ref({6, 4, 3, 5}, 2)},
                       {"s", testing::random_ref({1, 4, 1, 1}, 3)}});
}

// Random graphs of elementwise, reduction, shape and matmul ops: the pipeline keeps meaning.
Graph random_graph(uint64_t seed, RefValues& feeds) {
  std::mt19937_64 rng(seed);
  Graph g;
  std::vector<Tensor> pool;
  for (int i = 0; i < 3; ++i) {
    std::string name = "x" + std::to_string(i);
    pool.push_back(input(g, name, {3, 4}));
    feeds[name] = testing::random_ref({3, 4}, seed * 10 + uint64_t(i), 0.5, 1.5);
  }
  auto pick = [&] { return pool[rng() % pool.size()]; };
  for (int i = 0; i < 25; ++i) {
    Tensor a = pick(), b = pick(), r;
    switch (rng() % 10) {
      case 0: r = a + b; break;
      case 1: r = a * b; break;
      case 2: r = a - b * 1.0; break;
      case 3: r = tanh(a) + 0.0; break;
      case 4: r = reshape(reshape(a, {4, 3}), {3, 4}); break;
      case 5: r = transpose(transpose(a, {1, 0}), {1, 0}); break;
      case 6: r = broadcast_to(sum(a, {1}, true), {3, 4}); break;
      case 7: r = matmul(a, b, false, true) * 0.1; r = matmul(r, a); break;
      case 8: r = exp(a * 0.1) * exp(a * 0.1); break;
      default: r = sigmoid(a) / 1.0; break;
    }
    pool.push_back(r);
  }
  g.add_output("out", sum(pool.back() + pool[pool.size() - 2]).value());
  g.add_output("mid", pool[pool.size() / 2].value());
  return g;
}

TEST(Pipeline, RandomGraphsKeepTheirMeaning) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    RefValues feeds;
    Graph g = random_graph(seed, feeds);
    Graph before = g;
    auto records = optimize(g);
    EXPECT_LE(g.size(), before.size());
    expect_same_meaning(before, g, feeds);
  }
}

TEST(Pipeline, SecondOrderGradientGraphKeepsMeaningAndShrinks) {
  Graph g;
  Tensor x = input(g, "x", {5, 3});
  Tensor w = input(g, "w", {3, 4});
  Tensor loss = sum(square(tanh(matmul(x, w))));
  Tensor gw = grad(loss, {w})[0];
  Tensor g2 = grad(sum(gw * gw), {w})[0];
  g.add_output("g2", g2.value());
  Graph before = g;
  auto records = optimize(g);
  EXPECT_LT(g.size(), before.size());
  expect_same_meaning(before, g, {{"x", testing::random_ref({5, 3}, 5)}, {"w", testing::random_ref({3, 4}, 6)}});
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.front().nodes_before, before.size());
}

TEST(Pipeline, MamlMetaStepKeepsMeaning) {
  for (const char* algo : {"maml", "fomaml"}) {
    MamlConfig cfg;
    cfg.algo = algo;
    cfg.meta_batch = 3;
    cfg.shots = cfg.query = 4;
    cfg.hidden = 6;
    cfg.inner_steps = 2;
    Graph g = build_meta_step(cfg);
    Graph before = g;
    optimize(g);
    EXPECT_LT(g.size(), before.size());
    RefValues feeds;
    for (const char* n : {"xs", "ys", "xq", "yq"}) feeds[n] = testing::random_ref({3, 4, 1}, uint64_t(n[1]), -3, 3);
    expect_same_meaning(before, g, feeds);
    // The updates (new weights and Adam state) agree too.
    RefValues a = reference_step(before, feeds, {}), b = reference_step(g, feeds, {});
    for (const auto& [name, t] : a)
      for (size_t k = 0; k < t.data.size(); ++k)
        ASSERT_NEAR(b.at(name).data[k], t.data[k], 1e-9 * std::max(1.0, std::abs(t.data[k]))) << algo << " " << name;
  }
}

TEST(Pipeline, OptLevelZeroAndUnknownPass) {
  Graph g;
  Tensor x = input(g, "x", {2});
  g.add_output("y", (x * 1.0).value());
  Graph before = g;
  PipelineOptions none;
  none.opt_level = 0;
  EXPECT_TRUE(optimize(g, none).empty());
  EXPECT_EQ(g.size(), before.size());
  PipelineOptions bad;
  bad.disabled = {"nonesuch"};
  EXPECT_THROW(optimize(g, bad), Error);
  std::string dumped;
  PipelineOptions o;
  o.dump_after = "simplify";
  o.dump = [&](const std::string& pass, const Graph&) { dumped = pass; };
  optimize(g, o);
  EXPECT_EQ(dumped, "simplify");
}

}  // namespace
}  // namespace metagrad
