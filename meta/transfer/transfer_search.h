// Transfer-mask search: choose, per layer of a pretrained network, how its weights are transferred
// (frozen, fine-tuned, re-initialised, fine-tuned at a scaled learning rate) so that a user-supplied
// score, typically a validation loss after a short fine-tune, is minimal. Scoring is expensive
// (seconds per call), so both searches cache every scored assignment and never call the score
// function twice for the same one; budgets count distinct calls. Both are reproducible from their
// seed on any standard library: they sample with their own helpers on top of std::mt19937_64.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace metagrad {

struct LayerChoice {
  std::string kind;            // freeze | finetune | reinit; interpreted by the score function only
  double lr_multiplier = 1.0;  // printed when not 1 (and the kind is not freeze)
};
// "freeze", "finetune", "finetune x0.1", "reinit".
std::string choice_str(const LayerChoice& c);

using Assignment = std::vector<int>;  // per layer, an index into SearchSpace::choices

struct SearchSpace {
  int64_t layers = 0;
  std::vector<LayerChoice> choices;  // the same choices for every layer; at least 2
  std::vector<std::string> names;    // per layer, for printing; empty: "L0", "L1", ...
};

// E.g. "conv1=freeze conv2=finetune x0.1 fc=reinit". Throws Error for an assignment that does not
// fit the space.
std::string assignment_str(const SearchSpace& space, const Assignment& a);

struct Evaluation {
  Assignment assignment;
  double score;
};

struct SearchResult {
  Assignment best;                  // the first assignment reaching best_score
  double best_score = 0;            // non-finite only if every score was
  int64_t evaluations = 0;          // distinct calls of the score function
  std::vector<Evaluation> history;  // every call of the score function, in order
};

// Lower is better. NaN or +-inf (a diverged run) ranks below every finite score.
using ScoreFn = std::function<double(const Assignment&)>;
// Scores several distinct, never-scored assignments at once, one score each in their order: the
// searches hand over every assignment they can score without knowing the others' scores (a
// generation's new individuals, a step's proposals), so the caller may spread them over
// processes (meta/dist/batch_score.h). The search's course depends only on the scores, never on
// how the batch was computed.
using BatchScoreFn = std::function<std::vector<double>(const std::vector<Assignment>&)>;
// Called after every call of the score function; may be empty.
using SearchProgress = std::function<void(int64_t done, int64_t budget, double best_score)>;

struct GeneticOptions {
  int64_t population = 8, generations = 5;  // budget: population * generations distinct evaluations at most
  int64_t elite = 2;                        // best individuals copied unchanged into the next generation
  int64_t tournament = 2;                   // individuals drawn (with replacement) per parent selection
  double crossover = 0.9;                   // probability that a child mixes two parents (uniform crossover)
  double mutation = 0.2;                    // per layer, probability of switching to a different choice
  uint64_t seed = 1;
};

struct AnnealingOptions {
  int64_t steps = 40;  // budget: steps * proposals + 1 distinct evaluations at most (revisits are free)
  // Neighbours of the current state drawn per step and scored as one batch; the best of them (the
  // first on ties) is the step's candidate for the usual acceptance test. 1: classic annealing.
  int64_t proposals = 1;
  // Geometric cooling from t_start to t_end, in units of |first finite score| (1 when that is ~0),
  // so the defaults suit losses of any magnitude: a move 10% worse is accepted with probability
  // exp(-0.1 / T), about 0.8 at the start and ~0 at the end.
  double t_start = 0.5, t_end = 0.01;
  uint64_t seed = 1;
};

// Throw Error for a malformed space or options. The genetic search scores each generation's new
// individuals as one batch (bred in full before any is scored: breeding reads only the previous
// generation's scores), so the batch and the one-at-a-time form give the same result.
SearchResult genetic_search(const SearchSpace& space, const BatchScoreFn& score, const GeneticOptions& opt,
                            const SearchProgress& progress = {});
SearchResult genetic_search(const SearchSpace& space, const ScoreFn& score, const GeneticOptions& opt,
                            const SearchProgress& progress = {});
// Starts from `start` (empty: a random assignment); each proposal changes one layer to a different
// choice. A step's proposals are one batch.
SearchResult annealing_search(const SearchSpace& space, const BatchScoreFn& score, const AnnealingOptions& opt,
                              const SearchProgress& progress = {}, const Assignment& start = {});
SearchResult annealing_search(const SearchSpace& space, const ScoreFn& score, const AnnealingOptions& opt,
                              const SearchProgress& progress = {}, const Assignment& start = {});

}  // namespace metagrad
