// A learning-rate schedule learned by differentiating a validation loss through unrolled
// training (second-order autodiff through every step), compared with the best constant rate
// at the same unroll length.
#pragma once
#include <ostream>
#include <vector>

#include "meta/data/idx.h"
#include "meta/models/classifier.h"
#include "metagrad/driver.h"

namespace metagrad {

struct LearnedScheduleConfig {
  ClassifierConfig model{"mlp", 28, 10, 32};
  int64_t unroll = 20;      // SGD steps differentiated through
  int64_t batch = 32;       // training minibatch of each unrolled step
  int64_t val_batch = 500;  // validation images scoring one unroll
  DriverConfig run;         // run.iters: meta-iterations; progress bars go to run.progress
  double meta_lr = 0.03;    // Adam on the log learning rates
  int64_t eval_unrolls = 100;  // fresh unrolls scoring each schedule
  std::vector<double> grid = {0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2};
  uint64_t seed = 1;
  bool inner_loop = false;  // the unrolled SGD steps as one loop node (scan)
  LearnedScheduleConfig() {
    run.iters = 500;
    run.step_counter = "meta.t";
    run.label = "meta-train schedule";
  }
};

struct ScheduleScore {
  double val_loss = 0, val_ci95 = 0, test_loss = 0;  // mean final loss over the evaluation unrolls
};

struct LearnedScheduleResult {
  std::vector<double> grid_val_loss;   // per constant rate of the grid
  double best_constant_lr = 0;
  ScheduleScore best_constant, learned;
  std::vector<double> schedule;        // the learned rate of each unrolled step
  std::vector<double> meta_loss_curve; // meta-objective per meta-iteration
  double seconds = 0;
  TrainResult train;                   // the meta-training's timing
};

// `train` provides the unrolled minibatches, `val` the meta-objective (and the grid search),
// `test` an independent check of both schedules.
LearnedScheduleResult learn_schedule(const LearnedScheduleConfig& cfg, const ImageSet& train, const ImageSet& val,
                                     const ImageSet& test);

}  // namespace metagrad
