// conv-MAML benchmark driver: one compiled meta-step replayed on fresh synthetic episodes.
#include "bench/drivers/conv_bench.h"

#include <fmt/format.h>

#include <algorithm>

#include "metagrad/error.h"

namespace metagrad {

void SyntheticEpisodes::sample(Batch& b, int64_t tasks, int64_t query) {
  const ConvNetConfig& n = cfg_.net;
  const int64_t pixels = n.channels * n.image * n.image, N = cfg_.ways;
  if (query < 0) query = cfg_.query;
  std::bernoulli_distribution ink(0.15);
  std::normal_distribution<float> noise(0.f, 0.4f);
  std::vector<float> protos(size_t(N * pixels));
  auto fill = [&](std::vector<float>& x, std::vector<int32_t>& y, int64_t t, int64_t per_class) {
    const int64_t rows = N * per_class;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t c = r % N;
      y[size_t(t * rows + r)] = int32_t(c);
      float* dst = x.data() + (t * rows + r) * pixels;
      for (int64_t p = 0; p < pixels; ++p) dst[p] = protos[size_t(c * pixels + p)] + noise(rng_);
    }
  };
  b.xs.resize(size_t(tasks * N * cfg_.shots * pixels));
  b.ys.resize(size_t(tasks * N * cfg_.shots));
  b.xq.resize(size_t(tasks * N * query * pixels));
  b.yq.resize(size_t(tasks * N * query));
  for (int64_t t = 0; t < tasks; ++t) {
    for (float& v : protos) v = ink(rng_) ? 1.f : 0.f;
    fill(b.xs, b.ys, t, cfg_.shots);
    fill(b.xq, b.yq, t, query);
  }
}

namespace {

void feed(Executable& e, const EpisodeBatch& b) {
  e.set_input(e.input_slot("xs"), std::span<const float>(b.xs));
  e.set_input(e.input_slot("ys"), std::span<const int32_t>(b.ys));
  e.set_input(e.input_slot("xq"), std::span<const float>(b.xq));
  e.set_input(e.input_slot("yq"), std::span<const int32_t>(b.yq));
}

}  // namespace

ConvBenchResult run_conv_bench(const ConvBenchConfig& cfg) {
  ParamStore store;
  SyntheticEpisodes train(cfg.maml, cfg.maml.net.seed * 1000003 + 17);
  SyntheticEpisodes fresh(cfg.maml, cfg.maml.net.seed * 7919 + 1000003);
  return run_fewshot_episodes(
      cfg, store, [&](EpisodeBatch& b, TaskRange tasks, int64_t query, int64_t) { train.sample(b, tasks.size(), query); },
      [&](EpisodeBatch& b, TaskRange tasks, int64_t query, int64_t) { fresh.sample(b, tasks.size(), query); });
}

ConvBenchResult run_fewshot_episodes(const ConvBenchConfig& cfg, ParamStore& store, const EpisodeSampler& train_sampler,
                                     const EpisodeSampler& eval_sampler) {
  if (cfg.run.iters < 0 || cfg.eval_tasks < 0) throw Error("iters and eval-tasks must be non-negative");
  const FewShotAlgorithm& algo = fewshot_algorithm(cfg.maml.algo);
  ConvBenchResult res;
  EpisodeBatch batch;
  TrainSpec step;
  step.build_step = [&](const GradientCombiner& combine) {
    FewShotConfig m = cfg.maml;
    m.combine = combine;
    return build_fewshot_step(m);
  };
  step.metrics = {"loss", "accuracy"};
  step.batch = cfg.maml.meta_batch;
  step.feed = [&](Executable& exe, int64_t index, TaskRange tasks) {
    train_sampler(batch, tasks, cfg.maml.query, index);
    feed(exe, batch);
  };
  res.train = train_loop(cfg.run, step, store);

  const int64_t steps = algo.adapts_by_gradient() ? (cfg.eval_steps >= 0 ? cfg.eval_steps : cfg.maml.inner_steps) : 0;
  FewShotConfig eval_cfg = cfg.maml;
  if (cfg.eval_query > 0) eval_cfg.query = cfg.eval_query;
  EvalSpec ev;
  ev.episodes = cfg.eval_tasks;
  ev.per_batch = std::min<int64_t>(std::max<int64_t>(cfg.eval_tasks, 1), 4);
  ev.build = [&](int64_t tasks) { return build_fewshot_eval(eval_cfg, tasks, steps); };
  ev.outputs = {"accuracy_0", fmt::format("accuracy_{}", steps), "loss_0", fmt::format("loss_{}", steps)};
  ev.feed = [&](Executable& exe, int64_t index, TaskRange tasks) {
    eval_sampler(batch, tasks, eval_cfg.query, index);
    feed(exe, batch);
  };
  const EvalReport e = eval_loop(cfg.run, ev, store);
  res.eval_steps = steps;
  res.eval_seconds = e.seconds;
  res.pre_accuracy = e.summary[0];
  res.post_accuracy = e.summary[1];
  res.pre_loss = e.summary[2];
  res.post_loss = e.summary[3];
  return res;
}

}  // namespace metagrad
