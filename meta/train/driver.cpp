// The train/evaluate loop behind every benchmark (metagrad/driver.h).
#include "metagrad/driver.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>

#include "meta/train/progress.h"
#include "metagrad/checkpoint.h"
#include "metagrad/error.h"
#include "metagrad/pipeline.h"

namespace metagrad {

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0, resident = 0;
  if (!(statm >> pages >> resident)) return 0;
  return resident * size_t(sysconf(_SC_PAGESIZE));
}

// Runs the pipeline on `g` and records what it did.
CompileStats optimized(Graph& g, int opt_level) {
  CompileStats s;
  s.nodes_raw = g.size();
  PipelineOptions popts;
  popts.opt_level = opt_level;
  const auto t0 = Clock::now();
  optimize(g, popts);
  s.pass_seconds = since(t0);
  s.nodes_optimized = g.size();
  return s;
}

void record_executable(CompileStats& s, const Executable& exe) {
  s.kernels = exe.kernel_count();
  s.arena_bytes = exe.arena_bytes();
  s.naive_bytes = exe.naive_bytes();
  s.workspace_bytes = exe.workspace_bytes();
  s.loop_storage_bytes = exe.loop_storage_bytes();
  s.loops = exe.loops();
  s.remat = exe.remat();
}

std::string metrics_str(const std::vector<std::string>& names, const std::vector<double>& values) {
  std::string s;
  for (size_t i = 0; i < names.size(); ++i) s += fmt::format("{}{} {}", i ? ", " : "", names[i], values[i]);
  return s;
}

}  // namespace

namespace {
void check_shard(const Shard& s) {
  if (s.ranks <= 0 || s.rank < 0 || s.rank >= s.ranks) throw Error(fmt::format("shard: rank {} of {} ranks", s.rank, s.ranks));
}
}  // namespace

TaskRange Shard::of(int64_t n, const char* what) const {
  check_shard(*this);
  if (n % ranks != 0)
    throw Error(fmt::format("the {} of {} does not split evenly over {} processes: choose a multiple of {}", what, n,
                            ranks, ranks));
  return {n / ranks * rank, n / ranks * (rank + 1)};
}

TaskRange Shard::balanced(int64_t n) const {
  check_shard(*this);
  const int64_t base = n / ranks, extra = n % ranks;
  const int64_t begin = base * rank + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

TrainResult train_loop(const DriverConfig& cfg, const TrainSpec& spec, ParamStore& store) {
  if (!spec.build_step || !spec.feed) throw Error(fmt::format("{}: the step needs build_step and feed", cfg.label));
  if (spec.metrics.empty()) throw Error(fmt::format("{}: the step needs a loss metric", cfg.label));
  if (cfg.iters < 0 || cfg.save_every < 0 || spec.batch <= 0)
    throw Error(fmt::format("{}: iterations and save-every must be non-negative, the batch positive", cfg.label));
  TrainResult res;
  const size_t rss0 = resident_bytes();
  Graph step = spec.build_step(cfg.combine_gradients);
  res.compile = optimized(step, cfg.opt_level);
  const auto tc = Clock::now();
  Executable exe(step, store, spec.metrics, cfg.compile);
  res.compile.compile_seconds = since(tc);
  record_executable(res.compile, exe);

  // Read after compiling: the executable has put every parameter (the counter at 0) into the store.
  if (!cfg.step_counter.empty() && store.has(cfg.step_counter))
    res.first_index = int64_t(store.data(cfg.step_counter)[0]);
  const TaskRange share = cfg.shard.of(spec.batch);
  if (cfg.sync_params) {
    cfg.sync_params(store);
    if (!cfg.step_counter.empty() && store.has(cfg.step_counter))
      res.first_index = int64_t(store.data(cfg.step_counter)[0]);
  }
  const int64_t tail = std::max<int64_t>(1, cfg.iters / 10);
  const size_t m = spec.metrics.size();
  std::vector<double> values(m), tail_sum(m, 0.0);
  res.losses.reserve(size_t(cfg.iters));
  auto save = [&] {
    if (cfg.shard.rank != 0) return;  // every process holds the same state; one writes it
    save_checkpoint(store, cfg.checkpoint);
    if (cfg.on_save) cfg.on_save(store, cfg.checkpoint);
  };

  ProgressBar bar(cfg.progress, cfg.iters, cfg.label);
  const double cpu0 = cpu_seconds();
  for (int64_t it = 0; it < cfg.iters; ++it) {
    const int64_t index = res.first_index + it;
    const auto t0 = Clock::now();
    spec.feed(exe, index, share);
    const auto t1 = Clock::now();
    exe.run();
    res.run_seconds += since(t1);
    for (size_t k = 0; k < m; ++k) values[k] = exe.fetch(k)[0];
    if (cfg.reduce_metrics) cfg.reduce_metrics(values);
    res.seconds += since(t0);
    res.losses.push_back(values[0]);
    if (!std::isfinite(values[0]))
      throw RuntimeError(fmt::format("{}: training diverged at step {}{} ({}){}", cfg.label, index + 1,
                                     spec.describe ? " (" + spec.describe(index) + ")" : "",
                                     metrics_str(spec.metrics, values),
                                     cfg.compile.check_numerics ? "" : std::string("; ") + kCheckNumericsHint));
    if (it >= cfg.iters - tail)
      for (size_t k = 0; k < m; ++k) tail_sum[k] += values[k];
    if (spec.after_step) spec.after_step(index, values);
    if (bar.due(it + 1)) bar.update(it + 1, fmt::format("{} {:.3f}", spec.metrics[0], values[0]));
    if (!cfg.checkpoint.empty() && cfg.save_every > 0 && (it + 1) % cfg.save_every == 0 && it + 1 < cfg.iters) save();
  }
  const double cpu = cpu_seconds() - cpu0;
  bar.finish();
  if (!cfg.checkpoint.empty()) save();
  res.iters = cfg.iters;
  res.working_bytes = resident_bytes() - std::min(rss0, resident_bytes());
  if (cfg.iters > 0) {
    res.ms_per_iter = 1e3 * res.seconds / double(cfg.iters);
    res.ms_per_run = 1e3 * res.run_seconds / double(cfg.iters);
    res.cpu_ms_per_iter = 1e3 * cpu / double(cfg.iters);
    for (double s : tail_sum) res.final_metrics.push_back(s / double(std::min(tail, cfg.iters)));
  } else {
    res.final_metrics.assign(m, 0.0);
  }
  return res;
}

EvalReport eval_loop(const DriverConfig& cfg, const EvalSpec& spec, ParamStore& store) {
  if (!spec.build || !spec.feed) throw Error(fmt::format("{}: evaluation needs build and feed", spec.label));
  if (spec.episodes < 0 || spec.per_batch <= 0)
    throw Error(fmt::format("{}: episodes must be non-negative, the batch positive", spec.label));
  EvalReport res;
  const auto t0 = Clock::now();
  res.values.resize(spec.outputs.size());
  // Whole batches per process, so that batch b holds the same episodes [b * per_batch, ...) and is
  // fed with the same index as in one process; concatenated in rank order they are 0..episodes-1.
  const int64_t pb = spec.per_batch;
  const TaskRange batches = cfg.shard.balanced((spec.episodes + pb - 1) / pb);
  const int64_t first = batches.begin * pb, last = std::min(batches.end * pb, spec.episodes);
  if (batches.size() > 0) {
    Graph g = spec.build(pb);
    res.compile = optimized(g, cfg.opt_level);
    // Every output is kept (not only spec.outputs), so the graph compiles as the benchmarks always did.
    Executable exe(g, store, {}, cfg.compile);
    record_executable(res.compile, exe);
    if (spec.draws_in_order)
      for (int64_t b = 0; b < batches.begin; ++b) spec.feed(exe, b, {b * pb, (b + 1) * pb});
    ProgressBar bar(cfg.progress, last - first, spec.label);
    for (int64_t b = batches.begin; b < batches.end; ++b) {
      const int64_t done = b * pb;
      spec.feed(exe, b, {done, done + pb});
      exe.run();
      const int64_t take = std::min(pb, spec.episodes - done);
      for (size_t k = 0; k < spec.outputs.size(); ++k) {
        auto v = exe.fetch(spec.outputs[k]);
        if (int64_t(v.size()) < take)
          throw RuntimeError(fmt::format("{}: output '{}' has {} values for {} episodes", spec.label, spec.outputs[k],
                                         v.size(), take));
        res.values[k].insert(res.values[k].end(), v.begin(), v.begin() + take);
      }
      bar.update(done + take - first);
    }
    bar.finish();
  }
  if (spec.gather) spec.gather(res.values);
  else if (cfg.gather) cfg.gather(res.values);
  for (const auto& v : res.values) res.summary.push_back(mean_ci95(v));
  res.seconds = since(t0);
  return res;
}

}  // namespace metagrad
