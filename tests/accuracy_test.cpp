// Accuracy of the f32 kernels users get (compiled executables), in ulps against the f64 value
// rounded to f32: every elementwise op of the registry over its domain table entry, alone and
// inside fused_elementwise; softmax and log-softmax over saturated and subnormal rows; exact
// values where the math is exact; and issue 23's Hessian-vector product.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>

#include "tests/accuracy_sweep.h"

namespace metagrad {
namespace {

using namespace accuracy;

std::string describe(const Stats& s) {
  std::string in;
  for (float v : s.worst_in) in += (in.empty() ? "" : ", ") + std::to_string(v);
  return "worst at (" + in + "): got " + std::to_string(s.worst_got) + " (" + std::to_string(std::bit_cast<uint32_t>(s.worst_got)) +
         "), want " + std::to_string(s.worst_want) + " (" + std::to_string(std::bit_cast<uint32_t>(s.worst_want)) + ")";
}

// The table covers the registry: a new elementwise op cannot skip the sweep. fused_elementwise
// is measured through every entry (it runs each op of the table inside a program).
TEST(Accuracy, EveryElementwiseOpHasADomain) {
  size_t covered = 0;
  for (const auto& [name, def] : OpRegistry::get().all()) {
    if (!def.elementwise || name == "fused_elementwise") continue;
    EXPECT_NE(find_domain(name), nullptr) << "elementwise op " << name << " has no entry in tests/accuracy_sweep.h domains()";
    ++covered;
  }
  EXPECT_GT(covered, 20u);
  for (const Domain& d : domains()) {
    const OpDef* def = OpRegistry::get().find(d.op);
    ASSERT_NE(def, nullptr) << "domain of unknown op " << d.op;
    EXPECT_TRUE(def->elementwise) << d.op;
    EXPECT_NE(def->eltwise_f32, nullptr) << d.op << " cannot be fused";
    EXPECT_LE(d.bound_ulp, kBoundUlp) << d.op;
  }
}

TEST(Accuracy, ElementwiseKernelsWithinBound) {
  for (const Domain& d : domains()) {
    SCOPED_TRACE(d.op);
    const Stats s = sweep_op(d);
    EXPECT_GE(s.points, 100000);
    EXPECT_LE(s.max_ulp, d.bound_ulp) << describe(s);
  }
}

// The same op gives the same numbers inside a fused program as alone.
TEST(Accuracy, FusedKernelsEqualTheOpsOwn) {
  for (const Domain& d : domains()) {
    SCOPED_TRACE(d.op);
    const Stats s = sweep_fused(d);
    EXPECT_LE(s.max_ulp, d.bound_ulp) << describe(s);
    EXPECT_EQ(s.mismatches, 0) << "points where the fused kernel differs from " << d.op << "'s own";
  }
}

TEST(Accuracy, SoftmaxAndLogSoftmaxWithinBound) {
  for (const char* op : {"softmax", "log_softmax"}) {
    int64_t points = 0;
    for (const RowSet& r : row_sets()) {
      SCOPED_TRACE(std::string(op) + ", " + r.what);
      const RowStats s = sweep_rows(op, r);
      points += s.stats.points;
      EXPECT_LE(s.stats.max_ulp, kBoundUlp) << describe(s.stats);
      EXPECT_EQ(s.above_bounds, 0) << "log-probabilities above 0 or probabilities above 1";
      EXPECT_EQ(s.dominant_misses, 0) << "dominant entries of saturated rows that are not the f64 value rounded";
    }
    EXPECT_GE(points, 100000) << op;
  }
}

// Runs op over `x` as a one-op graph (and as a fused program) and returns the result.
std::vector<float> run_op(const std::string& op, const std::vector<float>& x, bool fused) {
  Graph g;
  Value in = g.add_input("in0", {DType::f32, {int64_t(x.size())}});
  Value y = fused ? g.add_op("fused_elementwise", {in},
                             {{"ops", op}, {"args", std::vector<int64_t>{0}}, {"params", std::vector<double>{0.0}},
                              {"shape", Shape{int64_t(x.size())}}})
                  : g.add_op(op, {in});
  g.add_output("y", y);
  return run_compiled(g, {x});
}

// Exact where the math is exact, including infinities, signed zeros and NaN.
TEST(Accuracy, ExactValues) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    const char* op;
    float x, want;
  };
  const Case cases[] = {
      {"log", 1.f, 0.f},       {"log", 0.f, -inf},         {"log", -0.f, -inf},        {"log", inf, inf},
      {"log", -1.f, nan},      {"log", 2.f, float(std::log(2.0))},                      {"exp", 0.f, 1.f},
      {"exp", -inf, 0.f},      {"exp", inf, inf},          {"exp", 89.f, inf},         {"exp", -104.f, 0.f},
      {"sigmoid", 0.f, 0.5f},  {"sigmoid", inf, 1.f},      {"sigmoid", -inf, 0.f},     {"tanh", 0.f, 0.f},
      {"tanh", -0.f, -0.f},    {"tanh", inf, 1.f},         {"tanh", -inf, -1.f},       {"softplus", -inf, 0.f},
      {"softplus", inf, inf},  {"softplus", 0.f, float(std::log(2.0))},                {"rsqrt", 4.f, 0.5f},
      {"rsqrt", 0.f, inf},     {"sqrt", 4.f, 2.f},         {"sin", 0.f, 0.f},          {"cos", 0.f, 1.f},
  };
  for (const Case& c : cases)
    for (bool fused : {false, true}) {
      const float got = run_op(c.op, {c.x}, fused)[0];
      EXPECT_EQ(ulp_distance(got, c.want), 0) << c.op << "(" << c.x << ") = " << got << ", want " << c.want
                                              << (fused ? " (fused)" : "");
      if (c.want == 0) {
        EXPECT_EQ(std::signbit(got), std::signbit(c.want)) << c.op << "(" << c.x << ")";
      }
    }
  for (const char* op : {"exp", "log", "sqrt", "rsqrt", "sigmoid", "tanh", "softplus", "sin", "cos"})
    for (bool fused : {false, true}) EXPECT_TRUE(std::isnan(run_op(op, {nan}, fused)[0])) << op << "(NaN)";
}

// Issue 23's rows: the dominant log-probability of a saturated row is the f64 value rounded,
// never above 0.
TEST(Accuracy, DominantLogProbabilityIsExact) {
  const std::vector<std::vector<float>> rows{{0, -30, -30}, {-628, -658, -683}, {5, -95, -100}};
  for (const auto& row : rows) {
    Graph g;
    Value in = g.add_input("in0", {DType::f32, {1, 3}});
    g.add_output("y", g.add_op("log_softmax", {in}, {{"axis", int64_t(1)}}));
    ParamStore store;
    Executable exe(g, store);
    exe.run({Feed::f32("in0", {1, 3}, row)});
    double want[3];
    exact_softmax_row(row.data(), 3, true, want);
    const float got = exe.fetch("y")[0];
    EXPECT_EQ(got, float(want[0])) << "log_softmax([" << row[0] << ", " << row[1] << ", " << row[2] << "])[0]";
    EXPECT_LT(got, 0.f);
  }
}

// The compiled f32 plan of a Hessian-vector product through a confident cross-entropy agrees
// with the f64 reference interpreter of the same graph (issue 23 measured 290% apart).
TEST(Accuracy, ConfidentCrossEntropyHvp) {
  for (bool optimized : {false, true}) {
    SCOPED_TRACE(optimized ? "optimized" : "as built");
    const HvpCase h = confident_prototype_hvp(optimized);
    EXPECT_GT(h.norm, 1e-3);
    EXPECT_LT(h.rel_error, 1e-4);
    EXPECT_EQ(h.dominant_logprob < 0, true);
    EXPECT_NEAR(h.dominant_logprob, h.dominant_exact, 1e-3 * std::abs(h.dominant_exact));
  }
}

}  // namespace
}  // namespace metagrad
