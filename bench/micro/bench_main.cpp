// Google Benchmark: kernel micro-benchmarks through compiled one-op graphs, and the MAML
// sinusoid meta-step (second and first order).
#include <benchmark/benchmark.h>

#include <random>

#include "meta/data/sinusoid.h"
#include "meta/learn/maml.h"
#include "metagrad/autodiff.h"
#include "metagrad/executable.h"
#include "metagrad/ops.h"
#include "metagrad/pipeline.h"

namespace {

using namespace metagrad;

// Compiles `g` (inputs filled with random values) and times run().
void time_graph(benchmark::State& state, Graph g, double flops = 0) {
  optimize(g);
  ParamStore store;
  Executable exe(g, store);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<std::vector<float>> data;
  for (const Node& n : g.nodes()) {
    if (n.kind != NodeKind::Input) continue;
    data.emplace_back(size_t(n.type().numel()));
    for (float& v : data.back()) v = d(rng);
    exe.set_input(exe.input_slot(n.name), std::span<const float>(data.back()));
  }
  for (auto _ : state) exe.run();
  if (flops > 0) state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_MatmulBatched(benchmark::State& state) {
  Graph g;
  g.add_output("y", matmul(input(g, "a", {25, 10, 40}), input(g, "b", {25, 40, 40})).value());
  time_graph(state, g, 2.0 * 25 * 10 * 40 * 40);
}
BENCHMARK(BM_MatmulBatched);

void BM_AddBroadcast(benchmark::State& state) {
  Graph g;
  g.add_output("y", (input(g, "a", {25, 10, 40}) + input(g, "b", {1, 40})).value());
  time_graph(state, g);
}
BENCHMARK(BM_AddBroadcast);

void BM_Relu(benchmark::State& state) {
  Graph g;
  g.add_output("y", relu(input(g, "a", {64, 1024})).value());
  time_graph(state, g);
}
BENCHMARK(BM_Relu);

void BM_Softmax(benchmark::State& state) {
  Graph g;
  g.add_output("y", softmax(input(g, "a", {256, 100})).value());
  time_graph(state, g);
}
BENCHMARK(BM_Softmax);

void BM_Conv3x3(benchmark::State& state) {
  Graph g;
  g.add_output("y", conv2d(input(g, "x", {4, 64, 14, 14}), input(g, "w", {64, 64, 3, 3}), {1, 1}, {1, 1}).value());
  time_graph(state, g, 2.0 * 4 * 64 * 14 * 14 * 64 * 9);
}
BENCHMARK(BM_Conv3x3);

// Forward and backward of max pooling through the compiled graph: the ResNet stem's 3x3 stride 2
// padding 1 windows (arg 1, the general-window kernels) and the conv network's 2x2 tiling
// windows (arg 0, the vectorized loops) over the same input.
void BM_MaxPoolForwardBackward(benchmark::State& state) {
  Graph g;
  Tensor x = input(g, "x", {8, 64, 56, 56});
  Tensor y = state.range(0) ? max_pool2d(x, {3, 3}, {2, 2}, {1, 1}) : max_pool2d(x, {2, 2});
  Tensor gy = input(g, "gy", y.shape());
  g.add_output("y", y.value());
  g.add_output("gx", grad(sum(y * gy), {x})[0].value());
  state.SetLabel(state.range(0) ? "3x3 stride 2 pad 1" : "2x2");
  time_graph(state, g);
}
BENCHMARK(BM_MaxPoolForwardBackward)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond);

void BM_FusedElementwiseChain(benchmark::State& state) {
  Graph g;
  Tensor x = input(g, "x", {25, 40, 40}), m = input(g, "m", {25, 40, 40});
  g.add_output("y", (x - 0.001 * (m / (sqrt(m * m) + 1e-8))).value());  // an Adam-like update chain
  time_graph(state, g);
}
BENCHMARK(BM_FusedElementwiseChain);

void BM_MamlSinusoidMetaStep(benchmark::State& state) {
  MamlConfig cfg;
  cfg.algo = state.range(0) ? "maml" : "fomaml";
  Graph g = build_meta_step(cfg);
  optimize(g);
  ParamStore store;
  Executable exe(g, store, {"loss"});
  SinusoidSampler sampler(1);
  SinusoidBatch b;
  int sx = exe.input_slot("xs"), sy = exe.input_slot("ys"), qx = exe.input_slot("xq"), qy = exe.input_slot("yq");
  for (auto _ : state) {
    sampler.sample(b, cfg.meta_batch, cfg.shots, cfg.query);
    exe.set_input(sx, std::span<const float>(b.xs));
    exe.set_input(sy, std::span<const float>(b.ys));
    exe.set_input(qx, std::span<const float>(b.xq));
    exe.set_input(qy, std::span<const float>(b.yq));
    exe.run();
  }
  state.SetLabel(cfg.algo);
  state.counters["kernels"] = double(exe.kernel_count());
  state.counters["arena_KiB"] = double(exe.arena_bytes()) / 1024.0;
}
BENCHMARK(BM_MamlSinusoidMetaStep)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
