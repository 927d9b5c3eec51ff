// Supervised training of an image classifier with any optimizer, schedule and parameter
// groups, the update being part of the compiled step graph; used by the Fashion-MNIST benchmark,
// the optimizer table and transfer learning.
#pragma once
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "meta/data/idx.h"
#include "meta/models/classifier.h"
#include "meta/transfer/transfer.h"
#include "metagrad/driver.h"
#include "metagrad/executable.h"
#include "metagrad/optimizers.h"
#include "metagrad/schedules.h"

namespace metagrad {

// Fine-tuning controls (meta/transfer.h); the defaults train every parameter as usual.
struct TransferOptions {
  std::vector<ParamTransfer> params;  // one per classifier parameter, or empty
  double l2sp_alpha = 0, l2sp_beta = 0;  // L2-SP toward the weights the parameters start from
  // Knowledge distillation from a teacher of the same architecture whose weights are in the store
  // under "teacher." (the caller puts them there): (1 - alpha) CE + alpha T^2 KL on soft targets.
  double distill_alpha = 0, temperature = 4;
  // Soft targets also on this many images per step drawn from `unlabelled` (no labels used).
  const ImageSet* unlabelled = nullptr;
  int64_t unlabelled_batch = 0;
  bool distilling() const { return distill_alpha > 0; }
};

struct SupervisedConfig {
  ClassifierConfig model;
  OptimizerConfig opt;
  ScheduleSpec schedule;
  LrPlan lr_plan;
  int64_t epochs = 5, batch = 64, eval_batch = 1000;
  uint64_t seed = 1;       // data order (initialisation: model.seed)
  int opt_level = 1;
  std::string label;       // progress-bar label
  int64_t curve_every = 50;  // record the mean training loss of every this many steps
  int64_t eval_every = 1;    // evaluate every this many epochs (0: only after the last); NaN in the others
  TransferOptions transfer;
  // Set into opt.combine_gradients when the step is built (DriverConfig::combine_gradients); empty:
  // opt's own combiner, if any.
  GradientCombiner combine;
  // The driver's distributed plug points (the CLI's CommonFlags::distribute); the loop sets its
  // iterations, label, progress, step counter and compile options (`compile`) itself; its shard
  // splits `batch`.
  DriverConfig driver;
  CompileOptions compile;  // of the training step (DriverConfig::compile: --check-numerics)
};

struct EpochRecord {
  double train_loss = 0, test_loss = 0, test_accuracy = 0, seconds = 0;
  double lr = 0;  // learning rate at the end of the epoch
};

struct SupervisedResult {
  std::vector<EpochRecord> epochs;
  double best_accuracy = 0;
  int64_t epochs_to_85 = -1;  // first epoch (1-based) reaching 85% test accuracy, -1 if none
  int64_t parameters = 0;
  double train_seconds = 0;   // time of the training epochs (shuffling, batch copies, steps; no evaluation)
  int64_t iters = 0;  // training steps
  double ms_per_iter = 0, ms_per_run = 0, cpu_ms_per_iter = 0;  // the driver's timing: a whole step (batch copy included), and run() alone
  std::vector<double> loss_curve;  // mean training loss per window of curve_window steps
  int64_t curve_window = 0;        // curve_every, shortened so that each epoch gives at least 5 points
  int64_t hd_guard_cuts = 0;       // HD optimizers with hd_guard: steps on which the guard cut the rate
  CompileStats compile;            // the training step's executable (kernels, peak, what the budget recomputed)
};

// Mean cross-entropy and accuracy of the classifier whose weights are in `store`.
struct EvalResult {
  double loss = 0, accuracy = 0;
};

// Trains from the initialisation in a fresh store (or `store` when given: parameters already in it,
// e.g. pre-trained weights, are the start, and it keeps the weights afterwards). A diverged loss stops training with a RuntimeError naming the epoch and step.
SupervisedResult train_classifier(const SupervisedConfig& cfg, const ImageSet& train, const ImageSet& test,
                                  std::ostream* progress, class ParamStore* store = nullptr);

// In a data-parallel run (`driver`: its shard and gather, SupervisedConfig::driver) the chunks of
// `eval_batch` images are split over the processes and gathered, as evaluate_outputs does.
EvalResult evaluate_classifier(const ClassifierConfig& model, class ParamStore& store, const ImageSet& test,
                               int64_t eval_batch = 1000, const DriverConfig* driver = nullptr);

// ---- pieces for other supervised trainers (transfer, multi-task) ----

struct LoopConfig {
  int64_t epochs = 1, batch = 64;
  uint64_t seed = 1;  // data order
  std::string label;
  int64_t curve_every = 50;
  int opt_level = 1;
  GradientCombiner combine;  // handed to the step builder (DriverConfig::combine_gradients)
  DriverConfig driver;       // as SupervisedConfig::driver; `combine`, if set, replaces its combiner
  CompileOptions compile;    // of the training step (DriverConfig::compile)
};
// Called after each epoch's steps, before the record is kept: evaluate, fill test_loss/test_accuracy.
using EpochHook = std::function<void(int64_t epoch, EpochRecord& record)>;
// Called before each step (0-based over the whole run) once "x" and "y" are set: feed extra inputs.
using StepHook = std::function<void(class Executable& exe, int64_t step)>;

// Shuffled minibatch epochs through the driver (metagrad/driver.h): compiles build_step(combine) once
// against `store`, a step whose inputs include "x" [share, 1, H, W] and "y" [share] i32 (share: this
// process's part of the batch, cfg.driver.shard.of(batch); all of it in one process) and whose
// outputs include "loss" and "lr". Fills everything but `parameters`; a non-finite loss throws
// RuntimeError naming the epoch and step.
SupervisedResult run_training(const std::function<class Graph(const GradientCombiner&)>& build_step, class ParamStore& store,
                              const ImageSet& train, const LoopConfig& cfg, std::ostream* progress,
                              const EpochHook& after_epoch, const StepHook& before_step = {});

// Means over `set` of the scalar outputs `names` of make_graph(n), a graph with inputs "x" [n, 1, H, W]
// and "y" [n] i32, run on chunks of `batch` images (and one shorter chunk for the remainder).
// With `driver` (a data-parallel run's shard and gather) each process runs its share of whole
// chunks (Shard::balanced) and the chunks' sums are gathered and added in chunk order, so every
// process returns the one-process means, bit for bit; without, or in one process, all chunks here.
std::vector<double> evaluate_outputs(const std::function<class Graph(int64_t)>& make_graph, class ParamStore& store,
                                     const ImageSet& set, int64_t batch, const std::vector<std::string>& names,
                                     const DriverConfig* driver = nullptr);

// Adds the classifier's parameters "<prefix>.*" to the store (initialised; those present are kept).
void init_classifier(class ParamStore& store, const ClassifierConfig& model, const std::string& prefix = "net",
                     bool trainable = true);

// Elements of the store's tensors whose names start with `prefix`.
int64_t count_parameters(const class ParamStore& store, const std::string& prefix);

}  // namespace metagrad
