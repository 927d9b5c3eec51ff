// The schedule search: rung plans, promotion (ties, diverged scores), synchronous successive
// halving on a made-up objective, and a tiny real search on Fashion-MNIST (its sample, its roles,
// its determinism).
#include "bench/drivers/schedule_search.h"

#include <gtest/gtest.h>

#include <dlfcn.h>

#include <cmath>
#include <limits>
#include <set>

#include "metagrad/error.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

std::vector<std::pair<int64_t, int64_t>> pairs(const std::vector<Rung>& plan) {
  std::vector<std::pair<int64_t, int64_t>> v;
  for (const Rung& r : plan) v.push_back({r.epochs, r.configs});
  return v;
}

using P = std::vector<std::pair<int64_t, int64_t>>;

TEST(SuccessiveHalving, RungPlans) {
  EXPECT_EQ(pairs(rung_plan(27, 3, 1, 9)), (P{{1, 27}, {3, 9}, {9, 3}}));
  EXPECT_EQ(pairs(rung_plan(9, 3, 1, 3)), (P{{1, 9}, {3, 3}}));
  // Rounded down, never below one; the last rung is max_epochs exactly.
  EXPECT_EQ(pairs(rung_plan(10, 3, 1, 5)), (P{{1, 10}, {3, 3}, {5, 1}}));
  EXPECT_EQ(pairs(rung_plan(2, 4, 2, 40)), (P{{2, 2}, {8, 1}, {32, 1}, {40, 1}}));
  EXPECT_EQ(pairs(rung_plan(5, 2, 4, 4)), (P{{4, 5}}));
  EXPECT_NE(testing::error_of([] { rung_plan(4, 1, 1, 2); }).find("--eta must be >= 2"), std::string::npos);
  EXPECT_NE(testing::error_of([] { rung_plan(4, 2, 3, 2); }).find("--max-epochs 2 is below --min-epochs 3"), std::string::npos);
  EXPECT_NE(testing::error_of([] { rung_plan(0, 2, 1, 2); }).find("--configs must be >= 1"), std::string::npos);
  EXPECT_NE(testing::error_of([] { rung_plan(4, 2, 0, 2); }).find("--min-epochs must be >= 1"), std::string::npos);
}

TEST(SuccessiveHalving, PromotionKeepsTheBestAndBreaksTiesByOrder) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const std::vector<size_t> ids = {7, 3, 5, 1, 9};
  EXPECT_EQ(promote(ids, {0.4, 0.2, 0.3, 0.2, 0.1}, 3), (std::vector<size_t>{9, 3, 1}));  // 3 before 1: listed first
  EXPECT_EQ(promote(ids, {nan, 0.5, inf, 0.7, nan}, 3), (std::vector<size_t>{3, 1, 7}));  // diverged last, in order
  EXPECT_EQ(promote(ids, {1, 1, 1, 1, 1}, 2), (std::vector<size_t>{7, 3}));
  EXPECT_EQ(promote(ids, {1, 2, 3, 4, 5}, 9).size(), 5u);
  EXPECT_THROW(promote(ids, {1, 2}, 1), Error);
}

TEST(SuccessiveHalving, RungsPromoteTheBestAndWaitForEachOther) {
  // Configuration i's score falls with the budget, faster for higher i; 5 is the best at any
  // budget above 1 but not at 1, where 2 leads.
  auto objective = [](size_t i, int64_t epochs) {
    const double base[] = {0.9, 0.8, 0.3, 0.7, 0.6, 0.4, 0.95, 0.85, 0.75};
    return base[i] / double(epochs) - (i == 5 && epochs > 1 ? 0.2 : 0.0);
  };
  std::vector<std::pair<int64_t, size_t>> calls;
  const std::vector<RungResult> r = successive_halving(rung_plan(9, 3, 1, 9), [&](const std::vector<size_t>& ids, int64_t e) {
    std::vector<double> s;
    for (size_t i : ids) {
      calls.push_back({e, i});
      s.push_back(objective(i, e));
    }
    return s;
  });
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].ids, (std::vector<size_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(r[1].ids, (std::vector<size_t>{2, 5, 4}));  // the three best at 1 epoch, best first
  EXPECT_EQ(r[2].ids, (std::vector<size_t>{5}));
  EXPECT_EQ(r[2].epochs, 9);
  // Every call of a rung comes after every call of the one before: 9 + 3 + 1.
  ASSERT_EQ(calls.size(), 13u);
  for (size_t k = 1; k < calls.size(); ++k) EXPECT_LE(calls[k - 1].first, calls[k].first);
  // The same scores give the same rungs, whatever else happens.
  const std::vector<RungResult> again = successive_halving(rung_plan(9, 3, 1, 9), [&](const std::vector<size_t>& ids, int64_t e) {
    std::vector<double> s;
    for (size_t i : ids) s.push_back(objective(i, e));
    return s;
  });
  for (size_t k = 0; k < r.size(); ++k) EXPECT_EQ(again[k].ids, r[k].ids);
  EXPECT_THROW(successive_halving(rung_plan(3, 3, 1, 3), [](const std::vector<size_t>&, int64_t) { return std::vector<double>{1}; }),
               Error);
}

TEST(SuccessiveHalving, TunedRatesAreATable) {
  EXPECT_EQ(tuned_lr("sgd"), 0.1);
  EXPECT_EQ(tuned_lr("sgd_hd"), 0.1);
  EXPECT_EQ(tuned_lr("nesterov"), 0.01);
  EXPECT_EQ(tuned_lr("nadam"), 2e-3);
  EXPECT_EQ(tuned_lr("adam_hd"), 1e-3);
  Trial t{"adam_hd", 3, "", "multiplicative"};
  EXPECT_EQ(trial_str(t), "adam_hd lr=0.003 (x3) hd=multiplicative");
  t = {"sgd", 0.3, "cosine", ""};
  EXPECT_EQ(trial_str(t), "sgd lr=0.03 (x0.3) schedule=cosine");
}

// One OpenMP thread for the duration of a test (as --threads 1): tiny LeNet-5 steps on a loaded
// machine run several times slower on two. Looked up dynamically, as the CLI does.
struct OneThread {
  using Get = int (*)();
  using Set = void (*)(int);
  Get get = reinterpret_cast<Get>(dlsym(RTLD_DEFAULT, "omp_get_max_threads"));
  Set set = reinterpret_cast<Set>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  int before = get ? get() : 0;
  OneThread() {
    if (set) set(1);
  }
  ~OneThread() {
    if (set && before > 0) set(before);
  }
};

ScheduleSearchConfig tiny() {
  ScheduleSearchConfig c;
  c.optimizers = {"sgd", "adam", "adam_hd"};
  c.lr_scales = {0.3, 1};
  c.schedules = {"constant", "cosine"};
  c.hd = {"additive", "multiplicative"};
  c.configs = 4;
  c.eta = 2;
  c.min_epochs = 1;
  c.max_epochs = 2;
  c.batch = 50;
  c.max_train = 600;
  c.val = 100;
  c.max_test = 200;
  return c;
}

TEST(ScheduleSearch, TinySearchOnFashionMnist) {
  OneThread one;
  const ScheduleSearchConfig c = tiny();
  const ScheduleSearchResult r = run_schedule_search(c, nullptr);
  EXPECT_EQ(r.train_images, 500);
  EXPECT_EQ(r.val_images, 100);
  EXPECT_EQ(r.test_images, 200);
  // Four distinct trials, each dimension set only where it applies.
  ASSERT_EQ(r.trials.size(), 4u);
  std::set<std::string> distinct;
  for (const Trial& t : r.trials) {
    distinct.insert(trial_str(t));
    EXPECT_EQ(t.schedule.empty(), t.optimizer == "adam_hd") << trial_str(t);
    EXPECT_EQ(t.hd.empty(), t.optimizer != "adam_hd") << trial_str(t);
  }
  EXPECT_EQ(distinct.size(), 4u);
  // Rungs of 4 x 1 epoch and 2 x 2 epochs; the second holds the first's two best.
  ASSERT_EQ(r.rungs.size(), 2u);
  EXPECT_EQ(r.rungs[0].ids.size(), 4u);
  EXPECT_EQ(r.rungs[1].ids, promote(r.rungs[0].ids, r.rungs[0].scores, 2));
  EXPECT_EQ(r.rungs[1].epochs, 2);
  for (const RungResult& rung : r.rungs)
    for (double s : rung.scores) EXPECT_GT(s, 0) << "a validation loss";
  ASSERT_FALSE(r.report.empty());
  std::set<size_t> reported;
  for (const FinalReport& f : r.report) reported.insert(f.outcome.trial);
  EXPECT_EQ(r.final_trainings, int64_t(reported.size())) << "each reported configuration retrained once";
  EXPECT_GT(r.best_step.kernels, 0u) << "the best configuration's step, compiled in this process";
  EXPECT_EQ(r.report[0].role, "best");
  EXPECT_EQ(r.report[0].outcome.trial, promote(r.rungs[1].ids, r.rungs[1].scores, 1)[0]);
  EXPECT_EQ(r.report[0].outcome.rung, 1);
  for (const FinalReport& f : r.report) {
    EXPECT_GT(f.test_accuracy, 0.1) << f.role << ": better than chance after 2 epochs";
    if (f.role == "best_constant") {
      EXPECT_EQ(r.trials[f.outcome.trial].schedule, "constant");
    }
    if (f.role == "best_hypergradient") {
      EXPECT_FALSE(r.trials[f.outcome.trial].hd.empty());
    }
  }
  // The same seed gives the same search; another seed another sample.
  const ScheduleSearchResult again = run_schedule_search(c, nullptr);
  for (size_t k = 0; k < r.rungs.size(); ++k) {
    EXPECT_EQ(again.rungs[k].ids, r.rungs[k].ids);
    EXPECT_EQ(again.rungs[k].scores, r.rungs[k].scores);
  }
  ScheduleSearchConfig other = c;
  other.seed = 2;
  other.max_epochs = 1;
  const ScheduleSearchResult o = run_schedule_search(other, nullptr);
  std::set<std::string> other_trials;
  for (const Trial& t : o.trials) other_trials.insert(trial_str(t));
  EXPECT_NE(other_trials, distinct);
}

TEST(ScheduleSearch, AConfigurationHoldingTwoRolesIsRetrainedOnce) {
  // Only hypergradient configurations: the best is always the best hypergradient one too.
  OneThread one;
  ScheduleSearchConfig c = tiny();
  c.optimizers = {"sgd_hd"};
  c.configs = 2;
  c.max_epochs = 1;
  const ScheduleSearchResult r = run_schedule_search(c, nullptr);
  ASSERT_EQ(r.report.size(), 2u);
  EXPECT_EQ(r.report[0].role, "best");
  EXPECT_EQ(r.report[1].role, "best_hypergradient");
  EXPECT_EQ(r.report[1].outcome.trial, r.report[0].outcome.trial);
  EXPECT_EQ(r.final_trainings, 1);
  // Reported in both places: the one retraining's figures.
  EXPECT_EQ(r.report[1].test_loss, r.report[0].test_loss);
  EXPECT_EQ(r.report[1].test_accuracy, r.report[0].test_accuracy);
  EXPECT_GT(r.report[0].test_accuracy, 0.1);
}

TEST(ScheduleSearch, ErrorsNameTheFlag) {
  ScheduleSearchConfig c = tiny();
  c.configs = 40;
  EXPECT_NE(testing::error_of([&] { run_schedule_search(c, nullptr); }).find("--configs 40 is more than the 12 distinct"),
            std::string::npos);
  c = tiny();
  c.val = 600;
  EXPECT_NE(testing::error_of([&] { run_schedule_search(c, nullptr); }).find("--val 600 must hold out"), std::string::npos);
  c = tiny();
  c.schedules = {"sawtooth"};
  EXPECT_NE(testing::error_of([&] { run_schedule_search(c, nullptr); }).find("--schedules: unknown value 'sawtooth'"),
            std::string::npos);
  c = tiny();
  c.optimizers = {"lbfgs"};
  EXPECT_NE(testing::error_of([&] { run_schedule_search(c, nullptr); }).find("--optimizers: unknown optimizer 'lbfgs'"),
            std::string::npos);
}

}  // namespace
}  // namespace metagrad
