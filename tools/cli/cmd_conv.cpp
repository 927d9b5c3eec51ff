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
  bool synthetic = false;
  CommonFlags common;
};

nlohmann::json to_json(const ConvFlags& f, const ConvBenchResult& r) {
  const FewShotConfig& m = f.cfg.maml;
  nlohmann::json config = {{"algo", m.algo},           {"ways", m.ways},           {"shots", m.shots},
                           {"query", m.query},         {"inner_steps", m.inner_steps}, {"inner_lr", m.inner_lr},
                           {"meta_batch", m.meta_batch}, {"meta_lr", m.meta_lr},   {"seed", m.net.seed},
                           {"iters", f.cfg.run.iters},   {"eval_tasks", f.cfg.eval_tasks},
                           {"opt_level", f.cfg.run.opt_level}, {"data", "synthetic"}};
  nlohmann::json result;
  result["pre_adapt_accuracy"] = r.pre_accuracy.mean;
  result["pre_adapt_accuracy_ci95"] = r.pre_accuracy.ci95;
  result["post_adapt_accuracy"] = r.post_accuracy.mean;
  result["post_adapt_accuracy_ci95"] = r.post_accuracy.ci95;
  result["pre_adapt_loss"] = r.pre_loss.mean;
  result["post_adapt_loss"] = r.post_loss.mean;
  result["final_train_loss"] = r.train.final_metrics[0];
  result["loss_curve"] = r.train.losses;
  result["working_bytes"] = r.train.working_bytes;
  return bench_summary("bench conv-maml", config, timing_json(r.train, r.eval_seconds), result, r.train.compile);
}

int run_conv(ConvFlags& f) {
  if (!f.synthetic)
    throw Error("conv-maml runs on synthetic episodes only: pass --synthetic (Omniglot: metagrad bench omniglot)");
  f.common.apply(f.cfg.run);
  const FewShotConfig& m = f.cfg.maml;
  std::cout << fmt::format("conv-MAML (synthetic): algo={} {}-way {}-shot, {} query/class, inner_steps={} inner_lr={} "
                           "meta_batch={} iters={} -O{}\n",
                           m.algo, m.ways, m.shots, m.query, m.inner_steps, m.inner_lr, m.meta_batch, f.cfg.run.iters,
                           f.cfg.run.opt_level);
  ConvBenchResult r = run_conv_bench(f.cfg);
  const CompileStats& c = r.train.compile;
  std::cout << fmt::format("graph: {} nodes -> {} after passes ({:.3f} s), {} kernels\n", c.nodes_raw, c.nodes_optimized,
                           c.pass_seconds, c.kernels);
  std::cout << fmt::format("memory: arena {:.1f} MiB (naive {:.1f} MiB), workspace {:.1f} MiB, working set {:.1f} MiB\n",
                           c.arena_bytes / 1048576.0, c.naive_bytes / 1048576.0, c.workspace_bytes / 1048576.0,
                           r.train.working_bytes / 1048576.0);
  std::cout << fmt::format("speed: {:.1f} ms per meta-iteration, {:.1f} ms of it in run()\n", r.train.ms_per_iter,
                           r.train.ms_per_run);
  std::cout << fmt::format("evaluation on {} fresh tasks: accuracy {:.3f} ± {:.3f} before adaptation, {:.3f} ± {:.3f} after\n",
                           f.cfg.eval_tasks, r.pre_accuracy.mean, r.pre_accuracy.ci95, r.post_accuracy.mean,
                           r.post_accuracy.ci95);
  write_summary(f.common, to_json(f, r));
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
  add_fewshot_bench_flags(cli, b, f.cfg.maml, {"maml", "fomaml"}, f.common, f.cfg.run);
  b->add_flag("--synthetic", f.synthetic, "random 28x28 episodes (required: the only data source of this workload)");
  b->add_option("--iters", f.cfg.run.iters, "meta-iterations")->check(kNonNegative)->capture_default_str();
  b->add_option("--eval-tasks", f.cfg.eval_tasks, "fresh tasks to evaluate on")->check(kNonNegative)->capture_default_str();
  b->add_option("--eval-steps", f.cfg.eval_steps, "adaptation steps at evaluation (default: --inner-steps)")->check(kNonNegative);
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
