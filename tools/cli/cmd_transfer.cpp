// `metagrad bench transfer`: transfer strategies from five Fashion-MNIST classes to the other five.
#include <fmt/format.h>

#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>

#include "bench/drivers/transfer_bench.h"
#include "meta/dist/comm.h"
#include "metagrad/error.h"
#include "tools/cli/cli.h"

namespace metagrad {
namespace {

struct TransferFlags {
  TransferBenchConfig cfg;
  std::string source = "fashion-mnist-0-4", target = "fashion-mnist-5-9", table_path;
  std::vector<std::string> strategies = {"all"};
  CommonFlags common;
};

// "fashion-mnist-A-B" -> classes A..B.
std::pair<int32_t, int32_t> parse_classes(const std::string& spec, const char* flag) {
  static const std::regex re("fashion-mnist-([0-9])-([0-9])");
  std::smatch m;
  if (!std::regex_match(spec, m, re))
    throw Error(fmt::format("{}: expected fashion-mnist-A-B with classes A <= B in 0-9, got '{}'", flag, spec));
  return {std::stoi(m[1]), std::stoi(m[2])};
}

int run_transfer(TransferFlags& f) {
  std::ostream* progress = f.common.progress();
  TransferBenchConfig& c = f.cfg;
  f.common.distribute(c.driver);
  c.group = f.common.comm;
  c.compile = f.common.compile_options();
  std::tie(c.source_lo, c.source_hi) = parse_classes(f.source, "--source");
  std::tie(c.target_lo, c.target_hi) = parse_classes(f.target, "--target");
  if (std::max(c.source_lo, c.target_lo) <= std::min(c.source_hi, c.target_hi))
    throw Error(fmt::format("--source {} and --target {} share classes", f.source, f.target));
  if (f.strategies.size() == 1 && f.strategies[0] == "all") c.strategies = transfer_strategies();
  else c.strategies = f.strategies;
  std::cout << fmt::format("transfer: {} -> {}, {} labelled images per class, {} seeds from {}, strategies {}\n", f.source,
                           f.target, c.target_samples, c.seeds, c.first_seed, fmt::join(c.strategies, ","));
  const TransferBenchResult r = run_transfer_bench(c, progress);
  const std::string md = transfer_table_markdown(c, r);
  std::cout << md;
  if (!f.table_path.empty() && f.common.writes_files()) write_output(f.table_path, md);
  nlohmann::json rows = nlohmann::json::array();
  double seconds = r.pretrain_seconds;
  for (const StrategyResult& s : r.strategies) {
    rows.push_back({{"strategy", s.strategy}, {"accuracy", s.accuracy}, {"mean", s.mean}, {"ci95", s.ci95},
                    {"chosen", s.chosen}, {"search_score", s.search_score}, {"evaluations", s.evaluations}});
    seconds += s.seconds;
  }
  nlohmann::json timing{{"pretrain_seconds", r.pretrain_seconds}, {"seconds", seconds}, {"strategy_seconds", nlohmann::json::object()}};
  for (const StrategyResult& s : r.strategies) timing["strategy_seconds"][s.strategy] = s.seconds;
  nlohmann::json config{{"source", f.source}, {"target", f.target}, {"strategies", c.strategies},
                        {"target_samples", c.target_samples}, {"seeds", c.seeds}, {"first_seed", c.first_seed},
                        {"source_epochs", c.source_epochs}, {"target_epochs", c.target_epochs},
                        {"target_batch", c.target_batch}, {"lr", c.lr},
                        {"search_epochs", c.search_epochs}, {"search_budget", c.search_budget},
                        {"search_proposals", c.search_proposals}};
  nlohmann::json result{{"labelled", r.labelled}, {"unlabelled", r.unlabelled}, {"target_test", r.target_test},
                        {"source_accuracy", r.source_accuracy}, {"strategies", rows}};
  write_summary(f.common, bench_summary("bench transfer", config, timing, result, r.pretrain_step));
  return 0;
}

}  // namespace

void register_transfer_commands(Cli& cli) {
  auto fp = std::make_shared<TransferFlags>();
  TransferFlags& f = *fp;
  TransferBenchConfig& c = f.cfg;
  CLI::App* b = cli.bench->add_subcommand(
      "transfer", "pre-train LeNet-5 on some Fashion-MNIST classes, transfer to the others from few labelled images");
  b->add_option("--source", f.source, "source classes, fashion-mnist-A-B")->capture_default_str();
  b->add_option("--target", f.target, "target classes, fashion-mnist-A-B")->capture_default_str();
  b->add_option("--strategy", f.strategies, "comma-separated: scratch finetune freeze gradual discriminative l2sp distill ga sa, or all")
      ->delimiter(',')
      ->check(CLI::IsMember([] {
        std::vector<std::string> v = transfer_strategies();
        v.push_back("all");
        return v;
      }()))
      ->capture_default_str();
  b->add_option("--target-samples", c.target_samples, "labelled target images per class")->check(at_least(5, false))->capture_default_str();
  b->add_option("--seeds", c.seeds, "independent runs (pre-training, sample, initialisation)")->check(kPositive)->capture_default_str();
  b->add_option("--source-epochs", c.source_epochs, "pre-training epochs")->check(kPositive)->capture_default_str();
  b->add_option("--epochs", c.target_epochs, "fine-tuning epochs over the labelled target images")->check(kPositive)->capture_default_str();
  b->add_option("--batch", c.target_batch, "fine-tuning minibatch")->check(kPositive)->capture_default_str();
  b->add_option("--lr", c.lr, "Adam learning rate")->check(kPositive)->capture_default_str();
  b->add_option("--l2sp-alpha", c.l2sp_alpha, "L2-SP: pull toward the pre-trained weights")->check(kNonNegative)->capture_default_str();
  b->add_option("--l2sp-beta", c.l2sp_beta, "L2-SP: plain L2 on the new head")->check(kNonNegative)->capture_default_str();
  b->add_option("--distill-alpha", c.distill_alpha, "distill: weight of the soft targets")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  b->add_option("--temperature", c.temperature, "distill: softmax temperature")->check(kPositive)->capture_default_str();
  b->add_option("--unlabelled-batch", c.unlabelled_batch, "distill: unlabelled target images per step (0: labelled only)")
      ->check(kNonNegative)
      ->capture_default_str();
  b->add_option("--search-epochs", c.search_epochs, "ga/sa: fine-tuning epochs per candidate")->check(kPositive)->capture_default_str();
  b->add_option("--search-budget", c.search_budget, "ga/sa: candidates scored per seed")->check(at_least(2, false))->capture_default_str();
  b->add_option("--search-proposals", c.search_proposals, "sa: neighbours scored together per annealing step (spread over the ranks)")
      ->check(kPositive)
      ->capture_default_str();
  b->add_option("--max-source", c.max_source, "pre-train on only the first N source images (0: all)")->check(kNonNegative);
  b->add_option("--max-test", c.max_test, "test on only the first N images (0: all)")->check(kNonNegative);
  b->add_option("--data", c.data, "folder with the Fashion-MNIST IDX files")->capture_default_str();
  b->add_option("--table", f.table_path, "also write the Markdown table to this file");
  add_common_flags(cli, b, f.common, &c.first_seed, "first seed");
  cli.data_parallel.push_back(b);
  cli.on_parsed(b, [fp] { return run_transfer(*fp); });
}

}  // namespace metagrad
