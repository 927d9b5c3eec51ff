// The sinusoid benchmark: train MAML / first-order MAML, then evaluate adaptation on fresh tasks.
#pragma once
#include <ostream>
#include <vector>

#include "meta/learn/maml.h"
#include "metagrad/executable.h"

namespace metagrad {

struct SinusoidBenchConfig {
  MamlConfig maml;
  int64_t iters = 70000;
  int64_t eval_tasks = 600;
  int64_t eval_shots = 10;
  int64_t eval_steps = 1;
  int opt_level = 1;
  CompileOptions compile;  // check_numerics: --check-numerics
};

struct MeanCI {
  double mean = 0, ci95 = 0;  // mean and half-width of its 95% interval (1.96 standard errors)
};
MeanCI mean_ci(const std::vector<double>& values);

struct SinusoidBenchResult {
  std::vector<MeanCI> mse_by_step;  // query MSE after 0..eval_steps steps
  MeanCI pre, post;                 // first and last of mse_by_step
  double ms_per_meta_iter = 0, train_seconds = 0, eval_seconds = 0;
  double final_loss = 0;            // mean training query loss over the last 1% of iterations
  size_t peak_bytes = 0, naive_bytes = 0, kernels = 0, nodes_raw = 0, nodes_optimized = 0;
};

// Trains and evaluates; progress goes to `progress` (null: silent).
SinusoidBenchResult run_sinusoid_bench(const SinusoidBenchConfig& cfg, std::ostream* progress);

}  // namespace metagrad
