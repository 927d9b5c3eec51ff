// Parameter-sharing blocks: first- and second-order gradients against central differences in f64,
// the semantics each block promises, and the errors for bad arguments.
#include "meta/transfer/sharing.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/ops.h"
#include "tests/grad_check.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

using testing::error_of;
using testing::random_ref;

using testing::check_gradients;
using testing::eval;
using testing::eval1;
using testing::leaf;
using testing::readout;

// ---------------------------------------------------------------- hard sharing

TEST(HardSharing, FixedWeightsSumWeightedLosses) {
  Graph g;
  Tensor l1 = input(g, "l1", {}), l2 = input(g, "l2", {1}), l3 = input(g, "l3", {1, 1});
  Tensor plain = weighted_task_loss(g, {l1, l2, l3}, "fixed");
  Tensor weighted = weighted_task_loss(g, {l1, l2, l3}, "fixed", {0.5, 2.0, -1.0});
  EXPECT_EQ(plain.shape(), Shape{});
  RefValues v{{"l1", {{}, {1.5}}}, {"l2", {{1}, {0.25}}}, {"l3", {{1, 1}, {3.0}}}};
  EXPECT_NEAR(eval1(g, plain, v), 1.5 + 0.25 + 3.0, 1e-15);
  EXPECT_NEAR(eval1(g, weighted, v), 0.75 + 0.5 - 3.0, 1e-15);
  check_gradients(g, weighted * weighted, {l1, l2, l3}, v);
}

TEST(HardSharing, UncertaintyStartsAtSumAndItsGradientIsOneMinusScaledLoss) {
  Graph g;
  Tensor l1 = input(g, "l1", {}), l2 = input(g, "l2", {});
  Tensor total = weighted_task_loss(g, {l1, l2}, "uncertainty", {}, "heads");
  Tensor s0 = leaf(g, "heads.log_var.0"), s1 = leaf(g, "heads.log_var.1");
  EXPECT_EQ(s0.shape(), Shape{});
  EXPECT_EQ(s0.node().kind, NodeKind::Parameter);
  RefValues v{{"l1", {{}, {0.7}}}, {"l2", {{}, {2.5}}}};
  EXPECT_NEAR(eval1(g, total, v), 0.7 + 2.5, 1e-15);  // parameters at their initializer, 0

  std::vector<Tensor> ds = grad(total, {s0, s1});
  v["heads.log_var.0"] = {{}, {0.3}};
  v["heads.log_var.1"] = {{}, {-0.8}};
  auto got = eval(g, {total, ds[0], ds[1]}, v);
  EXPECT_NEAR(got[0].data[0], std::exp(-0.3) * 0.7 + 0.3 + std::exp(0.8) * 2.5 - 0.8, 1e-14);
  EXPECT_NEAR(got[1].data[0], 1 - 0.7 * std::exp(-0.3), 1e-14);
  EXPECT_NEAR(got[2].data[0], 1 - 2.5 * std::exp(0.8), 1e-14);
}

TEST(HardSharing, GradientsThroughSharedTrunkFirstAndSecondOrder) {
  // Two heads on one trunk x @ w; the losses meet in the trunk's gradient.
  Graph g;
  Tensor x = input(g, "x", {3, 2}), w = input(g, "w", {2, 2});
  Tensor h = tanh(matmul(x, w));
  Tensor la = mean(square(h - constant(g, {3, 2}, random_ref({3, 2}, 11).data)));
  Tensor lb = square(sum(h * constant(g, {3, 2}, random_ref({3, 2}, 12).data)));
  Tensor total = weighted_task_loss(g, {la, lb}, "uncertainty");
  RefValues v{{"x", random_ref({3, 2}, 1)},
              {"w", random_ref({2, 2}, 2)},
              {"mtl.log_var.0", random_ref({}, 3)},
              {"mtl.log_var.1", random_ref({}, 4)}};
  check_gradients(g, total, {x, w, leaf(g, "mtl.log_var.0"), leaf(g, "mtl.log_var.1")}, v);
  Graph g2;
  Tensor a = input(g2, "a", {2}), b = input(g2, "b", {2});
  Tensor fixed = weighted_task_loss(g2, {sum(exp(a * b)), mean(square(a) * b)}, "fixed", {0.3, 1.7});
  check_gradients(g2, fixed, {a, b}, {{"a", random_ref({2}, 5)}, {"b", random_ref({2}, 6)}});
}

TEST(HardSharing, BadArguments) {
  Graph g;
  Tensor l = input(g, "l", {}), vec = input(g, "vec", {3});
  EXPECT_NE(error_of([&] { weighted_task_loss(g, {}, "fixed"); }).find("no task losses"), std::string::npos);
  EXPECT_NE(error_of([&] { weighted_task_loss(g, {l}, "gradnorm"); }).find("unknown mode 'gradnorm'"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              weighted_task_loss(g, {l, l}, "fixed", {1.0});
            }).find("1 fixed weights for 2 task losses"),
            std::string::npos);
  EXPECT_NE(error_of([&] { weighted_task_loss(g, {l}, "uncertainty", {1.0}); }).find("fixed weights given"),
            std::string::npos);
  std::string e = error_of([&] { weighted_task_loss(g, {l, vec}, "fixed"); });
  EXPECT_NE(e.find("task loss 1"), std::string::npos) << e;
  EXPECT_NE(e.find("vec"), std::string::npos) << e;
  EXPECT_NE(e.find("[3]"), std::string::npos) << e;
  EXPECT_THROW(weighted_task_loss(g, {vec}, "fixed"), ShapeError);
  Graph other;
  Tensor foreign = input(other, "foreign", {});
  EXPECT_NE(error_of([&] { weighted_task_loss(g, {foreign}, "fixed"); }).find("another graph"), std::string::npos);
}

// ---------------------------------------------------------------- soft sharing

TEST(SoftSharing, PenaltyIsStrengthTimesPairwiseSquaredDistance) {
  Graph g;
  std::vector<std::vector<Tensor>> towers;
  RefValues v;
  for (int t = 0; t < 3; ++t) {
    std::string w = "t" + std::to_string(t) + ".w", b = "t" + std::to_string(t) + ".b";
    towers.push_back({input(g, w, {2, 3}), input(g, b, {3})});
    v[w] = random_ref({2, 3}, uint64_t(10 + t));
    v[b] = random_ref({3}, uint64_t(20 + t));
  }
  Tensor pen = l2_tie_penalty(towers, 0.3);
  EXPECT_EQ(pen.shape(), Shape{});
  double want = 0;
  for (int a = 0; a < 3; ++a)
    for (int b = a + 1; b < 3; ++b)
      for (const char* k : {".w", ".b"}) {
        const auto& x = v["t" + std::to_string(a) + k].data;
        const auto& y = v["t" + std::to_string(b) + k].data;
        for (size_t i = 0; i < x.size(); ++i) want += 0.3 * (x[i] - y[i]) * (x[i] - y[i]);
      }
  EXPECT_NEAR(eval1(g, pen, v), want, 1e-14);
  std::vector<Tensor> all;
  for (auto& t : towers) all.insert(all.end(), t.begin(), t.end());
  // Squared, so the second-order check sees a non-constant Hessian.
  check_gradients(g, pen * pen, all, v);
  // Identical towers cost nothing.
  RefValues same = v;
  for (int t = 1; t < 3; ++t) {
    same["t" + std::to_string(t) + ".w"] = v["t0.w"];
    same["t" + std::to_string(t) + ".b"] = v["t0.b"];
  }
  EXPECT_EQ(eval1(g, pen, same), 0.0);
}

TEST(SoftSharing, BadArguments) {
  Graph g;
  Tensor a = input(g, "enc.w", {2, 3}), b = input(g, "dec.w", {3, 2}), c = input(g, "enc.b", {3});
  std::string e = error_of([&] { l2_tie_penalty({{a, c}, {b, c}}, 1.0); });
  EXPECT_NE(e.find("enc.w"), std::string::npos) << e;
  EXPECT_NE(e.find("dec.w"), std::string::npos) << e;
  EXPECT_NE(e.find("[3,2]"), std::string::npos) << e;
  EXPECT_THROW(l2_tie_penalty({{a, c}, {b, c}}, 1.0), ShapeError);
  EXPECT_NE(error_of([&] {
              l2_tie_penalty({{a, c}, {a}}, 1.0);
            }).find("tower 1 has 1 tensors but tower 0 has 2"),
            std::string::npos);
  EXPECT_NE(error_of([&] { l2_tie_penalty({{a}}, 1.0); }).find("at least 2"), std::string::npos);
  EXPECT_NE(error_of([&] { l2_tie_penalty({{a}, {a}}, -1.0); }).find("non-negative"), std::string::npos);
  EXPECT_NE(error_of([&] { l2_tie_penalty({{}, {}}, 1.0); }).find("no tensors"), std::string::npos);
}

// ---------------------------------------------------------------- cross-stitch

TEST(CrossStitch, InitialMixingAndIdentity) {
  const std::vector<double> init = cross_stitch_init(3, 0.8), want_init = {0.8, 0.1, 0.1, 0.1, 0.8, 0.1, 0.1, 0.1, 0.8};
  ASSERT_EQ(init.size(), want_init.size());
  for (size_t i = 0; i < init.size(); ++i) EXPECT_NEAR(init[i], want_init[i], 1e-15);
  Graph g;
  std::vector<Tensor> acts;
  RefValues v;
  for (int t = 0; t < 3; ++t) {
    std::string n = "a" + std::to_string(t);
    acts.push_back(input(g, n, {2, 2}));
    v[n] = random_ref({2, 2}, uint64_t(30 + t));
  }
  std::vector<Tensor> mixed = cross_stitch(g, acts, "cs");        // 0.9 / 0.05 at the start
  std::vector<Tensor> kept = cross_stitch(g, acts, "keep", 1.0);  // identity at the start
  std::vector<Tensor> fixed = cross_stitch(acts, constant(g, {3, 3}, cross_stitch_init(3, 1.0)));
  EXPECT_EQ(leaf(g, "cs.alpha_delta").shape(), (Shape{3, 3}));
  auto got = eval(g, {mixed[0], mixed[1], mixed[2], kept[0], kept[1], kept[2], fixed[0], fixed[1], fixed[2]}, v);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i].shape, (Shape{2, 2}));
    EXPECT_EQ(got[3 + i].data, v["a" + std::to_string(i)].data);  // exactly the inputs
    EXPECT_EQ(got[6 + i].data, v["a" + std::to_string(i)].data);
    for (size_t k = 0; k < 4; ++k) {
      double want = 0;
      for (size_t j = 0; j < 3; ++j) want += (i == j ? 0.9 : 0.05) * v["a" + std::to_string(j)].data[k];
      EXPECT_NEAR(got[i].data[k], want, 1e-15);
    }
  }
  // A learned offset that brings alpha to the identity also returns the inputs.
  RefTensor delta{{3, 3}, {}};
  for (double a : cross_stitch_init(3, 0.9)) delta.data.push_back(-a);
  for (int i = 0; i < 3; ++i) delta.data[size_t(i * 4)] += 1.0;
  v["cs.alpha_delta"] = delta;
  got = eval(g, {mixed[0], mixed[1], mixed[2]}, v);
  for (size_t i = 0; i < 3; ++i)
    for (size_t k = 0; k < 4; ++k) EXPECT_NEAR(got[i].data[k], v["a" + std::to_string(i)].data[k], 1e-15);
}

TEST(CrossStitch, GradientsFirstAndSecondOrder) {
  Graph g;
  std::vector<Tensor> acts;
  RefValues v;
  for (int t = 0; t < 3; ++t) {
    std::string n = "a" + std::to_string(t);
    acts.push_back(input(g, n, {2, 2}));
    v[n] = random_ref({2, 2}, uint64_t(40 + t));
  }
  std::vector<Tensor> out = cross_stitch(g, acts, "cs", 0.7);
  v["cs.alpha_delta"] = random_ref({3, 3}, 44, -0.2, 0.2);
  Tensor f = readout(g, out[0], 1) + readout(g, out[1], 2) + readout(g, out[2], 3);
  std::vector<Tensor> wrt = acts;
  wrt.push_back(leaf(g, "cs.alpha_delta"));
  check_gradients(g, f, wrt, v);
}

TEST(CrossStitch, BadArguments) {
  Graph g;
  Tensor a = input(g, "a", {2, 2}), b = input(g, "b", {2, 3});
  EXPECT_NE(error_of([&] { cross_stitch(g, {a}, "cs"); }).find("at least 2"), std::string::npos);
  std::string e = error_of([&] { cross_stitch(g, {a, b}, "cs2"); });
  EXPECT_NE(e.find("activation 1"), std::string::npos) << e;
  EXPECT_NE(e.find("[2,3]"), std::string::npos) << e;
  EXPECT_THROW(cross_stitch(g, {a, b}, "cs3"), ShapeError);
  e = error_of([&] { cross_stitch({a, a}, constant(g, {3, 3}, cross_stitch_init(3, 0.5), "alpha3")); });
  EXPECT_NE(e.find("alpha3"), std::string::npos) << e;
  EXPECT_NE(e.find("[2, 2] needed"), std::string::npos) << e;
}

// ---------------------------------------------------------------- mixture of experts

struct MoeData {
  int64_t n, d, e, out;
  RefValues v;
};

MoeData moe_data(int64_t n, int64_t d, int64_t e, int64_t out, uint64_t seed) {
  MoeData m{n, d, e, out, {}};
  m.v["x"] = random_ref({n, d}, seed);
  m.v["moe.expert.w"] = random_ref({e, d, out}, seed + 1);
  m.v["moe.expert.b"] = random_ref({e, 1, out}, seed + 2);
  m.v["moe.gate.w"] = random_ref({d, e}, seed + 3, -2.0, 2.0);
  return m;
}

// Plain loops: gate logits [N, E] and expert outputs [E][N, out].
std::vector<double> moe_logits(const MoeData& m) {
  std::vector<double> l(size_t(m.n * m.e), 0.0);
  const auto &x = m.v.at("x").data, &gw = m.v.at("moe.gate.w").data;
  for (int64_t i = 0; i < m.n; ++i)
    for (int64_t e = 0; e < m.e; ++e)
      for (int64_t k = 0; k < m.d; ++k) l[size_t(i * m.e + e)] += x[size_t(i * m.d + k)] * gw[size_t(k * m.e + e)];
  return l;
}
double expert_out(const MoeData& m, int64_t e, int64_t i, int64_t o) {
  const auto &x = m.v.at("x").data, &w = m.v.at("moe.expert.w").data, &b = m.v.at("moe.expert.b").data;
  double s = b[size_t(e * m.out + o)];
  for (int64_t k = 0; k < m.d; ++k) s += x[size_t(i * m.d + k)] * w[size_t((e * m.d + k) * m.out + o)];
  return s;
}

TEST(MixtureOfExperts, AllExpertsSelectedIsTheDenseSoftmaxMixture) {
  MoeData m = moe_data(5, 3, 4, 2, 50);
  Graph g;
  Tensor x = input(g, "x", {m.n, m.d});
  MoeLayer moe = mixture_of_experts(g, x, m.e, m.out, m.e, "moe", 7);
  Tensor dense_gates = softmax(matmul(x, leaf(g, "moe.gate.w")), 1);
  auto got = eval(g, {moe.output, moe.gates, dense_gates, moe.balance_loss}, m.v);
  EXPECT_EQ(got[1].data, got[2].data);  // bit for bit
  std::vector<double> l = moe_logits(m);
  for (int64_t i = 0; i < m.n; ++i) {
    double mx = -1e300, z = 0;
    for (int64_t e = 0; e < m.e; ++e) mx = std::max(mx, l[size_t(i * m.e + e)]);
    for (int64_t e = 0; e < m.e; ++e) z += std::exp(l[size_t(i * m.e + e)] - mx);
    for (int64_t o = 0; o < m.out; ++o) {
      double want = 0;
      for (int64_t e = 0; e < m.e; ++e) want += std::exp(l[size_t(i * m.e + e)] - mx) / z * expert_out(m, e, i, o);
      EXPECT_NEAR(got[0].data[size_t(i * m.out + o)], want, 1e-14);
    }
  }
  EXPECT_NEAR(got[3].data[0], 1.0, 1e-14);  // f_e = 1/E for every expert, and the P_e sum to 1
}

TEST(MixtureOfExperts, TopOneSendsEachRowToItsArgmaxExpertAlone) {
  MoeData m = moe_data(6, 3, 4, 2, 60);
  Graph g;
  Tensor x = input(g, "x", {m.n, m.d});
  MoeLayer moe = mixture_of_experts(g, x, m.e, m.out, 1, "moe", 7);
  auto got = eval(g, {moe.output, moe.gates}, m.v);
  std::vector<double> l = moe_logits(m);
  std::vector<int> used(size_t(m.e), 0);
  for (int64_t i = 0; i < m.n; ++i) {
    int64_t best = 0;
    for (int64_t e = 1; e < m.e; ++e)
      if (l[size_t(i * m.e + e)] > l[size_t(i * m.e + best)]) best = e;
    ++used[size_t(best)];
    for (int64_t e = 0; e < m.e; ++e) EXPECT_EQ(got[1].data[size_t(i * m.e + e)], e == best ? 1.0 : 0.0);
    for (int64_t o = 0; o < m.out; ++o)
      EXPECT_NEAR(got[0].data[size_t(i * m.out + o)], expert_out(m, best, i, o), 1e-14);
  }
  EXPECT_GE(std::count_if(used.begin(), used.end(), [](int c) { return c > 0; }), 2);  // the check routes somewhere
}

TEST(MixtureOfExperts, TopKKeepsKPerRowAndRenormalises) {
  MoeData m = moe_data(6, 3, 5, 2, 65);
  Graph g;
  Tensor x = input(g, "x", {m.n, m.d});
  MoeLayer moe = mixture_of_experts(g, x, m.e, m.out, 2, "moe", 7);
  auto gates = eval(g, {moe.gates}, m.v)[0].data;
  std::vector<double> l = moe_logits(m);
  for (int64_t i = 0; i < m.n; ++i) {
    std::vector<int64_t> order(size_t(m.e));
    for (int64_t e = 0; e < m.e; ++e) order[size_t(e)] = e;
    std::sort(order.begin(), order.end(),
              [&](int64_t a, int64_t b) { return l[size_t(i * m.e + a)] > l[size_t(i * m.e + b)]; });
    const int64_t a = order[0], b = order[1];
    const double pa = 1 / (1 + std::exp(l[size_t(i * m.e + b)] - l[size_t(i * m.e + a)]));
    for (int64_t e = 0; e < m.e; ++e) {
      const double want = e == a ? pa : e == b ? 1 - pa : 0.0;
      EXPECT_NEAR(gates[size_t(i * m.e + e)], want, 1e-15);
    }
  }
  // Ties go to the lower index, and exactly k entries are kept.
  Graph t;
  Tensor tied = constant(t, {2, 4}, {1, 1, 1, 1, 0, 2, 2, 0});
  auto mask = reference_eval(t, {top_k_mask(tied, 2).value(), top_k_mask(tied, 1).value()}, {});
  EXPECT_EQ(mask[0].data, (std::vector<double>{1, 1, 0, 0, 0, 1, 1, 0}));
  EXPECT_EQ(mask[1].data, (std::vector<double>{1, 0, 0, 0, 0, 1, 0, 0}));
}

TEST(MixtureOfExperts, BalanceLossIsOneWhenUniformAndLargerWhenNot) {
  // x rows e_0, e_1 and a gate that sends e_0 to expert 0 and e_1 to expert 1 by the same margin: half the
  // rows go to each expert (f = 1/2) and the mean probabilities are 1/2 each, so E * sum f P = 1.
  Graph g;
  Tensor x = input(g, "x", {2, 2});
  MoeLayer moe = mixture_of_experts(g, x, 2, 3, 1, "moe", 1);
  RefValues v{{"moe.gate.w", {{2, 2}, {1.0, -1.0, -1.0, 1.0}}}, {"x", {{2, 2}, {1, 0, 0, 1}}}};
  EXPECT_NEAR(eval1(g, moe.balance_loss, v), 1.0, 1e-15);
  // Both rows to expert 0: f = (1, 0), P_0 = sigmoid(2), so the loss is 2 sigmoid(2) > 1.
  v["x"] = {{2, 2}, {1, 0, 1, 0}};
  const double unbalanced = eval1(g, moe.balance_loss, v);
  EXPECT_NEAR(unbalanced, 2 / (1 + std::exp(-2.0)), 1e-15);
  EXPECT_GT(unbalanced, 1.2);
  // Routing uniform but probabilities not: still the minimum, 1, since sum_e P_e = 1 and f_e = 1/E.
  v["x"] = {{2, 2}, {1, 0, 0, 3}};
  EXPECT_NEAR(eval1(g, moe.balance_loss, v), 1.0, 1e-15);
}

TEST(MixtureOfExperts, GradientsFirstAndSecondOrderForEveryK) {
  for (int64_t k = 1; k <= 3; ++k) {
    SCOPED_TRACE("top_k = " + std::to_string(k));
    MoeData m = moe_data(4, 3, 3, 2, 70 + uint64_t(k));
    Graph g;
    Tensor x = input(g, "x", {m.n, m.d});
    MoeLayer moe = mixture_of_experts(g, x, m.e, m.out, k, "moe", 7);
    Tensor f = readout(g, moe.output, 9) + moe.balance_loss * 0.5 + readout(g, moe.gates, 10);
    check_gradients(g, f, {x, leaf(g, "moe.expert.w"), leaf(g, "moe.expert.b"), leaf(g, "moe.gate.w")}, m.v);
  }
}

TEST(MixtureOfExperts, CompiledF32MatchesReference) {
  // The f32 runtime on the blocks with the riskiest pieces: the -1e30 mask, where, rank-0 parameters
  // (the uncertainty log-variances) and the second-order gradient of the whole thing.
  Graph g;
  Tensor x = input(g, "x", {5, 3});
  MoeLayer moe = mixture_of_experts(g, x, 4, 2, 2, "moe", 3);
  Tensor task_a = mean(square(moe.output)), task_b = sum(tanh(moe.output) * 0.5);
  Tensor loss = weighted_task_loss(g, {task_a, task_b}, "uncertainty") + 0.01 * moe.balance_loss;
  std::vector<Tensor> wrt = {leaf(g, "moe.expert.w"), leaf(g, "moe.gate.w"), leaf(g, "mtl.log_var.0")};
  std::vector<Tensor> d1 = grad(loss, wrt);
  Tensor s = sum(square(d1[0])) + sum(square(d1[1])) + sum(square(d1[2]));
  std::vector<Tensor> d2 = grad(s, wrt);
  std::vector<Tensor> fetch = {loss, moe.gates, d1[0], d1[1], d1[2], d2[0], d2[1], d2[2]};
  for (size_t i = 0; i < fetch.size(); ++i) g.add_output("out" + std::to_string(i), fetch[i].value());
  RefTensor xv = random_ref({5, 3}, 99, -2.0, 2.0);
  auto want = eval(g, fetch, {{"x", xv}});  // parameters from their initializers, as in the store
  ParamStore store;
  Executable exe(g, store);
  auto xf = testing::to_f32(xv);
  exe.run({Feed::f32("x", {5, 3}, xf)});
  for (size_t i = 0; i < fetch.size(); ++i) {
    auto got = exe.fetch("out" + std::to_string(i));
    ASSERT_EQ(got.size(), want[i].data.size());
    for (size_t k = 0; k < got.size(); ++k)
      EXPECT_NEAR(got[k], want[i].data[k], 1e-4 * (1 + std::abs(want[i].data[k]))) << "out" << i << "[" << k << "]";
  }
}

TEST(MixtureOfExperts, BadArguments) {
  Graph g;
  Tensor x = input(g, "x", {4, 3}), x3 = input(g, "x3", {2, 4, 3});
  EXPECT_NE(error_of([&] { mixture_of_experts(g, x, 3, 2, 0, "m0", 1); }).find("top_k = 0 outside [1, experts = 3]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { mixture_of_experts(g, x, 3, 2, 4, "m1", 1); }).find("top_k = 4"), std::string::npos);
  EXPECT_NE(error_of([&] { mixture_of_experts(g, x, 0, 2, 1, "m2", 1); }).find("must be positive"), std::string::npos);
  std::string e = error_of([&] { mixture_of_experts(g, x3, 3, 2, 1, "m3", 1); });
  EXPECT_NE(e.find("x3"), std::string::npos) << e;
  EXPECT_NE(e.find("[N, D] needed"), std::string::npos) << e;
  EXPECT_THROW(mixture_of_experts(g, x3, 3, 2, 1, "m4", 1), ShapeError);
  EXPECT_NE(error_of([&] { top_k_mask(x, 5); }).find("k = 5 outside [1, 3]"), std::string::npos);
}

// ---------------------------------------------------------------- cross-layer sharing

TEST(CrossLayerSharing, GradientIsTheSumOverUses) {
  const int64_t layers = 3;
  RefValues v{{"x", random_ref({4, 3}, 80)}, {"w", random_ref({3, 3}, 81)}, {"b", random_ref({1, 3}, 82)}};
  Graph g;
  Tensor x = input(g, "x", {4, 3}), w = input(g, "w", {3, 3}), b = input(g, "b", {1, 3});
  Tensor f = readout(g, shared_mlp(x, w, b, layers), 83);
  std::vector<Tensor> dg = grad(f, {w, b});
  auto shared = eval(g, {f, dg[0], dg[1]}, v);

  // The same network with one weight input per layer, all fed the same values.
  Graph u;
  Tensor ux = input(u, "x", {4, 3}), ub = input(u, "b", {1, 3});
  std::vector<Tensor> ws;
  Tensor h = ux;
  RefValues uv{{"x", v["x"]}, {"b", v["b"]}};
  for (int64_t l = 0; l < layers; ++l) {
    std::string n = "w" + std::to_string(l);
    ws.push_back(input(u, n, {3, 3}));
    uv[n] = v["w"];
    h = linear(l > 0 ? relu(h) : h, ws.back(), ub);
  }
  Tensor uf = readout(u, h, 83);
  std::vector<Tensor> du = grad(uf, ws);
  std::vector<Tensor> fetch = {uf};
  fetch.insert(fetch.end(), du.begin(), du.end());
  auto unshared = eval(u, fetch, uv);
  EXPECT_NEAR(shared[0].data[0], unshared[0].data[0], 1e-15);
  int differ = 0;
  for (size_t k = 0; k < 9; ++k) {
    double total = 0;
    for (int64_t l = 0; l < layers; ++l) total += unshared[size_t(1 + l)].data[k];
    EXPECT_NEAR(shared[1].data[k], total, 1e-14);
    differ += unshared[1].data[k] != unshared[2].data[k] || unshared[2].data[k] != unshared[3].data[k];
  }
  EXPECT_GE(differ, 5);  // the per-use gradients really differ, so the sum is a real test
}

TEST(CrossLayerSharing, GradientsFirstAndSecondOrder) {
  Graph g;
  Tensor x = input(g, "x", {4, 3}), w = input(g, "w", {3, 3}), b = input(g, "b", {3});
  Tensor f = readout(g, shared_mlp(x, w, b, 4), 90);
  check_gradients(g, f, {x, w, b},
                  {{"x", random_ref({4, 3}, 91)}, {"w", random_ref({3, 3}, 92)}, {"b", random_ref({3}, 93)}});
}

TEST(CrossLayerSharing, BadArguments) {
  Graph g;
  Tensor x = input(g, "x", {4, 3}), w = input(g, "w", {3, 3}), rect = input(g, "rect", {3, 2}), b = input(g, "b", {3}),
         x5 = input(g, "x5", {4, 5});
  std::string e = error_of([&] { shared_mlp(x, rect, b, 2); });
  EXPECT_NE(e.find("rect"), std::string::npos) << e;
  EXPECT_NE(e.find("square"), std::string::npos) << e;
  EXPECT_THROW(shared_mlp(x, rect, b, 2), ShapeError);
  EXPECT_NE(error_of([&] { shared_mlp(x, w, b, 0); }).find("layers = 0"), std::string::npos);
  EXPECT_NE(error_of([&] { shared_mlp(x5, w, b, 2); }).find("last axis must be 3"), std::string::npos);
}

}  // namespace
}  // namespace metagrad
