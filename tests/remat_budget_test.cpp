// Straight-line rematerialization under a memory budget (passes/rematerialize_to_budget.cpp, the
// "rematerialize" row of runtime/memory_budget.cpp): the rewritten graph computes the same outputs
// (an MLP, a conv net with its gradient, MAML's second-order meta-gradient), its planned peak falls
// and meets a reachable budget, the compiled executable's peak meets it too, and a budget out of
// reach names the smallest one, which then compiles.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "graph/op_def.h"
#include "meta/learn/maml.h"
#include "metagrad/autodiff.h"
#include "metagrad/attrs.h"
#include "metagrad/builder.h"
#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/ops.h"
#include "metagrad/pipeline.h"
#include "passes/rematerialize_to_budget.h"
#include "runtime/arena_plan.h"
#include "runtime/memory_budget.h"
#include "tests/cli_run.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

using testing::random_ref;

// Outputs the loss and its gradient with respect to each of `ws`.
void add_loss_and_grads(Graph& g, const Tensor& loss, const std::vector<Tensor>& ws) {
  std::vector<Tensor> d = grad(loss, ws);
  g.add_output("loss", loss.value());
  for (size_t i = 0; i < d.size(); ++i) g.add_output("dw" + std::to_string(i), d[i].value());
}

// A 4-layer tanh MLP's loss and its gradients: every activation waits for the backward pass.
Graph mlp() {
  Graph g;
  const int64_t B = 1024, D = 64;  // activations of 256 KiB, weights of 16 KiB
  Tensor x = input(g, "x", {B, D});
  Tensor y = input(g, "y", {B, D});
  std::vector<Tensor> ws;
  Tensor h = x;
  for (int l = 0; l < 4; ++l) {
    ws.push_back(input(g, "w" + std::to_string(l), {D, D}));
    h = tanh(matmul(h, ws.back()));
  }
  add_loss_and_grads(g, mse(h, y), ws);
  return g;
}

// Four 3x3 convolutions with ReLU, 2x2 max pooling and a linear head under cross-entropy, and
// the gradient of every weight.
Graph convnet() {
  Graph g;
  const int64_t N = 16, C = 3, F = 16, S = 16, K = 10;
  Tensor x = input(g, "x", {N, C, S, S});
  Tensor labels = input(g, "labels", {N}, DType::i32);
  std::vector<Tensor> ws;
  Tensor h = x;
  for (int l = 0; l < 4; ++l) {
    ws.push_back(input(g, "w" + std::to_string(l), {F, l == 0 ? C : F, 3, 3}));
    h = relu(conv2d(h, ws.back(), {1, 1}, {1, 1}));
  }
  ws.push_back(input(g, "wf", {F * (S / 2) * (S / 2), K}));
  h = reshape(max_pool2d(h, {2, 2}), {N, -1});
  add_loss_and_grads(g, cross_entropy(matmul(h, ws.back()), labels), ws);
  return g;
}

// Second-order MAML on the sinusoid MLP: the meta-gradient through three inner steps.
Graph maml() {
  MamlConfig c;
  c.meta_batch = 25, c.hidden = 40, c.inner_steps = 3;
  return build_maml_objective(c);
}

struct Workload {
  const char* name;
  Graph (*build)();
};
const Workload kWorkloads[] = {{"mlp", mlp}, {"convnet", convnet}, {"maml", maml}};

Graph optimized(Graph (*build)()) {
  Graph g = build();
  optimize(g);
  return g;
}

size_t planned(const Graph& g) { return planned_peak_bytes(g, {}, false); }

// Every output of one run on fixed random inputs (weights within +-0.2, labels in [0, 10)), from
// freshly initialized parameters; the compiled peak in *peak.
std::vector<std::vector<float>> run(const Graph& g, const CompileOptions& o, size_t* peak = nullptr) {
  ParamStore store;
  Executable exe(g, store, {}, o);
  if (peak) *peak = exe.peak_bytes();
  std::vector<std::vector<float>> f32;
  std::vector<std::vector<int32_t>> i32;
  std::vector<Feed> feeds;
  uint64_t seed = 1;
  for (const Node& n : g.nodes()) {
    if (n.kind != NodeKind::Input) continue;
    const RefTensor r = random_ref(n.type().shape, seed++, -0.2, 0.2);
    if (n.type().dtype == DType::i32) {
      i32.emplace_back();
      for (double v : r.data) i32.back().push_back(int32_t(std::floor((v + 0.2) * 25)) % 10);
    } else {
      f32.emplace_back(r.data.begin(), r.data.end());
    }
  }
  size_t fi = 0, ii = 0;
  for (const Node& n : g.nodes()) {
    if (n.kind != NodeKind::Input) continue;
    feeds.push_back(n.type().dtype == DType::i32 ? Feed::i32(n.name, n.type().shape, i32[ii++])
                                                 : Feed::f32(n.name, n.type().shape, f32[fi++]));
  }
  exe.run(feeds);
  std::vector<std::vector<float>> out;
  for (size_t i = 0; i < exe.fetch_names().size(); ++i) out.emplace_back(exe.fetch(i).begin(), exe.fetch(i).end());
  return out;
}

// The same f32 kernels over the same inputs: only the order of the work may differ.
void expect_same(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].size(), b[i].size());
    double scale = 1e-30;
    for (float v : a[i]) scale = std::max(scale, double(std::abs(v)));
    for (size_t e = 0; e < a[i].size(); ++e) ASSERT_NEAR(b[i][e], a[i][e], 1e-6 * scale) << "output " << i << "[" << e << "]";
  }
}

// The budget between the pass's leanest graph and the unconstrained peak is reached, the graph
// computes what it did, and the pass reports what it recomputed.
TEST(RematBudget, SameOutputsAndAPeakWithinTheBudget) {
  for (const Workload& w : kWorkloads) {
    SCOPED_TRACE(w.name);
    const Graph g = optimized(w.build);
    const size_t full = planned(g);
    Graph lean = g;
    RematReport lean_report;
    ASSERT_TRUE(rematerialize_to_budget(lean, 0, planned, &lean_report)) << "some value can be recomputed";
    verify(lean);
    const size_t least = planned(lean);
    EXPECT_LT(least, full) << "a change lowers the planned peak";
    EXPECT_GT(lean_report.values, 0);
    EXPECT_GE(lean_report.nodes, lean_report.values);
    const std::vector<std::vector<float>> before = run(g, {});
    expect_same(before, run(lean, {}));

    const size_t budget = least + (full - least) / 2;
    Graph mid = g;
    RematReport mid_report;
    ASSERT_TRUE(rematerialize_to_budget(mid, budget, planned, &mid_report));
    verify(mid);
    EXPECT_LE(planned(mid), budget);
    EXPECT_LE(mid_report.values, lean_report.values) << "stops once it fits";
    expect_same(before, run(mid, {}));

    // Compiled under the budget: the executable's own peak, not only the estimate, meets it.
    CompileOptions o;
    o.memory_budget = budget;
    size_t peak = 0;
    expect_same(before, run(g, o, &peak));
    EXPECT_LE(peak, budget);
  }
}

// A budget the graph already meets leaves it alone; so does a graph with nothing to recompute.
TEST(RematBudget, NothingToDo) {
  const Graph g = optimized(mlp);
  Graph c = g;
  EXPECT_FALSE(rematerialize_to_budget(c, planned(g), planned));
  EXPECT_EQ(c.size(), g.size());
  Graph tiny;
  Tensor x = input(tiny, "x", {64, 64});
  tiny.add_output("y", exp(x).value());
  Graph t = tiny;
  EXPECT_FALSE(rematerialize_to_budget(t, 0, planned)) << "an input and one output: nothing to drop";
}

// Out of reach: the error names both reducers and the smallest peak, and that budget compiles.
TEST(RematBudget, BudgetBelowReachNamesTheSmallest) {
  const Graph g = optimized(convnet);
  CompileOptions o;
  o.memory_budget = 1000;
  const std::string msg = testing::error_of([&] {
    ParamStore s;
    Executable e(g, s, {}, o);
  });
  const size_t at = msg.find("give a budget of at least ");
  ASSERT_NE(at, std::string::npos) << msg;
  EXPECT_NE(msg.find("checkpoint-loops (no change), accumulate-early"), std::string::npos) << msg;
  EXPECT_NE(msg.find(", rematerialize"), std::string::npos) << msg;
  const size_t least = std::stoull(msg.substr(at + 26));
  EXPECT_LT(least, planned(g));
  o.memory_budget = least;
  size_t peak = 0;
  expect_same(run(g, {}), run(g, o, &peak));
  EXPECT_LE(peak, least);
}

// The floor's figure in an error: "no plan of these ops is below X (N bytes".
std::string floor_text(size_t bytes) {
  return "no plan of these ops is below " + format_bytes(bytes) + " (" + std::to_string(bytes) + " bytes";
}

// The error of compiling `g` under `budget`, and the smallest budget it names (0 if none).
std::string budget_error(const Graph& g, size_t budget, size_t* least = nullptr) {
  CompileOptions o;
  o.memory_budget = budget;
  const std::string msg = testing::error_of([&] {
    ParamStore s;
    Executable e(g, s, {}, o);
  });
  const size_t at = msg.find("give a budget of at least ");
  if (least) *least = at == std::string::npos ? 0 : std::stoull(msg.substr(at + 26));
  return msg;
}

// A matmul of a fed input by a value an op made, its result only summed: its step holds that
// operand and its result (the fed input is counted once, with the fed block), more than any other.
Graph one_large_step(int* large) {
  Graph g;
  Tensor x = input(g, "x", {256, 64});  // 64 KiB
  Tensor y = input(g, "y", {64, 512});  // 128 KiB
  Tensor m = matmul(x, exp(y));         // 128 KiB read, 512 KiB made
  *large = m.value().node;
  g.add_output("s", sum(m).value());
  return g;
}

TEST(RematBudget, FloorIsTheFedInputsAndTheLargestStep) {
  int large = -1;
  const Graph g = one_large_step(&large);
  const PeakFloor f = planned_floor(g, {}, false);
  EXPECT_EQ(f.fed, size_t(192 * 1024));
  EXPECT_EQ(f.step_bytes, size_t(640 * 1024));
  EXPECT_EQ(f.bytes, size_t(832 * 1024));
  EXPECT_EQ(f.node_desc, g.describe(large));
  EXPECT_LE(f.bytes, planned(g));
}

// The floor never exceeds the smallest plan the reducers find, loops (checkpointed to their
// leanest for MAML's scan) and many-way sums (accumulated early) included, and the error names it.
TEST(RematBudget, FloorIsBelowTheSmallestPlanFound) {
  MamlConfig c;
  c.meta_batch = 25, c.hidden = 40, c.inner_steps = 20, c.inner_loop = true;
  const Graph scan_maml = build_maml_objective(c);
  const Graph conv = optimized(convnet), unrolled_maml = optimized(maml);
  for (const Graph* g : {&conv, &unrolled_maml, &scan_maml}) {
    size_t least = 0;
    const std::string msg = budget_error(*g, 1000, &least);
    ASSERT_GT(least, 0u) << msg;
    const PeakFloor f = planned_floor(*g, {}, false);
    EXPECT_GT(f.step_bytes, 0u);
    EXPECT_LE(f.bytes, least) << msg;
    EXPECT_LE(f.bytes, planned(leanest_loops(*g)));
    EXPECT_NE(msg.find(floor_text(f.bytes)), std::string::npos) << msg;
    EXPECT_NE(msg.find(f.node_desc + " alone needs at once"), std::string::npos) << msg;
  }
}

// Just below the floor the budget fails, naming the floor and the op that sets it.
TEST(RematBudget, BudgetBelowTheFloorFails) {
  int large = -1;
  const Graph g = one_large_step(&large);
  const PeakFloor f = planned_floor(g, {}, false);
  size_t least = 0;
  const std::string msg = budget_error(g, f.bytes - 1, &least);
  ASSERT_GE(least, f.bytes) << msg;
  EXPECT_NE(msg.find(floor_text(f.bytes)), std::string::npos) << msg;
  EXPECT_NE(msg.find(g.describe(large) + " alone needs at once"), std::string::npos) << msg;
}

// A value made through ten elementwise steps from an input and read only after the peak it spans:
// making it again takes a chain of ten nodes (the bound was 8 nodes, which left it held).
TEST(RematBudget, ChainsLongerThanEightNodes) {
  Graph g;
  Tensor x = input(g, "x", {64, 256});     // 64 KiB
  Tensor w = input(g, "w", {256, 1024});   // fed, 1 MiB
  Tensor v = x;
  for (int i = 0; i < 10; ++i) v = tanh(v);  // not optimized: ten nodes, each read once
  Tensor s = sum(tanh(matmul(x, w)), {1}, true);  // the peak: [64, 1024] while v waits
  g.add_output("y", (v * s).value());
  const size_t full = planned(g);
  Graph lean = g;
  RematReport r;
  ASSERT_TRUE(rematerialize_to_budget(lean, full - 1, planned, &r));
  verify(lean);
  EXPECT_LE(planned(lean), full - 1);
  EXPECT_EQ(r.values, 1) << "v is the only value spanning the peak";
  EXPECT_GT(r.nodes, 8) << "made again through its whole chain";
  expect_same(run(g, {}), run(lean, {}));
}

// Six matmuls in a chain whose outputs are also summed at the end: fusion makes the sum one
// program reading all six, so no recomputation can bring the peak below the six addends and the
// fed inputs; summing them as they are made does.
TEST(RematBudget, SumsAccumulatedAsTheirAddendsAreMade) {
  Graph g;
  const int64_t B = 256, D = 256;  // 256 KiB each
  Tensor x = input(g, "x", {B, D});
  Tensor w = input(g, "w", {D, D});
  Tensor h = x, total;
  for (int i = 0; i < 6; ++i) {
    Tensor a = matmul(h, w);
    total = i == 0 ? a : total + a;
    h = tanh(a) * 0.5;
  }
  g.add_output("y", total.value());
  g.add_output("h", sum(h).value());
  optimize(g);
  size_t floor_without = 0;  // the fed inputs and the sum's addends, all live at the sum
  for (const Node& n : g.nodes()) {
    if (n.kind == NodeKind::Input) floor_without += n.type().bytes();
    if (n.kind == NodeKind::Op && n.op->name == "fused_elementwise" && attr_string(n.attrs, "ops") == "add,add,add,add,add")
      for (Value v : n.inputs) floor_without += g.type(v).bytes();
  }
  ASSERT_EQ(floor_without, size_t(8 * B * D * 4)) << "fusion made one six-way sum";
  const size_t budget = floor_without - 1;
  ASSERT_GT(planned(g), budget);
  Graph lean = g;
  EXPECT_FALSE(rematerialize_to_budget(lean, budget, planned) && planned(lean) <= budget)
      << "recomputation alone reaches it";
  lean = g;
  CompileOptions o;
  o.memory_budget = budget;
  fit_memory_budget(lean, {}, o);  // the reducer table: early accumulation, then recomputation
  verify(lean);
  EXPECT_LE(planned(lean), budget);
  EXPECT_LE(planned_floor(g, {}, false).bytes, planned(lean)) << "the floor allows for early accumulation";
  expect_same(run(g, {}), run(lean, {}));
}

// End to end: conv-MAML under a budget below its unconstrained peak trains and reports a plan
// within it; a budget out of reach exits 1 naming the reducers and the smallest budget.
size_t cli_planned_peak(const std::string& args) {
  const std::string path = (std::filesystem::temp_directory_path() / ("remat_budget_" + std::to_string(::getpid()) + ".json")).string();
  testing::CliRun r = testing::run(args + " --json " + path);
  EXPECT_EQ(r.status, 0) << r.err;
  std::ifstream in(path);
  if (!in) return 0;
  const nlohmann::json j = nlohmann::json::parse(in);
  std::filesystem::remove(path);
  return j.at("result").at("compile").at("planned_peak_bytes").get<size_t>();
}

TEST(RematBudget, CliConvMaml) {
  const std::string w = "bench conv-maml --synthetic --iters 1 --eval-tasks 1 --meta-batch 2 --filters 32 --quiet";
  const size_t full = cli_planned_peak(w);
  ASSERT_GT(full, 0u);
  const size_t budget = full / 100 * 85;
  EXPECT_LE(cli_planned_peak(w + " --memory-budget " + std::to_string(budget)), budget);
  testing::CliRun small = testing::run(w + " --memory-budget 1M");
  EXPECT_EQ(small.status, 1);
  EXPECT_NE(small.err.find("rematerialize"), std::string::npos) << small.err;
  const size_t at = small.err.find("give a budget of at least ");
  ASSERT_NE(at, std::string::npos) << small.err;
  const size_t floor_at = small.err.find("no plan of these ops is below ");
  ASSERT_NE(floor_at, std::string::npos) << small.err;
  const size_t paren = small.err.find('(', floor_at);
  ASSERT_NE(paren, std::string::npos) << small.err;
  EXPECT_LE(std::stoull(small.err.substr(paren + 1)), std::stoull(small.err.substr(at + 26))) << small.err;
}

}  // namespace
}  // namespace metagrad
