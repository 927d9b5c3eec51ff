// Omniglot benchmark: real episodes fed to the shared few-shot driver.
#include "meta/omniglot_bench.h"

#include <fmt/format.h>

#include <chrono>
#include <random>

#include "graph/error.h"
#include "meta/omniglot.h"

namespace metagrad {

std::string default_omniglot_dir() { return METAGRAD_SOURCE_DIR "/../shared/data/omniglot"; }

int64_t default_iters(const FewShotConfig& cfg) {
  // Measured per-iteration costs on two cores (5-way 1-shot, meta-batch 4, 15 queries) put MAML
  // near 0.2 s and a prototypical network near 0.03 s; the budgets keep each default run under
  // half an hour including evaluation, scaled down for larger episodes.
  const double scale = double(cfg.ways * (cfg.shots + cfg.query) * cfg.meta_batch) / (5.0 * 16.0 * 4.0);
  int64_t base = 6000;
  if (!adapts_by_gradient(cfg.algo)) base = 10000;
  else if (cfg.algo == "fomaml" || cfg.algo == "anil") base = 8000;
  else if (cfg.algo == "reptile") base = 6000 / std::max<int64_t>(1, cfg.inner_steps);
  return std::max<int64_t>(100, int64_t(double(base) / std::max(1.0, scale)));
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
  std::mt19937_64 train_rng(fs.net.seed * 1000003 + 17), eval_rng(fs.net.seed * 7919 + 1000003);
  res.run = run_fewshot_episodes(
      run, store,
      [&](EpisodeBatch& b, int64_t tasks, int64_t query) {
        fill_batch(train, fs, cfg.within_alphabet, query, train_rng, b, tasks);
      },
      [&](EpisodeBatch& b, int64_t tasks, int64_t query) {
        fill_batch(test, fs, cfg.within_alphabet, query, eval_rng, b, tasks);
      },
      progress);
  return res;
}

}  // namespace metagrad
