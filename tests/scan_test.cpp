// Loops in the IR: the scan builder and verifier, text/DOT/JSON, the reference and the compiled
// loop against the unrolled graph, passes on loops, and derivatives through loops to third order.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "graph/op_def.h"
#include "metagrad/autodiff.h"
#include "metagrad/executable.h"
#include "metagrad/ops.h"
#include "metagrad/pipeline.h"
#include "metagrad/reference.h"
#include "metagrad/scan.h"
#include "metagrad/serialize.h"
#include "ops/scan.h"
#include "runtime/arena_plan.h"
#include "tests/alloc_counter.h"
#include "tests/grad_check.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

using testing::error_of;
using testing::random_ref;

// One step of a small recurrent model, shared by the loop body and the unrolled graph:
// h' = tanh(h W + x), y = sum(h * h).
std::pair<Tensor, Tensor> rnn_step(const Tensor& h, const Tensor& x, const Tensor& w) {
  Tensor next = tanh(matmul(h, w) + x);
  return {next, sum(h * h)};
}

struct Rnn {
  Graph g;
  Tensor h0, xs, w, loss;
};

// The loop (or its unrolled twin) over T steps; the loss reads the final carry and the stacked
// outputs.
Rnn build_rnn(int64_t T, bool loop) {
  Rnn r;
  r.h0 = input(r.g, "h0", {2, 3});
  r.xs = input(r.g, "xs", {T, 2, 3});
  r.w = input(r.g, "w", {3, 3});
  Tensor hT, ys;
  if (loop) {
    ScanResult s = scan(T, {r.h0}, {r.xs}, {r.w}, [](const auto& c, const auto& x, const auto& k) {
      auto [next, y] = rnn_step(c[0], x[0], k[0]);
      return ScanStep{{next}, {y}};
    });
    hT = s.carries[0], ys = s.ys[0];
  } else {
    Tensor h = r.h0;
    std::vector<Tensor> y;
    for (int64_t t = 0; t < T; ++t) {
      Tensor xt = reshape(slice(r.xs, {t, 0, 0}, {t + 1, 2, 3}), {2, 3});
      auto [next, yt] = rnn_step(h, xt, r.w);
      y.push_back(reshape(yt, {1}));
      h = next;
    }
    hT = h, ys = concat(y, 0);
  }
  RefTensor c = random_ref({T}, 7);
  r.loss = sum(square(hT)) + sum(ys * constant(r.g, {T}, c.data));
  r.g.add_output("loss", r.loss.value());
  return r;
}

RefValues rnn_feeds(int64_t T) {
  RefValues f;
  f["h0"] = random_ref({2, 3}, 1);
  f["xs"] = random_ref({T, 2, 3}, 2);
  f["w"] = random_ref({3, 3}, 3, -0.8, 0.8);
  return f;
}

int count_ops(const Graph& g, const std::string& op) {
  int n = 0;
  for (const Node& node : g.nodes()) n += node.kind == NodeKind::Op && node.op->name == op;
  return n;
}

TEST(Scan, ReferenceEqualsUnrolledGraph) {
  const int64_t T = 5;
  Rnn loop = build_rnn(T, true), unrolled = build_rnn(T, false);
  EXPECT_EQ(count_ops(loop.g, "scan"), 1);
  EXPECT_EQ(count_ops(loop.g, "matmul"), 0) << "the body's ops live in the body";
  RefValues f = rnn_feeds(T);
  double a = reference_eval(loop.g, {loop.loss.value()}, f)[0].data[0];
  double b = reference_eval(unrolled.g, {unrolled.loss.value()}, f)[0].data[0];
  EXPECT_NEAR(a, b, 1e-12 * std::abs(b));
}

TEST(Scan, VerifierChecksTheBodySignature) {
  Graph g;
  Tensor c = input(g, "c", {3}), xs = input(g, "xs", {4, 3});
  // A body whose carry changes type.
  EXPECT_NE(error_of([&] {
              scan(4, {c}, {xs}, {}, [](const auto& cs, const auto& x, const auto&) {
                return ScanStep{{sum(cs[0] + x[0])}, {}};
              });
            }).find("body output 0 (\"c0'\") is f32[], but carry 0 is f32[3]"),
            std::string::npos);
  // A stacked input of the wrong length.
  EXPECT_NE(error_of([&] {
              scan(5, {c}, {xs}, {}, [](const auto& cs, const auto&, const auto&) { return ScanStep{{cs[0]}, {}}; });
            }).find("leading dimension must be the length 5"),
            std::string::npos);
  // A value of the enclosing graph used inside the body.
  EXPECT_NE(error_of([&] {
              scan(4, {c}, {xs}, {}, [&](const auto& cs, const auto&, const auto&) { return ScanStep{{c}, {cs[0]}}; });
            }).find("not a value of the body graph"),
            std::string::npos);
  // The verifier re-checks a node whose body was swapped for one of another signature.
  ScanResult ok = scan(4, {c}, {xs}, {}, [](const auto& cs, const auto& x, const auto&) {
    return ScanStep{{cs[0] * x[0]}, {}};
  });
  Graph bad = g;
  auto other = std::make_shared<Graph>();
  Tensor oc = input(*other, "c0", {2});
  Tensor ox = input(*other, "x0", {3});
  other->add_output("c0'", (oc * 2.0).value());
  (void)ox;
  bad.node(ok.carries[0].value().node).body = other;
  EXPECT_NE(error_of([&] { verify(bad); }).find("body input 0 (carry \"c0\") is f32[2], the loop passes f32[3]"),
            std::string::npos);
}

// save_every = k keeps the rows of the store-all saved carries at the iterations the loop runs as
// its 0th, kth, 2kth, ... (the every-k segment starts, made at compile time), in row order: the
// shape rule, the f64 reference and the kernel, forward and reverse, k dividing the length or
// not, k = 1 and k past the length; the text form round-trips; save_every needs save_carries.
TEST(Scan, SavingEveryKthCarryKeepsThoseRowsOfStoreAll) {
  const int64_t T = 7;
  for (bool reverse : {false, true})
    for (int64_t k : {1, 2, 3, 7, 9}) {
      SCOPED_TRACE(std::string(reverse ? "reverse" : "forward") + ", k " + std::to_string(k));
      Graph g;
      Tensor h0 = input(g, "h0", {2, 3}), xs = input(g, "xs", {T, 2, 3}), w = input(g, "w", {3, 3});
      ScanResult loop = scan(
          T, {h0}, {xs}, {w},
          [](const auto& c, const auto& x, const auto& ks) {
            auto [next, y] = rnn_step(c[0], x[0], ks[0]);
            return ScanStep{{next}, {y}};
          },
          reverse);
      const Node n = g.node(loop.carries[0].value().node);
      auto saving = [&](int64_t every) {
        Attrs a = n.attrs;
        a["save_carries"] = int64_t(1);
        a["save_every"] = every;
        return g.add_op_multi("scan", n.inputs, a, "", n.body).back();
      };
      const Value all = saving(1), kept = saving(k);
      const int64_t rows = (T + k - 1) / k;
      ASSERT_EQ(g.type(kept).shape, (Shape{rows, 2, 3}));
      g.add_output("all", all);
      g.add_output("kept", kept);
      // Row r holds the carry of the iteration run as the (r k)th (reverse: rows are in loop index
      // order, so the last row is the first run).
      auto iteration = [&](int64_t r) {
        const int64_t j = (reverse ? rows - 1 - r : r) * k;
        return reverse ? T - 1 - j : j;
      };
      const RefValues f = rnn_feeds(T);
      const auto ref = reference_eval(g, {all, kept}, f);
      for (int64_t r = 0; r < rows; ++r)
        for (size_t e = 0; e < 6; ++e)
          ASSERT_EQ(ref[1].data[size_t(r) * 6 + e], ref[0].data[size_t(iteration(r)) * 6 + e]) << "row " << r;
      ParamStore store;
      Executable exe(g, store);
      std::vector<float> h(f.at("h0").data.begin(), f.at("h0").data.end()), x(f.at("xs").data.begin(), f.at("xs").data.end()),
          wv(f.at("w").data.begin(), f.at("w").data.end());
      exe.run({Feed::f32("h0", {2, 3}, h), Feed::f32("xs", {T, 2, 3}, x), Feed::f32("w", {3, 3}, wv)});
      const auto got_all = exe.fetch(0), got_kept = exe.fetch(1);
      ASSERT_EQ(got_kept.size(), size_t(rows) * 6);
      for (int64_t r = 0; r < rows; ++r)
        for (size_t e = 0; e < 6; ++e) {
          EXPECT_EQ(got_kept[size_t(r) * 6 + e], got_all[size_t(iteration(r)) * 6 + e]) << "row " << r;
          EXPECT_NEAR(got_kept[size_t(r) * 6 + e], ref[1].data[size_t(r) * 6 + e], 1e-5);
        }
      const std::string text = to_text(g);
      EXPECT_EQ(to_text(parse_text(text)), text);
    }
  Graph g;
  Tensor c = input(g, "c", {3}), xs = input(g, "xs", {4, 3});
  ScanResult ok = scan(4, {c}, {xs}, {}, [](const auto& cs, const auto& x, const auto&) {
    return ScanStep{{cs[0] * x[0]}, {}};
  });
  Attrs a = g.node(ok.carries[0].value().node).attrs;
  a["save_every"] = int64_t(2);
  EXPECT_NE(error_of([&] { g.add_op_multi("scan", {c.value(), xs.value()}, a, "", g.node(ok.carries[0].value().node).body); })
                .find("save_every 2 needs save_carries"),
            std::string::npos);
}

// A loop inside a loop, for the writers and the runtime.
Graph nested_graph() {
  Graph g;
  Tensor c = input(g, "c", {3}), xs = input(g, "xs", {2, 4, 3}), k = input(g, "k", {3});
  ScanResult outer = scan(2, {c}, {xs}, {k}, [](const auto& cs, const auto& x, const auto& ks) {
    ScanResult inner = scan(4, {cs[0]}, {x[0]}, {ks[0]}, [](const auto& c2, const auto& x2, const auto& k2) {
      return ScanStep{{sin(c2[0] * k2[0]) + x2[0]}, {sum(c2[0])}};
    });
    return ScanStep{{inner.carries[0] * 0.5}, {inner.ys[0]}};
  });
  g.add_output("c", outer.carries[0].value());
  g.add_output("ys", outer.ys[0].value());
  return g;
}

TEST(Scan, TextRoundTripAndWriters) {
  Graph g = nested_graph();
  std::string text = to_text(g);
  EXPECT_NE(text.find("} : f32[3], f32[4]"), std::string::npos) << text;
  Graph back = parse_text(text);
  EXPECT_EQ(to_text(back), text);
  RefValues f{{"c", random_ref({3}, 1)}, {"xs", random_ref({2, 4, 3}, 2)}, {"k", random_ref({3}, 3)}};
  auto a = reference_eval(g, {g.output("ys")}, f)[0].data, b = reference_eval(back, {back.output("ys")}, f)[0].data;
  EXPECT_EQ(a, b);
  std::string dot = to_dot(g);
  EXPECT_NE(dot.find("subgraph cluster_n3"), std::string::npos) << dot;
  EXPECT_NE(dot.find("subgraph cluster_n3b"), std::string::npos) << "the inner loop is a cluster in the outer body";
  std::string json = to_json(g);
  EXPECT_NE(json.find("\"body\""), std::string::npos);
  // A body whose declared types disagree is refused with the line of the loop.
  std::string broken = text;
  broken.replace(broken.find("} : f32[3], f32[4]"), 18, "} : f32[3], f32[5]");
  EXPECT_NE(error_of([&] { parse_text(broken); }).find("scan infers"), std::string::npos);
}

TEST(Scan, CompiledLoopEqualsReferenceWithoutAllocating) {
  Graph g = nested_graph();
  RefValues f{{"c", random_ref({3}, 1)}, {"xs", random_ref({2, 4, 3}, 2)}, {"k", random_ref({3}, 3)}};
  auto ref = reference_eval(g, {g.output("c"), g.output("ys")}, f);
  ParamStore store;
  Executable exe(g, store);
  std::vector<float> c = testing::to_f32(f["c"]), xs = testing::to_f32(f["xs"]), k = testing::to_f32(f["k"]);
  std::vector<Feed> feeds{Feed::f32("c", {3}, c), Feed::f32("xs", {2, 4, 3}, xs), Feed::f32("k", {3}, k)};
  exe.run(feeds);
  for (size_t o = 0; o < 2; ++o) {
    auto got = exe.fetch(o);
    ASSERT_EQ(got.size(), ref[o].data.size());
    for (size_t e = 0; e < got.size(); ++e) EXPECT_NEAR(got[e], ref[o].data[e], 1e-5) << "output " << o << " element " << e;
  }
  testing::AllocCount count = testing::count_allocations([&] {
    for (int i = 0; i < 10; ++i) exe.run(feeds);
  });
  EXPECT_EQ(count.ours, 0) << "allocations made by the loop kernel";
}

TEST(Scan, PermutedCarriesDoNotOverwriteEachOther) {
  Graph g;
  Tensor a = input(g, "a", {2}), b = input(g, "b", {2});
  ScanResult s = scan(3, {a, b}, {}, {}, [](const auto& c, const auto&, const auto&) {
    return ScanStep{{c[1], c[0] + 1.0}, {c[0]}};
  });
  g.add_output("a", s.carries[0].value());
  g.add_output("b", s.carries[1].value());
  g.add_output("ys", s.ys[0].value());
  ParamStore store;
  Executable exe(g, store);
  std::vector<float> av{1, 2}, bv{10, 20};
  exe.run({Feed::f32("a", {2}, av), Feed::f32("b", {2}, bv)});
  // (a, b): (1, 10) -> (10, 2) -> (2, 11) -> (11, 3)
  EXPECT_EQ(std::vector<float>(exe.fetch(0).begin(), exe.fetch(0).end()), (std::vector<float>{11, 21}));
  EXPECT_EQ(std::vector<float>(exe.fetch(1).begin(), exe.fetch(1).end()), (std::vector<float>{3, 4}));
  EXPECT_EQ(std::vector<float>(exe.fetch(2).begin(), exe.fetch(2).end()), (std::vector<float>{1, 2, 10, 20, 2, 3}));
}

TEST(Scan, DerivativeReadsPassedThroughCarriesItSaved) {
  // Carry 0 is the body's input c[1] passed through unchanged: the derivative's saved carries
  // include it, and the backward body reads them (d tanh(c0 c1), d c0^2), so a stale copy shows.
  Graph g;
  Tensor a = input(g, "a", {2}), b = input(g, "b", {2});
  ScanResult s = scan(4, {a, b}, {}, {}, [](const auto& c, const auto&, const auto&) {
    return ScanStep{{c[1], tanh(c[0] * c[1])}, {c[0] * c[0]}};
  });
  Tensor loss = sum(s.carries[0] * s.carries[1]) + sum(s.ys[0]);
  std::vector<Tensor> d = grad(loss, {a, b});
  g.add_output("da", d[0].value());
  g.add_output("db", d[1].value());
  RefValues f{{"a", random_ref({2}, 1)}, {"b", random_ref({2}, 2)}};
  auto ref = reference_eval(g, {g.output("da"), g.output("db")}, f);
  ParamStore store;
  Executable exe(g, store);
  std::vector<float> av = testing::to_f32(f["a"]), bv = testing::to_f32(f["b"]);
  exe.run({Feed::f32("a", {2}, av), Feed::f32("b", {2}, bv)});
  for (size_t o = 0; o < 2; ++o)
    for (size_t e = 0; e < 2; ++e) EXPECT_NEAR(exe.fetch(o)[e], ref[o].data[e], 1e-5) << "output " << o << " element " << e;
}

TEST(Scan, GradientsEqualTheUnrolledGraphs) {
  const int64_t T = 4;
  Rnn loop = build_rnn(T, true), unrolled = build_rnn(T, false);
  RefValues f = rnn_feeds(T);
  auto g1 = grad(loop.loss, {loop.h0, loop.xs, loop.w});
  auto u1 = grad(unrolled.loss, {unrolled.h0, unrolled.xs, unrolled.w});
  std::vector<Value> gv, uv;
  for (auto& t : g1) gv.push_back(t.value());
  for (auto& t : u1) uv.push_back(t.value());
  auto a = reference_eval(loop.g, gv, f), b = reference_eval(unrolled.g, uv, f);
  for (size_t i = 0; i < a.size(); ++i)
    for (size_t e = 0; e < a[i].data.size(); ++e) EXPECT_NEAR(a[i].data[e], b[i].data[e], 1e-12) << i << "/" << e;
}

TEST(Scan, FirstAndSecondOrderAgainstFiniteDifferences) {
  const int64_t T = 3;
  Rnn loop = build_rnn(T, true);
  testing::check_gradients(loop.g, loop.loss, {loop.h0, loop.w}, rnn_feeds(T), 1e-6);
}

// d^3/dw^3 through a loop: the third derivative along a direction v, <grad <grad <grad L, v>, v>, v>,
// against central differences of the second-order quantity.
TEST(Scan, ThirdOrderThroughALoop) {
  const int64_t T = 3;
  Rnn r = build_rnn(T, true);
  RefTensor v = random_ref({3, 3}, 11);
  Tensor vc = constant(r.g, {3, 3}, v.data);
  Tensor d1 = sum(grad(r.loss, {r.w})[0] * vc);
  Tensor d2 = sum(grad(d1, {r.w})[0] * vc);
  Tensor d3 = grad(d2, {r.w})[0];
  RefValues f = rnn_feeds(T);
  auto got = reference_eval(r.g, {d3.value()}, f)[0].data;
  auto fd = testing::finite_diff(r.g, d2.value(), f, "w", {}, 1e-5);
  double scale = 1;
  for (double x : fd) scale = std::max(scale, std::abs(x));
  for (size_t e = 0; e < got.size(); ++e) EXPECT_NEAR(got[e], fd[e], 1e-6 * scale) << e;
  EXPECT_GE(count_ops(r.g, "scan"), 4) << "each order adds loops";
}

TEST(Scan, PipelineKeepsLoopsCorrectAndMergesTheSavingTwin) {
  const int64_t T = 4;
  Rnn r = build_rnn(T, true);
  auto gw = grad(r.loss, {r.w});
  r.g.add_output("gw", gw[0].value());
  EXPECT_EQ(count_ops(r.g, "scan"), 3) << "forward, its saving twin, backward";
  RefValues f = rnn_feeds(T);
  auto before = reference_eval(r.g, {r.g.output("loss"), r.g.output("gw")}, f);
  Graph opt = r.g;
  optimize(opt);
  EXPECT_EQ(count_ops(opt, "scan"), 2) << "the forward loop runs once";
  auto after = reference_eval(opt, {opt.output("loss"), opt.output("gw")}, f);
  for (size_t i = 0; i < 2; ++i)
    for (size_t e = 0; e < before[i].data.size(); ++e) EXPECT_NEAR(after[i].data[e], before[i].data[e], 1e-12);
  // Compiled, it agrees with the reference in f32.
  ParamStore store;
  Executable exe(opt, store);
  std::vector<float> h0 = testing::to_f32(f["h0"]), xs = testing::to_f32(f["xs"]), w = testing::to_f32(f["w"]);
  exe.run({Feed::f32("h0", {2, 3}, h0), Feed::f32("xs", {T, 2, 3}, xs), Feed::f32("w", {3, 3}, w)});
  auto got = exe.fetch("gw");
  for (size_t e = 0; e < got.size(); ++e) EXPECT_NEAR(got[e], before[1].data[e], 1e-5 * (1 + std::abs(before[1].data[e])));
}

TEST(Scan, CseDoesNotMergeLoopsWithDifferentBodies) {
  Graph g;
  Tensor c = input(g, "c", {3});
  auto twice = [](double m) {
    return [m](const std::vector<Tensor>& cs, const std::vector<Tensor>&, const std::vector<Tensor>&) {
      return ScanStep{{cs[0] * m}, {}};
    };
  };
  ScanResult a = scan(3, {c}, {}, {}, twice(2.0)), b = scan(3, {c}, {}, {}, twice(3.0)), a2 = scan(3, {c}, {}, {}, twice(2.0));
  g.add_output("a", a.carries[0].value());
  g.add_output("b", b.carries[0].value());
  g.add_output("a2", a2.carries[0].value());
  optimize(g);
  EXPECT_EQ(count_ops(g, "scan"), 3) << "bodies built apart are different bodies, even when equal";
  RefValues f{{"c", RefTensor{{3}, {1, 2, 3}}}};
  auto out = reference_eval(g, {g.output("a"), g.output("b")}, f);
  EXPECT_EQ(out[0].data, (std::vector<double>{8, 16, 24}));
  EXPECT_EQ(out[1].data, (std::vector<double>{27, 54, 81}));
}

// A loop's invariants (its weights and data) are read by the body where the loop's inputs are,
// not copied into the body executable: the loop's region is far smaller than its invariant.
TEST(Scan, InvariantsAreReadInPlaceNotCopiedIntoTheBody) {
  Graph g;
  Tensor c = input(g, "c", {1});
  Tensor k = input(g, "k", {1 << 16});
  ScanResult s = scan(4, {c}, {}, {k}, [](const auto& cs, const auto&, const auto& ks) {
    return ScanStep{{cs[0] + sum(ks[0], {0}, true)}, {}};
  });
  g.add_output("c", s.carries[0].value());
  RefValues f{{"c", random_ref({1}, 1)}, {"k", random_ref({1 << 16}, 2)}};
  auto ref = reference_eval(g, {g.output("c")}, f);
  ParamStore store;
  Executable exe(g, store);
  std::vector<float> cv = testing::to_f32(f["c"]), kv = testing::to_f32(f["k"]);
  exe.run({Feed::f32("c", {1}, cv), Feed::f32("k", {1 << 16}, kv)});
  EXPECT_NEAR(exe.fetch(0)[0], ref[0].data[0], 1e-3 * std::max(1.0, std::abs(ref[0].data[0])));
  EXPECT_LT(exe.loop_storage_bytes(), (size_t(1) << 16) * sizeof(float) / 8);
  EXPECT_EQ(exe.peak_bytes(), planned_peak_bytes(exe.graph(), {}, false)) << "the plan counts the same";
}

// A loop kernel's storage (its carry staging and its body's plan) is a region of the arena live
// at the loop's step only, so it lies over values that died before the loop: the peak is the fed
// input and the larger of the two, not their sum.
TEST(Scan, LoopRegionOverlapsValuesDeadBeforeTheLoop) {
  const int64_t N = 1 << 14;
  const size_t vec = size_t(N) * sizeof(float);
  Graph g;
  Tensor x = input(g, "x", {N});
  Tensor before = sum(exp(x * 2.0), {0}, true);  // two [N] values, dead once summed
  ScanResult s = scan(4, {before}, {}, {x}, [](const auto& cs, const auto&, const auto& ks) {
    return ScanStep{{cs[0] * 0.5 + sum(tanh(ks[0] * cs[0]), {0}, true)}, {}};
  });
  g.add_output("c", s.carries[0].value());
  RefValues f{{"x", random_ref({N}, 1, -0.5, 0.5)}};
  auto ref = reference_eval(g, {g.output("c")}, f);
  ParamStore store;
  Executable exe(g, store);
  std::vector<float> xv = testing::to_f32(f["x"]);
  exe.run({Feed::f32("x", {N}, xv)});
  EXPECT_NEAR(exe.fetch(0)[0], ref[0].data[0], 1e-4 * std::max(1.0, std::abs(ref[0].data[0])));
  size_t region = 0;
  for (const Node& n : exe.graph().nodes())
    if (n.body) region = scan_kernel_scratch(n);
  ASSERT_GE(region, 2 * vec) << "the body holds two [N] values";
  EXPECT_EQ(exe.loop_storage_bytes(), region);
  EXPECT_LT(exe.peak_bytes(), vec + 2 * vec + region) << "the region is beside the values dead before it";
  EXPECT_LE(exe.peak_bytes(), vec + std::max(2 * vec, region) + 1024);
  EXPECT_EQ(exe.peak_bytes(), planned_peak_bytes(exe.graph(), {}, false));
}

// A plain loop's body writes the next carry over the carry it read when every read of that carry
// comes first (here one fused program reads it and makes the next): the carry is passed on without
// a copy, and the body's plan holds one carry, not two. The loop still equals the reference, and
// its saved carries (what the derivative reads) are the carries each iteration started from.
TEST(Scan, CarryIsWrittenOverTheCarryItRead) {
  const int64_t N = 1 << 14, T = 5;
  const size_t vec = size_t(N) * sizeof(float);
  Graph g;
  Tensor c = input(g, "c", {N}), k = input(g, "k", {N});
  ScanResult s = scan(T, {c}, {}, {k}, [](const auto& cs, const auto&, const auto& ks) {
    return ScanStep{{tanh(cs[0] * ks[0]) * 0.5 + 0.25}, {}};
  });
  Tensor loss = sum(square(s.carries[0]));
  g.add_output("c", s.carries[0].value());
  g.add_output("dk", grad(loss, {k})[0].value());
  optimize(g);
  const Node* forward = nullptr;
  for (const Node& n : g.nodes())
    if (n.body && attr_int(n.attrs, "save_carries") == 1) forward = &n;
  ASSERT_NE(forward, nullptr);
  EXPECT_LT(scan_kernel_scratch(*forward), 2 * vec) << "the body holds its carry twice";
  RefValues f{{"c", random_ref({N}, 1)}, {"k", random_ref({N}, 2)}};
  auto ref = reference_eval(g, {g.output("c"), g.output("dk")}, f);
  ParamStore store;
  Executable exe(g, store);
  std::vector<float> cv = testing::to_f32(f["c"]), kv = testing::to_f32(f["k"]);
  for (int run = 0; run < 2; ++run) {
    exe.run({Feed::f32("c", {N}, cv), Feed::f32("k", {N}, kv)});
    for (size_t o = 0; o < 2; ++o)
      for (size_t e = 0; e < size_t(N); e += 97)
        ASSERT_NEAR(exe.fetch(o)[e], ref[o].data[e], 1e-5 * std::max(1.0, std::abs(ref[o].data[e]))) << o << "/" << e;
  }
}

// A loop body's kernels share the enclosing executable's workspace (they run only inside the
// loop kernel's run): the executable reports it, and the loop still equals the reference.
TEST(Scan, BodyKernelsShareTheEnclosingWorkspace) {
  Graph g;
  Tensor c = input(g, "c", {1, 8, 6, 6});
  Tensor w = input(g, "w", {8, 8, 3, 3});
  ScanResult s = scan(3, {c}, {}, {w}, [](const auto& cs, const auto&, const auto& ks) {
    return ScanStep{{tanh(conv2d(cs[0], ks[0], {1, 1}, {1, 1}))}, {}};
  });
  g.add_output("c", s.carries[0].value());
  RefValues f{{"c", random_ref({1, 8, 6, 6}, 1)}, {"w", random_ref({8, 8, 3, 3}, 2)}};
  auto ref = reference_eval(g, {g.output("c")}, f);
  ParamStore store;
  Executable exe(g, store);
  EXPECT_GT(exe.workspace_bytes(), 0u) << "the body's convolution scratch is in the enclosing workspace";
  std::vector<float> cv = testing::to_f32(f["c"]), wv = testing::to_f32(f["w"]);
  exe.run({Feed::f32("c", {1, 8, 6, 6}, cv), Feed::f32("w", {8, 8, 3, 3}, wv)});
  auto got = exe.fetch(0);
  ASSERT_EQ(got.size(), ref[0].data.size());
  for (size_t e = 0; e < got.size(); ++e) EXPECT_NEAR(got[e], ref[0].data[e], 1e-4) << e;
}

}  // namespace
}  // namespace metagrad
