// The accuracy sweep of the f32 kernels, shared by the Accuracy test and the ulp-table figure
// tool (bench/micro/ulp_table.cpp): every elementwise op of the registry over a table of input
// domains, and softmax / log-softmax over sets of rows, run through compiled executables (what
// users get) and compared in ulps with the f64 value rounded to f32.
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "graph/op_def.h"
#include "metagrad/autodiff.h"
#include "metagrad/builder.h"
#include "metagrad/executable.h"
#include "metagrad/graph.h"
#include "metagrad/ops.h"
#include "metagrad/pipeline.h"
#include "metagrad/reference.h"

namespace metagrad::accuracy {

// The bound every inexact kernel meets; exact ones (IEEE arithmetic, comparisons) have 0.
constexpr double kBoundUlp = 4.0;

// Units in the last place between two floats: 0 for +0 and -0, for two NaNs and for equal
// infinities; 1e30 when only one is NaN.
inline double ulp_distance(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b) ? 0.0 : 1e30;
  auto ordered = [](float f) {
    const int32_t i = std::bit_cast<int32_t>(f);
    return i < 0 ? -int64_t(i & 0x7fffffff) : int64_t(i);
  };
  return double(std::llabs(ordered(a) - ordered(b)));
}

// n values of one input: evenly spaced in [lo, hi], or evenly in log-magnitude when `log`
// (0 < lo < hi); with `mirror`, every other value negated. Each is rounded to f32.
struct Segment {
  double lo, hi;
  int n;
  bool log = false;
  bool mirror = false;
};

// One row of the domain table: the op, where its inputs are drawn, and its bound.
struct Domain {
  std::string op;
  std::vector<Segment> points;  // the first input's values
  double bound_ulp;             // 0: exact
  std::vector<Segment> other = {};  // values of further inputs, paired at random with the first's
  double param = 0;             // the op's float attribute, if it has one
  bool math = false;            // a transcendental function (reported in the ulp table)
};

inline std::vector<float> segment_values(const std::vector<Segment>& segs) {
  std::vector<float> v;
  for (const Segment& s : segs)
    for (int i = 0; i < s.n; ++i) {
      const double t = s.n == 1 ? 0.0 : double(i) / double(s.n - 1);
      double x = s.log ? std::exp(std::log(s.lo) + t * (std::log(s.hi) - std::log(s.lo))) : s.lo + t * (s.hi - s.lo);
      if (s.mirror && i % 2 == 1) x = -x;
      v.push_back(float(x));
    }
  return v;
}

// Domains: the hard regions of each function, at least 1e5 points per op. Saturation of
// sigmoid / tanh / softplus, subnormal results of exp / sigmoid / softplus below -87, values
// next to 1 for log, tiny arguments where f(x) ~ x.
inline const std::vector<Domain>& domains() {
  const double inf_f = double(std::numeric_limits<float>::max());
  const std::vector<Segment> tiny{{1e-30, 1e-2, 20000, true, true}};
  auto with_tiny = [&](std::vector<Segment> s) {
    s.insert(s.end(), tiny.begin(), tiny.end());
    return s;
  };
  // Exact ops see every binade from subnormals to overflow, both signs.
  const std::vector<Segment> wide{{1e-42, 1e30, 100000, true, true}};
  const std::vector<Segment> wide_other{{1e-42, 1e30, 9973, true, true}};
  const double B = kBoundUlp;
  static const std::vector<Domain> table{
      {.op = "exp", .points = with_tiny({{-103.9, 88.7, 60000}, {-104.0, -87.0, 20000}}), .bound_ulp = B, .math = true},
      {.op = "log",
       .points = {{1e-45, inf_f, 40000, true}, {0.99, 1.01, 40000}, {1 - 1e-4, 1 + 1e-4, 20000}, {0.5, 2.0, 10000}},
       .bound_ulp = B,
       .math = true},
      {.op = "sqrt", .points = {{1e-45, inf_f, 50000, true}, {0.0, 4.0, 50000}}, .bound_ulp = 0, .math = true},
      {.op = "rsqrt", .points = {{1e-45, inf_f, 50000, true}, {0.01, 4.0, 50000}}, .bound_ulp = B, .math = true},
      {.op = "sigmoid", .points = with_tiny({{-110.0, 110.0, 80000}}), .bound_ulp = B, .math = true},
      {.op = "tanh", .points = with_tiny({{-20.0, 20.0, 80000}, {20.0, 1e30, 2000, true, true}}), .bound_ulp = B, .math = true},
      {.op = "softplus",
       .points = with_tiny({{-110.0, 110.0, 60000}, {-30.0, -5.0, 20000}, {1.0, 1e30, 10000, true, true}}),
       .bound_ulp = B,
       .math = true},
      {.op = "sin", .points = with_tiny({{-100.0, 100.0, 60000}, {100.0, 1e6, 20000, true, true}}), .bound_ulp = B, .math = true},
      {.op = "cos", .points = with_tiny({{-100.0, 100.0, 60000}, {100.0, 1e6, 20000, true, true}}), .bound_ulp = B, .math = true},
      {.op = "pow", .points = {{1e-3, 1e3, 100000, true}}, .bound_ulp = B, .other = {{-8.0, 8.0, 1601}}, .math = true},
      {.op = "neg", .points = wide, .bound_ulp = 0},
      {.op = "abs", .points = wide, .bound_ulp = 0},
      {.op = "sign", .points = wide, .bound_ulp = 0},
      {.op = "square", .points = wide, .bound_ulp = 0},
      {.op = "relu", .points = wide, .bound_ulp = 0},
      // 0.25 is exact in f32, so the f64 reference multiplies by the same slope.
      {.op = "leaky_relu", .points = wide, .bound_ulp = 0, .param = 0.25},
      {.op = "floor", .points = {{-1e7, 1e7, 100000}}, .bound_ulp = 0},
      {.op = "stop_gradient", .points = wide, .bound_ulp = 0},
      {.op = "add", .points = wide, .bound_ulp = 0, .other = wide_other},
      {.op = "sub", .points = wide, .bound_ulp = 0, .other = wide_other},
      {.op = "mul", .points = wide, .bound_ulp = 0, .other = wide_other},
      {.op = "div", .points = wide, .bound_ulp = 0, .other = wide_other},
      {.op = "maximum", .points = wide, .bound_ulp = 0, .other = wide_other},
      {.op = "minimum", .points = wide, .bound_ulp = 0, .other = wide_other},
      {.op = "equal", .points = {{-50.0, 50.0, 100000}}, .bound_ulp = 0, .other = {{-50.0, 50.0, 101}}},
      {.op = "not_equal", .points = {{-50.0, 50.0, 100000}}, .bound_ulp = 0, .other = {{-50.0, 50.0, 101}}},
      {.op = "less", .points = {{-50.0, 50.0, 100000}}, .bound_ulp = 0, .other = {{-50.0, 50.0, 101}}},
      {.op = "less_equal", .points = {{-50.0, 50.0, 100000}}, .bound_ulp = 0, .other = {{-50.0, 50.0, 101}}},
      {.op = "greater", .points = {{-50.0, 50.0, 100000}}, .bound_ulp = 0, .other = {{-50.0, 50.0, 101}}},
      {.op = "greater_equal", .points = {{-50.0, 50.0, 100000}}, .bound_ulp = 0, .other = {{-50.0, 50.0, 101}}},
      {.op = "where", .points = {{-1.0, 1.0, 100001}}, .bound_ulp = 0, .other = wide_other},
  };
  return table;
}

inline const Domain* find_domain(const std::string& op) {
  for (const Domain& d : domains())
    if (d.op == op) return &d;
  return nullptr;
}

struct Stats {
  int64_t points = 0;
  double max_ulp = 0, mean_ulp = 0;
  double max_ulp_normal = 0;  // over the points whose exact result is a normal f32
  std::vector<float> worst_in;  // inputs at the worst point
  float worst_got = 0, worst_want = 0;
  int64_t mismatches = 0;  // fused sweeps: points where the fused kernel differs from the op's own
};

// The inputs of a domain's sweep, one vector per operand, paired deterministically.
inline std::vector<std::vector<float>> domain_inputs(const Domain& d) {
  const OpDef& def = OpRegistry::get().at(d.op);
  std::vector<std::vector<float>> in{segment_values(d.points)};
  const std::vector<float> other = segment_values(d.other.empty() ? d.points : d.other);
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<size_t> pick(0, other.size() - 1);
  for (int k = 1; k < def.num_inputs; ++k) {
    std::vector<float> v(in[0].size());
    for (float& x : v) x = other[pick(rng)];
    in.push_back(std::move(v));
  }
  return in;
}

inline Attrs domain_attrs(const Domain& d) {
  const OpDef& def = OpRegistry::get().at(d.op);
  Attrs a;
  if (!def.eltwise_param.empty()) a[def.eltwise_param] = d.param;
  return a;
}

// Runs `g` (inputs in0.., output "y") compiled on `in` and returns y.
inline std::vector<float> run_compiled(const Graph& g, const std::vector<std::vector<float>>& in) {
  ParamStore store;
  Executable exe(g, store);
  std::vector<Feed> feeds;
  for (size_t k = 0; k < in.size(); ++k)
    feeds.push_back(Feed::f32("in" + std::to_string(k), {int64_t(in[k].size())}, in[k]));
  exe.run(feeds);
  auto y = exe.fetch("y");
  return {y.begin(), y.end()};
}

inline Stats compare(const std::vector<std::vector<float>>& in, const std::vector<float>& got,
                     const std::vector<double>& want) {
  Stats s;
  s.points = int64_t(got.size());
  double total = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double u = ulp_distance(got[i], float(want[i]));
    total += u;
    if (std::abs(want[i]) >= double(std::numeric_limits<float>::min())) s.max_ulp_normal = std::max(s.max_ulp_normal, u);
    if (u > s.max_ulp || s.worst_in.empty()) {
      s.max_ulp = std::max(s.max_ulp, u);
      s.worst_in.clear();
      for (const auto& v : in) s.worst_in.push_back(v[i]);
      s.worst_got = got[i];
      s.worst_want = float(want[i]);
    }
  }
  s.mean_ulp = got.empty() ? 0 : total / double(got.size());
  return s;
}

// The op alone, as a one-op graph.
inline Stats sweep_op(const Domain& d, std::vector<float>* result = nullptr) {
  const OpDef& def = OpRegistry::get().at(d.op);
  const auto in = domain_inputs(d);
  Graph g;
  std::vector<Value> args;
  RefValues feeds;
  for (size_t k = 0; k < in.size(); ++k) {
    const std::string name = "in" + std::to_string(k);
    args.push_back(g.add_input(name, {DType::f32, {int64_t(in[k].size())}}));
    feeds[name] = RefTensor{{int64_t(in[k].size())}, std::vector<double>(in[k].begin(), in[k].end())};
  }
  Value y = g.add_op(def.name, args, domain_attrs(d));
  g.add_output("y", y);
  const std::vector<float> got = run_compiled(g, in);
  const std::vector<double> want = reference_eval(g, {y}, feeds)[0].data;
  if (result) *result = got;
  return compare(in, got, want);
}

// The op inside a fused_elementwise program, between two exact multiplications by one:
// mul(x, 1), op(that, rest...), mul(that, 1). `mismatches` counts points that differ from the
// op's own kernel.
inline Stats sweep_fused(const Domain& d) {
  const OpDef& def = OpRegistry::get().at(d.op);
  std::vector<float> alone;
  sweep_op(d, &alone);
  auto in = domain_inputs(d);
  const int64_t n = int64_t(in[0].size()), one = int64_t(in.size());
  Graph g;
  std::vector<Value> args;
  RefValues feeds;
  for (size_t k = 0; k < in.size(); ++k) {
    const std::string name = "in" + std::to_string(k);
    args.push_back(g.add_input(name, {DType::f32, {n}}));
    feeds[name] = RefTensor{{n}, std::vector<double>(in[k].begin(), in[k].end())};
  }
  args.push_back(g.add_constant({DType::f32, {}}, {1.0}));
  std::vector<int64_t> prog{0, one, -1};
  for (int k = 1; k < def.num_inputs; ++k) prog.push_back(k);
  prog.insert(prog.end(), {-2, one});
  Attrs a{{"ops", "mul," + d.op + ",mul"}, {"args", prog}, {"params", std::vector<double>{0.0, d.param, 0.0}}, {"shape", Shape{n}}};
  Value y = g.add_op("fused_elementwise", args, a);
  g.add_output("y", y);
  const std::vector<float> got = run_compiled(g, in);
  const std::vector<double> want = reference_eval(g, {y}, feeds)[0].data;
  Stats s = compare(in, got, want);
  for (int64_t i = 0; i < n; ++i) s.mismatches += std::bit_cast<uint32_t>(got[size_t(i)]) != std::bit_cast<uint32_t>(alone[size_t(i)]);
  return s;
}

// Softmax and log-softmax: sets of rows, each a kind of input.
struct RowSet {
  std::string what;
  int64_t rows, len;
  enum Kind { Uniform, Saturated, Ties } kind;
  double lo, hi;       // Uniform: the values; Saturated: the gaps below the dominant entry
  bool axis0 = false;  // rows along axis 0 (strided) instead of the last axis
};

inline const std::vector<RowSet>& row_sets() {
  static const std::vector<RowSet> sets{
      {"rows of 4 in [-20, 20]", 10000, 4, RowSet::Uniform, -20, 20},
      {"rows of 10 in [-50, 50]", 2000, 10, RowSet::Uniform, -50, 50},
      {"saturated rows of 5 (gaps 15-80)", 4000, 5, RowSet::Saturated, 15, 80},
      {"rows of 3 with subnormal probabilities (gaps 87-104)", 4000, 3, RowSet::Saturated, 87, 104},
      {"rows of 6 with a tied maximum", 1000, 6, RowSet::Ties, -10, 10},
      {"rows of 1000 in [-10, 10]", 8, 1000, RowSet::Uniform, -10, 10},
      {"rows of 4 along axis 0", 2000, 4, RowSet::Uniform, -20, 20, true},
  };
  return sets;
}

// Row-major [rows, len] values of a row set.
inline std::vector<float> row_values(const RowSet& s) {
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> u(s.lo, s.hi), top(-1000, 100);
  std::uniform_int_distribution<int64_t> at(0, s.len - 1);
  std::vector<float> v(size_t(s.rows * s.len));
  for (int64_t r = 0; r < s.rows; ++r) {
    float* row = v.data() + r * s.len;
    if (s.kind == RowSet::Saturated) {
      const double peak = top(rng);
      const int64_t j = at(rng);
      for (int64_t k = 0; k < s.len; ++k) row[k] = float(k == j ? peak : peak - u(rng));
    } else {
      for (int64_t k = 0; k < s.len; ++k) row[k] = float(u(rng));
      if (s.kind == RowSet::Ties) {
        const int64_t j = at(rng), k = (j + 1 + at(rng) % (s.len - 1)) % s.len;
        row[j] = row[k] = float(*std::max_element(row, row + s.len) + 1.0f);
      }
    }
  }
  return v;
}

// Softmax (or log-softmax) of one row in f64, accurate where it matters: with T the sum of
// exp(x - max) over every entry but the first maximum, log_softmax = x - max - log1p(T), so a
// dominant entry's value is not the rounding error of log(1 + T).
inline void exact_softmax_row(const float* x, int64_t len, bool log_space, double* y) {
  const int64_t m = std::max_element(x, x + len) - x;
  double t = 0;
  for (int64_t k = 0; k < len; ++k)
    if (k != m) t += std::exp(double(x[k]) - double(x[m]));
  for (int64_t k = 0; k < len; ++k) {
    const double d = double(x[k]) - double(x[m]);
    y[k] = log_space ? d - std::log1p(t) : std::exp(d) / (1.0 + t);
  }
}

struct RowStats {
  Stats stats;
  int64_t dominant_misses = 0;  // saturated rows whose dominant entry is not the rounded f64 value
  int64_t above_bounds = 0;     // log-probabilities above 0, probabilities above 1
};

inline RowStats sweep_rows(const std::string& op, const RowSet& s) {
  const bool log_space = op == "log_softmax";
  const std::vector<float> x = row_values(s);
  // Along axis 0 the tensor is [len, rows]: element (k, r) is entry k of row r.
  std::vector<float> fed = x;
  const Shape shape = s.axis0 ? Shape{s.len, s.rows} : Shape{s.rows, s.len};
  if (s.axis0)
    for (int64_t r = 0; r < s.rows; ++r)
      for (int64_t k = 0; k < s.len; ++k) fed[size_t(k * s.rows + r)] = x[size_t(r * s.len + k)];
  Graph g;
  Value in = g.add_input("in0", {DType::f32, shape});
  g.add_output("y", g.add_op(op, {in}, {{"axis", int64_t(s.axis0 ? 0 : 1)}}));
  ParamStore store;
  Executable exe(g, store);
  exe.run({Feed::f32("in0", shape, fed)});
  auto y = exe.fetch("y");
  std::vector<float> got(x.size());
  std::vector<double> want(x.size());
  for (int64_t r = 0; r < s.rows; ++r) {
    exact_softmax_row(x.data() + r * s.len, s.len, log_space, want.data() + r * s.len);
    for (int64_t k = 0; k < s.len; ++k) got[size_t(r * s.len + k)] = y[size_t(s.axis0 ? k * s.rows + r : r * s.len + k)];
  }
  RowStats out;
  out.stats = compare({x}, got, want);
  for (size_t i = 0; i < got.size(); ++i) out.above_bounds += log_space ? got[i] > 0.f : got[i] > 1.f;
  if (s.kind == RowSet::Saturated)
    for (int64_t r = 0; r < s.rows; ++r) {
      const int64_t m = std::max_element(x.data() + r * s.len, x.data() + (r + 1) * s.len) - x.data();
      out.dominant_misses += got[size_t(m)] != float(want[size_t(m)]);
    }
  return out;
}

// Issue 23's second-order case: a Hessian-vector product through a cross-entropy over
// -pairwise_sq_dist logits (a prototype loss), the projection's weights as the variable. Four
// queries, three prototypes; the first query's prediction is confident (at W = I its logits are
// -628, -658, -683, the true class nearest by 30 and 55), the others' are not.
struct HvpCase {
  double rel_error = 0;        // |h32 - h64| / |h64|, Euclidean norms
  double norm = 0;             // |h64|
  float dominant_logprob = 0;  // the f32 plan's log-probability of the confident query's class
  double dominant_exact = 0;   // and the f64 reference's
};

inline HvpCase confident_prototype_hvp(bool optimized) {
  Graph g;
  Tensor q = input(g, "q", {4, 3}), p = input(g, "p", {3, 3});
  Tensor labels = input(g, "labels", {4}, DType::i32);
  Tensor w = parameter(g, "w", {3, 3}, Init::zeros());
  Tensor logits = -pairwise_sq_dist(matmul(q, w), matmul(p, w));
  Tensor loss = cross_entropy(logits, labels);
  Tensor logp = log_softmax(logits, -1);
  const std::vector<double> v{0.3, -0.2, 0.5, 0.1, 0.4, -0.3, -0.6, 0.2, 0.1};
  Tensor h = hvp(loss, {w}, {constant(g, {3, 3}, v)})[0];
  g.add_output("hvp", h.value());
  g.add_output("logp", logp.value());
  if (optimized) optimize(g);
  // W near the identity, exact in f32.
  const std::vector<double> w0{1.0, 0.0625, -0.03125, -0.046875, 1.0, 0.015625, 0.0234375, -0.0078125, 1.0};
  const std::vector<double> qv{-1.75, -3.0, 24.816, 1.0, 1.0, 0.5, 0.5, 4.0, 0.0, 3.5, 0.5, 0.3};
  const std::vector<double> pv{0, 0, 0, 4, 0, 0, 0, 5, 0};
  const std::vector<float> qf(qv.begin(), qv.end()), pf(pv.begin(), pv.end()), wf(w0.begin(), w0.end());
  RefValues feeds{{"q", {{4, 3}, std::vector<double>(qf.begin(), qf.end())}},
                  {"p", {{3, 3}, pv}},
                  {"labels", {{4}, {0.0, 0.0, 2.0, 1.0}}}};
  const Value hv = g.output("hvp"), lv = g.output("logp");
  auto want = reference_eval(g, {hv, lv}, feeds, {{"w", {{3, 3}, w0}}});
  ParamStore store;
  Executable exe(g, store);
  store.set("w", wf);
  const std::vector<int32_t> label{0, 0, 2, 1};
  exe.run({Feed::f32("q", {4, 3}, qf), Feed::f32("p", {3, 3}, pf), Feed::i32("labels", {4}, label)});
  auto got = exe.fetch("hvp");
  HvpCase c;
  double diff = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    diff += (double(got[i]) - want[0].data[i]) * (double(got[i]) - want[0].data[i]);
    c.norm += want[0].data[i] * want[0].data[i];
  }
  c.norm = std::sqrt(c.norm);
  c.rel_error = std::sqrt(diff) / c.norm;
  c.dominant_logprob = exe.fetch("logp")[0];
  c.dominant_exact = want[1].data[0];
  return c;
}

}  // namespace metagrad::accuracy
