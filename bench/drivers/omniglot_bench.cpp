// Omniglot benchmark: real episodes (from the archives or from image folders) fed to the few-shot driver.
#include "bench/drivers/omniglot_bench.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <random>

#include "meta/data/image_folders.h"
#include "meta/data/omniglot.h"
#include "metagrad/error.h"

namespace metagrad {

std::string default_omniglot_dir() { return METAGRAD_SOURCE_DIR "/data/omniglot"; }

int64_t default_iters(const FewShotConfig& cfg) {
  // About 17 minutes of training on two cores (docs/ARCHITECTURE.md, "Budgets"). Larger episodes cost
  // more than proportionally (20-way: 6x the time for 4x the images), hence the exponent.
  const FewShotAlgorithm& a = fewshot_algorithm(cfg.algo);
  double ms = a.ms_per_iter * (a.reptile ? double(std::max<int64_t>(1, cfg.inner_steps)) : 1.0);
  const double images = double(cfg.ways * (cfg.shots + cfg.query) * cfg.meta_batch);
  ms *= std::pow(images / 120.0, 1.3);
  return std::max<int64_t>(100, int64_t(1000e3 / ms) / 100 * 100);
}

int64_t default_eval_steps(const FewShotConfig& cfg) {
  const FewShotAlgorithm& a = fewshot_algorithm(cfg.algo);
  return a.adapts_by_gradient() ? std::max(a.min_eval_steps, cfg.inner_steps) : 0;
}

namespace {

// Concatenates episodes [tasks.begin, tasks.end) of the draw into one meta-batch: the earlier ones
// are drawn and dropped, so a rank's share is exactly its part of the one-process batch.
void fill_batch(const OmniglotSet& set, const FewShotConfig& cfg, bool within, int64_t query, std::mt19937_64& rng,
                EpisodeBatch& b, TaskRange tasks) {
  b.xs.clear();
  b.ys.clear();
  b.xq.clear();
  b.yq.clear();
  for (int64_t t = 0; t < tasks.end; ++t) {
    Episode e = sample_episode(set, cfg.ways, cfg.shots, query, within, rng);
    if (t < tasks.begin) continue;
    b.xs.insert(b.xs.end(), e.support.begin(), e.support.end());
    b.ys.insert(b.ys.end(), e.support_labels.begin(), e.support_labels.end());
    b.xq.insert(b.xq.end(), e.query.begin(), e.query.end());
    b.yq.insert(b.yq.end(), e.query_labels.begin(), e.query_labels.end());
  }
}

struct Sets {
  OmniglotSet train, test;
};

Sets load_sets(const OmniglotBenchConfig& cfg) {
  const FewShotConfig& fs = cfg.run.maml;
  if (cfg.format == "zip") {
    const std::string dir = cfg.data_dir.empty() ? default_omniglot_dir() : cfg.data_dir;
    OmniglotOptions opt;
    opt.image = fs.net.image;
    return {load_omniglot_zip(dir + "/images_background_small1.zip", opt),
            load_omniglot_zip(dir + "/images_background_small2.zip", opt)};
  }
  if (cfg.format != "folders") throw Error(fmt::format("unknown data format '{}' (expected zip or folders)", cfg.format));
  if (cfg.data_dir.empty()) throw Error("--format folders needs --data DIR (DIR/<class>/<image>.png)");
  ImageFolderOptions opt;
  opt.image = fs.net.image;
  opt.invert = cfg.invert;
  Sets s;
  OmniglotSet all = load_image_folders(cfg.data_dir, opt);
  if (cfg.eval_dir.empty()) {
    std::tie(s.train, s.test) = split_classes(all, cfg.held_out, fs.net.seed, cfg.data_dir);
  } else {
    s.train = std::move(all);
    s.test = load_image_folders(cfg.eval_dir, opt);
  }
  // The errors name the folder: the episode sampler would only know a class index.
  const int64_t eval_query = cfg.run.eval_query > 0 ? cfg.run.eval_query : fs.query;
  require_images_per_class(s.train, fs.shots + fs.query, cfg.data_dir);
  require_images_per_class(s.test, fs.shots + eval_query, cfg.eval_dir.empty() ? cfg.data_dir : cfg.eval_dir);
  for (const auto& [set, what] : {std::pair{&s.train, "meta-training"}, std::pair{&s.test, "held-out"}})
    if (int64_t(set->classes.size()) < fs.ways)
      throw RuntimeError(fmt::format("{}: {} {} classes, fewer than the {} ways of an episode",
                                     set == &s.test && !cfg.eval_dir.empty() ? cfg.eval_dir : cfg.data_dir,
                                     set->classes.size(), what, fs.ways));
  return s;
}

}  // namespace

OmniglotBenchResult run_omniglot_bench(const OmniglotBenchConfig& cfg, ParamStore& store) {
  const FewShotConfig& fs = cfg.run.maml;
  if (fs.net.channels != 1) throw Error("omniglot: images have one channel");
  std::ostream* progress = cfg.run.run.progress;
  OmniglotBenchResult res;
  auto t0 = std::chrono::steady_clock::now();
  const Sets sets = load_sets(cfg);
  res.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.train_classes = int64_t(sets.train.classes.size());
  res.eval_classes = int64_t(sets.test.classes.size());
  if (progress)
    *progress << fmt::format("{}: {} training and {} held-out classes{}, loaded in {:.2f} s\n",
                             cfg.format == "zip" ? "omniglot" : cfg.data_dir, res.train_classes, res.eval_classes,
                             cfg.format == "zip" ? " (rotations included)" : "", res.load_seconds);

  ConvBenchConfig run = cfg.run;
  if (run.run.iters < 0) run.run.iters = default_iters(fs);
  if (run.eval_steps < 0) run.eval_steps = default_eval_steps(fs);
  res.iters = run.run.iters;
  // Every training batch is drawn from its own seed, so a run resumed from a checkpoint sees the
  // same episodes as one that never stopped; evaluation episodes are the same for every model.
  std::mt19937_64 eval_rng(fs.net.seed * 7919 + 1000003);
  res.run = run_fewshot_episodes(
      run, store,
      [&](EpisodeBatch& b, TaskRange tasks, int64_t query, int64_t index) {
        std::mt19937_64 rng(fs.net.seed * 1000003 + 17 + uint64_t(index) * 0x9E3779B97F4A7C15ull);
        fill_batch(sets.train, fs, cfg.within_alphabet, query, rng, b, tasks);
      },
      [&](EpisodeBatch& b, TaskRange tasks, int64_t query, int64_t) {
        // One stream over the episodes in order: the first batch of a rank would have to skip the
        // earlier ranks' draws (a per-episode seed would change today's evaluation episodes).
        fill_batch(sets.test, fs, cfg.within_alphabet, query, eval_rng, b, {0, tasks.size()});
      });
  return res;
}

}  // namespace metagrad
