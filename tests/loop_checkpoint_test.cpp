// Checkpointing of backward loops: the every-k and revolve schedules (validity, and revolve's
// recomputation against the binomial optimum computed here in closed form), gradients of every
// policy against storing every carry (f64 reference and compiled f32, forward and reverse
// loops), the every-k forward storing its segment starts (no first sweep: the reported
// recomputation), second order through a checkpointed loop, MAML's meta-gradient, and the memory
// budget (fits, or names the smallest).
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>

#include "meta/learn/maml.h"
#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/ops.h"
#include "metagrad/pipeline.h"
#include "metagrad/reference.h"
#include "metagrad/scan.h"
#include "metagrad/serialize.h"
#include "ops/scan.h"
#include "ops/scan_schedule.h"
#include "passes/checkpoint_loops.h"
#include "runtime/arena_plan.h"
#include "tests/alloc_counter.h"
#include "tests/cli_run.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

using testing::random_ref;
using LC = CompileOptions::LoopCheckpoint;

// Runs a schedule over symbolic carries (the step index each holds) and checks that every reverse
// step reads the carry of its own step, in the order n-1 .. 0, within `slots` slots; checkpoint i
// (load) is the forward's carry at step i * stride (stride 0: there are none).
void expect_valid(const std::vector<LoopAction>& s, int64_t n, int64_t slots, int64_t stride = 0) {
  std::vector<int64_t> slot(size_t(slots), -1);
  int64_t cur = 0, next_back = n - 1;
  for (const LoopAction& a : s) {
    switch (a.kind) {
      case LoopAction::load:
        ASSERT_GT(stride, 0) << "a checkpoint where the forward stores none";
        ASSERT_GE(a.slot, 0);
        ASSERT_LT(a.slot * stride, n);
        ASSERT_EQ(a.step, a.slot * stride);
        cur = a.step;
        break;
      case LoopAction::store:
        ASSERT_LT(a.slot, slots);
        slot[size_t(a.slot)] = cur;
        break;
      case LoopAction::restore:
        ASSERT_LT(a.slot, slots);
        ASSERT_EQ(slot[size_t(a.slot)], a.step);
        cur = slot[size_t(a.slot)];
        break;
      case LoopAction::advance:
        ASSERT_EQ(cur, a.step);
        ++cur;
        break;
      case LoopAction::backward:
        ASSERT_EQ(cur, a.step);
        ASSERT_EQ(a.step, next_back);
        --next_back;
        break;
    }
  }
  EXPECT_EQ(next_back, -1) << "every step reversed once";
}

int64_t binomial(int64_t n, int64_t k) {
  if (k < 0 || k > n) return 0;
  double b = 1;
  for (int64_t i = 1; i <= k; ++i) b = b * double(n - k + i) / double(i);
  return int64_t(std::llround(b));
}

// Griewank and Walther: with s slots, r the least integer with n <= C(s + r, s), the least number
// of recomputed forward steps is r n - C(s + r, s + 1).
int64_t binomial_optimum(int64_t n, int64_t s) {
  int64_t r = 0;
  while (binomial(s + r, s) < n) ++r;
  return r * n - binomial(s + r, s + 1);
}

TEST(LoopCheckpoint, RevolveRecomputesTheBinomialOptimum) {
  for (int64_t n = 1; n <= 40; ++n)
    for (int64_t s = 1; s <= std::min<int64_t>(n, 6); ++s) {
      std::vector<LoopAction> sched = revolve_schedule(n, s);
      // The initial carry is checkpoint 0, the loop's input (stride n: no other): s - 1 slots.
      expect_valid(sched, n, s - 1, n);
      EXPECT_EQ(schedule_slots(sched), int(std::min(s, n) - 1)) << "n " << n << ", slots " << s;
      EXPECT_EQ(schedule_advances(sched), binomial_optimum(n, s)) << "n " << n << ", slots " << s;
      EXPECT_EQ(revolve_cost(n, s), binomial_optimum(n, s));
    }
  EXPECT_EQ(revolve_cost(10, 10), 9) << "a slot per carry: each recomputed once";
}

// The forward stored the segment starts, so nothing runs before the last segment: each segment
// of length l is recomputed once (l - 1 advances), n - ceil(n/k) in all, over k - 2 slots.
TEST(LoopCheckpoint, EveryKSegmentsAreValid) {
  for (int64_t n = 1; n <= 30; ++n)
    for (int64_t k = 1; k <= n + 2; ++k) {
      std::vector<LoopAction> sched = every_k_schedule(n, k);
      expect_valid(sched, n, every_k_slots(n, k), std::min(k, n));
      const int64_t m = (n + std::min(k, n) - 1) / std::min(k, n);
      EXPECT_EQ(schedule_advances(sched), n - m) << n << "/" << k;
      EXPECT_EQ(every_k_slots(n, k), std::max<int64_t>(0, std::min(k, n) - 2)) << n << "/" << k;
      EXPECT_EQ(schedule_slots(sched), every_k_slots(n, k)) << n << "/" << k;
      ASSERT_FALSE(sched.empty());
      EXPECT_EQ(sched.front().kind, LoopAction::load) << "no first sweep: the last segment's start is loaded";
    }
}

// h' = tanh(h W + x) * (1 + 0.1 g), g' = g + sin(h) (two carries), y = sum(h * h).
struct Loop {
  Graph g;
  Tensor h0, g0, xs, w, loss;
};
Loop build_loop(int64_t T, bool reverse = false) {
  Loop r;
  r.h0 = input(r.g, "h0", {2, 3});
  r.g0 = input(r.g, "g0", {2, 3});
  r.xs = input(r.g, "xs", {T, 2, 3});
  r.w = input(r.g, "w", {3, 3});
  ScanResult s = scan(
      T, {r.h0, r.g0}, {r.xs}, {r.w},
      [](const auto& c, const auto& x, const auto& k) {
        Tensor next = tanh(matmul(c[0], k[0]) + x[0]) * (c[1] * 0.1 + 1.0);
        return ScanStep{{next, c[1] + sin(c[0])}, {sum(c[0] * c[0])}};
      },
      reverse);
  RefTensor c = random_ref({T}, 7);
  r.loss = sum(square(s.carries[0])) + sum(s.carries[1]) + sum(s.ys[0] * constant(r.g, {T}, c.data));
  return r;
}
RefValues loop_feeds(int64_t T) {
  RefValues f;
  f["h0"] = random_ref({2, 3}, 1);
  f["g0"] = random_ref({2, 3}, 4);
  f["xs"] = random_ref({T, 2, 3}, 2);
  f["w"] = random_ref({3, 3}, 3, -0.8, 0.8);
  return f;
}

struct Fed {
  std::map<std::string, std::vector<float>> f32;
  std::vector<Feed> feeds;
};
Fed to_feeds(const RefValues& v) {
  Fed f;
  for (const auto& [name, t] : v) {
    f.f32[name] = testing::to_f32(t);
    f.feeds.push_back(Feed::f32(name, t.shape, f.f32[name]));
  }
  return f;
}

// Also checks that running again allocates nothing (the schedule runs over preallocated slots),
// and that the plan counts what the compiled kernels hold (checkpointed: the shared arena).
std::vector<std::vector<float>> run_compiled(const Graph& g, const RefValues& feeds, const CompileOptions& o,
                                             std::vector<LoopReport>* loops = nullptr) {
  ParamStore store;
  Executable exe(g, store, {}, o);
  Fed f = to_feeds(feeds);
  exe.run(f.feeds);
  testing::AllocCount count = testing::count_allocations([&] { exe.run(f.feeds); });
  EXPECT_EQ(count.ours, 0) << "allocations made by the loop kernels";
  EXPECT_EQ(exe.peak_bytes(), planned_peak_bytes(exe.graph(), {}, false));
  if (loops) *loops = exe.loops();
  std::vector<std::vector<float>> out;
  for (size_t i = 0; i < exe.fetch_names().size(); ++i) out.emplace_back(exe.fetch(i).begin(), exe.fetch(i).end());
  return out;
}

void expect_close(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    double scale = 1e-30;
    for (float v : a[i]) scale = std::max(scale, double(std::abs(v)));
    for (size_t e = 0; e < a[i].size(); ++e) ASSERT_NEAR(b[i][e], a[i][e], tol * scale) << "output " << i << "[" << e << "]";
  }
}

struct Policy {
  LC policy;
  int64_t slots;
};
// Every-k at k = ceil(sqrt 9) = 3 (a multiple of the length), 1 and 2 (no slot: nothing or one
// step recomputed per segment), 4 (a short last segment), the length and more (one segment);
// revolve at a few slot counts.
const std::vector<Policy> kPolicies = {{LC::every_k, 0}, {LC::every_k, 1}, {LC::every_k, 2}, {LC::every_k, 4},
                                       {LC::every_k, 9}, {LC::every_k, 20}, {LC::revolve, 1}, {LC::revolve, 2},
                                       {LC::revolve, 4}};

// The forward steps a backward loop of `length` recomputes under p: every-k from the segment
// starts the forward stored (the old first sweep would add (m - 1) k), revolve its optimum.
int64_t expected_recomputed(const Policy& p, int64_t length) {
  if (p.policy == LC::revolve) return revolve_cost(length, p.slots);
  const int64_t k = std::min(p.slots ? p.slots : int64_t(std::ceil(std::sqrt(double(length)))), length);
  return length - (length + k - 1) / k;
}

// The forward loop of a first-order graph rewritten by checkpoint_loops: its one plain loop.
const Node& forward_loop(const Graph& g) {
  for (const Node& n : g.nodes())
    if (n.body && attr_int(n.attrs, "num_advance") == 0) return n;
  throw Error("no plain loop");
}

std::string policy_name(const Policy& p) {
  return fmt::format("{} {}", p.policy == LC::every_k ? "every-k" : "revolve", p.slots);
}

// A loop graph's outputs under store-all: the f64 reference and the compiled f32 values.
struct StoreAll {
  RefValues feeds;
  std::vector<Value> outs;
  std::vector<RefTensor> ref;
  std::vector<std::vector<float>> compiled;
};
StoreAll store_all(const Graph& g, int64_t T) {
  StoreAll b;
  b.feeds = loop_feeds(T);
  for (const auto& o : g.outputs()) b.outs.push_back(o.value);
  b.ref = reference_eval(g, b.outs, b.feeds);
  b.compiled = run_compiled(g, b.feeds, {});
  return b;
}

// `g` with policy `p` applied by the compile-time rewrite (into `c`), its f64 reference checked
// against store-all's to `tol`.
void rewrite_and_check(const Graph& g, const Policy& p, const StoreAll& b, double tol, Graph* c) {
  *c = g;
  ASSERT_TRUE(checkpoint_loops(*c, p.policy == LC::every_k ? 1 : 2, [&](int64_t) { return p.slots ? p.slots : 3; }));
  verify(*c);
  const auto got = reference_eval(*c, b.outs, b.feeds);
  for (size_t i = 0; i < b.ref.size(); ++i)
    for (size_t e = 0; e < b.ref[i].data.size(); ++e) ASSERT_NEAR(got[i].data[e], b.ref[i].data[e], tol) << i << "/" << e;
}

TEST(LoopCheckpoint, EveryPolicyGivesTheStoreAllGradients) {
  const int64_t T = 9;
  for (bool reverse : {false, true}) {
    SCOPED_TRACE(reverse ? "reverse loop" : "forward loop");
    Loop r = build_loop(T, reverse);
    auto d = grad(r.loss, {r.h0, r.g0, r.xs, r.w});
    r.g.add_output("loss", r.loss.value());
    for (size_t i = 0; i < d.size(); ++i) r.g.add_output("d" + std::to_string(i), d[i].value());
    optimize(r.g);
    const StoreAll b = store_all(r.g, T);
    for (const Policy& p : kPolicies) {
      SCOPED_TRACE(policy_name(p));
      // f64: the rewritten graph's reference, which recomputes through the advance outputs from
      // the checkpoints the rewritten forward stored.
      Graph c;
      ASSERT_NO_FATAL_FAILURE(rewrite_and_check(r.g, p, b, 1e-12, &c));
      // The forward stores ceil(n/k) segment starts (every-k) or nothing (revolve).
      const Node& fwd = forward_loop(c);
      const int64_t k = std::min<int64_t>(p.slots ? p.slots : 3, T);
      if (p.policy == LC::every_k) {
        ASSERT_EQ(fwd.outputs.size(), 2 + 1 + 2u);
        EXPECT_EQ(fwd.outputs.back().shape, (Shape{(T + k - 1) / k, 2, 3}));
      } else {
        EXPECT_EQ(fwd.outputs.size(), 2 + 1u);
      }
      // f32: compiled under the policy (run_compiled also checks peak_bytes() == the plan).
      CompileOptions o;
      o.loop_checkpoint = p.policy;
      o.loop_slots = p.slots;
      std::vector<LoopReport> loops;
      expect_close(b.compiled, run_compiled(r.g, b.feeds, o, &loops), 1e-5);
      ASSERT_EQ(loops.size(), 1u);
      EXPECT_EQ(loops[0].policy, p.policy == LC::every_k ? "every-k" : "revolve");
      EXPECT_EQ(loops[0].recomputed, expected_recomputed(p, T));
      if (p.policy == LC::every_k) {
        EXPECT_EQ(loops[0].slots, (T + k - 1) / k + std::max<int64_t>(0, k - 2)) << "segment starts + segment slots";
        EXPECT_DOUBLE_EQ(loops[0].recompute_factor, double(2 * T - (T + k - 1) / k) / double(T));
      }
    }
  }
}

// The rewritten pair (save_every, checkpoint, num_advance) prints and parses back to itself, and
// the parsed graph's reference is the original's.
TEST(LoopCheckpoint, CheckpointedPairRoundTripsThroughText) {
  const int64_t T = 7;
  Loop r = build_loop(T, true);
  r.g.add_output("dw", grad(r.loss, {r.w})[0].value());
  optimize(r.g);
  Graph c = r.g;
  ASSERT_TRUE(checkpoint_loops(c, 1, [](int64_t) { return 3; }));
  const std::string text = to_text(c);
  EXPECT_NE(text.find("save_every=3"), std::string::npos) << text;
  Graph back = parse_text(text);
  EXPECT_EQ(to_text(back), text);
  RefValues f = loop_feeds(T);
  EXPECT_EQ(reference_eval(back, {back.output("dw")}, f)[0].data, reference_eval(c, {c.output("dw")}, f)[0].data);
}

TEST(LoopCheckpoint, SecondOrderThroughACheckpointedLoop) {
  const int64_t T = 6;
  for (bool reverse : {false, true}) {
    SCOPED_TRACE(reverse ? "reverse loop" : "forward loop");
    Loop r = build_loop(T, reverse);
    RefTensor v = random_ref({3, 3}, 11);
    Tensor d1 = sum(grad(r.loss, {r.w})[0] * constant(r.g, {3, 3}, v.data));
    auto d2 = grad(d1, {r.w, r.h0});
    r.g.add_output("d2w", d2[0].value());
    r.g.add_output("d2h", d2[1].value());
    optimize(r.g);
    const StoreAll b = store_all(r.g, T);
    for (const Policy& p : kPolicies) {
      SCOPED_TRACE(policy_name(p));
      Graph c;
      ASSERT_NO_FATAL_FAILURE(rewrite_and_check(r.g, p, b, 1e-11, &c));
      CompileOptions o;
      o.loop_checkpoint = p.policy;
      o.loop_slots = p.slots;
      std::vector<LoopReport> loops;
      expect_close(b.compiled, run_compiled(r.g, b.feeds, o, &loops), 1e-5);
      int checkpointed = 0;
      for (const auto& l : loops) {
        if (l.policy == "store-all") continue;
        ++checkpointed;
        EXPECT_EQ(l.recomputed, expected_recomputed(p, T));
      }
      EXPECT_GE(checkpointed, 1) << "the backward of the backward loop is checkpointed";
    }
  }
}

TEST(LoopCheckpoint, MamlMetaGradientUnderEveryPolicy) {
  MamlConfig c;
  c.shots = 5, c.query = 5, c.meta_batch = 2, c.hidden = 8, c.inner_lr = 0.1, c.inner_steps = 7, c.inner_loop = true;
  Graph g = build_maml_objective(c);
  optimize(g);
  RefValues f;
  f["xs"] = random_ref({c.meta_batch, c.shots, 1}, 1, -2, 2);
  f["ys"] = random_ref({c.meta_batch, c.shots, 1}, 2, -2, 2);
  f["xq"] = random_ref({c.meta_batch, c.query, 1}, 3, -2, 2);
  f["yq"] = random_ref({c.meta_batch, c.query, 1}, 4, -2, 2);
  const auto all = run_compiled(g, f, {});
  for (const Policy& p : kPolicies) {
    CompileOptions o;
    o.loop_checkpoint = p.policy;
    o.loop_slots = p.slots;
    std::vector<LoopReport> loops;
    expect_close(all, run_compiled(g, f, o, &loops), 1e-5);
    ASSERT_FALSE(loops.empty());
    for (const auto& l : loops) EXPECT_NE(l.policy, "store-all");
  }
}

// Two executables of one graph over one scratch arena (what a checkpointed loop's reverse step and
// advance do): run in turn on different inputs, each gives what an executable of its own gives,
// since its fed inputs stay in its own block; the region must hold the larger plan.
TEST(LoopCheckpoint, ExecutablesShareAScratchArena) {
  const int64_t T = 5;
  Loop r = build_loop(T);
  r.g.add_output("loss", r.loss.value());
  r.g.add_output("dw", grad(r.loss, {r.w})[0].value());
  optimize(r.g);
  const std::vector<std::string> fa = {"loss"}, fb = {"dw"};
  const size_t need = std::max(planned_peak_parts(r.g, fa, false).scratch, planned_peak_parts(r.g, fb, false).scratch);
  ASSERT_GT(need, 0u);
  std::vector<float> region((need + 127) / 4);
  void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(region.data()) + 63) / 64 * 64);
  CompileOptions o;
  o.scratch_arena = aligned;
  o.scratch_arena_bytes = need;
  ParamStore s;
  Executable a(r.g, s, fa, o), b(r.g, s, fb, o);
  Executable own_a(r.g, s, fa), own_b(r.g, s, fb);
  EXPECT_EQ(a.arena_bytes(), planned_peak_parts(r.g, fa, false).fed) << "the executable holds only its fed inputs";
  Fed f1 = to_feeds(loop_feeds(T));
  RefValues v2 = loop_feeds(T);
  v2["h0"] = random_ref({2, 3}, 21);
  Fed f2 = to_feeds(v2);
  auto set = [](Executable& e, const Fed& f) {
    for (const auto& [name, v] : f.f32) e.set_input(e.input_slot(name), v);
  };
  set(a, f1);
  set(b, f2);
  a.run();
  b.run();  // overwrites a's scratch
  a.run();  // not fed again: its inputs held
  own_a.run(f1.feeds);
  own_b.run(f2.feeds);
  EXPECT_NEAR(a.fetch(0)[0], own_a.fetch(0)[0], 1e-6 * std::abs(own_a.fetch(0)[0]));
  b.run();
  for (size_t e = 0; e < own_b.fetch(0).size(); ++e)
    EXPECT_NEAR(b.fetch(0)[e], own_b.fetch(0)[e], 1e-6 * std::abs(own_b.fetch(0)[e]) + 1e-7) << e;
  CompileOptions small = o;
  small.scratch_arena_bytes = planned_peak_parts(r.g, fb, false).scratch - 1;
  EXPECT_THROW(Executable(r.g, s, fb, small), RuntimeError);
}

// A checkpointed kernel's two executables read the forward carry where the kernel recomputes it
// and the reverse step's carries where the kernel stages them, so neither keeps a fed copy: its
// region of the arena is the working carry and the staged cotangents (of the carry and of the
// invariant), then the reverse step's plan, which writes the next cotangents over the staged ones
// (each made by the last op that reads it, in place) and holds one value of its own: four carries
// (with the copies three more, and one more with the outputs not written in place; revolve's one
// slot is the initial carry, the loop's input, so the kernel keeps none). The gradients equal
// store-all's.
TEST(LoopCheckpoint, CarriesAreReadWhereTheKernelHoldsThem) {
  const int64_t T = 6, N = 1 << 14;
  const size_t carry = size_t(N) * sizeof(float);
  Graph g;
  Tensor h0 = input(g, "h0", {N}), w = input(g, "w", {N});
  ScanResult s = scan(T, {h0}, {}, {w}, [](const auto& c, const auto&, const auto& k) {
    return ScanStep{{tanh(c[0] * k[0])}, {}};
  });
  Tensor loss = sum(square(s.carries[0]));
  std::vector<Tensor> d = grad(loss, {h0, w});
  g.add_output("dh0", d[0].value());
  g.add_output("dw", d[1].value());
  optimize(g);
  RefValues feeds{{"h0", random_ref({N}, 1)}, {"w", random_ref({N}, 2, -0.9, 0.9)}};
  const auto plain = run_compiled(g, feeds, {});
  CompileOptions o;
  o.loop_checkpoint = LC::revolve;
  o.loop_slots = 1;
  std::vector<LoopReport> loops;
  expect_close(plain, run_compiled(g, feeds, o, &loops), 1e-5);
  ASSERT_EQ(loops.size(), 1u);
  EXPECT_EQ(loops[0].policy, "revolve");
  ParamStore store;
  Executable exe(g, store, {}, o);
  const Node* backward = nullptr;
  for (const Node& n : exe.graph().nodes())
    if (n.body && attr_int(n.attrs, "num_advance") > 0) backward = &n;
  ASSERT_NE(backward, nullptr);
  const size_t region = scan_kernel_scratch(*backward);
  EXPECT_GE(region, 4 * carry);
  EXPECT_LT(region, 5 * carry) << "a fed copy of a carry in one of the executables, a slot, or an output not in place";
}

TEST(LoopCheckpoint, BudgetPicksTheLeastRecomputationThatFits) {
  MamlConfig c;
  c.meta_batch = 2, c.hidden = 16, c.inner_steps = 40, c.inner_loop = true;
  Graph g = build_meta_step(c);
  optimize(g);
  ParamStore s0;
  Executable all(g, s0);
  ASSERT_EQ(all.peak_bytes(), planned_peak_bytes(g, {}, false)) << "the plan counts what the kernels allocate";
  Graph lean = g;
  ASSERT_TRUE(checkpoint_loops(lean, 2, [](int64_t) { return 1; }));
  const size_t least = planned_peak_bytes(lean, {}, false);
  ASSERT_LT(least, all.peak_bytes()) << "checkpointing saves memory here";
  // Recomputed steps of a compiled form, and of the least-recomputing form of each policy that
  // fits, found by trying every parameter.
  auto recomputed = [](const std::vector<LoopReport>& loops) {
    int64_t r = 0;
    for (const LoopReport& l : loops) r += l.recomputed;
    return r;
  };
  auto best_of = [&](int64_t policy, size_t budget) {
    int64_t least_recomputed = -1;
    for (int64_t p = policy == 1 ? 2 : 1; p <= c.inner_steps; ++p) {
      Graph f = g;
      checkpoint_loops(f, policy, [p](int64_t n) { return std::min(p, n); });
      if (planned_peak_bytes(f, {}, false) > budget) continue;
      ParamStore s;
      Executable e(f, s);
      const int64_t r = recomputed(e.loops());
      if (least_recomputed < 0 || r < least_recomputed) least_recomputed = r;
    }
    return least_recomputed;  // -1: no parameter fits
  };
  Graph every_sqrt = g;
  checkpoint_loops(every_sqrt, 1, [](int64_t n) { return std::min<int64_t>(n, 7); });  // ceil(sqrt(40))
  bool every_k_won = false;
  for (size_t budget : {least + (all.peak_bytes() - least) / 2, least + (all.peak_bytes() - least) / 4,
                        planned_peak_bytes(every_sqrt, {}, false)}) {
    SCOPED_TRACE(budget);
    CompileOptions o;
    o.memory_budget = budget;
    ParamStore s;
    Executable exe(g, s, {}, o);
    EXPECT_LE(exe.peak_bytes(), o.memory_budget);
    ASSERT_FALSE(exe.loops().empty());
    const int64_t rev = best_of(2, budget), every = best_of(1, budget);
    ASSERT_GE(rev, 0) << "revolve fits every budget above the leanest plan";
    const int64_t least_of_both = every < 0 ? rev : std::min(rev, every);
    EXPECT_EQ(recomputed(exe.loops()), least_of_both) << "revolve " << rev << ", every-k " << every;
    every_k_won |= every >= 0 && every < rev && exe.loops()[0].policy == "every-k";
  }
  EXPECT_TRUE(every_k_won) << "every-k, its segment starts stored by the forward, recomputes less somewhere";
  // A budget under the leanest plan: the error names the smallest that works, and that one does.
  CompileOptions tiny;
  tiny.memory_budget = 1000;
  ParamStore s1;
  std::string msg;
  try {
    Executable e(g, s1, {}, tiny);
  } catch (const Error& e) {
    msg = e.what();
  }
  ASSERT_NE(msg.find("give a budget of at least "), std::string::npos) << msg;
  // Rematerialization runs after the loops' checkpointing and may go lower still.
  const size_t named = std::stoull(msg.substr(msg.find("at least ") + 9));
  EXPECT_LE(named, least);
  CompileOptions smallest;
  smallest.memory_budget = named;
  ParamStore s3;
  Executable at_named(g, s3, {}, smallest);
  EXPECT_LE(at_named.peak_bytes(), named);
  CompileOptions enough;
  enough.memory_budget = least;
  ParamStore s2;
  Executable fits(g, s2, {}, enough);
  EXPECT_LE(fits.peak_bytes(), least);
  EXPECT_EQ(fits.loops()[0].slots, 1);
}

// inspect reports each loop's policy; a budget under the leanest plan exits 1 with one line that
// names the smallest budget, which then compiles; a malformed size exits 2 with one line.
TEST(LoopCheckpoint, CliMemoryBudget) {
  using testing::lines;
  const std::string w = "inspect sinusoid --inner-loop scan --inner-steps 12 ";
  testing::CliRun bad = testing::run(w + "--memory-budget 12X");
  EXPECT_EQ(bad.status, 2);
  EXPECT_EQ(lines(bad.err), 1u) << bad.err;
  testing::CliRun small = testing::run(w + "--memory-budget 1K");
  EXPECT_EQ(small.status, 1);
  ASSERT_EQ(lines(small.err), 1u) << small.err;
  const size_t at = small.err.find("at least ");
  ASSERT_NE(at, std::string::npos) << small.err;
  const std::string least = std::to_string(std::stoull(small.err.substr(at + 9)));
  testing::CliRun ok = testing::run(w + "--memory-budget " + least);
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_NE(ok.out.find("revolve, 1 slots"), std::string::npos) << ok.out;
}

}  // namespace
}  // namespace metagrad
