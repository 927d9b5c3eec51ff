// The convolutional MAML benchmark: second- (or first-) order MAML with the few-shot conv
// network on synthetic N-way K-shot episodes, timed per meta-iteration with its memory.
#pragma once
#include <functional>
#include <ostream>
#include <random>
#include <vector>

#include "bench/drivers/sinusoid_bench.h"
#include "meta/learn/fewshot.h"

namespace metagrad {

class ParamStore;

// A meta-batch of episodes laid out as the few-shot graphs' inputs "xs", "ys", "xq", "yq".
struct EpisodeBatch {
  std::vector<float> xs, xq;
  std::vector<int32_t> ys, yq;
};
// Fills a batch with `tasks` episodes of `query` query examples per class; `index` counts the
// batches drawn over the whole training (continued across checkpoints), so a sampler that derives
// its draw from it makes resumed training repeat an uninterrupted run exactly.
using EpisodeSampler = std::function<void(EpisodeBatch&, int64_t tasks, int64_t query, int64_t index)>;

// Synthetic episodes: each class of a task is a random sparse 0/1 image, and each example of it
// that image plus Gaussian noise, so that adaptation has something to learn.
class SyntheticEpisodes {
 public:
  SyntheticEpisodes(const FewShotConfig& cfg, uint64_t seed) : cfg_(cfg), rng_(seed) {}
  using Batch = EpisodeBatch;
  void sample(Batch& b, int64_t tasks, int64_t query = -1);  // query -1: the config's

 private:
  FewShotConfig cfg_;
  std::mt19937_64 rng_;
};

struct ConvBenchConfig {
  FewShotConfig maml;
  int64_t iters = 50;
  int64_t eval_tasks = 100;
  int64_t eval_steps = -1;  // default: maml.inner_steps
  int64_t eval_query = -1;  // query examples per class at evaluation; default: maml.query
  int opt_level = 1;
  CompileOptions compile;  // check_numerics: --check-numerics
  std::function<void(const ParamStore&)> on_trained;  // called between training and evaluation (checkpoints)
};

struct ConvBenchResult {
  MeanCI pre_accuracy, post_accuracy, pre_loss, post_loss;  // on fresh tasks
  double ms_per_meta_iter = 0, train_seconds = 0, eval_seconds = 0, pass_seconds = 0;
  double final_loss = 0, final_accuracy = 0;  // training query loss/accuracy over the last 10% of iterations
  int64_t eval_steps = 0;                      // inner steps taken at evaluation
  size_t peak_bytes = 0, naive_bytes = 0, workspace_bytes = 0, kernels = 0, nodes_raw = 0, nodes_optimized = 0;
  size_t working_bytes = 0;  // resident set after training minus before the graph was built
};

ConvBenchResult run_conv_bench(const ConvBenchConfig& cfg, std::ostream* progress);

// The driver shared by every few-shot benchmark: compiles the meta-step once, trains for cfg.iters
// on episodes from `train`, then evaluates cfg.eval_tasks episodes from `eval`. The learned state
// is left in `store` (which may hold a checkpoint to continue from).
ConvBenchResult run_fewshot_episodes(const ConvBenchConfig& cfg, ParamStore& store, const EpisodeSampler& train,
                                     const EpisodeSampler& eval, std::ostream* progress);

// Resident set size of this process in bytes (Linux), 0 if unknown.
size_t resident_bytes();

}  // namespace metagrad
