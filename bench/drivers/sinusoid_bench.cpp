// Sinusoid benchmark: one compiled meta-step replayed with fresh tasks every iteration.
#include "bench/drivers/sinusoid_bench.h"

#include <fmt/format.h>

#include <algorithm>

#include "meta/data/sinusoid.h"
#include "metagrad/error.h"

namespace metagrad {

namespace {

// Feeds a sampled batch into the graphs' inputs xs, ys, xq, yq.
void feed(Executable& e, const SinusoidBatch& b) {
  e.set_input(e.input_slot("xs"), std::span<const float>(b.xs));
  e.set_input(e.input_slot("ys"), std::span<const float>(b.ys));
  e.set_input(e.input_slot("xq"), std::span<const float>(b.xq));
  e.set_input(e.input_slot("yq"), std::span<const float>(b.yq));
}

}  // namespace

SinusoidBenchResult run_sinusoid_bench(const SinusoidBenchConfig& cfg) {
  if (cfg.run.iters < 0 || cfg.eval_tasks < 0 || cfg.eval_shots <= 0 || cfg.eval_steps < 0)
    throw Error("iters and eval-tasks must be non-negative, eval-shots positive, eval-steps non-negative");
  SinusoidBenchResult res;
  ParamStore store;
  // Tasks are drawn from one stream in order (no per-batch seeds): a sinusoid run is never resumed.
  SinusoidSampler train_tasks(cfg.maml.seed);
  SinusoidBatch batch;
  TrainSpec step;
  step.build_step = [&](const GradientCombiner& combine) {
    MamlConfig m = cfg.maml;
    m.combine = combine;
    return build_meta_step(m);
  };
  step.batch = cfg.maml.meta_batch;
  step.feed = [&](Executable& exe, int64_t, TaskRange tasks) {
    train_tasks.sample(batch, tasks.size(), cfg.maml.shots, cfg.maml.query);
    feed(exe, batch);
  };
  res.train = train_loop(cfg.run, step, store);

  // Fresh tasks from another seed stream, in batches of up to 100 tasks.
  SinusoidSampler eval_tasks(cfg.maml.seed * 7919 + 1000003);
  EvalSpec ev;
  ev.episodes = cfg.eval_tasks;
  ev.per_batch = std::min<int64_t>(std::max<int64_t>(cfg.eval_tasks, 1), 100);
  ev.build = [&](int64_t tasks) { return build_maml_eval(cfg.maml, tasks, cfg.eval_shots, cfg.maml.query, cfg.eval_steps); };
  for (int64_t s = 0; s <= cfg.eval_steps; ++s) ev.outputs.push_back(fmt::format("mse_{}", s));
  ev.feed = [&](Executable& exe, int64_t, TaskRange tasks) {
    eval_tasks.sample(batch, tasks.size(), cfg.eval_shots, cfg.maml.query);
    feed(exe, batch);
  };
  const EvalReport e = eval_loop(cfg.run, ev, store);
  res.eval_seconds = e.seconds;
  res.mse_by_step = e.summary;
  res.pre = res.mse_by_step.front();
  res.post = res.mse_by_step.back();
  return res;
}

}  // namespace metagrad
