// Composite ops (cross-entropy, MSE, batch norm, pairwise distances) against finite differences
// to second order, and a small conv network's f32 forward and gradients against the reference.
#include <gtest/gtest.h>

#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/ops.h"
#include "metagrad/pipeline.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

// First- and second-order checks of scalar `loss` with respect to the named f32 inputs.
void check_grads(Graph& g, const Tensor& loss, const std::vector<Tensor>& wrt, const RefValues& feeds, double tol) {
  auto g1 = grad(loss, wrt);
  Tensor dir;
  for (size_t i = 0; i < wrt.size(); ++i) {
    auto r = testing::random_ref(wrt[i].shape(), 100 + i);
    Tensor term = sum(g1[i] * constant(g, r.shape, r.data));
    dir = dir.defined() ? dir + term : term;
  }
  auto g2 = grad(dir, wrt);
  for (size_t i = 0; i < wrt.size(); ++i) {
    const std::string& name = g.node(wrt[i].value().node).name;
    auto r = reference_eval(g, {g1[i].value(), g2[i].value()}, feeds);
    auto fd1 = testing::finite_diff(g, loss.value(), feeds, name);
    auto fd2 = testing::finite_diff(g, dir.value(), feeds, name);
    for (size_t k = 0; k < fd1.size(); ++k) {
      EXPECT_NEAR(r[0].data[k], fd1[k], tol * std::max(1.0, std::abs(fd1[k]))) << "first order, " << name << "[" << k << "]";
      EXPECT_NEAR(r[1].data[k], fd2[k], tol * std::max(1.0, std::abs(fd2[k]))) << "second order, " << name << "[" << k << "]";
    }
  }
}

TEST(Composite, CrossEntropy) {
  Graph g;
  Tensor logits = input(g, "logits", {4, 3});
  Tensor labels = input(g, "labels", {4}, DType::i32);
  Tensor loss = cross_entropy(logits, labels);
  RefValues f{{"logits", testing::random_ref({4, 3}, 1, -2, 2)}, {"labels", RefTensor{{4}, {0, 2, 1, 2}}}};
  // Against the definition: mean of logsumexp - logit[label].
  auto lg = f["logits"].data;
  double want = 0;
  for (int i = 0; i < 4; ++i) {
    double m = 0;
    for (int j = 0; j < 3; ++j) m += std::exp(lg[size_t(i * 3 + j)]);
    want += std::log(m) - lg[size_t(i * 3 + int(f["labels"].data[size_t(i)]))];
  }
  EXPECT_NEAR(reference_eval(g, {loss.value()}, f)[0].data[0], want / 4, 1e-12);
  check_grads(g, loss, {logits}, f, 1e-6);
  EXPECT_THROW(cross_entropy(logits, input(g, "bad", {3}, DType::i32)), ShapeError);
}

TEST(Composite, MseAndPairwiseDistance) {
  Graph g;
  Tensor a = input(g, "a", {3, 2}), b = input(g, "b", {4, 2});
  Tensor d = pairwise_sq_dist(a, b);
  RefValues f{{"a", testing::random_ref({3, 2}, 2)}, {"b", testing::random_ref({4, 2}, 3)}};
  auto r = reference_eval(g, {d.value()}, f)[0].data;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) {
      double dx = f["a"].data[size_t(i * 2)] - f["b"].data[size_t(j * 2)];
      double dy = f["a"].data[size_t(i * 2 + 1)] - f["b"].data[size_t(j * 2 + 1)];
      EXPECT_NEAR(r[size_t(i * 4 + j)], dx * dx + dy * dy, 1e-12);
    }
  Tensor loss = sum(exp(-d)) + mse(a, slice(b, {0, 0}, {3, 2}));
  check_grads(g, loss, {a, b}, f, 1e-6);
}

TEST(Composite, BatchNormTrainingMode) {
  Graph g;
  Tensor x = input(g, "x", {4, 3, 2, 2});
  Tensor gamma = input(g, "gamma", {3}), beta = input(g, "beta", {3});
  Tensor y = batch_norm_train(x, gamma, beta);
  RefValues f{{"x", testing::random_ref({4, 3, 2, 2}, 4, -2, 2)},
              {"gamma", testing::random_ref({3}, 5, 0.5, 1.5)},
              {"beta", testing::random_ref({3}, 6)}};
  // Per channel, the normalized output has mean beta and (biased) variance gamma^2 (up to eps).
  auto r = reference_eval(g, {y.value()}, f)[0].data;
  for (int c = 0; c < 3; ++c) {
    double m = 0, v = 0;
    for (int n = 0; n < 4; ++n)
      for (int k = 0; k < 4; ++k) m += r[size_t((n * 3 + c) * 4 + k)];
    m /= 16;
    for (int n = 0; n < 4; ++n)
      for (int k = 0; k < 4; ++k) v += std::pow(r[size_t((n * 3 + c) * 4 + k)] - m, 2);
    v /= 16;
    EXPECT_NEAR(m, f["beta"].data[size_t(c)], 1e-9);
    EXPECT_NEAR(v, std::pow(f["gamma"].data[size_t(c)], 2), 1e-3);
  }
  Tensor loss = sum(square(y) * constant(g, {4, 3, 2, 2}, testing::random_ref({4, 3, 2, 2}, 7).data));
  check_grads(g, loss, {x, gamma, beta}, f, 1e-5);
}

// The batch_norm op family computes the composite's function, and its first and second
// derivatives equal the composite's (with and without the fused relu).
TEST(Composite, BatchNormOpEqualsCompositeToSecondOrder) {
  for (bool with_relu : {false, true}) {
    Graph g;
    Tensor x = input(g, "x", {4, 3, 2, 2});
    Tensor gamma = input(g, "gamma", {3}), beta = input(g, "beta", {3});
    Tensor w = constant(g, {4, 3, 2, 2}, testing::random_ref({4, 3, 2, 2}, 7).data);
    Tensor composite = batch_norm_train(x, gamma, beta, 1, 1e-3);
    if (with_relu) composite = relu(composite);
    Tensor op = batch_norm(x, gamma, beta, 1e-3, with_relu);
    std::vector<Value> outs{op.value(), composite.value()};
    for (Tensor y : {op, composite}) {
      Tensor loss = sum(square(y) * w);
      auto g1 = grad(loss, {x, gamma, beta});
      Tensor dir = sum(g1[0] * w) + sum(g1[1] * gamma) + sum(g1[2]);
      auto g2 = grad(dir, {x, gamma, beta});
      for (const Tensor& t : g1) outs.push_back(t.value());
      for (const Tensor& t : g2) outs.push_back(t.value());
    }
    RefValues f{{"x", testing::random_ref({4, 3, 2, 2}, 4, -2, 2)},
                {"gamma", testing::random_ref({3}, 5, 0.5, 1.5)},
                {"beta", testing::random_ref({3}, 6)}};
    auto r = reference_eval(g, outs, f);
    const size_t per = 6;  // three first and three second derivatives per form
    for (size_t k = 0; k < r[0].data.size(); ++k) EXPECT_NEAR(r[0].data[k], r[1].data[k], 1e-12) << "value " << k;
    for (size_t d = 0; d < per; ++d)
      for (size_t k = 0; k < r[2 + d].data.size(); ++k)
        EXPECT_NEAR(r[2 + d].data[k], r[2 + per + d].data[k], 1e-9) << "relu " << with_relu << " derivative " << d << " element " << k;
  }
}

TEST(Composite, ConvNetRuntimeMatchesReferenceWithGradients) {
  Graph g;
  Tensor x = input(g, "x", {2, 1, 8, 8});
  Tensor labels = input(g, "labels", {2}, DType::i32);
  Tensor w = input(g, "w", {4, 1, 3, 3});
  Tensor gamma = input(g, "gamma", {4}), beta = input(g, "beta", {4});
  Tensor fc = input(g, "fc", {64, 3}), fcb = input(g, "fcb", {3});
  Tensor h = max_pool2d(relu(batch_norm_train(conv2d(x, w, {1, 1}, {1, 1}), gamma, beta)), {2, 2});
  Tensor loss = cross_entropy(linear(reshape(h, {2, 64}), fc, fcb), labels);
  auto grads = grad(loss, {x, w, gamma, beta, fc, fcb});
  g.add_output("loss", loss.value());
  for (size_t i = 0; i < grads.size(); ++i) g.add_output("g" + std::to_string(i), grads[i].value());
  RefValues f{{"x", testing::random_ref({2, 1, 8, 8}, 8)}, {"labels", RefTensor{{2}, {1, 2}}},
              {"w", testing::random_ref({4, 1, 3, 3}, 9)}, {"gamma", testing::random_ref({4}, 10, 0.5, 1.5)},
              {"beta", testing::random_ref({4}, 11)}, {"fc", testing::random_ref({64, 3}, 12)},
              {"fcb", testing::random_ref({3}, 13)}};
  std::vector<Value> outs;
  for (const auto& o : g.outputs()) outs.push_back(o.value);
  auto ref = reference_eval(g, outs, f);
  Graph opt = g;
  optimize(opt);
  ParamStore store;
  Executable exe(opt, store);
  std::vector<std::vector<float>> keep;
  std::vector<Feed> feeds;
  std::vector<int32_t> lab{1, 2};
  for (const auto& [name, t] : f) {
    if (name == "labels") continue;
    keep.push_back(testing::to_f32(t));
    feeds.push_back(Feed::f32(name, t.shape, keep.back()));
  }
  feeds.push_back(Feed::i32("labels", {2}, lab));
  exe.run(feeds);
  for (size_t i = 0; i < outs.size(); ++i) {
    auto got = exe.fetch(i);
    for (size_t k = 0; k < got.size(); ++k)
      ASSERT_NEAR(got[k], ref[i].data[k], 1e-3 * std::max(1.0, std::abs(ref[i].data[k]))) << g.outputs()[i].name << "[" << k << "]";
  }
}

TEST(NnOps, SoftmaxAxisDefaultsToLastAndCountsFromTheEnd) {
  Graph g;
  Tensor x = input(g, "x", {2, 3, 4});
  Tensor by_default = apply("softmax", {x}), negative = apply("log_softmax", {x}, {{"axis", int64_t(-2)}});
  EXPECT_EQ(attr_int(softmax(x).node().attrs, "axis"), 2);  // the builder stores the axis it means
  RefValues f{{"x", testing::random_ref({2, 3, 4}, 14, -2, 2)}};
  auto r = reference_eval(g, {by_default.value(), softmax(x, 2).value(), negative.value(), log_softmax(x, 1).value()}, f);
  EXPECT_EQ(r[0].data, r[1].data);
  EXPECT_EQ(r[2].data, r[3].data);
  check_grads(g, sum(by_default * by_default) + sum(negative * negative), {x}, f, 1e-6);
}

}  // namespace
}  // namespace metagrad
