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
  CommonFlags common;
};

nlohmann::json to_json(const SinusoidFlags& f, const SinusoidBenchResult& r) {
  const MamlConfig& m = f.cfg.maml;
  nlohmann::json config = {{"algo", m.algo}, {"shots", m.shots}, {"query", m.query}, {"inner_steps", m.inner_steps},
                           {"inner_lr", m.inner_lr}, {"meta_batch", m.meta_batch}, {"meta_lr", m.meta_lr}, {"seed", m.seed},
                           {"iters", f.cfg.run.iters}, {"eval_tasks", f.cfg.eval_tasks}, {"eval_shots", f.cfg.eval_shots},
                           {"eval_steps", f.cfg.eval_steps}, {"opt_level", f.cfg.run.opt_level}};
  nlohmann::json result;
  result["pre_adapt_mse"] = r.pre.mean;
  result["pre_adapt_mse_ci95"] = r.pre.ci95;
  result["post_adapt_mse"] = r.post.mean;
  result["post_adapt_mse_ci95"] = r.post.ci95;
  for (const MeanCi& s : r.mse_by_step) result["mse_by_step"].push_back({{"mean", s.mean}, {"ci95", s.ci95}});
  result["final_train_loss"] = r.train.final_metrics[0];
  result["loss_curve"] = r.train.losses;
  result["working_bytes"] = r.train.working_bytes;
  return bench_summary("bench sinusoid", config, timing_json(r.train, r.eval_seconds), result, r.train.compile);
}

int run_sinusoid(SinusoidFlags& f) {
  if (f.eval_shots > 0) f.cfg.eval_shots = f.eval_shots;
  else f.cfg.eval_shots = f.cfg.maml.shots;
  f.cfg.eval_steps = f.eval_steps >= 0 ? f.eval_steps : f.cfg.maml.inner_steps;
  f.common.apply(f.cfg.run);
  const int64_t iters = f.cfg.run.iters;
  const MamlConfig& m = f.cfg.maml;
  std::cout << fmt::format("MAML sinusoid: algo={} K={} inner_steps={} inner_lr={} meta_batch={} meta_lr={} iters={}\n",
                           m.algo, m.shots, m.inner_steps, m.inner_lr, m.meta_batch, m.meta_lr, iters);
  SinusoidBenchResult r = run_sinusoid_bench(f.cfg);
  const CompileStats& c = r.train.compile;
  std::cout << fmt::format("graph: {} nodes -> {} after passes, {} kernels, arena {:.1f} KiB (naive {:.1f} KiB)\n",
                           c.nodes_raw, c.nodes_optimized, c.kernels, c.arena_bytes / 1024.0, c.naive_bytes / 1024.0);
  std::cout << fmt::format("speed: {:.3f} ms per meta-iteration, {:.3f} ms of it in run() ({:.1f} s training)\n",
                           r.train.ms_per_iter, r.train.ms_per_run, r.train.seconds);
  std::cout << fmt::format("evaluation on {} fresh tasks, {} shots:\n", f.cfg.eval_tasks, f.cfg.eval_shots);
  for (size_t s = 0; s < r.mse_by_step.size(); ++s)
    std::cout << fmt::format("  MSE after {:2d} step{}: {:.4f} ± {:.4f}{}\n", s, s == 1 ? " " : "s", r.mse_by_step[s].mean,
                             r.mse_by_step[s].ci95, s == 0 ? "  (pre-adaptation)" : "");
  std::cout << fmt::format("pre-adaptation MSE {:.4f}, post-adaptation MSE {:.4f}\n", r.pre.mean, r.post.mean);
  write_summary(f.common, to_json(f, r));
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
  add_maml_flags(bs, sf.cfg.maml, false);
  add_common_flags(cli, bs, sf.common, &sf.cfg.maml.seed, "seed of initialisation and task sampling");
  cli.data_parallel.push_back(bs);
  bs->add_option("--iters", sf.cfg.run.iters, "meta-iterations")->check(kNonNegative)->capture_default_str();
  bs->add_option("--eval-tasks", sf.cfg.eval_tasks, "fresh tasks to evaluate on")->check(kNonNegative)->capture_default_str();
  bs->add_option("--eval-shots", sf.eval_shots, "support points at evaluation (default: --shots)")->check(kPositive);
  bs->add_option("--eval-steps", sf.eval_steps, "adaptation steps at evaluation (default: --inner-steps)")->check(kNonNegative);
  add_opt_level_flag(bs, sf.cfg.run.opt_level);

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
