// Sinusoid benchmark driver: one compiled meta-step replayed with fresh tasks every iteration.
#include "bench/drivers/sinusoid_bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "meta/data/sinusoid.h"
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
void feed(Executable& e, const Slots& s, const SinusoidBatch& b) {
  e.set_input(s.xs, std::span<const float>(b.xs));
  e.set_input(s.ys, std::span<const float>(b.ys));
  e.set_input(s.xq, std::span<const float>(b.xq));
  e.set_input(s.yq, std::span<const float>(b.yq));
}

}  // namespace

SinusoidBenchResult run_sinusoid_bench(const SinusoidBenchConfig& cfg, std::ostream* progress) {
  if (cfg.iters < 0 || cfg.eval_tasks < 0 || cfg.eval_shots <= 0 || cfg.eval_steps < 0)
    throw Error("iters and eval-tasks must be non-negative, eval-shots positive, eval-steps non-negative");
  SinusoidBenchResult res;
  PipelineOptions popts;
  popts.opt_level = cfg.opt_level;
  Graph step = build_meta_step(cfg.maml);
  res.nodes_raw = step.size();
  optimize(step, popts);
  res.nodes_optimized = step.size();

  ParamStore store;
  Executable exe(step, store, {"loss"}, cfg.compile);
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
    feed(exe, slots, batch);
    exe.run();
    if (it >= cfg.iters - tail) tail_loss += exe.fetch(0)[0];
    if ((it & 63) == 0 || it + 1 == cfg.iters) {
      float loss = exe.fetch(0)[0];
      if (!std::isfinite(loss)) throw RuntimeError(fmt::format("training diverged at iteration {} (loss {}); {}", it, loss, kCheckNumericsHint));
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
  Executable ev(eval, store, {}, cfg.compile);
  Slots es = slots_of(ev);
  SinusoidSampler eval_tasks(cfg.maml.seed * 7919 + 1000003);
  std::vector<std::vector<double>> per_step(size_t(cfg.eval_steps + 1));
  ProgressBar ebar(progress, cfg.eval_tasks, "evaluate  ");
  for (int64_t done = 0; done < cfg.eval_tasks; done += per_batch) {
    eval_tasks.sample(batch, per_batch, cfg.eval_shots, cfg.maml.query);
    feed(ev, es, batch);
    ev.run();
    const int64_t take = std::min(per_batch, cfg.eval_tasks - done);
    for (int64_t s = 0; s <= cfg.eval_steps; ++s) {
      auto mse = ev.fetch(fmt::format("mse_{}", s));
      per_step[size_t(s)].insert(per_step[size_t(s)].end(), mse.begin(), mse.begin() + take);
    }
    ebar.update(done + take);
  }
  ebar.finish();
  res.eval_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
  for (const auto& v : per_step) res.mse_by_step.push_back(mean_ci(v));
  res.pre = res.mse_by_step.front();
  res.post = res.mse_by_step.back();
  return res;
}

}  // namespace metagrad
