// The convolutional MAML benchmark: second- (or first-) order MAML with the few-shot conv
// network on synthetic N-way K-shot episodes, timed per meta-iteration with its memory.
#pragma once
#include <ostream>
#include <random>
#include <vector>

#include "meta/conv_maml.h"
#include "meta/sinusoid_bench.h"

namespace metagrad {

// Synthetic episodes: each class of a task is a random sparse 0/1 image, and each example of it
// that image plus Gaussian noise, so that adaptation has something to learn.
class SyntheticEpisodes {
 public:
  SyntheticEpisodes(const ConvMamlConfig& cfg, uint64_t seed) : cfg_(cfg), rng_(seed) {}
  struct Batch {
    std::vector<float> xs, xq;
    std::vector<int32_t> ys, yq;
  };
  void sample(Batch& b, int64_t tasks);

 private:
  ConvMamlConfig cfg_;
  std::mt19937_64 rng_;
};

struct ConvBenchConfig {
  ConvMamlConfig maml;
  int64_t iters = 50;
  int64_t eval_tasks = 100;
  int64_t eval_steps = -1;  // default: maml.inner_steps
  int opt_level = 1;
};

struct ConvBenchResult {
  MeanCI pre_accuracy, post_accuracy, pre_loss, post_loss;  // on fresh tasks
  double ms_per_meta_iter = 0, train_seconds = 0, eval_seconds = 0, pass_seconds = 0;
  double final_loss = 0;
  size_t peak_bytes = 0, naive_bytes = 0, workspace_bytes = 0, kernels = 0, nodes_raw = 0, nodes_optimized = 0;
  size_t working_bytes = 0;  // resident set after training minus before the graph was built
};

ConvBenchResult run_conv_bench(const ConvBenchConfig& cfg, std::ostream* progress);

// Resident set size of this process in bytes (Linux), 0 if unknown.
size_t resident_bytes();

}  // namespace metagrad
