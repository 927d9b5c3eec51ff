#include "bench/drivers/transfer_bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "meta/dist/batch_score.h"
#include "meta/train/progress.h"
#include "meta/train/supervised.h"
#include "metagrad/error.h"
#include "metagrad/param_store.h"
#include "metagrad/stats.h"

namespace metagrad {

namespace {

// How one body layer starts and trains: copied from the source model or freshly initialised, and
// its learning-rate multiplier (0 = frozen).
struct LayerPlan {
  bool copy = true;
  double multiplier = 1.0;
  int64_t unfreeze_step = 0;
};

LayerPlan layer_plan(const LayerChoice& c) {
  if (c.kind == "freeze") return {true, 0.0};
  if (c.kind == "reinit") return {false, c.lr_multiplier};
  return {true, c.lr_multiplier};
}

const std::vector<LayerChoice>& search_choices() {
  static const std::vector<LayerChoice> choices = {{"freeze", 1.0}, {"finetune", 1.0}, {"finetune", 0.1}, {"reinit", 1.0}};
  return choices;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

struct Seed {
  const TransferBenchConfig& cfg;
  ClassifierConfig model;  // the target model: head sized for the target classes
  std::vector<std::string> body;  // layer names of everything but the head
  ParamStore source;              // "net.*" pre-trained on the source classes
  uint64_t seed;

  // `alone`: a search candidate, trained by this process without the job's data parallelism.
  SupervisedConfig train_config(int64_t epochs, bool alone) const {
    SupervisedConfig c;
    c.model = model;
    c.model.seed = seed + 1000;  // the target model's fresh layers; not the source's initialisation
    c.opt.name = "adam";
    c.opt.lr = cfg.lr;
    c.epochs = epochs;
    c.batch = cfg.target_batch;
    c.seed = seed;
    c.eval_every = 0;
    if (!alone) c.driver = cfg.driver;
    c.compile = cfg.compile;
    return c;
  }

  // Fine-tunes a model whose body layers follow `plan` (the head is always new and trained) and
  // leaves it in `store`; returns the last epoch's record on `test`.
  EpochRecord fine_tune(const std::vector<LayerPlan>& plan, const ImageSet& train, const ImageSet& test, int64_t epochs,
                        TransferOptions options, ParamStore& store, bool alone = false) const {
    SupervisedConfig c = train_config(epochs, alone);
    init_classifier(store, c.model);
    options.params.clear();
    for (size_t l = 0; l <= body.size(); ++l) {
      const LayerPlan p = l < body.size() ? plan[l] : LayerPlan{false, 1.0};
      if (p.copy) copy_params(source, "net", store, "net", {body[l] + ".w", body[l] + ".b"});
      // Rates go through the optimizer's parameter groups; only freezing (0) is the transfer plan's,
      // because a frozen parameter leaves the optimizer altogether.
      if (p.multiplier != 0.0 && p.multiplier != 1.0) c.lr_plan.groups.push_back({l < body.size() ? body[l] : "head", {2 * l, 2 * l + 1}, p.multiplier});
      for (int k = 0; k < 2; ++k) options.params.push_back({p.copy, p.multiplier == 0.0 ? 0.0 : 1.0, p.unfreeze_step, false});
    }
    c.transfer = options;
    const SupervisedResult r = train_classifier(c, train, test, nullptr, &store);
    return r.epochs.back();
  }

  std::vector<LayerPlan> uniform(LayerPlan p) const { return std::vector<LayerPlan>(body.size(), p); }

  std::vector<LayerPlan> from_assignment(const Assignment& a) const {
    std::vector<LayerPlan> plan;
    for (int choice : a) plan.push_back(layer_plan(search_choices()[size_t(choice)]));
    return plan;
  }
};

}  // namespace

const std::vector<std::string>& transfer_strategies() {
  static const std::vector<std::string> names = {"scratch", "finetune", "freeze", "gradual", "discriminative", "l2sp", "distill", "ga", "sa"};
  return names;
}

TransferBenchResult run_transfer_bench(const TransferBenchConfig& cfg, std::ostream* progress) {
  for (const std::string& s : cfg.strategies)
    if (std::find(transfer_strategies().begin(), transfer_strategies().end(), s) == transfer_strategies().end())
      throw Error(fmt::format("unknown transfer strategy '{}' (expected one of scratch, finetune, freeze, gradual, discriminative, l2sp, distill, ga, sa)", s));
  if (cfg.seeds <= 0) throw Error(fmt::format("--seeds must be > 0, got {}", cfg.seeds));
  auto check_range = [](int32_t lo, int32_t hi, const char* what) {
    if (lo < 0 || hi > 9 || lo > hi) throw Error(fmt::format("{} classes {}-{} are not a range within 0-9", what, lo, hi));
  };
  check_range(cfg.source_lo, cfg.source_hi, "source");
  check_range(cfg.target_lo, cfg.target_hi, "target");
  if (cfg.target_samples < 5)
    throw Error(fmt::format("--target-samples must be at least 5 per class (the search holds out a fifth), got {}", cfg.target_samples));

  const ImageSet all_train = load_fashion_mnist(cfg.data, true), all_test = load_fashion_mnist(cfg.data, false);
  const ImageSet source_train = first_images(select_classes(all_train, cfg.source_lo, cfg.source_hi), cfg.max_source);
  const ImageSet source_test = first_images(select_classes(all_test, cfg.source_lo, cfg.source_hi), cfg.max_test);
  const ImageSet target_train = select_classes(all_train, cfg.target_lo, cfg.target_hi);
  const ImageSet target_test = first_images(select_classes(all_test, cfg.target_lo, cfg.target_hi), cfg.max_test);
  const int64_t target_classes = cfg.target_hi - cfg.target_lo + 1;

  ClassifierConfig source_model;
  source_model.classes = cfg.source_hi - cfg.source_lo + 1;
  std::tie(source_model.input_mean, source_model.input_std) = pixel_mean_std(source_train);
  ClassifierConfig target_model = source_model;
  target_model.classes = target_classes;
  std::vector<std::string> body = classifier_layers(target_model);
  body.pop_back();

  TransferBenchResult res;
  for (const std::string& s : cfg.strategies) res.strategies.push_back({s, {}, 0, 0, 0, {}, {}, 0});
  auto row = [&](const std::string& s) -> StrategyResult& {
    return *std::find_if(res.strategies.begin(), res.strategies.end(), [&](const StrategyResult& r) { return r.strategy == s; });
  };
  auto wants = [&](const std::string& s) { return std::find(cfg.strategies.begin(), cfg.strategies.end(), s) != cfg.strategies.end(); };

  for (int64_t k = 0; k < cfg.seeds; ++k) {
    const uint64_t seed = cfg.first_seed + uint64_t(k);
    const std::string tag = fmt::format("seed {} ({}/{})", seed, k + 1, cfg.seeds);
    Seed run{cfg, target_model, body, {}, seed};

    // Pre-training on the source classes.
    auto t0 = std::chrono::steady_clock::now();
    SupervisedConfig pre;
    pre.model = source_model;
    pre.model.seed = seed;
    pre.opt.name = "adam";
    pre.opt.lr = cfg.lr;
    pre.epochs = cfg.source_epochs;
    pre.batch = std::min(cfg.source_batch, source_train.count);
    pre.seed = seed;
    pre.eval_every = 0;
    pre.driver = cfg.driver;
    pre.compile = cfg.compile;
    pre.label = tag + " pre-train";
    const SupervisedResult pr = train_classifier(pre, source_train, source_test, progress, &run.source);
    res.pretrain_seconds += seconds_since(t0);
    res.pretrain_step = pr.compile;
    res.source_accuracy.push_back(pr.epochs.back().test_accuracy);

    auto [labelled, pool] = sample_per_class(target_train, target_classes, cfg.target_samples, seed);
    res.labelled = labelled.count;
    res.unlabelled = pool.count;
    res.target_test = target_test.count;
    auto record = [&](const std::string& s, const EpochRecord& e, std::chrono::steady_clock::time_point start) {
      StrategyResult& r = row(s);
      r.accuracy.push_back(e.test_accuracy);
      r.seconds += seconds_since(start);
      if (progress) *progress << fmt::format("{}: {} target accuracy {:.2f}%\n", tag, s, 100 * e.test_accuracy);
    };

    if (wants("scratch")) {
      auto t = std::chrono::steady_clock::now();
      ParamStore store;
      record("scratch", run.fine_tune(run.uniform({false, 1.0}), labelled, target_test, cfg.target_epochs, {}, store), t);
    }
    ParamStore finetuned;  // also the distillation teacher
    if (wants("finetune") || wants("distill")) {
      auto t = std::chrono::steady_clock::now();
      const EpochRecord e = run.fine_tune(run.uniform({true, 1.0}), labelled, target_test, cfg.target_epochs, {}, finetuned);
      if (wants("finetune")) record("finetune", e, t);
    }
    if (wants("freeze")) {
      auto t = std::chrono::steady_clock::now();
      ParamStore store;
      record("freeze", run.fine_tune(run.uniform({true, 0.0}), labelled, target_test, cfg.target_epochs, {}, store), t);
    }
    if (wants("gradual")) {
      // Gradual unfreezing (Howard & Ruder 2018): the head trains alone first, then one more layer
      // from the top opens every 1/(2L) of the run, so all are open half-way.
      auto t = std::chrono::steady_clock::now();
      const int64_t steps = cfg.target_epochs * (labelled.count / std::min(cfg.target_batch, labelled.count));
      std::vector<LayerPlan> plan = run.uniform({true, 1.0});
      for (size_t l = 0; l < plan.size(); ++l) plan[l].unfreeze_step = int64_t(plan.size() - l) * steps / int64_t(2 * plan.size());
      ParamStore store;
      record("gradual", run.fine_tune(plan, labelled, target_test, cfg.target_epochs, {}, store), t);
    }
    if (wants("discriminative")) {
      // Discriminative fine-tuning (Howard & Ruder 2018): each layer's rate is the one above it / 2.6.
      auto t = std::chrono::steady_clock::now();
      std::vector<LayerPlan> plan = run.uniform({true, 1.0});
      for (size_t l = 0; l < plan.size(); ++l) plan[l].multiplier = std::pow(2.6, -double(plan.size() - l));
      ParamStore store;
      record("discriminative", run.fine_tune(plan, labelled, target_test, cfg.target_epochs, {}, store), t);
    }
    if (wants("l2sp")) {
      auto t = std::chrono::steady_clock::now();
      ParamStore store;
      TransferOptions o;
      o.l2sp_alpha = cfg.l2sp_alpha;
      o.l2sp_beta = cfg.l2sp_beta;
      record("l2sp", run.fine_tune(run.uniform({true, 1.0}), labelled, target_test, cfg.target_epochs, o, store), t);
    }
    if (wants("distill")) {
      auto t = std::chrono::steady_clock::now();
      ParamStore store;
      init_classifier(store, target_model, "teacher", false);
      std::vector<std::string> all;
      for (const std::string& l : classifier_layers(target_model)) all.insert(all.end(), {l + ".w", l + ".b"});
      copy_params(finetuned, "net", store, "teacher", all);
      TransferOptions o;
      o.distill_alpha = cfg.distill_alpha;
      o.temperature = cfg.temperature;
      o.unlabelled = &pool;
      o.unlabelled_batch = std::min(cfg.unlabelled_batch, pool.count);
      record("distill", run.fine_tune(run.uniform({true, 1.0}), labelled, target_test, cfg.target_epochs, o, store), t);
    }
    for (const std::string& method : {std::string("ga"), std::string("sa")}) {
      if (!wants(method)) continue;
      auto t = std::chrono::steady_clock::now();
      const int64_t fit_per_class = std::max<int64_t>(1, cfg.target_samples * 4 / 5);
      // Named references, not a structured binding: clang 14 cannot capture bindings in lambdas.
      const std::pair<ImageSet, ImageSet> split = sample_per_class(labelled, target_classes, fit_per_class, seed + 7);
      const ImageSet &fit = split.first, &val = split.second;
      SearchSpace space{int64_t(body.size()), search_choices(), body};
      BatchScoreFn score = [&](const std::vector<Assignment>& batch) {
        return score_across_ranks(cfg.group, batch.size(), 1, [&](size_t i) {
          ParamStore store;
          try {
            return std::vector<double>{run.fine_tune(run.from_assignment(batch[i]), fit, val, cfg.search_epochs, {}, store, true).test_loss};
          } catch (const RuntimeError&) {  // a diverged candidate ranks last
            return std::vector<double>{std::numeric_limits<double>::infinity()};
          }
        });
      };
      ProgressBar bar(progress, cfg.search_budget, fmt::format("{} {} search", tag, method));
      SearchProgress show = [&](int64_t done, int64_t, double best) {
        bar.update(done, fmt::format("best validation loss {:.4f}", best));
      };
      SearchResult sr;
      if (method == "ga") {
        GeneticOptions o;
        o.population = std::min<int64_t>(8, cfg.search_budget);
        o.elite = std::min<int64_t>(o.elite, o.population - 1);
        o.generations = std::max<int64_t>(1, cfg.search_budget / o.population);
        o.seed = seed;
        sr = genetic_search(space, score, o, show);
      } else {
        AnnealingOptions o;
        o.proposals = cfg.search_proposals;
        o.steps = std::max<int64_t>(1, (cfg.search_budget - 1) / o.proposals);
        o.seed = seed;
        sr = annealing_search(space, score, o, show);
      }
      bar.finish(fmt::format("{} candidates, best {}", sr.evaluations, assignment_str(space, sr.best)));
      StrategyResult& r = row(method);
      r.chosen.push_back(assignment_str(space, sr.best));
      r.search_score.push_back(sr.best_score);
      r.evaluations += sr.evaluations;
      ParamStore store;
      record(method, run.fine_tune(run.from_assignment(sr.best), labelled, target_test, cfg.target_epochs, {}, store), t);
    }
  }
  for (StrategyResult& r : res.strategies) {
    const MeanCi m = mean_ci95(r.accuracy);
    r.mean = m.mean;
    r.ci95 = m.ci95;
  }
  return res;
}

std::string transfer_table_markdown(const TransferBenchConfig& cfg, const TransferBenchResult& r) {
  std::string md = fmt::format(
      "# Transfer: Fashion-MNIST classes {}-{} -> {}-{}, {} labelled images per class, {} seeds\n\n"
      "LeNet-5 pre-trained {} epochs on the source classes (test accuracy {:.2f}% mean); every strategy trains {} epochs "
      "with Adam {} at batch {}; target accuracy on {} test images, mean ± 95% interval (Student's t) over seeds.\n\n",
      cfg.source_lo, cfg.source_hi, cfg.target_lo, cfg.target_hi, cfg.target_samples, cfg.seeds, cfg.source_epochs,
      100 * mean_ci95(r.source_accuracy).mean, cfg.target_epochs, cfg.lr, cfg.target_batch, r.target_test);
  md += "| strategy | target accuracy | per seed | seconds | chosen layers (per seed) |\n| --- | --- | --- | --- | --- |\n";
  for (const StrategyResult& s : r.strategies) {
    std::string per_seed, chosen;
    for (double a : s.accuracy) per_seed += fmt::format("{}{:.1f}", per_seed.empty() ? "" : " ", 100 * a);
    for (const std::string& c : s.chosen) chosen += (chosen.empty() ? "" : "; ") + c;
    md += fmt::format("| {} | {:.2f}% ± {:.2f} | {} | {:.1f} | {} |\n", s.strategy, 100 * s.mean, 100 * s.ci95, per_seed,
                      s.seconds, chosen);
  }
  return md;
}

}  // namespace metagrad
