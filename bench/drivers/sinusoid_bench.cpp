// Sinusoid benchmark driver: one compiled meta-step replayed with fresh tasks every iteration.
#include "bench/drivers/sinusoid_bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "meta/data/sinusoid.h"
#include "meta/dist/data_parallel.h"
#include "meta/dist/gradient_allreduce.h"
#include "meta/train/progress.h"
#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/pipeline.h"

namespace metagrad {

MeanCI mean_ci(const std::vector<double>& v) {
  MeanCI r;
  if (v.empty()) return r;
  for (double x : v) r.mean += x;
  r.mean /= double(v.size());
  if (v.size() < 2) return r;
  double var = 0;
  for (double x : v) var += (x - r.mean) * (x - r.mean);
  var /= double(v.size() - 1);
  r.ci95 = 1.96 * std::sqrt(var / double(v.size()));
  return r;
}

namespace {

struct Slots {
  int xs, ys, xq, yq;
};
Slots slots_of(const Executable& e) {
  return {e.input_slot("xs"), e.input_slot("ys"), e.input_slot("xq"), e.input_slot("yq")};
}
// Feeds tasks [share.begin, share.end) of the batch (all of it in one process).
void feed(Executable& e, const Slots& s, const SinusoidBatch& b, Share share) {
  auto rows = [&](const std::vector<float>& v, int64_t per_task) {
    return std::span<const float>(v).subspan(size_t(share.begin * per_task), size_t(share.size() * per_task));
  };
  e.set_input(s.xs, rows(b.xs, b.shots));
  e.set_input(s.ys, rows(b.ys, b.shots));
  e.set_input(s.xq, rows(b.xq, b.query));
  e.set_input(s.yq, rows(b.yq, b.query));
}

}  // namespace

SinusoidBenchResult run_sinusoid_bench(const SinusoidBenchConfig& cfg, std::ostream* progress) {
  if (cfg.iters < 0 || cfg.eval_tasks < 0 || cfg.eval_shots <= 0 || cfg.eval_steps < 0)
    throw Error("iters and eval-tasks must be non-negative, eval-shots positive, eval-steps non-negative");
  SinusoidBenchResult res;
  PipelineOptions popts;
  popts.opt_level = cfg.opt_level;
  // Every rank samples the whole global batch from the same seed and feeds its share.
  const int rank = cfg.collective ? cfg.collective->rank() : 0, ranks = cfg.collective ? cfg.collective->size() : 1;
  res.ranks = ranks;
  const Share share = even_share(cfg.maml.meta_batch, rank, ranks, "meta-batch");
  MamlConfig local = cfg.maml;
  local.meta_batch = share.size();
  Graph step = build_meta_step(local, gradient_allreduce(ranks));
  res.nodes_raw = step.size();
  optimize(step, popts);
  res.nodes_optimized = step.size();
  res.allreduce_floats = double(count_allreduces(step).floats);

  ParamStore store;
  CompileOptions copts;
  copts.collective = cfg.collective;
  Executable exe(step, store, {"loss"}, copts);
  if (cfg.collective) broadcast_params(*cfg.collective, store);
  res.peak_bytes = exe.arena_bytes();
  res.naive_bytes = exe.naive_bytes();
  res.kernels = exe.kernel_count();
  Slots slots = slots_of(exe);
  SinusoidSampler train_tasks(cfg.maml.seed);
  SinusoidBatch batch;

  ProgressBar bar(progress, cfg.iters, "meta-train");
  const int64_t tail = std::max<int64_t>(1, cfg.iters / 100);
  double tail_loss = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t it = 0; it < cfg.iters; ++it) {
    train_tasks.sample(batch, cfg.maml.meta_batch, cfg.maml.shots, cfg.maml.query);
    feed(exe, slots, batch, share);
    exe.run();
    // The step's loss is this rank's share's mean; the global one is the mean over ranks.
    double step_loss = exe.fetch(0)[0];
    if (cfg.collective) average(*cfg.collective, std::span<double>(&step_loss, 1));
    if (it >= cfg.iters - tail) tail_loss += step_loss;
    if ((it & 63) == 0 || it + 1 == cfg.iters) {
      const double loss = step_loss;
      if (!std::isfinite(loss)) throw RuntimeError(fmt::format("training diverged at iteration {} (loss {})", it, loss));
      bar.update(it + 1, fmt::format("loss {:.3f}", loss));
    }
  }
  res.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  bar.finish();
  res.ms_per_meta_iter = cfg.iters > 0 ? 1e3 * res.train_seconds / double(cfg.iters) : 0.0;
  res.final_loss = tail_loss / double(tail);

  // Evaluation on fresh tasks from another seed stream, in batches of up to 100 tasks.
  auto e0 = std::chrono::steady_clock::now();
  const int64_t per_batch = std::min<int64_t>(std::max<int64_t>(cfg.eval_tasks, 1), 100);
  Graph eval = build_maml_eval(cfg.maml, per_batch, cfg.eval_shots, cfg.maml.query, cfg.eval_steps);
  optimize(eval, popts);
  Executable ev(eval, store);
  Slots es = slots_of(ev);
  SinusoidSampler eval_tasks(cfg.maml.seed * 7919 + 1000003);
  std::vector<std::vector<double>> per_step(size_t(cfg.eval_steps + 1));
  ProgressBar ebar(progress, cfg.eval_tasks, "evaluate  ");
  // Each rank evaluates its share of the batches (all are drawn, so the tasks are the same as in
  // one process) and the per-task results are gathered in rank order: the same list, same order.
  const Share mine = balanced_share((cfg.eval_tasks + per_batch - 1) / per_batch, rank, ranks);
  for (int64_t done = 0, b = 0; done < cfg.eval_tasks; done += per_batch, ++b) {
    eval_tasks.sample(batch, per_batch, cfg.eval_shots, cfg.maml.query);
    if (b < mine.begin || b >= mine.end) continue;
    feed(ev, es, batch, {0, per_batch});
    ev.run();
    const int64_t take = std::min(per_batch, cfg.eval_tasks - done);
    for (int64_t s = 0; s <= cfg.eval_steps; ++s) {
      auto mse = ev.fetch(fmt::format("mse_{}", s));
      per_step[size_t(s)].insert(per_step[size_t(s)].end(), mse.begin(), mse.begin() + take);
    }
    ebar.update(done + take);
  }
  ebar.finish();
  if (cfg.collective) gather_each(*cfg.collective, per_step);
  res.eval_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
  for (const auto& v : per_step) res.mse_by_step.push_back(mean_ci(v));
  res.pre = res.mse_by_step.front();
  res.post = res.mse_by_step.back();
  return res;
}

}  // namespace metagrad
