// Transfer-mask search on toy objectives: finding a known optimum, reproducibility, the evaluation
// cache and budgets, diverged (NaN/inf) scores, option errors and printing.
#include "meta/transfer/transfer_search.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "metagrad/error.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

const std::vector<LayerChoice> kChoices = {{"freeze"}, {"finetune"}, {"reinit"}, {"finetune", 0.1}};
const Assignment kOptimum = {2, 0, 3, 1, 1, 2};

SearchSpace space6() { return SearchSpace{6, kChoices, {}}; }

// Separable, like a loss: 0.5 at the unique optimum, each wrong layer adds 0.1 to 0.25.
double separable(const Assignment& a) {
  double s = 0.5;
  for (size_t l = 0; l < a.size(); ++l)
    if (a[l] != kOptimum[l]) s += 0.1 + 0.05 * static_cast<double>((3 * l + 5 * static_cast<size_t>(a[l])) % 4);
  return s;
}

// The scores of all 4^6 assignments.
std::vector<double> all_scores() {
  std::vector<double> out;
  for (int code = 0; code < 4096; ++code) {
    Assignment a(6);
    for (int l = 0, c = code; l < 6; ++l, c /= 4) a[l] = c % 4;
    out.push_back(separable(a));
  }
  return out;
}

// "Far better than random": below the mean by at least half the gap to the optimum, and fewer
// than 1% of all assignments score better.
void expect_far_better_than_random(double best, uint64_t seed) {
  const std::vector<double> all = all_scores();
  double mean = 0;
  for (double s : all) mean += s / static_cast<double>(all.size());
  EXPECT_LT(best - 0.5, 0.5 * (mean - 0.5)) << "seed " << seed << ": " << best << ", random mean " << mean;
  const auto better = std::count_if(all.begin(), all.end(), [&](double s) { return s < best - 1e-12; });
  EXPECT_LT(better, 41) << "seed " << seed << ": " << best;
}

// Wraps an objective, failing the test if an assignment is scored twice.
struct Counting {
  explicit Counting(ScoreFn f) : fn(std::move(f)) {}
  ScoreFn fn;
  std::set<Assignment> seen;
  int64_t calls = 0;
  ScoreFn wrap() {
    return [this](const Assignment& a) {
      ++calls;
      EXPECT_TRUE(seen.insert(a).second) << "scored twice";
      return fn(a);
    };
  }
};

void expect_same(const SearchResult& a, const SearchResult& b) {
  ASSERT_EQ(a.history.size(), b.history.size());
  for (size_t i = 0; i < a.history.size(); ++i) {
    EXPECT_EQ(a.history[i].assignment, b.history[i].assignment) << i;
    EXPECT_EQ(a.history[i].score, b.history[i].score) << i;
  }
  EXPECT_EQ(a.best, b.best);
  EXPECT_EQ(a.best_score, b.best_score);
}

bool same_history(const SearchResult& a, const SearchResult& b) {
  if (a.history.size() != b.history.size()) return false;
  for (size_t i = 0; i < a.history.size(); ++i)
    if (a.history[i].assignment != b.history[i].assignment) return false;
  return true;
}

// best/best_score must be the first minimum of the history, finite scores first.
void expect_consistent(const SearchResult& r) {
  ASSERT_FALSE(r.history.empty());
  EXPECT_EQ(r.evaluations, static_cast<int64_t>(r.history.size()));
  size_t best = 0;
  for (size_t i = 1; i < r.history.size(); ++i) {
    const double s = r.history[i].score, b = r.history[best].score;
    if (std::isfinite(s) && (!std::isfinite(b) || s < b)) best = i;
  }
  EXPECT_EQ(r.best, r.history[best].assignment);
  if (std::isfinite(r.history[best].score)) {
    EXPECT_EQ(r.best_score, r.history[best].score);
  }
}

// NaN for every assignment freezing layer 0, +inf for re-initialising layer 1: most of the space.
double diverging(const Assignment& a) {
  if (a[0] == 0) return std::numeric_limits<double>::quiet_NaN();
  if (a[1] == 2) return std::numeric_limits<double>::infinity();
  return separable(a);
}

// --- genetic search -----------------------------------------------------------------------------

TEST(GeneticSearch, FindsSeparableOptimum) {
  GeneticOptions opt;
  opt.population = 12;
  opt.generations = 10;
  Counting c{separable};
  const SearchResult r = genetic_search(space6(), c.wrap(), opt);
  EXPECT_EQ(r.best, kOptimum);
  EXPECT_DOUBLE_EQ(r.best_score, 0.5);
  EXPECT_LE(r.evaluations, 120);
  EXPECT_EQ(r.evaluations, c.calls);
  expect_consistent(r);
}

TEST(GeneticSearch, FarBetterThanRandomForFiveSeeds) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    GeneticOptions opt;
    opt.seed = seed;
    opt.generations = 8;  // at most 8 + 7 * 6 = 50 of the 4096 assignments scored
    const SearchResult r = genetic_search(space6(), separable, opt);
    expect_far_better_than_random(r.best_score, seed);
    EXPECT_LE(r.evaluations, 50);
  }
}

TEST(GeneticSearch, ReproducibleFromSeed) {
  GeneticOptions opt;
  opt.seed = 7;
  const SearchResult a = genetic_search(space6(), separable, opt);
  const SearchResult b = genetic_search(space6(), separable, opt);
  expect_same(a, b);
  opt.seed = 8;
  const SearchResult c = genetic_search(space6(), separable, opt);
  EXPECT_FALSE(same_history(a, c));
}

TEST(GeneticSearch, NeverScoresTwiceAndStaysInBudget) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    GeneticOptions opt;
    opt.seed = seed;
    opt.population = 10;
    opt.generations = 8;
    opt.elite = 3;
    opt.tournament = 3;
    Counting c{separable};
    const SearchResult r = genetic_search(space6(), c.wrap(), opt);
    EXPECT_EQ(r.evaluations, c.calls);
    // Elites are never rescored, and children already scored are bred again, so every generation
    // after the first spends exactly population - elite evaluations here.
    EXPECT_EQ(r.evaluations, 10 + 7 * 7);
    expect_consistent(r);
  }
  // A space smaller than the budget: everything is scored exactly once.
  Counting c{[](const Assignment& a) { return static_cast<double>(a[0] + 2 * a[1]); }};
  GeneticOptions opt;
  const SearchResult r = genetic_search(SearchSpace{2, {{"freeze"}, {"finetune"}}, {}}, c.wrap(), opt);
  EXPECT_EQ(r.evaluations, 4);
  EXPECT_EQ(c.calls, 4);
  EXPECT_EQ(r.best, (Assignment{0, 0}));
}

TEST(GeneticSearch, DivergedScoresNeverBest) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    GeneticOptions opt;
    opt.seed = seed;
    const SearchResult r = genetic_search(space6(), diverging, opt);
    bool any_finite = false;
    for (const Evaluation& e : r.history) any_finite |= std::isfinite(e.score);
    ASSERT_TRUE(any_finite) << seed;
    EXPECT_TRUE(std::isfinite(r.best_score)) << seed;
    EXPECT_NE(r.best[0], 0);
    EXPECT_NE(r.best[1], 2);
    expect_consistent(r);
  }
  // Everything diverges: the result says so instead of inventing a finite score.
  const SearchResult r =
      genetic_search(space6(), [](const Assignment&) { return std::numeric_limits<double>::quiet_NaN(); }, {});
  EXPECT_TRUE(std::isnan(r.best_score));
  EXPECT_EQ(r.best, r.history[0].assignment);
}

TEST(GeneticSearch, ReportsProgress) {
  std::vector<int64_t> done;
  double last_best = 0;
  const SearchResult r = genetic_search(space6(), separable, {}, [&](int64_t d, int64_t budget, double best) {
    EXPECT_EQ(budget, 40);
    done.push_back(d);
    last_best = best;
  });
  ASSERT_EQ(static_cast<int64_t>(done.size()), r.evaluations);
  for (size_t i = 0; i < done.size(); ++i) EXPECT_EQ(done[i], static_cast<int64_t>(i + 1));
  EXPECT_EQ(last_best, r.best_score);
}

TEST(GeneticSearch, RejectsBadOptions) {
  auto run = [](const GeneticOptions& opt) { genetic_search(space6(), separable, opt); };
  GeneticOptions o;
  o.population = 1;
  EXPECT_THROW(run(o), Error);
  o = {};
  o.generations = 0;
  EXPECT_THROW(run(o), Error);
  o = {};
  o.elite = o.population;
  EXPECT_THROW(run(o), Error);
  o = {};
  o.elite = -1;
  EXPECT_THROW(run(o), Error);
  o = {};
  o.tournament = 0;
  EXPECT_THROW(run(o), Error);
  o = {};
  o.crossover = 1.5;
  EXPECT_THROW(run(o), Error);
  o = {};
  o.mutation = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(run(o), Error);
  o = {};
  o.population = std::numeric_limits<int64_t>::max() / 2;
  o.generations = 3;
  EXPECT_THROW(run(o), Error);
  o = {};
  o.elite = 0;  // allowed: a generational GA without elitism
  EXPECT_NO_THROW(run(o));
  EXPECT_THROW(genetic_search(space6(), ScoreFn{}, {}), Error);
}

// --- simulated annealing ------------------------------------------------------------------------

TEST(AnnealingSearch, FindsSeparableOptimum) {
  AnnealingOptions opt;
  opt.steps = 100;
  Counting c{separable};
  const SearchResult r = annealing_search(space6(), c.wrap(), opt);
  EXPECT_EQ(r.best, kOptimum);
  EXPECT_DOUBLE_EQ(r.best_score, 0.5);
  EXPECT_LE(r.evaluations, 101);
  EXPECT_EQ(r.evaluations, c.calls);
  expect_consistent(r);
}

TEST(AnnealingSearch, FarBetterThanRandomForFiveSeeds) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    AnnealingOptions opt;  // defaults: at most 41 evaluations
    opt.seed = seed;
    const SearchResult r = annealing_search(space6(), separable, opt);
    expect_far_better_than_random(r.best_score, seed);
    EXPECT_LE(r.evaluations, 41);
  }
}

TEST(AnnealingSearch, ReproducibleFromSeed) {
  AnnealingOptions opt;
  opt.seed = 7;
  const SearchResult a = annealing_search(space6(), separable, opt);
  const SearchResult b = annealing_search(space6(), separable, opt);
  expect_same(a, b);
  opt.seed = 8;
  const SearchResult c = annealing_search(space6(), separable, opt);
  EXPECT_FALSE(same_history(a, c));
}

TEST(AnnealingSearch, NeverScoresTwiceAndStaysInBudget) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    AnnealingOptions opt;
    opt.seed = seed;
    opt.steps = 60;
    opt.t_start = 5;  // hot: a random walk that keeps revisiting
    opt.t_end = 1;
    Counting c{separable};
    const SearchResult r = annealing_search(space6(), c.wrap(), opt);
    EXPECT_EQ(r.evaluations, c.calls);
    EXPECT_LE(r.evaluations, 61);
    expect_consistent(r);
  }
  Counting c{[](const Assignment& a) { return static_cast<double>(a[0]); }};
  AnnealingOptions opt;
  opt.steps = 50;
  const SearchResult r = annealing_search(SearchSpace{1, {{"freeze"}, {"finetune"}, {"reinit"}}, {}}, c.wrap(), opt);
  EXPECT_EQ(r.evaluations, 3);
  EXPECT_EQ(r.best, (Assignment{0}));
}

TEST(AnnealingSearch, StartsWhereTold) {
  const Assignment start = {0, 1, 2, 3, 0, 1};
  const SearchResult r = annealing_search(space6(), separable, {}, {}, start);
  EXPECT_EQ(r.history[0].assignment, start);
  // Every proposal differs from some visited assignment in exactly one layer.
  for (size_t i = 1; i < r.history.size(); ++i) {
    bool neighbour = false;
    for (size_t j = 0; j < i && !neighbour; ++j) {
      int diff = 0;
      for (size_t l = 0; l < 6; ++l) diff += r.history[i].assignment[l] != r.history[j].assignment[l];
      neighbour = diff == 1;
    }
    EXPECT_TRUE(neighbour) << i;
  }
}

TEST(AnnealingSearch, ColdIsGreedy) {
  // At a negligible temperature no worse move is accepted, so on a separable objective with enough
  // steps the walk descends to the optimum from anywhere.
  AnnealingOptions opt;
  opt.steps = 200;
  opt.t_start = opt.t_end = 1e-9;
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    opt.seed = seed;
    const SearchResult r = annealing_search(space6(), separable, opt, {}, {3, 3, 0, 0, 0, 0});
    EXPECT_EQ(r.best, kOptimum) << seed;
  }
}

TEST(AnnealingSearch, DivergedScoresNeverBest) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    AnnealingOptions opt;
    opt.seed = seed;
    // Start diverged (NaN): the walk must still find its way to finite scores.
    const SearchResult r = annealing_search(space6(), diverging, opt, {}, {0, 2, 0, 0, 0, 0});
    EXPECT_TRUE(std::isnan(r.history[0].score));
    EXPECT_TRUE(std::isfinite(r.best_score)) << seed;
    EXPECT_NE(r.best[0], 0);
    EXPECT_NE(r.best[1], 2);
    expect_consistent(r);
  }
}

TEST(AnnealingSearch, ReportsProgress) {
  int64_t calls = 0;
  const SearchResult r = annealing_search(space6(), separable, {}, [&](int64_t d, int64_t budget, double) {
    EXPECT_EQ(budget, 41);
    EXPECT_EQ(d, ++calls);
  });
  EXPECT_EQ(calls, r.evaluations);
}

TEST(AnnealingSearch, RejectsBadOptions) {
  auto run = [](const AnnealingOptions& opt, const Assignment& start = {}) {
    annealing_search(space6(), separable, opt, {}, start);
  };
  AnnealingOptions o;
  o.steps = 0;
  EXPECT_THROW(run(o), Error);
  o = {};
  o.t_start = 0;
  EXPECT_THROW(run(o), Error);
  o = {};
  o.t_end = -1;
  EXPECT_THROW(run(o), Error);
  o = {};
  o.t_start = std::numeric_limits<double>::infinity();
  EXPECT_THROW(run(o), Error);
  EXPECT_THROW(run({}, {0, 1, 2}), Error);            // wrong length
  EXPECT_THROW(run({}, {0, 1, 2, 3, 4, 0}), Error);   // index past the choices
  EXPECT_THROW(run({}, {0, 1, 2, 3, -1, 0}), Error);  // negative index
  EXPECT_NO_THROW(run({}, {0, 1, 2, 3, 3, 0}));
  EXPECT_THROW(annealing_search(space6(), ScoreFn{}, {}), Error);
}

// --- shared -------------------------------------------------------------------------------------

TEST(TransferSearch, RejectsBadSpaces) {
  const std::vector<SearchSpace> bad = {
      {0, kChoices, {}},                 // no layers
      {-3, kChoices, {}},                // negative layers
      {6, {{"freeze"}}, {}},             // one choice
      {6, {}, {}},                       // no choices
      {6, kChoices, {"conv1", "conv2"}}  // names do not match the layers
  };
  for (const SearchSpace& s : bad) {
    EXPECT_THROW(genetic_search(s, separable, {}), Error);
    EXPECT_THROW(annealing_search(s, separable, {}), Error);
    EXPECT_THROW(assignment_str(s, Assignment(6, 0)), Error);
  }
}

TEST(TransferSearch, ErrorsNameTheProblem) {
  try {
    GeneticOptions o;
    o.elite = 8;
    genetic_search(space6(), separable, o);
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("elite"), std::string::npos) << e.what();
  }
  try {
    annealing_search(space6(), separable, {}, {}, {0, 1, 2, 3, 4, 0});
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 4"), std::string::npos) << e.what();
  }
}

TEST(TransferSearch, Printing) {
  EXPECT_EQ(choice_str({"freeze"}), "freeze");
  EXPECT_EQ(choice_str({"freeze", 0.1}), "freeze");
  EXPECT_EQ(choice_str({"finetune"}), "finetune");
  EXPECT_EQ(choice_str({"finetune", 0.1}), "finetune x0.1");
  EXPECT_EQ(choice_str({"finetune", 2.5}), "finetune x2.5");
  EXPECT_EQ(choice_str({"reinit"}), "reinit");
  const SearchSpace named{3, kChoices, {"conv1", "conv2", "fc"}};
  EXPECT_EQ(assignment_str(named, {0, 3, 2}), "conv1=freeze conv2=finetune x0.1 fc=reinit");
  EXPECT_EQ(assignment_str(space6(), kOptimum),
            "L0=reinit L1=freeze L2=finetune x0.1 L3=finetune L4=finetune L5=reinit");
  EXPECT_THROW(assignment_str(named, {0, 1}), Error);
  EXPECT_THROW(assignment_str(named, {0, 1, 4}), Error);
}

// --- batch scoring ------------------------------------------------------------------------------

// Records every batch, checking each holds distinct assignments never handed over before.
struct Batches {
  std::vector<std::vector<Assignment>> batches;
  std::set<Assignment> seen;
  BatchScoreFn wrap(ScoreFn fn) {
    return [this, fn](const std::vector<Assignment>& batch) {
      batches.push_back(batch);
      std::vector<double> out;
      for (const Assignment& a : batch) {
        EXPECT_TRUE(seen.insert(a).second) << "handed over twice";
        out.push_back(fn(a));
      }
      return out;
    };
  }
};

TEST(BatchSearch, GeneticScoresEachGenerationAsOneBatch) {
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    const GeneticOptions opt{.population = 10, .generations = 6, .elite = 3, .seed = seed};
    Batches b;
    const SearchResult r = genetic_search(space6(), b.wrap(separable), opt);
    // One batch per generation: the whole first population, then population - elite children.
    ASSERT_EQ(b.batches.size(), 6u);
    EXPECT_EQ(b.batches[0].size(), 10u);
    for (size_t g = 1; g < b.batches.size(); ++g) EXPECT_EQ(b.batches[g].size(), 7u) << g;
    // The history is the batches in order, and the result that of the one-at-a-time form.
    std::vector<Assignment> flat;
    for (const auto& batch : b.batches) flat.insert(flat.end(), batch.begin(), batch.end());
    ASSERT_EQ(flat.size(), r.history.size());
    for (size_t i = 0; i < flat.size(); ++i) EXPECT_EQ(flat[i], r.history[i].assignment) << i;
    expect_same(r, genetic_search(space6(), separable, opt));
    expect_consistent(r);
  }
}

TEST(BatchSearch, ABatchScoredInAnyOrderGivesTheSameSearch) {
  // Scoring the batch back to front (as ranks finishing in another order would) changes nothing.
  auto backwards = [](const std::vector<Assignment>& batch) {
    std::vector<double> out(batch.size());
    for (size_t i = batch.size(); i-- > 0;) out[i] = separable(batch[i]);
    return out;
  };
  GeneticOptions g;
  g.seed = 5;
  expect_same(genetic_search(space6(), BatchScoreFn(backwards), g), genetic_search(space6(), separable, g));
  AnnealingOptions a;
  a.seed = 5;
  a.proposals = 3;
  const SearchResult x = annealing_search(space6(), BatchScoreFn(backwards), a);
  expect_same(x, annealing_search(space6(), separable, a));
}

TEST(BatchSearch, AnnealingScoresItsProposalsTogether) {
  AnnealingOptions opt;
  opt.steps = 15;
  opt.proposals = 4;
  opt.seed = 3;
  Batches b;
  const SearchResult r = annealing_search(space6(), b.wrap(separable), opt);
  ASSERT_FALSE(b.batches.empty());
  EXPECT_EQ(b.batches[0].size(), 1u);  // the start
  EXPECT_LE(b.batches.size(), 16u);    // revisits only may leave a step with nothing new
  for (size_t k = 1; k < b.batches.size(); ++k) EXPECT_LE(b.batches[k].size(), 4u);
  EXPECT_LE(r.evaluations, 15 * 4 + 1);
  EXPECT_GT(r.evaluations, 16) << "several proposals per step were scored";
  expect_consistent(r);
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    opt.seed = seed;
    expect_far_better_than_random(annealing_search(space6(), separable, opt).best_score, seed);
  }
  opt.proposals = 0;
  EXPECT_THROW(annealing_search(space6(), separable, opt), Error);
}

TEST(BatchSearch, AWrongNumberOfScoresIsAnError) {
  BatchScoreFn short_by_one = [](const std::vector<Assignment>& batch) { return std::vector<double>(batch.size() - 1, 1.0); };
  const std::string e = testing::error_of([&] { genetic_search(space6(), short_by_one, {}); });
  EXPECT_NE(e.find("the score function gave 7 scores for 8 assignments"), std::string::npos) << e;
}

}  // namespace
}  // namespace metagrad
