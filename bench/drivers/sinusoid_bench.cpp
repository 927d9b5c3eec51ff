// Sinusoid benchmark: one compiled meta-step replayed with fresh tasks every iteration.
#include "bench/drivers/sinusoid_bench.h"

#include <fmt/format.h>

#include <algorithm>

#include "meta/data/sinusoid.h"
#include "metagrad/error.h"

namespace metagrad {

namespace {

// Feeds tasks [tasks.begin, tasks.end) of a sampled batch (all of it in one process) into the
// graphs' inputs xs, ys, xq, yq.
void feed(Executable& e, const SinusoidBatch& b, TaskRange tasks) {
  auto rows = [&](const std::vector<float>& v, int64_t per_task) {
    return std::span<const float>(v).subspan(size_t(tasks.begin * per_task), size_t(tasks.size() * per_task));
  };
  e.set_input(e.input_slot("xs"), rows(b.xs, b.shots));
  e.set_input(e.input_slot("ys"), rows(b.ys, b.shots));
  e.set_input(e.input_slot("xq"), rows(b.xq, b.query));
  e.set_input(e.input_slot("yq"), rows(b.yq, b.query));
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
    m.meta_batch = cfg.run.shard.of(cfg.maml.meta_batch, "meta-batch").size();
    return build_meta_step(m);
  };
  step.batch = cfg.maml.meta_batch;
  // Every process draws the whole global batch (so the stream stays that of one process) and feeds its share.
  step.feed = [&](Executable& exe, int64_t, TaskRange tasks) {
    train_tasks.sample(batch, cfg.maml.meta_batch, cfg.maml.shots, cfg.maml.query);
    feed(exe, batch, tasks);
  };
  res.train = train_loop(cfg.run, step, store);

  // Fresh tasks from another seed stream, in batches of up to 100 tasks.
  SinusoidSampler eval_tasks(cfg.maml.seed * 7919 + 1000003);
  EvalSpec ev;
  ev.episodes = cfg.eval_tasks;
  ev.per_batch = std::min<int64_t>(std::max<int64_t>(cfg.eval_tasks, 1), 100);
  ev.build = [&](int64_t tasks) { return build_maml_eval(cfg.maml, tasks, cfg.eval_shots, cfg.maml.query, cfg.eval_steps); };
  for (int64_t s = 0; s <= cfg.eval_steps; ++s) ev.outputs.push_back(fmt::format("mse_{}", s));
  ev.draws_in_order = true;
  ev.feed = [&](Executable& exe, int64_t, TaskRange tasks) {
    eval_tasks.sample(batch, tasks.size(), cfg.eval_shots, cfg.maml.query);
    feed(exe, batch, {0, tasks.size()});
  };
  const EvalReport e = eval_loop(cfg.run, ev, store);
  res.eval_seconds = e.seconds;
  res.mse_by_step = e.summary;
  res.pre = res.mse_by_step.front();
  res.post = res.mse_by_step.back();
  return res;
}

}  // namespace metagrad
