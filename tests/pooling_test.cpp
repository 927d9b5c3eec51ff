// Pooling derivatives for every window the forward accepts: the issue's examples to third order,
// max pooling's tie rule (f32 kernels equal to the reference), in-place backward over a dying
// input, average pooling's padding convention, the derivative ops as each other's adjoints.
#include <gtest/gtest.h>

#include <cmath>

#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/ops.h"
#include "ops/pooling.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

using IntList = std::vector<int64_t>;

// The f32 values of `fetches` compiled from g (no passes), with every input fed from `feeds`.
std::vector<std::vector<float>> run_f32(const Graph& g, const std::vector<Tensor>& fetches, const RefValues& feeds) {
  Graph h = g;
  std::vector<std::string> names;
  for (size_t i = 0; i < fetches.size(); ++i) {
    names.push_back("fetch" + std::to_string(i));
    h.add_output(names.back(), fetches[i].value());
  }
  ParamStore store;
  Executable exe(h, store, names);
  std::vector<std::vector<float>> keep;
  std::vector<Feed> fs;
  for (const auto& [name, t] : feeds) keep.push_back(testing::to_f32(t));
  size_t k = 0;
  for (const auto& [name, t] : feeds) fs.push_back(Feed::f32(name, t.shape, keep[k++]));
  exe.run(fs);
  std::vector<std::vector<float>> out;
  for (size_t i = 0; i < fetches.size(); ++i) {
    auto s = exe.fetch(i);
    out.emplace_back(s.begin(), s.end());
  }
  return out;
}

std::vector<double> ref_values(const Graph& g, const Tensor& t, const RefValues& feeds) {
  return reference_eval(g, {t.value()}, feeds)[0].data;
}

void expect_near_fd(const std::vector<double>& got, const std::vector<double>& fd, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), fd.size());
  double scale = 1.0;
  for (double v : fd) scale = std::max(scale, std::abs(v));
  for (size_t k = 0; k < got.size(); ++k) EXPECT_NEAR(got[k], fd[k], tol * scale) << what << " element " << k;
}

size_t count_ops(const Graph& g, const std::string& op) {
  size_t n = 0;
  for (const Node& node : g.nodes()) n += node.kind == NodeKind::Op && node.op->name == op;
  return n;
}

// The issue's two examples: grad builds, and the third derivative (grad of a scalar of the
// second) matches central differences in f64; the compiled f32 plan agrees with the reference.
TEST(Pooling, IssueExamplesDifferentiateToThirdOrder) {
  struct Example {
    const char* name;
    Shape x;
    std::function<Tensor(const Tensor&)> pool;
    const char* derivative_op;
  };
  const Example examples[] = {
      {"max_pool2d 3x3 stride 2 padding 1", {1, 1, 7, 7},
       [](const Tensor& x) { return max_pool2d(x, {3, 3}, {2, 2}, {1, 1}); }, "max_pool2d_select"},
      {"avg_pool2d 2x2 stride 1", {1, 1, 5, 5}, [](const Tensor& x) { return avg_pool2d(x, {2, 2}, {1, 1}); },
       "avg_pool2d_backward"},
  };
  for (const Example& ex : examples) {
    SCOPED_TRACE(ex.name);
    Graph g;
    Tensor x = input(g, "x", ex.x);
    // Nonlinear on both sides of the pooling, so no order of derivative is trivially zero.
    Tensor y = ex.pool(tanh(x));
    Tensor l1 = sum(tanh(y) * constant(g, y.shape(), testing::random_ref(y.shape(), 1).data));
    Tensor g1 = grad(l1, {x})[0];
    Tensor l2 = sum(g1 * constant(g, ex.x, testing::random_ref(ex.x, 2).data));
    Tensor g2 = grad(l2, {x})[0];
    Tensor l3 = sum(g2 * constant(g, ex.x, testing::random_ref(ex.x, 3).data));
    Tensor g3 = grad(l3, {x})[0];
    EXPECT_GT(count_ops(g, ex.derivative_op), 0u);
    RefValues feeds{{"x", testing::random_ref(ex.x, 4, -1.5, 1.5)}};
    expect_near_fd(ref_values(g, g1, feeds), testing::finite_diff(g, l1.value(), feeds, "x"), 1e-6, "first order");
    expect_near_fd(ref_values(g, g2, feeds), testing::finite_diff(g, l2.value(), feeds, "x"), 1e-6, "second order");
    auto d3 = ref_values(g, g3, feeds);
    double norm = 0;
    for (double v : d3) norm += v * v;
    EXPECT_GT(norm, 1e-6) << "the third derivative should not vanish here";
    expect_near_fd(d3, testing::finite_diff(g, l3.value(), feeds, "x"), 1e-5, "third order");
    auto f32 = run_f32(g, {g1, g2, g3}, feeds);
    auto ref = reference_eval(g, {g1.value(), g2.value(), g3.value()}, feeds);
    for (size_t o = 0; o < 3; ++o)
      for (size_t k = 0; k < ref[o].data.size(); ++k)
        EXPECT_NEAR(f32[o][k], ref[o].data[k], 1e-4 * std::max(1.0, std::abs(ref[o].data[k]))) << "order " << o + 1 << " element " << k;
  }
}

// Padding never wins a window: an input of -1 everywhere, 3x3 windows with padding 1 over 2x2,
// pools to -1 (not the 0 of a zero pad), and every window's winner is its first position inside
// the input, (0, 0), so all four cotangents land there.
TEST(Pooling, MaxPaddingNeverWinsAndTiesGoToTheFirstMaximum) {
  Graph g;
  Tensor x = input(g, "x", {1, 1, 2, 2}), gy = input(g, "gy", {1, 1, 2, 2});
  Attrs a{{"kernel", IntList{3, 3}}, {"stride", IntList{1, 1}}, {"padding", IntList{1, 1}}};
  Tensor y = apply("max_pool2d", {x}, a);
  Tensor gx = apply("max_pool2d_backward", {x, gy}, a);
  Tensor sel = apply("max_pool2d_select", {x, gy}, a);
  RefValues feeds{{"x", RefTensor{{1, 1, 2, 2}, {-1, -1, -1, -1}}}, {"gy", RefTensor{{1, 1, 2, 2}, {1, 2, 3, 4}}}};
  auto f32 = run_f32(g, {y, gx, sel}, feeds);
  EXPECT_EQ(ref_values(g, y, feeds), (std::vector<double>{-1, -1, -1, -1}));
  EXPECT_EQ(f32[0], (std::vector<float>{-1, -1, -1, -1}));
  EXPECT_EQ(ref_values(g, gx, feeds), (std::vector<double>{10, 0, 0, 0}));
  EXPECT_EQ(f32[1], (std::vector<float>{10, 0, 0, 0}));
  EXPECT_EQ(ref_values(g, sel, feeds), (std::vector<double>{1, 1, 1, 1}));  // each window reads gy at (0, 0)
  EXPECT_EQ(f32[2], (std::vector<float>{1, 1, 1, 1}));

  // The 2x2 tiling loops follow the same rule: a window of equal values routes to its top left.
  Graph t;
  Tensor xt = input(t, "x", {1, 1, 2, 4}), gyt = input(t, "gy", {1, 1, 1, 2});
  Tensor gxt = apply("max_pool2d_backward", {xt, gyt}, {{"kernel", IntList{2, 2}}});
  RefValues ft{{"x", RefTensor{{1, 1, 2, 4}, {3, 3, 5, 2, 3, 3, 5, 5}}}, {"gy", RefTensor{{1, 1, 1, 2}, {7, 8}}}};
  EXPECT_EQ(ref_values(t, gxt, ft), (std::vector<double>{7, 0, 8, 0, 0, 0, 0, 0}));
  EXPECT_EQ(run_f32(t, {gxt}, ft)[0], (std::vector<float>{7, 0, 8, 0, 0, 0, 0, 0}));
}

// With many ties (inputs in {-1, 0, 1}) and integer cotangents, whose sums are exact in f32, the
// kernels of both derivative ops equal the reference exactly on every tested window.
TEST(Pooling, MaxTieRuleIsTheSameInKernelsAndReference) {
  for (const PoolCase& pc : pool_test_cases()) {
    SCOPED_TRACE(pc.note);
    const Attrs a = pool_attrs(pc);
    const PoolGeom geo = pool_geom(pc.x, a);
    const Shape ys{geo.n, geo.c, geo.oh, geo.ow};
    Graph g;
    Tensor x = input(g, "x", pc.x), gy = input(g, "gy", ys), z = input(g, "z", pc.x);
    Tensor gx = apply("max_pool2d_backward", {x, gy}, a), sel = apply("max_pool2d_select", {x, z}, a);
    RefTensor xv = testing::random_ref(pc.x, 5), gyv = testing::random_ref(ys, 6), zv = testing::random_ref(pc.x, 7);
    for (double& v : xv.data) v = std::round(v);
    for (double& v : gyv.data) v = std::round(8 * v);
    RefValues feeds{{"x", xv}, {"gy", gyv}, {"z", zv}};
    auto f32 = run_f32(g, {gx, sel}, feeds);
    auto ref = reference_eval(g, {gx.value(), sel.value()}, feeds);
    for (size_t o = 0; o < 2; ++o)
      for (size_t k = 0; k < ref[o].data.size(); ++k) ASSERT_EQ(double(f32[o][k]), ref[o].data[k]) << "output " << o << " element " << k;
  }
}

// The general-window backward declares in-place execution: over an intermediate that dies there
// it writes into its input's buffer, and the winners it needs are found before any write.
TEST(Pooling, MaxBackwardInPlaceOverADyingInput) {
  for (const auto& [kernel, stride, padding] : {std::tuple{IntList{3, 3}, IntList{2, 2}, IntList{1, 1}},
                                                std::tuple{IntList{3, 3}, IntList{1, 1}, IntList{0, 0}},
                                                std::tuple{IntList{2, 2}, IntList{2, 2}, IntList{0, 0}}}) {
    Graph g;
    const Shape xs{2, 3, 9, 8};
    Tensor x = input(g, "x", xs);
    Tensor h = x * 3.0;  // an intermediate, unlike a fed input, may be overwritten
    Attrs a{{"kernel", kernel}, {"stride", stride}, {"padding", padding}};
    const PoolGeom geo = pool_geom(xs, a);
    Tensor gy = input(g, "gy", {geo.n, geo.c, geo.oh, geo.ow});
    Tensor gx = apply("max_pool2d_backward", {h, gy}, a);
    g.add_output("gx", gx.value());
    RefTensor gyv = testing::random_ref(gy.shape(), 8);
    for (double& v : gyv.data) v = std::round(8 * v);
    RefValues feeds{{"x", testing::random_ref(xs, 9)}, {"gy", gyv}};
    ParamStore store;
    Executable exe(g, store);
    bool inplace = false;
    for (const BufferInfo& b : exe.buffers()) inplace |= b.value == gx.value() && b.inplace;
    EXPECT_TRUE(inplace) << "kernel " << kernel[0] << " stride " << stride[0];
    auto f32 = run_f32(g, {gx}, feeds)[0];
    auto ref = ref_values(g, gx, feeds);
    for (size_t k = 0; k < ref.size(); ++k) ASSERT_EQ(double(f32[k]), ref[k]) << "element " << k;
  }
}

// Average pooling counts padding in the divisor (PyTorch's default count_include_pad=True): 2x2
// windows with padding 1 over a 2x2 input of ones average 1, 2 or 4 ones over 4 positions.
TEST(Pooling, AvgCountsPaddingInTheDivisor) {
  Graph g;
  Tensor x = input(g, "x", {1, 1, 2, 2});
  Tensor y = avg_pool2d(x, {2, 2}, {1, 1}, {1, 1});
  Tensor gx = grad(sum(y), {x})[0];
  RefValues feeds{{"x", RefTensor{{1, 1, 2, 2}, {1, 1, 1, 1}}}};
  const std::vector<double> want{0.25, 0.5, 0.25, 0.5, 1, 0.5, 0.25, 0.5, 0.25};
  EXPECT_EQ(ref_values(g, y, feeds), want);
  auto f32 = run_f32(g, {y, gx}, feeds);
  EXPECT_EQ(f32[0], std::vector<float>(want.begin(), want.end()));
  // Each input position lies in four windows, each giving it a quarter.
  EXPECT_EQ(ref_values(g, gx, feeds), (std::vector<double>{1, 1, 1, 1}));
  EXPECT_EQ(f32[1], (std::vector<float>{1, 1, 1, 1}));
}

// <backward(x, gy), z> = <gy, select(x, z)> and <avg_backward(gy), z> = <gy, avg_pool(z)> on
// every tested window: each derivative op is the other's adjoint, which makes every order exist.
TEST(Pooling, DerivativeOpsAreAdjointPairs) {
  for (const PoolCase& pc : pool_test_cases()) {
    SCOPED_TRACE(pc.note);
    const Attrs a = pool_attrs(pc);
    const PoolGeom geo = pool_geom(pc.x, a);
    const Shape ys{geo.n, geo.c, geo.oh, geo.ow};
    Graph g;
    Tensor x = input(g, "x", pc.x), gy = input(g, "gy", ys), z = input(g, "z", pc.x);
    Attrs ab = a;
    ab["size"] = IntList{pc.x[2], pc.x[3]};
    Tensor lhs_max = sum(apply("max_pool2d_backward", {x, gy}, a) * z), rhs_max = sum(gy * apply("max_pool2d_select", {x, z}, a));
    Tensor lhs_avg = sum(apply("avg_pool2d_backward", {gy}, ab) * z), rhs_avg = sum(gy * apply("avg_pool2d", {z}, a));
    RefValues feeds{{"x", testing::random_ref(pc.x, 10)}, {"gy", testing::random_ref(ys, 11)}, {"z", testing::random_ref(pc.x, 12)}};
    auto r = reference_eval(g, {lhs_max.value(), rhs_max.value(), lhs_avg.value(), rhs_avg.value()}, feeds);
    EXPECT_NEAR(r[0].data[0], r[1].data[0], 1e-12);
    EXPECT_NEAR(r[2].data[0], r[3].data[0], 1e-12);
    EXPECT_NE(r[0].data[0], 0.0);
  }
}

// The f32 winners (four-float vector steps) equal the f64 ones (scalar) over a sweep of window
// geometries and row lengths, on buffers of exactly the plane's size, so that the sanitizer
// build sees any read past a row's last value.
TEST(Pooling, VectorWinnersEqualScalarWinnersOnExactBuffers) {
  size_t checked = 0;
  for (int64_t k = 1; k <= 3; ++k)
    for (int64_t st = 1; st <= 3; ++st)
      for (int64_t pad = 0; pad < k; ++pad)
        for (int64_t w = k; w <= 30; w += 3) {
          const Shape xs{1, 1, 4, w};
          const Attrs a{{"kernel", IntList{k, k}}, {"stride", IntList{st, st}}, {"padding", IntList{pad, pad}}};
          const PoolGeom geo = pool_geom(xs, a);
          RefTensor r = testing::random_ref(xs, uint64_t(100 * k + 10 * st + w));
          for (double& v : r.data) v = std::round(2 * v);  // ties
          std::vector<float> xf(r.data.begin(), r.data.end()), topf(size_t(geo.ow));
          std::vector<double> topd(size_t(geo.ow));
          std::vector<int32_t> wf(size_t(geo.oh * geo.ow)), wd(wf.size());
          plane_winners(geo, xf.data(), topf.data(), wf.data());
          plane_winners(geo, r.data.data(), topd.data(), wd.data());
          ASSERT_EQ(wf, wd) << "kernel " << k << " stride " << st << " padding " << pad << " width " << w;
          ++checked;
        }
  EXPECT_EQ(checked, 3u * 6 * 10);
}

TEST(Pooling, BadWindowsAreShapeErrors) {
  Graph g;
  Tensor x = input(g, "x", {1, 2, 5, 5});
  EXPECT_NE(testing::error_of([&] { max_pool2d(x, {2, 2}, {1, 1}, {2, 0}); }).find("smaller than the kernel"), std::string::npos);
  EXPECT_NE(testing::error_of([&] { avg_pool2d(x, {6, 6}); }).find("does not fit"), std::string::npos);
  Tensor gy = input(g, "gy", {1, 2, 3, 3});
  Attrs a{{"kernel", IntList{2, 2}}, {"size", IntList{5, 5}}};  // pools 5x5 to 2x2, not 3x3
  EXPECT_NE(testing::error_of([&] { apply("avg_pool2d_backward", {gy}, a); }).find("does not match"), std::string::npos);
}

}  // namespace
}  // namespace metagrad
