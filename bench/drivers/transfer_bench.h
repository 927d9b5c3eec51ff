// The transfer benchmark: pre-train LeNet-5 on some Fashion-MNIST classes, transfer to the other
// classes with a few labelled images each, and compare transfer strategies over several seeds.
#pragma once
#include <ostream>
#include <string>
#include <vector>

#include "meta/data/idx.h"
#include "meta/transfer/transfer_search.h"
#include "metagrad/collective.h"
#include "metagrad/driver.h"
#include "metagrad/executable.h"

namespace metagrad {

// scratch finetune freeze gradual discriminative l2sp distill ga sa
const std::vector<std::string>& transfer_strategies();

struct TransferBenchConfig {
  std::string data = kFashionMnistDir;
  int32_t source_lo = 0, source_hi = 4, target_lo = 5, target_hi = 9;  // class ranges, inclusive
  std::vector<std::string> strategies = transfer_strategies();
  int64_t target_samples = 50;  // labelled target images per class
  int64_t seeds = 5;
  uint64_t first_seed = 1;
  int64_t source_epochs = 2, source_batch = 64;
  int64_t target_epochs = 40, target_batch = 25;
  double lr = 1e-3;  // Adam, pre-training and every fine-tune
  double l2sp_alpha = 0.01, l2sp_beta = 0.0;
  double distill_alpha = 0.7, temperature = 4;
  int64_t unlabelled_batch = 50;  // distill: unlabelled target images per step (0: labelled only)
  // Search: each candidate fine-tunes `search_epochs` on 80% of the labelled images and is scored
  // by its loss on the other 20%; the winner is retrained like the fixed strategies.
  int64_t search_epochs = 20, search_budget = 32;
  // sa: proposals scored together per annealing step (the budget's steps are search_budget / this).
  int64_t search_proposals = 1;
  int64_t max_source = 0, max_test = 0;  // use only the first N images (0: all); for quick runs
  DriverConfig driver;  // every training's distributed plug points (SupervisedConfig::driver)
  // The job's ranks (null: one process). The searches' candidates are spread over them, each
  // fine-tuned on one rank alone; the other trainings split their batches by `driver`.
  Collective* group = nullptr;
  CompileOptions compile;  // of every training step (pre-training, fine-tunes, search candidates)
};

struct StrategyResult {
  std::string strategy;
  std::vector<double> accuracy;        // per seed, target test accuracy after the last epoch
  double mean = 0, ci95 = 0;           // over seeds; ci95 is the half-width from Student's t
  double seconds = 0;                  // all seeds, including any search
  std::vector<std::string> chosen;     // ga/sa: the chosen assignment per seed
  std::vector<double> search_score;    // ga/sa: its validation loss per seed
  int64_t evaluations = 0;             // ga/sa: candidates scored, all seeds
};

struct TransferBenchResult {
  std::vector<double> source_accuracy;  // per seed, on the source classes' test images
  double pretrain_seconds = 0;
  int64_t labelled = 0, unlabelled = 0, target_test = 0;
  std::vector<StrategyResult> strategies;
  CompileStats pretrain_step;  // the pre-training step (what `result.compile` reports)
};

// Progress bars and per-seed lines go to `progress` (may be null). Throws on bad configuration or data.
TransferBenchResult run_transfer_bench(const TransferBenchConfig& cfg, std::ostream* progress);

std::string transfer_table_markdown(const TransferBenchConfig& cfg, const TransferBenchResult& r);

}  // namespace metagrad
