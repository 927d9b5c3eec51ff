// `metagrad bench conv-maml --synthetic` and `metagrad dump conv-maml`.
#include <fmt/format.h>

#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "bench/drivers/conv_bench.h"
#include "metagrad/error.h"
#include "metagrad/pipeline.h"
#include "metagrad/serialize.h"
#include "tools/cli/cli.h"

namespace metagrad {
namespace {

struct ConvFlags {
  ConvBenchConfig cfg;
  bool synthetic = false, quiet = false;
  std::string json_path;
  int threads = 0;
};

nlohmann::json to_json(const ConvFlags& f, const ConvBenchResult& r) {
  const FewShotConfig& m = f.cfg.maml;
  nlohmann::json j;
  j["workload"] = "conv-maml";
  j["data"] = "synthetic";
  j["config"] = {{"algo", m.algo},           {"ways", m.ways},           {"shots", m.shots},
                 {"query", m.query},         {"inner_steps", m.inner_steps}, {"inner_lr", m.inner_lr},
                 {"meta_batch", m.meta_batch}, {"meta_lr", m.meta_lr},   {"seed", m.net.seed},
                 {"eval_tasks", f.cfg.eval_tasks}, {"opt_level", f.cfg.opt_level}};
  j["iters"] = f.cfg.iters;
  j["pre_adapt_accuracy"] = r.pre_accuracy.mean;
  j["pre_adapt_accuracy_ci95"] = r.pre_accuracy.ci95;
  j["post_adapt_accuracy"] = r.post_accuracy.mean;
  j["post_adapt_accuracy_ci95"] = r.post_accuracy.ci95;
  j["pre_adapt_loss"] = r.pre_loss.mean;
  j["post_adapt_loss"] = r.post_loss.mean;
  j["ms_per_meta_iter"] = r.ms_per_meta_iter;
  j["train_seconds"] = r.train_seconds;
  j["eval_seconds"] = r.eval_seconds;
  j["pass_seconds"] = r.pass_seconds;
  j["final_train_loss"] = r.final_loss;
  j["peak_bytes"] = r.peak_bytes;
  j["naive_bytes"] = r.naive_bytes;
  j["workspace_bytes"] = r.workspace_bytes;
  j["working_bytes"] = r.working_bytes;
  j["kernels"] = r.kernels;
  j["nodes_raw"] = r.nodes_raw;
  j["nodes_optimized"] = r.nodes_optimized;
  return j;
}

int run_conv(ConvFlags& f) {
  if (!f.synthetic)
    throw Error("conv-maml runs on synthetic episodes only: pass --synthetic (Omniglot: metagrad bench omniglot)");
  if (f.threads > 0) set_threads(f.threads);
  const FewShotConfig& m = f.cfg.maml;
  std::cout << fmt::format("conv-MAML (synthetic): algo={} {}-way {}-shot, {} query/class, inner_steps={} inner_lr={} "
                           "meta_batch={} iters={} -O{}\n",
                           m.algo, m.ways, m.shots, m.query, m.inner_steps, m.inner_lr, m.meta_batch, f.cfg.iters,
                           f.cfg.opt_level);
  ConvBenchResult r = run_conv_bench(f.cfg, f.quiet ? nullptr : &std::cerr);
  std::cout << fmt::format("graph: {} nodes -> {} after passes ({:.3f} s), {} kernels\n", r.nodes_raw, r.nodes_optimized,
                           r.pass_seconds, r.kernels);
  std::cout << fmt::format("memory: arena {:.1f} MiB (naive {:.1f} MiB), workspace {:.1f} MiB, working set {:.1f} MiB\n",
                           r.peak_bytes / 1048576.0, r.naive_bytes / 1048576.0, r.workspace_bytes / 1048576.0,
                           r.working_bytes / 1048576.0);
  std::cout << fmt::format("speed: {:.1f} ms per meta-iteration\n", r.ms_per_meta_iter);
  std::cout << fmt::format("evaluation on {} fresh tasks: accuracy {:.3f} ± {:.3f} before adaptation, {:.3f} ± {:.3f} after\n",
                           f.cfg.eval_tasks, r.pre_accuracy.mean, r.pre_accuracy.ci95, r.post_accuracy.mean,
                           r.post_accuracy.ci95);
  if (!f.json_path.empty()) write_output(f.json_path, to_json(f, r).dump(2) + "\n");
  return 0;
}

struct DumpFlags {
  FewShotConfig maml;
  std::string format = "text", stage = "raw", out_path;
};

}  // namespace

void register_conv_commands(Cli& cli) {
  auto fp = std::make_shared<ConvFlags>();
  ConvFlags& f = *fp;
  CLI::App* b = cli.bench->add_subcommand("conv-maml", "second-order MAML with the 4-block conv network (Finn et al. 2017)");
  add_fewshot_flags(b, f.cfg.maml, {"maml", "fomaml"});
  b->add_flag("--synthetic", f.synthetic, "random 28x28 episodes (required: the only data source of this workload)");
  b->add_option("--iters", f.cfg.iters, "meta-iterations")->check(kNonNegative)->capture_default_str();
  b->add_option("--eval-tasks", f.cfg.eval_tasks, "fresh tasks to evaluate on")->check(kNonNegative)->capture_default_str();
  b->add_option("--eval-steps", f.cfg.eval_steps, "adaptation steps at evaluation (default: --inner-steps)")->check(kNonNegative);
  b->add_option("--opt-level", f.cfg.opt_level, "0: no graph passes, 1: default pipeline")->check(CLI::Range(0, 1))->capture_default_str();
  b->add_option("--threads", f.threads, "oneDNN/OpenMP threads (default: all cores)")->check(kPositive);
  b->add_option("--json", f.json_path, "write a JSON summary to this file");
  b->add_flag("--quiet", f.quiet, "no progress bar");
  add_check_numerics_flag(b, f.cfg.compile);
  cli.on_parsed(b, [fp] { return run_conv(*fp); });

  auto dp = std::make_shared<DumpFlags>();
  CLI::App* d = cli.dump->add_subcommand("conv-maml", "the conv-MAML meta-step");
  add_fewshot_flags(d, dp->maml, {"maml", "fomaml"});
  d->add_option("--format", dp->format, "text, dot or json")->check(CLI::IsMember({"text", "dot", "json"}))->capture_default_str();
  d->add_option("--stage", dp->stage, "raw (as built) or optimized (after passes)")->check(CLI::IsMember({"raw", "optimized"}))->capture_default_str();
  d->add_option("-o,--output", dp->out_path, "output file (default: stdout)");
  cli.on_parsed(d, [dp] {
    Graph g = build_fewshot_step(dp->maml);
    if (dp->stage == "optimized") optimize(g);
    write_output(dp->out_path, dp->format == "text" ? to_text(g) : dp->format == "dot" ? to_dot(g) : to_json(g));
    return 0;
  });
}

}  // namespace metagrad
