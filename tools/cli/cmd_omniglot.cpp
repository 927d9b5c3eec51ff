// `metagrad bench omniglot` (train and evaluate the few-shot family on Omniglot) and
// `metagrad eval-episodes` (evaluate a checkpoint on one-shot run folders).
#include <fmt/format.h>

#include <chrono>
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

// Written before training (so no checkpoint ever lacks one, even if a run is killed right after
// its first save) and after every checkpoint the driver saves, durably like the checkpoint.
void write_sidecar(const FewShotConfig& m, const std::string& path) {
  write_file_durably(sidecar_of(path), model_json(m).dump(2) + "\n");
}

FewShotConfig load_model_config(const std::string& checkpoint) {
  const std::string side = sidecar_of(checkpoint);
  std::ifstream in(side);
  if (!in) throw RuntimeError(fmt::format("{}: missing (the model description saved with checkpoint {})", side, checkpoint));
  return parse_model_description(std::string(std::istreambuf_iterator<char>(in), {}), side);
}

struct OmniglotFlags {
  OmniglotBenchConfig cfg;
  std::string command, sampling = "across", load_path;
  CommonFlags common;
};

nlohmann::json to_json(const OmniglotFlags& f, const OmniglotBenchResult& r) {
  const ConvBenchResult& x = r.run;
  nlohmann::json config = model_json(f.cfg.run.maml);
  config["iters"] = r.iters;
  config["sampling"] = f.sampling;
  config["eval_episodes"] = f.cfg.run.eval_tasks;
  config["eval_inner_steps"] = x.eval_steps;
  config["format"] = f.cfg.format;
  config["data"] = f.cfg.data_dir.empty() ? default_omniglot_dir() : f.cfg.data_dir;
  nlohmann::json timing = timing_json(x.train, x.eval_seconds);
  timing["load_seconds"] = r.load_seconds;
  nlohmann::json result;
  result["train_classes"] = r.train_classes;
  result["eval_classes"] = r.eval_classes;
  result["accuracy"] = x.post_accuracy.mean;
  result["accuracy_ci95"] = x.post_accuracy.ci95;
  result["pre_adapt_accuracy"] = x.pre_accuracy.mean;
  result["pre_adapt_accuracy_ci95"] = x.pre_accuracy.ci95;
  result["loss"] = x.post_loss.mean;
  result["final_train_loss"] = x.train.final_metrics[0];
  result["loss_curve"] = x.train.losses;
  result["final_train_accuracy"] = x.train.final_metrics[1];
  return bench_summary(f.command, config, timing, result, x.train.compile);
}

int run_omniglot(OmniglotFlags& f) {
  f.common.apply(f.cfg.run.run);
  f.cfg.within_alphabet = f.sampling == "within";
  FewShotConfig& m = f.cfg.run.maml;
  ParamStore store;
  if (!f.load_path.empty()) {
    FewShotConfig saved = load_model_config(f.load_path);
    // Without a head a model trained N-way runs M-way episodes as it is.
    const bool ways_matter = fewshot_algorithm(m.algo).head;
    if (saved.algo != m.algo || (ways_matter && saved.ways != m.ways) || saved.net.filters != m.net.filters ||
        saved.metric_rank != m.metric_rank)
      throw RuntimeError(fmt::format("{} holds a {} {}-way model with {} filters; the flags ask for {} {}-way with {}",
                                     f.load_path, saved.algo, saved.ways, saved.net.filters, m.algo, m.ways,
                                     m.net.filters));
    store.ensure(build_fewshot_step(m));
    load_checkpoint(store, f.load_path);
  }
  DriverConfig& run = f.cfg.run.run;
  if (!run.checkpoint.empty() && f.common.writes_files()) write_sidecar(m, run.checkpoint);
  if (!run.checkpoint.empty())
    run.on_save = [&](const ParamStore&, const std::string& path) {
      write_sidecar(m, path);
      if (!f.common.quiet) std::cerr << fmt::format("\rsaved {} (and {})\x1b[K\n", path, sidecar_of(path));
    };
  const int64_t iters = run.iters >= 0 ? run.iters : default_iters(m);
  std::cout << fmt::format("{}: algo={} {}-way {}-shot, {} query/class, meta_batch={} inner_steps={} inner_lr={} "
                           "iters={} sampling={}\n",
                           f.command, m.algo, m.ways, m.shots, m.query, m.meta_batch, m.inner_steps, m.inner_lr, iters,
                           f.sampling);
  OmniglotBenchResult r = run_omniglot_bench(f.cfg, store);
  const ConvBenchResult& x = r.run;
  const CompileStats& c = x.train.compile;
  std::cout << fmt::format("graph: {} nodes -> {} after passes, {} kernels; arena {:.1f} MiB\n", c.nodes_raw,
                           c.nodes_optimized, c.kernels, c.arena_bytes / 1048576.0);
  std::cout << fmt::format("training: {} meta-iterations in {:.1f} s ({:.1f} ms each, {:.1f} ms of it in run()); "
                           "final query loss {:.3f}, accuracy {:.3f}\n",
                           r.iters, x.train.seconds, x.train.ms_per_iter, x.train.ms_per_run, x.train.final_metrics[0],
                           x.train.final_metrics[1]);
  std::cout << fmt::format("held-out: {} episodes of {} classes, {} inner steps: accuracy {:.2f}% ± {:.2f}% (95% CI)",
                           f.cfg.run.eval_tasks, r.eval_classes, x.eval_steps, 100 * x.post_accuracy.mean,
                           100 * x.post_accuracy.ci95);
  if (adapts_by_gradient(m.algo))
    std::cout << fmt::format("; before adaptation {:.2f}%", 100 * x.pre_accuracy.mean);
  std::cout << "\n";
  write_summary(f.common, to_json(f, r));
  return 0;
}

struct EvalRunsFlags {
  std::string checkpoint, runs_dir;
  int64_t inner_steps = -1;
  CommonFlags common;
};

int run_eval_episodes(const EvalRunsFlags& f) {
  f.common.progress();
  const auto t0 = std::chrono::steady_clock::now();
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
    if (fewshot_algorithm(m.algo).head && run.classes() != trained_ways)
      throw RuntimeError(fmt::format("{}: {} classes, but {} was trained {}-way and its {} head fixes that number "
                                     "(prototypical networks take any number)",
                                     run.name, run.classes(), f.checkpoint, trained_ways, m.algo));
    FewShotConfig c = m;
    c.ways = run.classes();
    c.shots = 1;
    c.query = run.items() / run.classes();
    Graph g = build_fewshot_eval(c, 1, steps);
    optimize(g);
    Executable exe(g, store, {}, f.common.compile_options());
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
    if (!f.common.quiet)
      std::cout << fmt::format("{}: {} classes, {} items, error {:.1f}%\n", run.name, run.classes(), run.items(),
                               100 * error);
    per_run.push_back({{"run", run.name}, {"classes", run.classes()}, {"items", run.items()}, {"error", error}});
  }
  const double mean_error = total_error / double(runs.size());
  std::cout << fmt::format("mean error over {} runs: {:.2f}%\n", runs.size(), 100 * mean_error);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_summary(f.common, summary_json("eval-episodes",
                                       {{"checkpoint", f.checkpoint}, {"runs_dir", f.runs_dir}, {"model", model_json(m)},
                                        {"inner_steps", adapts_by_gradient(m.algo) ? steps : 0}},
                                       {{"seconds", seconds}}, {{"runs", per_run}, {"mean_error", mean_error}}));
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


// `bench omniglot` (the archives by default) and `bench fewshot` (a folder of your own) are one
// benchmark with two defaults for --format.
void register_episode_bench(Cli& cli, const std::string& name, const std::string& format, const std::string& what) {
  auto fp = std::make_shared<OmniglotFlags>();
  OmniglotFlags& f = *fp;
  f.command = "bench " + name;
  f.cfg.format = format;
  f.cfg.run.run.iters = -1;
  f.cfg.run.eval_tasks = 1000;
  // As in Finn et al.'s code, few queries per class in training (they are most of the cost); more
  // at evaluation, where they only tighten the estimate.
  f.cfg.run.maml.query = 5;
  f.cfg.run.eval_query = 15;
  CLI::App* b = cli.bench->add_subcommand(name, what);
  add_fewshot_bench_flags(cli, b, f.cfg.run.maml, fewshot_algorithms(), f.common, f.cfg.run.run);
  b->add_option("--metric-rank", f.cfg.run.maml.metric_rank, "rank of the learned metric's low-rank term")
      ->check(kNonNegative)
      ->capture_default_str();
  b->add_option("--iters", f.cfg.run.run.iters, "meta-iterations (default: the algorithm's budget, under 30 minutes)")
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
  b->add_option("--format", f.cfg.format,
                "zip: images_background_small1.zip (training) and _small2.zip (held out) in --data; folders: "
                "--data DIR/<class>/<image>.png or DIR/<alphabet>/<character>/<image>.png")
      ->check(CLI::IsMember({"zip", "folders"}))
      ->capture_default_str();
  auto data = b->add_option("--data", f.cfg.data_dir, "folder of the data (see --format)");
  if (format == "zip") data->default_str(default_omniglot_dir());
  else data->required();
  b->add_option("--eval-data", f.cfg.eval_dir, "folders: held-out classes from this folder instead of a share of --data's");
  b->add_option("--held-out", f.cfg.held_out, "folders: share of --data's alphabets (or classes) held out for evaluation")
      ->check(CLI::Range(0.01, 0.99))
      ->capture_default_str();
  b->add_flag("--invert", f.cfg.invert, "folders: dark strokes on white become ink 1 on 0 (as the zip's Omniglot)");
  auto save = b->add_option("--save", f.cfg.run.run.checkpoint, "write a checkpoint (and CKPT.json) after training");
  b->add_option("--save-every", f.cfg.run.run.save_every, "also write the checkpoint every N meta-iterations")
      ->check(kPositive)
      ->needs(save);
  b->add_option("--load", f.load_path, "start from a checkpoint saved with --save (--iters 0: evaluate only)");
  cli.on_parsed(b, [fp] { return run_omniglot(*fp); });
}

}  // namespace

void register_omniglot_commands(Cli& cli) {
  register_episode_bench(cli, "omniglot", "zip", "few-shot classification on Omniglot (train: small1, test: small2)");
  register_episode_bench(cli, "fewshot", "folders",
                         "few-shot classification on a folder of your own images (DIR/<class>/<image>.png)");

  auto ep = std::make_shared<EvalRunsFlags>();
  CLI::App* e = cli.app.add_subcommand(
      "eval-episodes", "evaluate a checkpoint on one-shot run folders (runNN/training, runNN/test, class_labels.txt)");
  e->add_option("--checkpoint", ep->checkpoint, "checkpoint written by bench omniglot --save")->required();
  e->add_option("--runs", ep->runs_dir, "folder holding run01, run02, ...")->required();
  e->add_option("--inner-steps", ep->inner_steps, "adaptation steps (default: as bench omniglot evaluates)")
      ->check(kNonNegative);
  add_common_flags(cli, e, ep->common);
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
