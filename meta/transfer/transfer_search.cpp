#include "meta/transfer/transfer_search.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "metagrad/error.h"

namespace metagrad {

namespace {

// How often a freshly bred individual that was already scored is bred again before the duplicate is
// accepted. Duplicates cost no evaluation, but a population of copies stops exploring; the cap only
// matters once (nearly) the whole space has been scored.
constexpr int kFreshTries = 16;

// Uniform in [0, n) without the implementation-defined std distributions, so a seed gives the
// same search with every standard library. Rejects the low 2^64 mod n values to remove modulo bias.
uint64_t below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t threshold = (0 - n) % n;
  uint64_t x;
  do x = rng();
  while (x < threshold);
  return x % n;
}

// Uniform in [0, 1) from the top 53 bits.
double unit(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// Diverged runs (NaN, +-inf) must never win, and NaN must not poison comparisons.
bool better(double a, double b) { return std::isfinite(a) && (!std::isfinite(b) || a < b); }

void check_space(const SearchSpace& space) {
  if (space.layers <= 0) throw Error(fmt::format("transfer search: layers must be > 0, got {}", space.layers));
  if (space.choices.size() < 2)
    throw Error(fmt::format("transfer search: need at least 2 choices per layer, got {}", space.choices.size()));
  if (space.choices.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw Error("transfer search: too many choices");
  if (!space.names.empty() && static_cast<int64_t>(space.names.size()) != space.layers)
    throw Error(fmt::format("transfer search: {} layer names for {} layers", space.names.size(), space.layers));
}

void check_assignment(const SearchSpace& space, const Assignment& a, const char* what) {
  if (static_cast<int64_t>(a.size()) != space.layers)
    throw Error(fmt::format("transfer search: {} has {} entries for {} layers", what, a.size(), space.layers));
  for (size_t l = 0; l < a.size(); ++l)
    if (a[l] < 0 || static_cast<size_t>(a[l]) >= space.choices.size())
      throw Error(fmt::format("transfer search: {} chooses {} for layer {}, expected 0..{}", what, a[l], l,
                              space.choices.size() - 1));
}

Assignment random_assignment(const SearchSpace& space, std::mt19937_64& rng) {
  Assignment a(space.layers);
  for (int& c : a) c = static_cast<int>(below(rng, space.choices.size()));
  return a;
}

// Uniform over the choices other than `c`.
int other_choice(int c, size_t n, std::mt19937_64& rng) { return static_cast<int>((c + 1 + below(rng, n - 1)) % n); }

// The only caller of the score function: assignments are requested, then scored together by
// flush(); a cache so nothing is scored twice, plus the history, the best so far and progress
// reports, all in request order.
class Scorer {
 public:
  Scorer(const BatchScoreFn& fn, const SearchProgress& progress, int64_t budget)
      : fn_(fn), progress_(progress), budget_(budget) {
    if (!fn_) throw Error("transfer search: empty score function");
  }

  // Scored, or requested for the next flush.
  bool scored(const Assignment& a) const { return cache_.count(a) != 0 || queued_.count(a) != 0; }

  void request(const Assignment& a) {
    if (scored(a)) return;
    queued_.insert(a);
    pending_.push_back(a);
  }

  void flush() {
    if (pending_.empty()) return;
    const std::vector<double> scores = fn_(pending_);
    if (scores.size() != pending_.size())
      throw Error(fmt::format("transfer search: the score function gave {} scores for {} assignments", scores.size(),
                              pending_.size()));
    for (size_t i = 0; i < pending_.size(); ++i) record(pending_[i], scores[i]);
    pending_.clear();
    queued_.clear();
  }

  // The score of a scored (flushed) assignment.
  double operator()(const Assignment& a) const { return cache_.at(a); }

  SearchResult take() { return std::move(result_); }

 private:
  void record(const Assignment& a, double s) {
    cache_.emplace(a, s);
    result_.history.push_back({a, s});
    result_.evaluations = static_cast<int64_t>(result_.history.size());
    if (result_.evaluations == 1 || better(s, result_.best_score)) {
      result_.best = a;
      result_.best_score = s;
    }
    if (progress_) progress_(result_.evaluations, budget_, result_.best_score);
  }

  const BatchScoreFn& fn_;
  const SearchProgress& progress_;
  int64_t budget_;
  std::map<Assignment, double> cache_;  // ordered: no hash to vary between libraries
  std::set<Assignment> queued_;
  std::vector<Assignment> pending_;
  SearchResult result_;
};

// The one-at-a-time score function as a batch one.
BatchScoreFn one_by_one(const ScoreFn& score) {
  if (!score) return {};
  return [&score](const std::vector<Assignment>& batch) {
    std::vector<double> out;
    for (const Assignment& a : batch) out.push_back(score(a));
    return out;
  };
}

}  // namespace

std::string choice_str(const LayerChoice& c) {
  if (c.kind == "freeze" || c.lr_multiplier == 1.0) return c.kind;
  return fmt::format("{} x{}", c.kind, c.lr_multiplier);
}

std::string assignment_str(const SearchSpace& space, const Assignment& a) {
  check_space(space);
  check_assignment(space, a, "assignment");
  std::string out;
  for (size_t l = 0; l < a.size(); ++l) {
    if (l) out += ' ';
    out += space.names.empty() ? fmt::format("L{}", l) : space.names[l];
    out += '=';
    out += choice_str(space.choices[a[l]]);
  }
  return out;
}

SearchResult genetic_search(const SearchSpace& space, const ScoreFn& score, const GeneticOptions& opt,
                            const SearchProgress& progress) {
  return genetic_search(space, one_by_one(score), opt, progress);
}

SearchResult annealing_search(const SearchSpace& space, const ScoreFn& score, const AnnealingOptions& opt,
                              const SearchProgress& progress, const Assignment& start) {
  return annealing_search(space, one_by_one(score), opt, progress, start);
}

SearchResult genetic_search(const SearchSpace& space, const BatchScoreFn& score, const GeneticOptions& opt,
                            const SearchProgress& progress) {
  check_space(space);
  if (opt.population < 2) throw Error(fmt::format("genetic search: population must be >= 2, got {}", opt.population));
  if (opt.generations < 1)
    throw Error(fmt::format("genetic search: generations must be >= 1, got {}", opt.generations));
  if (opt.population > std::numeric_limits<int64_t>::max() / opt.generations)
    throw Error("genetic search: population * generations overflows");
  if (opt.elite < 0 || opt.elite >= opt.population)
    throw Error(
        fmt::format("genetic search: elite must be in [0, population = {}), got {}", opt.population, opt.elite));
  if (opt.tournament < 1) throw Error(fmt::format("genetic search: tournament must be >= 1, got {}", opt.tournament));
  if (!(opt.crossover >= 0 && opt.crossover <= 1))
    throw Error(fmt::format("genetic search: crossover must be a probability, got {}", opt.crossover));
  if (!(opt.mutation >= 0 && opt.mutation <= 1))
    throw Error(fmt::format("genetic search: mutation must be a probability, got {}", opt.mutation));

  std::mt19937_64 rng(opt.seed);
  Scorer scorer(score, progress, opt.population * opt.generations);
  const size_t n = static_cast<size_t>(opt.population);
  const size_t choices = space.choices.size();

  std::vector<Assignment> pop;
  std::vector<double> fit;
  for (size_t i = 0; i < n; ++i) {
    Assignment a = random_assignment(space, rng);
    for (int t = 1; t < kFreshTries && scorer.scored(a); ++t) a = random_assignment(space, rng);
    scorer.request(a);
    pop.push_back(std::move(a));
  }
  scorer.flush();
  for (const Assignment& a : pop) fit.push_back(scorer(a));

  for (int64_t gen = 1; gen < opt.generations; ++gen) {
    // Stable, so ties keep their order and the run stays reproducible.
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return better(fit[a], fit[b]); });
    auto select = [&]() -> const Assignment& {
      size_t best = below(rng, n);
      for (int64_t t = 1; t < opt.tournament; ++t)
        if (const size_t c = below(rng, n); better(fit[c], fit[best])) best = c;
      return pop[best];
    };
    auto breed = [&] {
      const Assignment& p1 = select();
      const Assignment& p2 = select();
      Assignment child = p1;
      if (unit(rng) < opt.crossover)
        for (size_t l = 0; l < child.size(); ++l)
          if (rng() >> 63) child[l] = p2[l];
      for (int& c : child)
        if (unit(rng) < opt.mutation) c = other_choice(c, choices, rng);
      return child;
    };

    std::vector<Assignment> next;
    std::vector<double> next_fit;
    for (int64_t e = 0; e < opt.elite; ++e) {
      next.push_back(pop[order[e]]);
      next_fit.push_back(fit[order[e]]);
    }
    while (next.size() < n) {
      Assignment child = breed();
      for (int t = 1; t < kFreshTries && scorer.scored(child); ++t) child = breed();
      scorer.request(child);
      next.push_back(std::move(child));
    }
    scorer.flush();
    for (size_t i = next_fit.size(); i < n; ++i) next_fit.push_back(scorer(next[i]));
    pop = std::move(next);
    fit = std::move(next_fit);
  }
  return scorer.take();
}

SearchResult annealing_search(const SearchSpace& space, const BatchScoreFn& score, const AnnealingOptions& opt,
                              const SearchProgress& progress, const Assignment& start) {
  check_space(space);
  if (opt.steps < 1) throw Error(fmt::format("annealing search: steps must be >= 1, got {}", opt.steps));
  if (opt.proposals < 1) throw Error(fmt::format("annealing search: proposals must be >= 1, got {}", opt.proposals));
  if (opt.steps >= (std::numeric_limits<int64_t>::max() - 1) / opt.proposals)
    throw Error("annealing search: steps * proposals + 1 overflows");
  if (!(std::isfinite(opt.t_start) && opt.t_start > 0 && std::isfinite(opt.t_end) && opt.t_end > 0))
    throw Error(fmt::format("annealing search: t_start and t_end must be finite and > 0, got {} and {}", opt.t_start,
                            opt.t_end));
  if (!start.empty()) check_assignment(space, start, "start");

  std::mt19937_64 rng(opt.seed);
  Scorer scorer(score, progress, opt.steps * opt.proposals + 1);
  Assignment cur = start.empty() ? random_assignment(space, rng) : start;
  scorer.request(cur);
  scorer.flush();
  double cur_score = scorer(cur);
  // Temperatures are relative to the score's magnitude, taken from the first finite score: a
  // diverged start says nothing about the scale of the losses.
  double scale = 0;
  auto update_scale = [&](double s) {
    if (scale == 0 && std::isfinite(s)) scale = std::abs(s) > 1e-12 ? std::abs(s) : 1.0;
  };
  update_scale(cur_score);

  const double ratio = opt.t_end / opt.t_start;
  for (int64_t k = 0; k < opt.steps; ++k) {
    const double frac = opt.steps > 1 ? static_cast<double>(k) / static_cast<double>(opt.steps - 1) : 0.0;
    std::vector<Assignment> proposals;
    for (int64_t p = 0; p < opt.proposals; ++p) {
      Assignment a = cur;
      const size_t l = below(rng, static_cast<uint64_t>(space.layers));
      a[l] = other_choice(a[l], space.choices.size(), rng);
      scorer.request(a);
      proposals.push_back(std::move(a));
    }
    scorer.flush();
    size_t pick = 0;
    for (size_t p = 0; p < proposals.size(); ++p) {
      update_scale(scorer(proposals[p]));
      if (better(scorer(proposals[p]), scorer(proposals[pick]))) pick = p;
    }
    Assignment& cand = proposals[pick];
    const double s = scorer(cand);

    bool accept;
    if (!std::isfinite(s)) {
      // Never leave a finite state for a diverged one, but wander freely while diverged.
      accept = !std::isfinite(cur_score);
    } else if (!std::isfinite(cur_score) || s <= cur_score) {
      accept = true;
    } else {
      const double temp = scale * opt.t_start * std::pow(ratio, frac);
      accept = unit(rng) < std::exp(-(s - cur_score) / temp);
    }
    if (accept) {
      cur = std::move(cand);
      cur_score = s;
    }
  }
  return scorer.take();
}

}  // namespace metagrad
