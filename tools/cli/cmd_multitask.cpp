// `metagrad bench multitask`: the Fashion-MNIST class and coarse-group tasks learned by separate
// LeNet-5s and by hard, soft, cross-stitch and mixture-of-experts sharing, over several seeds.
#include <fmt/format.h>

#include <cmath>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "meta/models/multitask.h"
#include "metagrad/error.h"
#include "metagrad/stats.h"
#include "tools/cli/cli.h"

namespace metagrad {
namespace {

struct MultitaskFlags {
  MultitaskConfig cfg;
  std::vector<std::string> modes = multitask_modes();
  std::string data = kFashionMnistDir, table_path;
  int64_t seeds = 3, max_train = 0, max_test = 0;
  uint64_t first_seed = 1;
  CommonFlags common;
};

struct ModeRuns {
  std::string mode, error;
  int64_t parameters = 0;
  std::vector<MultitaskResult> runs;  // one per seed
};

// One figure of every seed's run of a mode.
template <class Figure>
std::vector<double> over_runs(const ModeRuns& m, Figure figure) {
  std::vector<double> v;
  for (const MultitaskResult& r : m.runs) v.push_back(figure(r));
  return v;
}

double run_seconds(const MultitaskResult& r) { return r.training.train_seconds; }

nlohmann::json mode_json(const MultitaskFlags& f, const ModeRuns& m) {
  nlohmann::json j{{"mode", m.mode}, {"parameters", m.parameters}};
  if (!m.error.empty()) {
    j["error"] = m.error;
    return j;
  }
  nlohmann::json tasks = nlohmann::json::object(), runs = nlohmann::json::array();
  for (size_t t = 0; t < f.cfg.tasks.size(); ++t) {
    const std::vector<double> acc = over_runs(m, [t](const MultitaskResult& r) { return r.test.accuracy[t]; });
    const std::vector<double> loss = over_runs(m, [t](const MultitaskResult& r) { return r.test.loss[t]; });
    const MeanCi s = mean_ci95(acc);
    tasks[f.cfg.tasks[t].name] = {
        {"accuracy_mean", s.mean}, {"accuracy_ci95", s.ci95}, {"accuracy", acc}, {"loss", loss}};
  }
  for (size_t i = 0; i < m.runs.size(); ++i) {
    const MultitaskResult& r = m.runs[i];
    nlohmann::json epochs = nlohmann::json::array();
    for (size_t e = 0; e < r.epoch_test.size(); ++e)
      epochs.push_back({{"train_loss", r.training.epochs[e].train_loss},
                        {"test_accuracy", r.epoch_test[e].accuracy},
                        {"test_loss", r.epoch_test[e].loss}});
    runs.push_back({{"seed", f.first_seed + i}, {"epochs", epochs}, {"seconds", r.training.train_seconds}});
    if (!r.task_weights.empty()) runs.back()["task_weights"] = r.task_weights;
  }
  j["tasks"] = tasks;
  j["runs"] = runs;
  j["seconds"] = mean_ci95(over_runs(m, run_seconds)).mean;
  return j;
}

std::string table(const MultitaskFlags& f, const std::vector<ModeRuns>& modes, int64_t train_images,
                  int64_t test_images) {
  std::string md = fmt::format(
      "# Multi-task LeNet-5 on Fashion-MNIST ({} epochs, batch {}, Adam lr {}, {} training images, seeds {}..{})\n\n"
      "Test accuracy on {} test images, mean ± 95% CI (Student's t) over {} seeds; seconds: training time per "
      "run.\n\n",
      f.cfg.epochs, f.cfg.batch, f.cfg.opt.lr, train_images, f.first_seed, f.first_seed + uint64_t(f.seeds) - 1,
      test_images, f.seeds);
  md += "| mode | parameters |";
  for (const TaskSpec& t : f.cfg.tasks) md += fmt::format(" {} accuracy |", t.name);
  md += " seconds |\n| --- | --- |";
  for (size_t t = 0; t < f.cfg.tasks.size(); ++t) md += " --- |";
  md += " --- |\n";
  for (const ModeRuns& m : modes) {
    md += fmt::format("| {} | {} |", m.mode, m.parameters);
    for (size_t t = 0; t < f.cfg.tasks.size(); ++t) {
      const MeanCi s = mean_ci95(over_runs(m, [t](const MultitaskResult& r) { return r.test.accuracy[t]; }));
      md += m.error.empty() ? fmt::format(" {:.4f} ± {:.4f} |", s.mean, s.ci95) : " diverged |";
    }
    md += m.error.empty() ? fmt::format(" {:.1f} |\n", mean_ci95(over_runs(m, run_seconds)).mean) : " - |\n";
  }
  return md;
}

int run_multitask(MultitaskFlags& f) {
  std::ostream* progress = f.common.progress();
  f.cfg.compile = f.common.compile_options();
  f.common.distribute(f.cfg.driver);
  const ImageSet train = first_images(load_fashion_mnist(f.data, true), f.max_train);
  const ImageSet test = first_images(load_fashion_mnist(f.data, false), f.max_test);
  std::tie(f.cfg.model.input_mean, f.cfg.model.input_std) = pixel_mean_std(train);
  std::cout << fmt::format(
      "Fashion-MNIST tasks class (10) and group (3): {} training / {} test images; LeNet-5, Adam "
      "lr={} batch={} epochs={} seeds={}\n",
      train.count, test.count, f.cfg.opt.lr, f.cfg.batch, f.cfg.epochs, f.seeds);
  std::vector<ModeRuns> modes;
  const int64_t total = int64_t(f.modes.size()) * f.seeds;
  int64_t done = 0;
  for (const std::string& mode : f.modes) {
    ModeRuns m;
    m.mode = mode;
    MultitaskConfig cfg = f.cfg;
    cfg.mode = mode;
    m.parameters = multitask_parameter_count(cfg);
    for (int64_t i = 0; i < f.seeds && m.error.empty(); ++i) {
      cfg.seed = cfg.model.seed = f.first_seed + uint64_t(i);
      cfg.label = fmt::format("[{}/{}] {} seed {}", ++done, total, mode, cfg.seed);
      try {
        m.runs.push_back(train_multitask(cfg, train, test, progress));
      } catch (const RuntimeError& e) {  // a diverged mode is a row of the table, not the end of it
        m.error = e.what();
        std::cerr << mode << ": " << m.error << "\n";
        continue;
      }
      const MultitaskResult& r = m.runs.back();
      std::string accs;
      for (size_t t = 0; t < cfg.tasks.size(); ++t)
        accs += fmt::format(" {} {:.4f}", cfg.tasks[t].name, r.test.accuracy[t]);
      std::cout << fmt::format("{} seed {}: test accuracy{} ({:.1f} s)\n", mode, cfg.seed, accs,
                               r.training.train_seconds);
    }
    modes.push_back(std::move(m));
  }
  const std::string md = table(f, modes, train.count, test.count);
  std::cout << "\n" << md;
  if (!f.table_path.empty() && f.common.writes_files()) write_output(f.table_path, md);
  nlohmann::json config{{"modes", f.modes},
                        {"train_images", train.count},
                        {"test_images", test.count},
                        {"epochs", f.cfg.epochs},
                        {"batch", f.cfg.batch},
                        {"lr", f.cfg.opt.lr},
                        {"seeds", f.seeds},
                        {"first_seed", f.first_seed},
                        {"tie_strength", f.cfg.tie_strength},
                        {"stitch_self_weight", f.cfg.stitch_self_weight},
                        {"experts", f.cfg.experts},
                        {"top_k", f.cfg.top_k},
                        {"balance_weight", f.cfg.balance_weight}};
  nlohmann::json result{{"modes", nlohmann::json::array()}};
  double seconds = 0;
  CompileStats largest;
  for (const ModeRuns& m : modes) {
    result["modes"].push_back(mode_json(f, m));
    for (const MultitaskResult& r : m.runs) {
      seconds += r.training.train_seconds;
      largest = larger_step(largest, r.training.compile);
    }
  }
  write_summary(f.common, bench_summary("bench multitask", config, {{"train_seconds", seconds}}, result, largest));
  return 0;
}

}  // namespace

void register_multitask_commands(Cli& cli) {
  auto fp = std::make_shared<MultitaskFlags>();
  MultitaskFlags& f = *fp;
  f.cfg.epochs = 5;  // the full table (6 modes x 3 seeds) in about 10 minutes on 2 cores
  CLI::App* c = cli.bench->add_subcommand("multitask",
                                          "Fashion-MNIST class and coarse-group tasks: separate LeNet-5s vs hard, "
                                          "soft, cross-stitch and mixture-of-experts sharing");
  c->add_option("--modes", f.modes, "modes to run, comma-separated (default: all)")
      ->delimiter(',')
      ->check(CLI::IsMember(multitask_modes()));  // the names of multitask_mode_table()
  c->add_option("--epochs", f.cfg.epochs, "passes over the training set")->check(kPositive)->capture_default_str();
  c->add_option("--batch", f.cfg.batch, "minibatch size")->check(kPositive)->capture_default_str();
  c->add_option("--lr", f.cfg.opt.lr, "Adam learning rate")->check(kPositive)->capture_default_str();
  c->add_option("--seeds", f.seeds, "runs per mode (initialisation and data order), seeds --seed, --seed+1, ...")
      ->check(kPositive)
      ->capture_default_str();
  c->add_option("--tie-strength", f.cfg.tie_strength, "soft: strength of the L2 tie between the towers' trunks")
      ->check(kNonNegative)
      ->capture_default_str();
  c->add_option("--stitch-self-weight", f.cfg.stitch_self_weight,
                "cross-stitch: initial weight of a task's own activation")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  c->add_option("--experts", f.cfg.experts, "moe: experts")->check(kPositive)->capture_default_str();
  c->add_option("--top-k", f.cfg.top_k, "moe: experts per image")->check(kPositive)->capture_default_str();
  c->add_option("--balance-weight", f.cfg.balance_weight, "moe: weight of the load-balancing loss")
      ->check(kNonNegative)
      ->capture_default_str();
  c->add_option("--data", f.data, "folder with the Fashion-MNIST IDX files")->capture_default_str();
  c->add_option("--max-train", f.max_train, "use only the first N training images (0: all)")->check(kNonNegative);
  c->add_option("--max-test", f.max_test, "use only the first N test images (0: all)")->check(kNonNegative);
  add_common_flags(cli, c, f.common, &f.first_seed, "first seed");
  cli.data_parallel.push_back(c);
  c->add_option("--table", f.table_path, "write the Markdown table to this file");
  cli.on_parsed(c, [fp] {
    if (fp->cfg.top_k > fp->cfg.experts)
      throw Error(fmt::format("--top-k {} exceeds --experts {}", fp->cfg.top_k, fp->cfg.experts));
    return run_multitask(*fp);
  });
}

}  // namespace metagrad
