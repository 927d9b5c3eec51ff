// The metagrad command line: benchmarks and graph dumps of the built-in workloads.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "graph/error.h"
#include "graph/serialize.h"
#include "meta/sinusoid_bench.h"
#include "passes/pipeline.h"
#include "tools/inspect.h"

namespace {

using namespace metagrad;

struct SinusoidFlags {
  SinusoidBenchConfig cfg;
  int64_t eval_shots = -1, eval_steps = -1;  // default: the training values
  std::string json_path;
  int threads = 0;
  bool quiet = false;
};

// libgomp reads OMP_NUM_THREADS once, when it loads, so setting the variable from main is too
// late; the runtime call is looked up dynamically because only libdnnl links libgomp.
void set_threads(int n) {
  using SetThreads = void (*)(int);
  if (auto f = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"))) f(n);
  else throw Error("--threads: this build's oneDNN has no OpenMP runtime to configure");
}

// CLI11's PositiveNumber/NonNegativeNumber report "not in range 0 to 1.79e308"; say it plainly.
CLI::Validator at_least(double lo, bool strict) {
  std::string want = strict ? fmt::format("a number > {}", lo) : fmt::format("a number >= {}", lo);
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(s, v) || (strict ? !(v > lo) : !(v >= lo)))
          return fmt::format("expected {}, got '{}'", want, s);
        return {};
      },
      strict ? "POSITIVE" : "NON-NEGATIVE");
}
const CLI::Validator kPositive = at_least(0, true), kNonNegative = at_least(0, false);

void add_maml_flags(CLI::App* cmd, MamlConfig& m) {
  cmd->add_option("--algo", m.algo, "maml (second order) or fomaml (first order)")
      ->check(CLI::IsMember({"maml", "fomaml"}))
      ->capture_default_str();
  cmd->add_option("--shots", m.shots, "support points per task (K)")->check(kPositive)->capture_default_str();
  cmd->add_option("--query", m.query, "query points per task")->check(kPositive)->capture_default_str();
  cmd->add_option("--inner-steps", m.inner_steps, "SGD steps in the inner loop")->check(kNonNegative)->capture_default_str();
  cmd->add_option("--inner-lr", m.inner_lr, "inner SGD step size")->check(kPositive)->capture_default_str();
  cmd->add_option("--meta-batch", m.meta_batch, "tasks per meta-step")->check(kPositive)->capture_default_str();
  cmd->add_option("--meta-lr", m.meta_lr, "Adam learning rate of the meta-update")->check(kPositive)->capture_default_str();
  cmd->add_option("--seed", m.seed, "seed of initialisation and task sampling")->capture_default_str();
}

nlohmann::json to_json(const SinusoidFlags& f, const SinusoidBenchResult& r) {
  const MamlConfig& m = f.cfg.maml;
  nlohmann::json j;
  j["workload"] = "sinusoid";
  j["config"] = {{"algo", m.algo}, {"shots", m.shots}, {"query", m.query}, {"inner_steps", m.inner_steps},
                 {"inner_lr", m.inner_lr}, {"meta_batch", m.meta_batch}, {"meta_lr", m.meta_lr}, {"seed", m.seed},
                 {"eval_tasks", f.cfg.eval_tasks}, {"eval_shots", f.cfg.eval_shots}, {"eval_steps", f.cfg.eval_steps},
                 {"opt_level", f.cfg.opt_level}};
  j["iters"] = f.cfg.iters;
  j["pre_adapt_mse"] = r.pre.mean;
  j["pre_adapt_mse_ci95"] = r.pre.ci95;
  j["post_adapt_mse"] = r.post.mean;
  j["post_adapt_mse_ci95"] = r.post.ci95;
  for (const MeanCI& s : r.mse_by_step) j["mse_by_step"].push_back({{"mean", s.mean}, {"ci95", s.ci95}});
  j["ms_per_meta_iter"] = r.ms_per_meta_iter;
  j["train_seconds"] = r.train_seconds;
  j["eval_seconds"] = r.eval_seconds;
  j["final_train_loss"] = r.final_loss;
  j["peak_bytes"] = r.peak_bytes;
  j["naive_bytes"] = r.naive_bytes;
  j["kernels"] = r.kernels;
  j["nodes_raw"] = r.nodes_raw;
  j["nodes_optimized"] = r.nodes_optimized;
  return j;
}

int run_sinusoid(SinusoidFlags& f) {
  if (f.eval_shots > 0) f.cfg.eval_shots = f.eval_shots;
  else f.cfg.eval_shots = f.cfg.maml.shots;
  f.cfg.eval_steps = f.eval_steps >= 0 ? f.eval_steps : f.cfg.maml.inner_steps;
  if (f.threads > 0) set_threads(f.threads);
  const MamlConfig& m = f.cfg.maml;
  std::cout << fmt::format("MAML sinusoid: algo={} K={} inner_steps={} inner_lr={} meta_batch={} meta_lr={} iters={}\n",
                           m.algo, m.shots, m.inner_steps, m.inner_lr, m.meta_batch, m.meta_lr, f.cfg.iters);
  SinusoidBenchResult r = run_sinusoid_bench(f.cfg, f.quiet ? nullptr : &std::cerr);
  std::cout << fmt::format("graph: {} nodes -> {} after passes, {} kernels, arena {:.1f} KiB (naive {:.1f} KiB)\n",
                           r.nodes_raw, r.nodes_optimized, r.kernels, r.peak_bytes / 1024.0, r.naive_bytes / 1024.0);
  std::cout << fmt::format("speed: {:.3f} ms per meta-iteration ({:.1f} s training)\n", r.ms_per_meta_iter, r.train_seconds);
  std::cout << fmt::format("evaluation on {} fresh tasks, {} shots:\n", f.cfg.eval_tasks, f.cfg.eval_shots);
  for (size_t s = 0; s < r.mse_by_step.size(); ++s)
    std::cout << fmt::format("  MSE after {:2d} step{}: {:.4f} ± {:.4f}{}\n", s, s == 1 ? " " : "s", r.mse_by_step[s].mean,
                             r.mse_by_step[s].ci95, s == 0 ? "  (pre-adaptation)" : "");
  std::cout << fmt::format("pre-adaptation MSE {:.4f}, post-adaptation MSE {:.4f}\n", r.pre.mean, r.post.mean);
  if (!f.json_path.empty()) {
    std::ofstream out(f.json_path);
    if (!out) throw Error(fmt::format("cannot write {}", f.json_path));
    out << to_json(f, r).dump(2) << "\n";
  }
  return 0;
}

int run_dump(const MamlConfig& m, const std::string& format, const std::string& stage, const std::string& path) {
  Graph g = build_meta_step(m);
  if (stage == "optimized") optimize(g);
  std::string text = format == "text" ? to_text(g) : format == "dot" ? to_dot(g) : to_json(g);
  if (path.empty() || path == "-") {
    std::cout << text;
  } else {
    std::ofstream out(path);
    if (!out) throw Error(fmt::format("cannot write {}", path));
    out << text;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"metagrad: a graph autodiff engine for bilevel meta-learning"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "show help for every command");

  CLI::App* bench = app.add_subcommand("bench", "train and evaluate a built-in meta-learning workload");
  bench->require_subcommand(1);
  SinusoidFlags sf;
  CLI::App* bs = bench->add_subcommand("sinusoid", "MAML on sinusoid regression (Finn et al. 2017)");
  add_maml_flags(bs, sf.cfg.maml);
  bs->add_option("--iters", sf.cfg.iters, "meta-iterations")->check(kNonNegative)->capture_default_str();
  bs->add_option("--eval-tasks", sf.cfg.eval_tasks, "fresh tasks to evaluate on")->check(kNonNegative)->capture_default_str();
  bs->add_option("--eval-shots", sf.eval_shots, "support points at evaluation (default: --shots)")->check(kPositive);
  bs->add_option("--eval-steps", sf.eval_steps, "adaptation steps at evaluation (default: --inner-steps)")->check(kNonNegative);
  bs->add_option("--opt-level", sf.cfg.opt_level, "0: no graph passes, 1: default pipeline")->check(CLI::Range(0, 1))->capture_default_str();
  bs->add_option("--threads", sf.threads, "oneDNN/OpenMP threads (default: all cores)")->check(kPositive);
  bs->add_option("--json", sf.json_path, "write a JSON summary to this file");
  bs->add_flag("--quiet", sf.quiet, "no progress bar");

  InspectOptions io;
  CLI::App* insp = app.add_subcommand("inspect", "show what the passes did to a workload's graph, its fusion groups, "
                                                 "memory plan and kernel profile");
  insp->add_option("workload", io.workload, "a built-in workload (sinusoid) or a graph file in the text IR")->required();
  insp->add_option("-O,--opt-level", io.opt_level, "0: no passes, 1: the default pipeline (-O0, -O1)")
      ->check(CLI::Range(0, 1))
      ->capture_default_str();
  insp->add_option("--algo", io.algo, "sinusoid: maml or fomaml")->check(CLI::IsMember({"maml", "fomaml"}))->capture_default_str();
  insp->add_option("--inner-steps", io.inner_steps, "sinusoid: inner steps")->check(CLI::NonNegativeNumber)->capture_default_str();
  insp->add_flag("--passes", io.passes, "per pass: nodes before and after, time taken");
  insp->add_flag("--fusion", io.fusion, "fusion groups: which ops became which kernel");
  insp->add_flag("--memory-plan", io.memory_plan, "each buffer's offset, size and live range");
  insp->add_option("--profile", io.profile_runs, "profile every kernel over N runs")->check(CLI::NonNegativeNumber);
  insp->add_option("--json", io.json_path, "write everything as JSON to this file");

  CLI::App* dump = app.add_subcommand("dump", "write the meta-step graph of a built-in workload");
  dump->require_subcommand(1);
  MamlConfig dm;
  std::string format = "text", stage = "raw", out_path;
  CLI::App* ds = dump->add_subcommand("sinusoid", "the MAML sinusoid meta-step");
  add_maml_flags(ds, dm);
  ds->add_option("--format", format, "text, dot or json")->check(CLI::IsMember({"text", "dot", "json"}))->capture_default_str();
  ds->add_option("--stage", stage, "raw (as built) or optimized (after passes)")->check(CLI::IsMember({"raw", "optimized"}))->capture_default_str();
  ds->add_option("-o,--output", out_path, "output file (default: stdout)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    std::fprintf(stderr, "metagrad: %s (see --help)\n", msg.c_str());
    return 2;
  }
  try {
    if (bs->parsed()) return run_sinusoid(sf);
    if (ds->parsed()) return run_dump(dm, format, stage, out_path);
    if (insp->parsed()) return run_inspect(io);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    std::fprintf(stderr, "metagrad: error: %s\n", msg.c_str());
    return 1;
  }
  return 0;
}
