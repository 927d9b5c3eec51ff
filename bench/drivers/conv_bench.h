// The convolutional MAML benchmark: second- (or first-) order MAML with the few-shot conv
// network on synthetic N-way K-shot episodes, timed per meta-iteration with its memory.
#pragma once
#include <functional>
#include <ostream>
#include <random>
#include <vector>

#include "meta/learn/fewshot.h"
#include "metagrad/driver.h"

namespace metagrad {

// A meta-batch of episodes laid out as the few-shot graphs' inputs "xs", "ys", "xq", "yq".
struct EpisodeBatch {
  std::vector<float> xs, xq;
  std::vector<int32_t> ys, yq;
};
// Fills a batch with the episodes `tasks` of batch `index` (all of it in one process; a rank's share
// in a distributed run), with `query` query examples per class. `index` counts the batches drawn over
// the whole training (continued across checkpoints), so a sampler that derives its draw from it makes
// resumed training repeat an uninterrupted run exactly.
using EpisodeSampler = std::function<void(EpisodeBatch&, TaskRange tasks, int64_t query, int64_t index)>;

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
  DriverConfig run;          // run.iters: meta-iterations; checkpoints, combiner, shard
  int64_t eval_tasks = 100;
  int64_t eval_steps = -1;  // default: maml.inner_steps
  int64_t eval_query = -1;  // query examples per class at evaluation; default: maml.query
  ConvBenchConfig() { run.iters = 50; }
};

struct ConvBenchResult {
  MeanCi pre_accuracy, post_accuracy, pre_loss, post_loss;  // on fresh tasks
  TrainResult train;        // timing and compile statistics; final_metrics: query loss, accuracy over the last 10%
  double eval_seconds = 0;
  int64_t eval_steps = 0;   // inner steps taken at evaluation
};

ConvBenchResult run_conv_bench(const ConvBenchConfig& cfg);

// The few-shot benchmark shared by conv-maml, omniglot and image folders: trains cfg.maml.algo for
// cfg.run.iters on episodes from `train` (its index is the driver's batch index, continued across
// checkpoints), then evaluates cfg.eval_tasks episodes from `eval`. The learned state is left in
// `store` (which may hold a checkpoint to continue from).
ConvBenchResult run_fewshot_episodes(const ConvBenchConfig& cfg, ParamStore& store, const EpisodeSampler& train,
                                     const EpisodeSampler& eval);

}  // namespace metagrad
