// The one train/evaluate loop of every benchmark, usable on a model of your own: it compiles your
// step graph once, replays it on the batches your feeder puts into it, times every step, stops on
// divergence, draws a progress bar, writes periodic checkpoints, and evaluates in batches with a
// Student-t interval per output.
//
//   DriverConfig cfg;  cfg.iters = 1000;  cfg.progress = &std::cerr;
//   TrainSpec step;
//   step.build_step = [&](const GradientCombiner& combine) { return my_step_graph(combine); };
//   step.batch = 25;   // tasks per step
//   step.feed = [&](Executable& exe, int64_t index, TaskRange tasks) { /* set_input(...) */ };
//   ParamStore store;
//   TrainResult r = train_loop(cfg, step, store);
//
// Distributed runs plug in at three places, all identity in one process: `Shard` says which share
// of every global batch and of the evaluation episodes this process draws, `combine_gradients`
// sums gradients inside the step graph before the update, and `EvalSpec::gather` combines the
// per-episode results of all processes.
#pragma once
#include <cstdint>
#include <functional>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "metagrad/executable.h"
#include "metagrad/graph.h"
#include "metagrad/optimizers.h"
#include "metagrad/param_store.h"
#include "metagrad/stats.h"

namespace metagrad {

// [begin, end) of a global batch's tasks (or examples, or of the evaluation episodes).
struct TaskRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

// Which share of the work this process does: rank r of `ranks` takes a contiguous share of every
// global batch and of the evaluation batches. The default, one process, takes everything.
struct Shard {
  int rank = 0, ranks = 1;
  // This rank's equal share of a global training batch of n tasks (or examples). The summed
  // gradients equal the one-process gradient of the global batch only if every rank's loss is the
  // mean over an equal share (the combiner averages), so n must divide by ranks: Error otherwise,
  // naming `what`, n and ranks. Also throws unless 0 <= rank < ranks.
  TaskRange of(int64_t n, const char* what = "batch") const;
  // This rank's contiguous, balanced share of n whole units (evaluation batches): the first
  // n % ranks ranks take one more; the shares in rank order are 0..n-1.
  TaskRange balanced(int64_t n) const;
};

struct DriverConfig {
  int64_t iters = 0;   // training steps of this call (a resumed run continues its batch indices)
  int opt_level = 1;   // graph passes the step and evaluation graphs are compiled with (0: none)
  // Checkpoints through save_checkpoint: every `save_every` steps (0: never in between) and after
  // the last step, to `checkpoint` (empty: none). `on_save` runs after each write (a sidecar file).
  std::string checkpoint;
  int64_t save_every = 0;
  std::function<void(const ParamStore&, const std::string& path)> on_save;
  // The store tensor counting the steps taken (an optimizer's "<prefix>.t"): a run started from a
  // checkpoint numbers its batches from it, so a feeder that draws batch `index` from its own seed
  // makes resumed training equal an uninterrupted run. Empty or absent: batches count from 0.
  std::string step_counter = "adam.t";
  // Handed to TrainSpec::build_step: every benchmark passes it to its optimizer step
  // (OptimizerConfig::combine_gradients), so data-parallel training sums gradients here, once.
  GradientCombiner combine_gradients;
  Shard shard;
  // The rest of a distributed run's plumbing (meta/dist/ sets them; empty in one process):
  // after compiling, before the first step, make every process's store equal rank 0's (also after
  // a checkpoint was loaded); after every step, turn each process's metrics (its share's means)
  // into the global batch's (their mean over processes), before the divergence check so that every
  // process stops at the same step; and EvalSpec::gather for evaluations that set none. Rank 0
  // alone writes checkpoints.
  std::function<void(ParamStore& store)> sync_params;
  std::function<void(std::span<double> metrics)> reduce_metrics;
  std::function<void(std::vector<std::vector<double>>& values)> gather;
  std::string label = "meta-train";  // progress-bar label and the prefix of errors
  std::ostream* progress = nullptr;  // progress bars; null: silent
  CompileOptions compile;            // of the step and evaluation executables (check_numerics)
};

// Puts the inputs of global batch `index` into `exe`, drawing only `tasks` of it (this process's
// share; in one process all of it). In evaluation `index` numbers the evaluation batches.
using BatchFeeder = std::function<void(Executable& exe, int64_t index, TaskRange tasks)>;

struct TrainSpec {
  // Builds the training step (inputs, outputs, updates) once; pass `combine` to the optimizer step.
  std::function<Graph(const GradientCombiner& combine)> build_step;
  // Scalar outputs read after every step. The first is the loss: a non-finite value stops training
  // with a RuntimeError naming the step and every metric.
  std::vector<std::string> metrics = {"loss"};
  int64_t batch = 1;  // tasks (or examples) of the global batch that Shard splits
  BatchFeeder feed;
  // Optional, after every step (outside the timing): observe the metrics, evaluate at an epoch's end.
  std::function<void(int64_t index, const std::vector<double>& metrics)> after_step;
  // Optional: where step `index` is, for the divergence error ("epoch 2, step 7").
  std::function<std::string(int64_t index)> describe;
};

struct CompileStats {
  size_t nodes_raw = 0, nodes_optimized = 0, kernels = 0;
  size_t arena_bytes = 0, naive_bytes = 0, workspace_bytes = 0;
  size_t loop_storage_bytes = 0;   // of the arena, the largest loop kernel region (Executable::loop_storage_bytes)
  std::vector<LoopReport> loops;   // the backward loops' checkpointing (Executable::loops)
  RematReport remat;               // what the memory budget recomputed (Executable::remat)
  double pass_seconds = 0;
  double compile_seconds = 0;      // building the executable (kernels, plans, the memory budget's search)
};

struct TrainResult {
  CompileStats compile;
  int64_t iters = 0, first_index = 0;  // steps taken, and the batch index of the first
  // The timing rule: a step is everything from feeding its batch (sampling included) to reading its
  // metrics; run_seconds is the run() calls alone. Hooks and checkpoints are outside both.
  double seconds = 0, run_seconds = 0;
  double ms_per_iter = 0, ms_per_run = 0;
  // This process's CPU time over the steps (hooks included), per step: on a shared machine the
  // work a step costs, where wall time also counts the waits for a core.
  double cpu_ms_per_iter = 0;
  std::vector<double> final_metrics;  // each metric's mean over the last 10% of the steps (at least one)
  std::vector<double> losses;         // the first metric of every step (over the global batch)
  size_t working_bytes = 0;           // resident-set growth from before compiling to after training (Linux)
};

// Compiles spec.build_step(cfg.combine_gradients) once against `store` (parameters already in it,
// from a checkpoint or pre-training, are the start) and runs cfg.iters steps. The trained state
// stays in `store`.
TrainResult train_loop(const DriverConfig& cfg, const TrainSpec& spec, ParamStore& store);

struct EvalSpec {
  std::function<Graph(int64_t tasks)> build;  // the evaluation graph of `tasks` episodes, built once
  int64_t episodes = 0;   // over all processes
  int64_t per_batch = 1;  // episodes per run(); the last batch is fed whole and its surplus dropped
  // Processes take whole batches (Shard::balanced), fed with their one-process index and episodes.
  // A feeder that draws from one stream in batch order (ignoring `index`) sets this: a process is
  // then also fed the batches before its share, without running them, so that its stream is where
  // one process's would be.
  bool draws_in_order = false;
  std::vector<std::string> outputs;  // per-episode outputs, each of shape [per_batch]
  BatchFeeder feed;                  // index: evaluation batch number; tasks: its episodes
  // Combines the per-episode results of all processes: values[k] holds this process's episodes of
  // outputs[k] and must hold every episode's afterwards. Empty: DriverConfig::gather, if any.
  std::function<void(std::vector<std::vector<double>>& values)> gather;
  std::string label = "evaluate  ";
};

struct EvalReport {
  std::vector<std::vector<double>> values;  // per output, per episode
  std::vector<MeanCi> summary;              // per output: mean and Student-t 95% half-width
  CompileStats compile;
  double seconds = 0;
};

// Runs this process's share of spec.episodes through the compiled evaluation graph and gathers.
EvalReport eval_loop(const DriverConfig& cfg, const EvalSpec& spec, ParamStore& store);

}  // namespace metagrad
