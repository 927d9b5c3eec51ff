// `metagrad bench schedule-search`: successive halving over optimizers, rates, schedules and
// hypergradient settings for LeNet-5 on Fashion-MNIST, each rung spread over the job's ranks.
#include <fmt/format.h>

#include <ctime>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "bench/drivers/schedule_search.h"
#include "meta/dist/comm.h"
#include "metagrad/optimizers.h"
#include "tools/cli/cli.h"

namespace metagrad {
namespace {

struct SearchFlags {
  ScheduleSearchConfig cfg;
  CommonFlags common;
};

nlohmann::json outcome_json(const ScheduleSearchResult& r, const FinalReport& f) {
  return {{"trial", f.outcome.trial},         {"config", trial_str(r.trials[f.outcome.trial])},
          {"rung", f.outcome.rung},           {"val_loss", f.outcome.val_loss},
          {"val_accuracy", f.outcome.val_accuracy}, {"test_loss", f.test_loss},
          {"test_accuracy", f.test_accuracy}};
}

int run_search(SearchFlags& f) {
  std::ostream* progress = f.common.progress();
  ScheduleSearchConfig& c = f.cfg;
  c.compile = f.common.compile_options();
  c.group = f.common.comm;
  std::cout << fmt::format("schedule search: {} configurations, eta {}, {}-{} epochs, on {} rank(s)\n", c.configs, c.eta,
                           c.min_epochs, c.max_epochs, f.common.ranks());
  const std::clock_t cpu0 = std::clock();
  const ScheduleSearchResult r = run_schedule_search(c, progress);
  const double cpu_seconds = double(std::clock() - cpu0) / CLOCKS_PER_SEC;  // this rank's work

  nlohmann::json trials = nlohmann::json::array();
  for (const Trial& t : r.trials) trials.push_back(trial_str(t));
  nlohmann::json rungs = nlohmann::json::array();
  for (size_t k = 0; k < r.rungs.size(); ++k) {
    nlohmann::json rows = nlohmann::json::array();
    for (size_t i = 0; i < r.rungs[k].ids.size(); ++i)
      rows.push_back({{"trial", r.rungs[k].ids[i]}, {"val_loss", r.rungs[k].scores[i]}, {"val_accuracy", r.rung_accuracy[k][i]}});
    rungs.push_back({{"epochs", r.rungs[k].epochs}, {"configs", rows}});
  }
  nlohmann::json result{{"train_images", r.train_images}, {"val_images", r.val_images}, {"test_images", r.test_images},
                        {"trials", trials}, {"rungs", rungs}, {"final_trainings", r.final_trainings}};
  std::cout << "| role | configuration | rung | validation loss | test accuracy |\n| --- | --- | --- | --- | --- |\n";
  for (const FinalReport& rep : r.report) {
    result[rep.role] = outcome_json(r, rep);
    std::cout << fmt::format("| {} | {} | {} | {:.4f} | {:.2f}% |\n", rep.role, trial_str(r.trials[rep.outcome.trial]),
                             rep.outcome.rung + 1, rep.outcome.val_loss, 100 * rep.test_accuracy);
  }
  std::cout << fmt::format("search {:.1f} s, final training {:.1f} s\n", r.search_seconds, r.final_seconds);
  nlohmann::json config{{"optimizers", c.optimizers}, {"lr_scales", c.lr_scales}, {"schedules", c.schedules},
                        {"hd", c.hd},                 {"configs", c.configs},     {"eta", c.eta},
                        {"min_epochs", c.min_epochs}, {"max_epochs", c.max_epochs}, {"batch", c.batch},
                        {"max_train", c.max_train},   {"val", c.val},             {"max_test", c.max_test},
                        {"seed", c.seed}};
  nlohmann::json timing{{"seconds", r.search_seconds + r.final_seconds}, {"search_seconds", r.search_seconds},
                        {"final_seconds", r.final_seconds}, {"rung_seconds", r.rung_seconds},
                        {"cpu_seconds", cpu_seconds}};
  write_summary(f.common, bench_summary("bench schedule-search", config, timing, result, r.best_step));
  return 0;
}

}  // namespace

void register_search_commands(Cli& cli) {
  auto fp = std::make_shared<SearchFlags>();
  ScheduleSearchConfig& c = fp->cfg;
  CLI::App* b = cli.bench->add_subcommand(
      "schedule-search",
      "successive halving over optimizers, learning rates, schedules and hypergradient settings (LeNet-5, Fashion-MNIST); "
      "under mpirun each rung's configurations are trained across the ranks");
  // The search dimensions: comma-separated lists, each value checked.
  auto list = [b](const char* flag, auto& values, const char* help, const CLI::Validator& check) {
    b->add_option(flag, values, help)->delimiter(',')->check(check)->capture_default_str();
  };
  list("--optimizers", c.optimizers, "optimizers to search", CLI::IsMember(optimizer_names()));
  list("--lr-scales", c.lr_scales, "multipliers of each optimizer's tuned learning rate", kPositive);
  list("--schedules", c.schedules, "schedules of the non-HD optimizers, horizon = the run's steps", CLI::IsMember(schedule_shapes()));
  list("--hd", c.hd, "hypergradient settings of the HD optimizers", CLI::IsMember(hd_settings()));
  b->add_option("--configs", c.configs, "configurations sampled (without repetition) for the first rung")
      ->check(kPositive)
      ->capture_default_str();
  b->add_option("--eta", c.eta, "each rung keeps the best 1/eta and trains them eta times longer")
      ->check(at_least(2, false))
      ->capture_default_str();
  b->add_option("--min-epochs", c.min_epochs, "epochs of the first rung")->check(kPositive)->capture_default_str();
  b->add_option("--max-epochs", c.max_epochs, "epochs of the last rung and of the final test runs")->check(kPositive)->capture_default_str();
  b->add_option("--batch", c.batch, "minibatch size")->check(kPositive)->capture_default_str();
  b->add_option("--max-train", c.max_train, "use only the first N training images (0: all)")->check(kNonNegative);
  b->add_option("--val", c.val, "the last N of those images are the validation split")->check(kPositive)->capture_default_str();
  b->add_option("--max-test", c.max_test, "test on only the first N test images (0: all)")->check(kNonNegative);
  b->add_option("--data", c.data, "folder with the Fashion-MNIST IDX files")->capture_default_str();
  add_common_flags(cli, b, fp->common, &c.seed, "seed of the sampled configurations, initialisation and data order");
  cli.data_parallel.push_back(b);
  cli.on_parsed(b, [fp] { return run_search(*fp); });
}

}  // namespace metagrad
