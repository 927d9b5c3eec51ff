// The sinusoid benchmark: train MAML / first-order MAML, then evaluate adaptation on fresh tasks.
#pragma once
#include <ostream>
#include <vector>

#include "meta/learn/maml.h"
#include "metagrad/driver.h"

namespace metagrad {

struct SinusoidBenchConfig {
  MamlConfig maml;
  DriverConfig run;  // run.iters: meta-iterations; its combiner reaches the meta-update
  int64_t eval_tasks = 600;
  int64_t eval_shots = 10;
  int64_t eval_steps = 1;
  SinusoidBenchConfig() { run.iters = 70000; }
};

struct SinusoidBenchResult {
  std::vector<MeanCi> mse_by_step;  // query MSE after 0..eval_steps steps
  MeanCi pre, post;                 // first and last of mse_by_step
  TrainResult train;                // timing, compile statistics; final_metrics[0]: the last 10%'s query loss
  double eval_seconds = 0;
};

// Trains and evaluates through the driver; progress goes to cfg.run.progress.
SinusoidBenchResult run_sinusoid_bench(const SinusoidBenchConfig& cfg);

}  // namespace metagrad
