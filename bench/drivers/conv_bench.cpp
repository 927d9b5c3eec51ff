// conv-MAML benchmark driver: one compiled meta-step replayed on fresh synthetic episodes.
#include "bench/drivers/conv_bench.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>

#include "meta/train/progress.h"
#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/pipeline.h"

namespace metagrad {

size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0, resident = 0;
  if (!(statm >> pages >> resident)) return 0;
  return resident * size_t(sysconf(_SC_PAGESIZE));
}

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

struct Slots {
  int xs, ys, xq, yq;
};
Slots slots_of(const Executable& e) {
  return {e.input_slot("xs"), e.input_slot("ys"), e.input_slot("xq"), e.input_slot("yq")};
}
void feed(Executable& e, const Slots& s, const EpisodeBatch& b) {
  e.set_input(s.xs, std::span<const float>(b.xs));
  e.set_input(s.ys, std::span<const int32_t>(b.ys));
  e.set_input(s.xq, std::span<const float>(b.xq));
  e.set_input(s.yq, std::span<const int32_t>(b.yq));
}

}  // namespace

ConvBenchResult run_conv_bench(const ConvBenchConfig& cfg, std::ostream* progress) {
  ParamStore store;
  SyntheticEpisodes train(cfg.maml, cfg.maml.net.seed * 1000003 + 17);
  SyntheticEpisodes fresh(cfg.maml, cfg.maml.net.seed * 7919 + 1000003);
  return run_fewshot_episodes(
      cfg, store, [&](EpisodeBatch& b, int64_t tasks, int64_t query, int64_t) { train.sample(b, tasks, query); },
      [&](EpisodeBatch& b, int64_t tasks, int64_t query, int64_t) { fresh.sample(b, tasks, query); }, progress);
}

ConvBenchResult run_fewshot_episodes(const ConvBenchConfig& cfg, ParamStore& store, const EpisodeSampler& train,
                                     const EpisodeSampler& eval_sampler, std::ostream* progress) {
  if (cfg.iters < 0 || cfg.eval_tasks < 0) throw Error("iters and eval-tasks must be non-negative");
  ConvBenchResult res;
  const size_t rss0 = resident_bytes();
  PipelineOptions popts;
  popts.opt_level = cfg.opt_level;
  Graph step = build_fewshot_step(cfg.maml);
  res.nodes_raw = step.size();
  auto p0 = std::chrono::steady_clock::now();
  optimize(step, popts);
  res.pass_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - p0).count();
  res.nodes_optimized = step.size();

  EpisodeBatch batch;
  const int64_t T = cfg.maml.meta_batch;
  {
    Executable exe(step, store, {"loss", "accuracy"}, cfg.compile);
    res.peak_bytes = exe.arena_bytes();
    res.naive_bytes = exe.naive_bytes();
    res.workspace_bytes = exe.workspace_bytes();
    res.kernels = exe.kernel_count();
    Slots slots = slots_of(exe);
    // The Adam step counter says how many meta-iterations the stored state has seen already.
    const int64_t done_before = store.has("adam.t") ? int64_t(store.data("adam.t")[0]) : 0;
    ProgressBar bar(progress, cfg.iters, "meta-train");
    const int64_t tail = std::max<int64_t>(1, cfg.iters / 10);
    double tail_loss = 0, tail_acc = 0, seconds = 0;
    for (int64_t it = 0; it < cfg.iters; ++it) {
      train(batch, T, cfg.maml.query, done_before + it);
      feed(exe, slots, batch);
      auto t0 = std::chrono::steady_clock::now();
      exe.run();
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const float loss = exe.fetch(0)[0], acc = exe.fetch(1)[0];
      if (!std::isfinite(loss)) throw RuntimeError(fmt::format("training diverged at iteration {} (loss {}); {}", it, loss, kCheckNumericsHint));
      if (it >= cfg.iters - tail) {
        tail_loss += loss;
        tail_acc += acc;
      }
      bar.update(it + 1, fmt::format("loss {:.3f} acc {:.2f}", loss, acc));
    }
    bar.finish();
    res.working_bytes = resident_bytes() - std::min(rss0, resident_bytes());
    res.train_seconds = seconds;
    res.ms_per_meta_iter = cfg.iters > 0 ? 1e3 * seconds / double(cfg.iters) : 0.0;
    const double n_tail = double(std::min(tail, cfg.iters));
    res.final_loss = cfg.iters > 0 ? tail_loss / n_tail : 0.0;
    res.final_accuracy = cfg.iters > 0 ? tail_acc / n_tail : 0.0;
  }

  if (cfg.on_trained) cfg.on_trained(store);

  auto e0 = std::chrono::steady_clock::now();
  const int64_t steps = adapts_by_gradient(cfg.maml.algo) ? (cfg.eval_steps >= 0 ? cfg.eval_steps : cfg.maml.inner_steps) : 0;
  FewShotConfig eval_cfg = cfg.maml;
  if (cfg.eval_query > 0) eval_cfg.query = cfg.eval_query;
  const int64_t per_batch = std::min<int64_t>(std::max<int64_t>(cfg.eval_tasks, 1), 4);
  Graph eval = build_fewshot_eval(eval_cfg, per_batch, steps);
  optimize(eval, popts);
  Executable ev(eval, store, {}, cfg.compile);
  Slots es = slots_of(ev);
  std::vector<double> pre_acc, post_acc, pre_loss, post_loss;
  ProgressBar ebar(progress, cfg.eval_tasks, "evaluate  ");
  for (int64_t done = 0; done < cfg.eval_tasks; done += per_batch) {
    eval_sampler(batch, per_batch, eval_cfg.query, done / per_batch);
    feed(ev, es, batch);
    ev.run();
    const int64_t take = std::min(per_batch, cfg.eval_tasks - done);
    auto add = [&](std::vector<double>& v, const std::string& name) {
      auto x = ev.fetch(name);
      v.insert(v.end(), x.begin(), x.begin() + take);
    };
    add(pre_acc, "accuracy_0");
    add(post_acc, fmt::format("accuracy_{}", steps));
    add(pre_loss, "loss_0");
    add(post_loss, fmt::format("loss_{}", steps));
    ebar.update(done + take, fmt::format("acc {:.4f}", mean_ci(post_acc).mean));
  }
  ebar.finish();
  res.eval_steps = steps;
  res.eval_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
  res.pre_accuracy = mean_ci(pre_acc);
  res.post_accuracy = mean_ci(post_acc);
  res.pre_loss = mean_ci(pre_loss);
  res.post_loss = mean_ci(post_loss);
  return res;
}

}  // namespace metagrad
