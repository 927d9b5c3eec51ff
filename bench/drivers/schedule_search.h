// `bench schedule-search`: a hyperparameter search over optimizers, learning rates, schedules and
// hypergradient settings for LeNet-5 on Fashion-MNIST, by successive halving with synchronous
// rungs, each rung's configurations trained across the job's ranks (meta/dist/batch_score.h).
#pragma once
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "meta/data/idx.h"
#include "metagrad/collective.h"
#include "metagrad/driver.h"
#include "metagrad/executable.h"

namespace metagrad {

// ---- successive halving ----

struct Rung {
  int64_t epochs = 0;   // training budget of each configuration of the rung
  int64_t configs = 0;  // configurations trained on it
};

// Rung k trains max(1, configs / eta^k) configurations (each rung keeps the best 1/eta of the
// last, rounded down, at least one) for min_epochs * eta^k epochs, the last rung max_epochs
// exactly: budgets min, min*eta, ... below max, then max. Throws Error naming the flag at fault.
std::vector<Rung> rung_plan(int64_t configs, int64_t eta, int64_t min_epochs, int64_t max_epochs);

// The `keep` best of `ids` (lower score is better; NaN and infinities after every finite score),
// best first; ties keep the order of `ids`.
std::vector<size_t> promote(const std::vector<size_t>& ids, const std::vector<double>& scores, int64_t keep);

struct RungResult {
  int64_t epochs = 0;
  std::vector<size_t> ids;     // the configurations trained on it, in the order they were scored
  std::vector<double> scores;  // theirs
};

// Scores configurations `ids` after training each for `epochs`: one score each, in order.
using RungScoreFn = std::function<std::vector<double>(const std::vector<size_t>& ids, int64_t epochs)>;

// Rung 0 scores configurations 0..plan[0].configs-1; every later rung the best of the one before
// (promote). A rung starts only when the whole previous rung is scored, so the outcome depends on
// the scores alone, never on which finished first. `after_rung` (may be empty) sees each result.
std::vector<RungResult> successive_halving(const std::vector<Rung>& plan, const RungScoreFn& score,
                                           const std::function<void(const RungResult&)>& after_rung = {});

// ---- the search over training configurations ----

// The learning rate each optimizer trains LeNet-5 and the MLP well with at batch 64 (a short
// sweep, docs/ARCHITECTURE.md "Supervised training"); HD variants start from their base's.
double tuned_lr(const std::string& optimizer);

// One configuration. Fields of dimensions that do not apply (a schedule for an HD optimizer,
// whose rate is its own; HD settings for the others) are empty.
struct Trial {
  std::string optimizer;
  double lr_scale = 1;   // times tuned_lr(optimizer)
  std::string schedule;  // a name of schedule_shapes()
  std::string hd;        // a name of hd_settings()
};
// "adam lr=1e-3 (x1) schedule=cosine", "adam_hd lr=1e-3 (x1) hd=multiplicative".
std::string trial_str(const Trial& t);

// The schedules a trial may follow, each with its horizon set by the trial's training steps.
std::vector<std::string> schedule_shapes();
// The hypergradient settings an HD trial may use.
std::vector<std::string> hd_settings();

struct ScheduleSearchConfig {
  std::string data = kFashionMnistDir;
  // The search dimensions' values.
  std::vector<std::string> optimizers = {"sgd", "momentum", "adam", "sgd_hd", "adam_hd"};
  std::vector<double> lr_scales = {0.3, 1, 3};
  std::vector<std::string> schedules = {"constant", "step", "cosine"};
  std::vector<std::string> hd = {"additive", "multiplicative"};
  int64_t configs = 9;  // sampled without repetition from every combination
  int64_t eta = 3, min_epochs = 1, max_epochs = 3;
  int64_t batch = 64;
  int64_t max_train = 0;  // the first N training images (0: all), of which
  int64_t val = 5000;     // the last `val` are the validation split, never trained on
  int64_t max_test = 0;   // the first N test images (0: all); used only for the final report
  uint64_t seed = 1;      // the sample of configurations, every initialisation and data order
  CompileOptions compile;
  Collective* group = nullptr;  // the job's ranks (null: one process)
};

struct TrialOutcome {
  size_t trial = 0;
  int64_t rung = 0;        // the last rung it was trained on (0-based)
  double val_loss = 0, val_accuracy = 0;  // there
};

struct FinalReport {
  std::string role;        // best | best_constant | best_hypergradient
  TrialOutcome outcome;
  double test_loss = 0, test_accuracy = 0;  // retrained for max_epochs on the training split
};

struct ScheduleSearchResult {
  std::vector<Trial> trials;         // the sample, by id
  std::vector<RungResult> rungs;     // scores: validation loss
  std::vector<std::vector<double>> rung_accuracy;  // validation accuracy, as rungs[k].ids
  std::vector<double> rung_seconds;
  std::vector<FinalReport> report;   // the roles present in the sample
  // Configurations retrained for the test set: each distinct one once, however many roles it holds
  // (the best configuration is often also the best hypergradient one).
  int64_t final_trainings = 0;
  // The training step of the best configuration's final run (what `result.compile` reports);
  // filled on the rank that trains it, rank 0 (it takes the first of the final runs).
  CompileStats best_step;
  int64_t train_images = 0, val_images = 0, test_images = 0;
  double search_seconds = 0, final_seconds = 0;
};

// Progress lines go to `progress` (may be null). Throws Error on a bad configuration or data.
ScheduleSearchResult run_schedule_search(const ScheduleSearchConfig& cfg, std::ostream* progress);

// The last `n` images of a set, and the set without them (a validation split of a training set).
std::pair<ImageSet, ImageSet> split_tail(const ImageSet& s, int64_t n);

}  // namespace metagrad
