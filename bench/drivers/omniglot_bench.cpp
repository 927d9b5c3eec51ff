// Omniglot benchmark: real episodes fed to the shared few-shot driver.
#include "bench/drivers/omniglot_bench.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <random>

#include "meta/data/omniglot.h"
#include "metagrad/error.h"

namespace metagrad {

std::string default_omniglot_dir() { return METAGRAD_SOURCE_DIR "/data/omniglot"; }

int64_t default_iters(const FewShotConfig& cfg) {
  // About 17 minutes of training on two cores by short timings: per-iteration times measured over
  // 20 iterations at 5-way 1-shot, 5 queries per class, meta-batch 4 (120 images) were MAML 98 ms,
  // Meta-SGD 100, first-order MAML and ANIL 71, Reptile 86 per inner step, prototypical networks
  // 72-76, Proto-MAML 124. Whole runs went up to a third slower (a 5,000-iteration prototypical
  // run averaged 100 ms), which the margin to 30 minutes covers. Larger episodes cost more than
  // proportionally (20-way: 6x the time for 4x the images), hence the exponent.
  double ms = 98;
  if (cfg.algo == "metasgd") ms = 100;
  else if (cfg.algo == "fomaml" || cfg.algo == "anil" || !adapts_by_gradient(cfg.algo)) ms = 76;
  else if (cfg.algo == "reptile") ms = 86.0 * double(std::max<int64_t>(1, cfg.inner_steps));
  else if (cfg.algo == "protomaml-metric") ms = 124;
  const double images = double(cfg.ways * (cfg.shots + cfg.query) * cfg.meta_batch);
  ms *= std::pow(images / 120.0, 1.3);
  return std::max<int64_t>(100, int64_t(1000e3 / ms) / 100 * 100);
}

int64_t default_eval_steps(const FewShotConfig& cfg) {
  if (!adapts_by_gradient(cfg.algo)) return 0;
  if (cfg.algo == "reptile") return std::max<int64_t>(10, cfg.inner_steps);
  return std::max<int64_t>(3, cfg.inner_steps);
}

namespace {

// Concatenates `tasks` sampled episodes into one meta-batch.
void fill_batch(const OmniglotSet& set, const FewShotConfig& cfg, bool within, int64_t query, std::mt19937_64& rng,
                EpisodeBatch& b, int64_t tasks) {
  b.xs.clear();
  b.ys.clear();
  b.xq.clear();
  b.yq.clear();
  for (int64_t t = 0; t < tasks; ++t) {
    Episode e = sample_episode(set, cfg.ways, cfg.shots, query, within, rng);
    b.xs.insert(b.xs.end(), e.support.begin(), e.support.end());
    b.ys.insert(b.ys.end(), e.support_labels.begin(), e.support_labels.end());
    b.xq.insert(b.xq.end(), e.query.begin(), e.query.end());
    b.yq.insert(b.yq.end(), e.query_labels.begin(), e.query_labels.end());
  }
}

}  // namespace

OmniglotBenchResult run_omniglot_bench(const OmniglotBenchConfig& cfg, ParamStore& store, std::ostream* progress) {
  const std::string dir = cfg.data_dir.empty() ? default_omniglot_dir() : cfg.data_dir;
  const FewShotConfig& fs = cfg.run.maml;
  if (fs.net.channels != 1) throw Error("omniglot: images have one channel");
  OmniglotBenchResult res;
  auto t0 = std::chrono::steady_clock::now();
  OmniglotOptions opt;
  opt.image = fs.net.image;
  OmniglotSet train = load_omniglot_zip(dir + "/images_background_small1.zip", opt);
  OmniglotSet test = load_omniglot_zip(dir + "/images_background_small2.zip", opt);
  res.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.train_classes = int64_t(train.classes.size());
  res.eval_classes = int64_t(test.classes.size());
  if (progress)
    *progress << fmt::format("omniglot: {} training and {} held-out classes (rotations included), loaded in {:.2f} s\n",
                             res.train_classes, res.eval_classes, res.load_seconds);

  ConvBenchConfig run = cfg.run;
  if (run.iters < 0) run.iters = default_iters(fs);
  if (run.eval_steps < 0) run.eval_steps = default_eval_steps(fs);
  res.iters = run.iters;
  // Every training batch is drawn from its own seed, so a run resumed from a checkpoint sees the
  // same episodes as one that never stopped; evaluation episodes are the same for every model.
  std::mt19937_64 eval_rng(fs.net.seed * 7919 + 1000003);
  res.run = run_fewshot_episodes(
      run, store,
      [&](EpisodeBatch& b, int64_t tasks, int64_t query, int64_t index) {
        std::mt19937_64 rng(fs.net.seed * 1000003 + 17 + uint64_t(index) * 0x9E3779B97F4A7C15ull);
        fill_batch(train, fs, cfg.within_alphabet, query, rng, b, tasks);
      },
      [&](EpisodeBatch& b, int64_t tasks, int64_t query, int64_t) {
        fill_batch(test, fs, cfg.within_alphabet, query, eval_rng, b, tasks);
      },
      progress);
  return res;
}

}  // namespace metagrad
