// `metagrad bench omniglot` (train and evaluate the few-shot family on Omniglot) and
// `metagrad eval-episodes` (evaluate a checkpoint on one-shot run folders).
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "bench/drivers/omniglot_bench.h"
#include "meta/data/oneshot_runs.h"
#include "meta/learn/model_description.h"
#include "metagrad/checkpoint.h"
#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/param_store.h"
#include "metagrad/pipeline.h"
#include "tools/cli/cli.h"

namespace metagrad {
namespace {

// A checkpoint's model description lives next to it as "<checkpoint>.json", so a trained model can
// be rebuilt without repeating its flags.
nlohmann::json model_json(const FewShotConfig& m) { return model_description(m); }

std::string sidecar_of(const std::string& checkpoint) { return checkpoint + ".json"; }

// The description first, the checkpoint last: a run killed in between leaves the previous
// checkpoint beside a description of the same model, never a checkpoint without one.
void save_model(const ParamStore& store, const FewShotConfig& m, const std::string& path) {
  write_file_durably(sidecar_of(path), model_json(m).dump(2) + "\n");
  save_checkpoint(store, path);
}

FewShotConfig load_model_config(const std::string& checkpoint) {
  const std::string side = sidecar_of(checkpoint);
  std::ifstream in(side);
  if (!in) throw RuntimeError(fmt::format("{}: missing (the model description saved with checkpoint {})", side, checkpoint));
  return parse_model_description(std::string(std::istreambuf_iterator<char>(in), {}), side);
}

struct OmniglotFlags {
  OmniglotBenchConfig cfg;
  std::string sampling = "across", save_path, load_path, json_path;
  int threads = 0;
  bool quiet = false;
};

nlohmann::json to_json(const OmniglotFlags& f, const OmniglotBenchResult& r) {
  const ConvBenchResult& x = r.run;
  nlohmann::json j;
  j["workload"] = "omniglot";
  j["config"] = model_json(f.cfg.run.maml);
  j["sampling"] = f.sampling;
  j["iters"] = r.iters;
  j["eval_episodes"] = f.cfg.run.eval_tasks;
  j["eval_inner_steps"] = x.eval_steps;
  j["train_classes"] = r.train_classes;
  j["eval_classes"] = r.eval_classes;
  j["accuracy"] = x.post_accuracy.mean;
  j["accuracy_ci95"] = x.post_accuracy.ci95;
  j["pre_adapt_accuracy"] = x.pre_accuracy.mean;
  j["pre_adapt_accuracy_ci95"] = x.pre_accuracy.ci95;
  j["loss"] = x.post_loss.mean;
  j["ms_per_meta_iter"] = x.ms_per_meta_iter;
  j["train_seconds"] = x.train_seconds;
  j["eval_seconds"] = x.eval_seconds;
  j["load_seconds"] = r.load_seconds;
  j["final_train_loss"] = x.final_loss;
  j["final_train_accuracy"] = x.final_accuracy;
  j["nodes_raw"] = x.nodes_raw;
  j["nodes_optimized"] = x.nodes_optimized;
  j["kernels"] = x.kernels;
  j["peak_bytes"] = x.peak_bytes;
  return j;
}

int run_omniglot(OmniglotFlags& f) {
  if (f.threads > 0) set_threads(f.threads);
  f.cfg.within_alphabet = f.sampling == "within";
  FewShotConfig& m = f.cfg.run.maml;
  ParamStore store;
  if (!f.load_path.empty()) {
    FewShotConfig saved = load_model_config(f.load_path);
    // Prototype methods have no head, so a model trained N-way runs M-way episodes as it is.
    const bool ways_matter = adapts_by_gradient(m.algo);
    if (saved.algo != m.algo || (ways_matter && saved.ways != m.ways) || saved.net.filters != m.net.filters ||
        saved.metric_rank != m.metric_rank)
      throw RuntimeError(fmt::format("{} holds a {} {}-way model with {} filters; the flags ask for {} {}-way with {}",
                                     f.load_path, saved.algo, saved.ways, saved.net.filters, m.algo, m.ways,
                                     m.net.filters));
    store.ensure(build_fewshot_step(m));
    load_checkpoint(store, f.load_path);
  }
  if (!f.save_path.empty())
    f.cfg.run.on_trained = [&](const ParamStore& s) {
      save_model(s, m, f.save_path);
      if (!f.quiet) std::cerr << fmt::format("saved {} (and {})\n", f.save_path, sidecar_of(f.save_path));
    };
  const int64_t iters = f.cfg.run.iters >= 0 ? f.cfg.run.iters : default_iters(m);
  std::cout << fmt::format("omniglot: algo={} {}-way {}-shot, {} query/class, meta_batch={} inner_steps={} inner_lr={} "
                           "iters={} sampling={}\n",
                           m.algo, m.ways, m.shots, m.query, m.meta_batch, m.inner_steps, m.inner_lr, iters, f.sampling);
  OmniglotBenchResult r = run_omniglot_bench(f.cfg, store, f.quiet ? nullptr : &std::cerr);
  const ConvBenchResult& x = r.run;
  std::cout << fmt::format("graph: {} nodes -> {} after passes, {} kernels; arena {:.1f} MiB\n", x.nodes_raw,
                           x.nodes_optimized, x.kernels, x.peak_bytes / 1048576.0);
  std::cout << fmt::format("training: {} meta-iterations in {:.1f} s ({:.1f} ms each); final query loss {:.3f}, "
                           "accuracy {:.3f}\n",
                           r.iters, x.train_seconds, x.ms_per_meta_iter, x.final_loss, x.final_accuracy);
  std::cout << fmt::format("held-out: {} episodes of {} classes, {} inner steps: accuracy {:.2f}% ± {:.2f}% (95% CI)",
                           f.cfg.run.eval_tasks, r.eval_classes, x.eval_steps, 100 * x.post_accuracy.mean,
                           100 * x.post_accuracy.ci95);
  if (adapts_by_gradient(m.algo))
    std::cout << fmt::format("; before adaptation {:.2f}%", 100 * x.pre_accuracy.mean);
  std::cout << "\n";
  if (!f.json_path.empty()) write_output(f.json_path, to_json(f, r).dump(2) + "\n");
  return 0;
}

struct EvalRunsFlags {
  std::string checkpoint, runs_dir, json_path;
  int64_t inner_steps = -1;
  int threads = 0;
};

int run_eval_episodes(const EvalRunsFlags& f) {
  if (f.threads > 0) set_threads(f.threads);
  FewShotConfig m = load_model_config(f.checkpoint);
  ParamStore store;
  store.ensure(build_fewshot_step(m));
  load_checkpoint(store, f.checkpoint);
  std::vector<OneShotRun> runs = load_oneshot_runs(f.runs_dir, m.net.image);
  const int64_t steps = f.inner_steps >= 0 ? f.inner_steps : default_eval_steps(m);
  const int64_t trained_ways = m.ways;
  nlohmann::json per_run = nlohmann::json::array();
  double total_error = 0;
  std::cout << fmt::format("{} ({}, trained {}-way {}-shot), {} inner steps\n", f.checkpoint, m.algo, m.ways, m.shots,
                           adapts_by_gradient(m.algo) ? steps : 0);
  for (const OneShotRun& run : runs) {
    if (run.items() % run.classes() != 0)
      throw RuntimeError(fmt::format("{}: {} test items for {} classes; an equal number per class is needed",
                                     run.name, run.items(), run.classes()));
    // Prototype methods take any number of classes; a linear head is trained for exactly its ways.
    if (m.algo != "protonet" && m.algo != "protonet-metric" && run.classes() != trained_ways)
      throw RuntimeError(fmt::format("{}: {} classes, but {} was trained {}-way and its {} head fixes that number "
                                     "(prototypical networks take any number)",
                                     run.name, run.classes(), f.checkpoint, trained_ways, m.algo));
    FewShotConfig c = m;
    c.ways = run.classes();
    c.shots = 1;
    c.query = run.items() / run.classes();
    Graph g = build_fewshot_eval(c, 1, steps);
    optimize(g);
    Executable exe(g, store);
    std::vector<int32_t> support_labels(size_t(run.classes()));
    for (size_t i = 0; i < support_labels.size(); ++i) support_labels[i] = int32_t(i);
    exe.set_input(exe.input_slot("xs"), std::span<const float>(run.training));
    exe.set_input(exe.input_slot("ys"), std::span<const int32_t>(support_labels));
    exe.set_input(exe.input_slot("xq"), std::span<const float>(run.test));
    exe.set_input(exe.input_slot("yq"), std::span<const int32_t>(run.test_labels));
    exe.run();
    const int64_t s = adapts_by_gradient(m.algo) ? steps : 0;
    const double error = 1.0 - double(exe.fetch(fmt::format("accuracy_{}", s))[0]);
    total_error += error;
    std::cout << fmt::format("{}: {} classes, {} items, error {:.1f}%\n", run.name, run.classes(), run.items(),
                             100 * error);
    per_run.push_back({{"run", run.name}, {"classes", run.classes()}, {"items", run.items()}, {"error", error}});
  }
  const double mean_error = total_error / double(runs.size());
  std::cout << fmt::format("mean error over {} runs: {:.2f}%\n", runs.size(), 100 * mean_error);
  if (!f.json_path.empty()) {
    nlohmann::json j{{"checkpoint", f.checkpoint}, {"runs_dir", f.runs_dir}, {"model", model_json(m)},
                     {"inner_steps", adapts_by_gradient(m.algo) ? steps : 0}, {"runs", per_run},
                     {"mean_error", mean_error}};
    write_output(f.json_path, j.dump(2) + "\n");
  }
  return 0;
}

struct MakeRunsFlags {
  std::string data_dir, archive = "images_background_small2.zip", out_dir;
  int64_t runs = 20, ways = 20;
  std::string sampling = "within";
  uint64_t seed = 1;
};

int run_make_runs(const MakeRunsFlags& f) {
  const std::string zip = (f.data_dir.empty() ? default_omniglot_dir() : f.data_dir) + "/" + f.archive;
  OmniglotOptions opt;
  opt.image = 105;
  opt.rotations = false;
  write_oneshot_runs(load_omniglot_zip(zip, opt), f.out_dir, f.runs, f.ways, f.sampling == "within", f.seed);
  std::cout << fmt::format("wrote {} runs of {}-way one-shot classification from {} to {}\n", f.runs, f.ways, zip,
                           f.out_dir);
  return 0;
}

}  // namespace

void register_omniglot_commands(Cli& cli) {
  auto fp = std::make_shared<OmniglotFlags>();
  OmniglotFlags& f = *fp;
  f.cfg.run.iters = -1;
  f.cfg.run.eval_tasks = 1000;
  // As in Finn et al.'s code, few queries per class in training (they are most of the cost); more
  // at evaluation, where they only tighten the estimate.
  f.cfg.run.maml.query = 5;
  f.cfg.run.eval_query = 15;
  CLI::App* b = cli.bench->add_subcommand("omniglot", "few-shot classification on Omniglot (train: small1, test: small2)");
  add_fewshot_flags(b, f.cfg.run.maml, fewshot_algorithms());
  b->add_option("--metric-rank", f.cfg.run.maml.metric_rank, "rank of the learned metric's low-rank term")
      ->check(kNonNegative)
      ->capture_default_str();
  b->add_option("--iters", f.cfg.run.iters, "meta-iterations (default: the algorithm's budget, under 30 minutes)")
      ->check(kNonNegative);
  b->add_option("--eval-episodes", f.cfg.run.eval_tasks, "held-out episodes to evaluate on")
      ->check(kPositive)
      ->capture_default_str();
  b->add_option("--eval-query", f.cfg.run.eval_query, "query images per class at evaluation")
      ->check(kPositive)
      ->capture_default_str();
  b->add_option("--eval-inner-steps", f.cfg.run.eval_steps, "adaptation steps at evaluation (default: 3; Reptile 10)")
      ->check(kNonNegative);
  b->add_option("--sampling", f.sampling, "across: classes from any alphabet; within: from one alphabet")
      ->check(CLI::IsMember({"across", "within"}))
      ->capture_default_str();
  b->add_option("--data", f.cfg.data_dir, "folder holding images_background_small1.zip and _small2.zip")
      ->default_str(default_omniglot_dir());
  b->add_option("--save", f.save_path, "write a checkpoint (and CKPT.json) after training");
  b->add_option("--load", f.load_path, "start from a checkpoint saved with --save (--iters 0: evaluate only)");
  b->add_option("--opt-level", f.cfg.run.opt_level, "0: no graph passes, 1: default pipeline")
      ->check(CLI::Range(0, 1))
      ->capture_default_str();
  b->add_option("--threads", f.threads, "oneDNN/OpenMP threads (default: all cores)")->check(kPositive);
  b->add_option("--json", f.json_path, "write a JSON summary to this file");
  b->add_flag("--quiet", f.quiet, "no progress bar");
  add_check_numerics_flag(b, f.cfg.run.compile);
  cli.on_parsed(b, [fp] { return run_omniglot(*fp); });

  auto ep = std::make_shared<EvalRunsFlags>();
  CLI::App* e = cli.app.add_subcommand(
      "eval-episodes", "evaluate a checkpoint on one-shot run folders (runNN/training, runNN/test, class_labels.txt)");
  e->add_option("--checkpoint", ep->checkpoint, "checkpoint written by bench omniglot --save")->required();
  e->add_option("--runs", ep->runs_dir, "folder holding run01, run02, ...")->required();
  e->add_option("--inner-steps", ep->inner_steps, "adaptation steps (default: as bench omniglot evaluates)")
      ->check(kNonNegative);
  e->add_option("--threads", ep->threads, "oneDNN/OpenMP threads (default: all cores)")->check(kPositive);
  e->add_option("--json", ep->json_path, "write per-run error rates and the mean as JSON");
  cli.on_parsed(e, [ep] { return run_eval_episodes(*ep); });

  auto mp = std::make_shared<MakeRunsFlags>();
  CLI::App* mr = cli.app.add_subcommand("make-runs", "write one-shot run folders from an Omniglot archive");
  mr->add_option("--out", mp->out_dir, "folder to create the runs in")->required();
  mr->add_option("--data", mp->data_dir, "folder of the Omniglot archives")->default_str(default_omniglot_dir());
  mr->add_option("--archive", mp->archive, "archive to draw from (held-out classes)")->capture_default_str();
  mr->add_option("--runs", mp->runs, "number of runs")->check(kPositive)->capture_default_str();
  mr->add_option("--ways", mp->ways, "classes per run")->check(CLI::Range(int64_t(2), int64_t(1000)))->capture_default_str();
  mr->add_option("--sampling", mp->sampling, "within: a run's classes share an alphabet (the original); across: any")
      ->check(CLI::IsMember({"across", "within"}))
      ->capture_default_str();
  mr->add_option("--seed", mp->seed, "seed of the draw")->capture_default_str();
  cli.on_parsed(mr, [mp] { return run_make_runs(*mp); });
}

}  // namespace metagrad
