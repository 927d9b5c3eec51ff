// `metagrad bench sinusoid` and `metagrad dump sinusoid`.
#include <fmt/format.h>

#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "bench/drivers/sinusoid_bench.h"
#include "metagrad/pipeline.h"
#include "metagrad/serialize.h"
#include "tools/cli/cli.h"

namespace metagrad {
namespace {

struct SinusoidFlags {
  SinusoidBenchConfig cfg;
  int64_t eval_shots = -1, eval_steps = -1;  // default: the training values
  std::string json_path;
  int threads = 0;
  bool quiet = false;
};

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
  if (!f.json_path.empty()) write_output(f.json_path, to_json(f, r).dump(2) + "\n");
  return 0;
}

struct DumpFlags {
  MamlConfig maml;
  std::string format = "text", stage = "raw", out_path;
};

int run_dump(const DumpFlags& f) {
  Graph g = build_meta_step(f.maml);
  if (f.stage == "optimized") optimize(g);
  write_output(f.out_path, f.format == "text" ? to_text(g) : f.format == "dot" ? to_dot(g) : to_json(g));
  return 0;
}

}  // namespace

void register_sinusoid_commands(Cli& cli) {
  auto sfp = std::make_shared<SinusoidFlags>();
  SinusoidFlags& sf = *sfp;
  CLI::App* bs = cli.bench->add_subcommand("sinusoid", "gradient-based meta-learning on sinusoid regression: MAML, first-order MAML, Meta-SGD, ANIL, Reptile");
  add_maml_flags(bs, sf.cfg.maml);
  bs->add_option("--iters", sf.cfg.iters, "meta-iterations")->check(kNonNegative)->capture_default_str();
  bs->add_option("--eval-tasks", sf.cfg.eval_tasks, "fresh tasks to evaluate on")->check(kNonNegative)->capture_default_str();
  bs->add_option("--eval-shots", sf.eval_shots, "support points at evaluation (default: --shots)")->check(kPositive);
  bs->add_option("--eval-steps", sf.eval_steps, "adaptation steps at evaluation (default: --inner-steps)")->check(kNonNegative);
  bs->add_option("--opt-level", sf.cfg.opt_level, "0: no graph passes, 1: default pipeline")->check(CLI::Range(0, 1))->capture_default_str();
  bs->add_option("--threads", sf.threads, "oneDNN/OpenMP threads (default: all cores)")->check(kPositive);
  bs->add_option("--json", sf.json_path, "write a JSON summary to this file");
  bs->add_flag("--quiet", sf.quiet, "no progress bar");
  add_check_numerics_flag(bs, sf.cfg.compile);

  cli.on_parsed(bs, [sfp] { return run_sinusoid(*sfp); });

  auto dfp = std::make_shared<DumpFlags>();
  DumpFlags& df = *dfp;
  CLI::App* ds = cli.dump->add_subcommand("sinusoid", "the MAML sinusoid meta-step");
  add_maml_flags(ds, df.maml);
  ds->add_option("--format", df.format, "text, dot or json")->check(CLI::IsMember({"text", "dot", "json"}))->capture_default_str();
  ds->add_option("--stage", df.stage, "raw (as built) or optimized (after passes)")->check(CLI::IsMember({"raw", "optimized"}))->capture_default_str();
  ds->add_option("-o,--output", df.out_path, "output file (default: stdout)");

  cli.on_parsed(ds, [dfp] { return run_dump(*dfp); });
}

}  // namespace metagrad
