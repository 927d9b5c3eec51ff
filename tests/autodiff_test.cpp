// Autodiff: higher orders, Hessian-vector products, stop_gradient, fan-out and error cases.
#include "metagrad/autodiff.h"

#include <gtest/gtest.h>

#include "metagrad/error.h"
#include "metagrad/ops.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

double eval1(const Graph& g, const Tensor& t, const RefValues& feeds) {
  return reference_eval(g, {t.value()}, feeds)[0].data.at(0);
}

TEST(Autodiff, ThirdOrderOfCube) {
  Graph g;
  Tensor x = input(g, "x", {});
  Tensor y = x * x * x;
  Tensor d1 = grad(y, {x})[0];
  Tensor d2 = grad(d1, {x})[0];
  Tensor d3 = grad(d2, {x})[0];
  RefValues f{{"x", RefTensor{{}, {1.5}}}};
  EXPECT_NEAR(eval1(g, d1, f), 3 * 1.5 * 1.5, 1e-12);
  EXPECT_NEAR(eval1(g, d2, f), 6 * 1.5, 1e-12);
  EXPECT_NEAR(eval1(g, d3, f), 6.0, 1e-12);
}

TEST(Autodiff, FanOutIsSummed) {
  Graph g;
  Tensor x = input(g, "x", {3});
  Tensor y = sum(x * x + exp(x) + x);  // x used four times
  Tensor d = grad(y, {x})[0];
  auto feeds = RefValues{{"x", testing::random_ref({3}, 3)}};
  auto got = reference_eval(g, {d.value()}, feeds)[0].data;
  for (size_t i = 0; i < 3; ++i) {
    double xi = feeds["x"].data[i];
    EXPECT_NEAR(got[i], 2 * xi + std::exp(xi) + 1, 1e-12);
  }
}

TEST(Autodiff, HessianVectorProductOfQuadraticForm) {
  // y = 0.5 x^T A x for symmetric A: H = A, so hvp(v) = A v.
  Graph g;
  Tensor x = input(g, "x", {4, 1});
  Tensor v = input(g, "v", {4, 1});
  auto a = testing::random_ref({4, 4}, 5);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < i; ++j) a.data[size_t(i * 4 + j)] = a.data[size_t(j * 4 + i)];
  Tensor A = constant(g, {4, 4}, a.data);
  Tensor y = 0.5 * sum(matmul(x, matmul(A, x), true, false));
  Tensor hv = hvp(y, {x}, {v})[0];
  RefValues f{{"x", testing::random_ref({4, 1}, 6)}, {"v", testing::random_ref({4, 1}, 7)}};
  auto got = reference_eval(g, {hv.value()}, f)[0].data;
  for (int i = 0; i < 4; ++i) {
    double want = 0;
    for (int j = 0; j < 4; ++j) want += a.data[size_t(i * 4 + j)] * f["v"].data[size_t(j)];
    EXPECT_NEAR(got[size_t(i)], want, 1e-12);
  }
}

TEST(Autodiff, HvpMatchesFiniteDifferencesOfGradient) {
  Graph g;
  Tensor x = input(g, "x", {5});
  Tensor v = input(g, "v", {5});
  Tensor y = sum(tanh(x) * sigmoid(x * 2.0) + square(x) * x);
  Tensor hv = hvp(y, {x}, {v})[0];
  Tensor gx = grad(y, {x})[0];
  Tensor gv = sum(gx * v);  // d/dx of <grad, v> is H v
  RefValues f{{"x", testing::random_ref({5}, 8)}, {"v", testing::random_ref({5}, 9)}};
  auto got = reference_eval(g, {hv.value()}, f)[0].data;
  auto fd = testing::finite_diff(g, gv.value(), f, "x");
  for (size_t i = 0; i < 5; ++i) EXPECT_NEAR(got[i], fd[i], 1e-7);
}

TEST(Autodiff, StopGradientCutsTheChain) {
  Graph g;
  Tensor x = input(g, "x", {});
  Tensor y = x * stop_gradient(x * x);  // d/dx = x^2, not 3x^2
  Tensor d = grad(y, {x})[0];
  EXPECT_NEAR(eval1(g, d, {{"x", RefTensor{{}, {2.0}}}}), 4.0, 1e-12);
}

TEST(Autodiff, UnrelatedValueGetsZeroAndIntermediateWrtWorks) {
  Graph g;
  Tensor x = input(g, "x", {2});
  Tensor z = input(g, "z", {2});
  Tensor h = x * 3.0;
  Tensor y = sum(h * h);
  auto d = grad(y, {z, h});
  RefValues f{{"x", RefTensor{{2}, {1.0, -2.0}}}, {"z", RefTensor{{2}, {0.0, 0.0}}}};
  auto r = reference_eval(g, {d[0].value(), d[1].value()}, f);
  EXPECT_EQ(r[0].data, (std::vector<double>{0.0, 0.0}));
  EXPECT_EQ(r[1].data, (std::vector<double>{6.0, -12.0}));  // 2h
}

TEST(Autodiff, BroadcastCotangentsAreReduced) {
  Graph g;
  Tensor x = input(g, "x", {3, 1});
  Tensor b = input(g, "b", {4});
  Tensor y = sum((x + b) * (x - b));
  auto d = grad(y, {x, b});
  EXPECT_EQ(d[0].shape(), (Shape{3, 1}));
  EXPECT_EQ(d[1].shape(), (Shape{4}));
  RefValues f{{"x", testing::random_ref({3, 1}, 10)}, {"b", testing::random_ref({4}, 11)}};
  auto r = reference_eval(g, {d[0].value(), d[1].value()}, f);
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(r[0].data[i], 2 * 4 * f["x"].data[i], 1e-12);
  for (size_t j = 0; j < 4; ++j) EXPECT_NEAR(r[1].data[j], -2 * 3 * f["b"].data[j], 1e-12);
}

TEST(Autodiff, ErrorsAreClear) {
  Graph g;
  Tensor x = input(g, "x", {3});
  Tensor labels = input(g, "labels", {3}, DType::i32);
  EXPECT_THROW(grad(x * 2.0, {x}), ShapeError);  // not a scalar
  EXPECT_THROW(grad(sum(x), {labels}), GraphError);  // integer wrt
}

}  // namespace
}  // namespace metagrad
