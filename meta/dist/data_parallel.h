// What each rank of a data-parallel run takes of a global batch, and keeping the ranks' models
// identical.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "metagrad/collective.h"
#include "metagrad/param_store.h"

namespace metagrad {

// A rank's rows [begin, end) of a global batch.
struct Share {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

// An equal share of a training batch of `global` items: every rank must compute the same graph,
// and averaging the ranks' mean gradients is the global mean only for equal shares, so `global`
// must divide by `ranks` (Error otherwise, naming both).
Share even_share(int64_t global, int rank, int ranks, const char* what = "batch");

// A contiguous, balanced share of `total` items (evaluation episodes): the first total % ranks
// ranks take one more. Concatenating the shares in rank order gives 0..total-1.
Share balanced_share(int64_t total, int rank, int ranks);

// Copies every tensor of `store` (weights, optimizer state, step counters) from `root` to every
// rank. The stores must hold the same names and shapes everywhere; a mismatch is an Error on
// every rank, naming the first differing rank.
void broadcast_params(Collective& c, ParamStore& store, int root = 0);

// Every rank's values concatenated in rank order (each rank's evaluation results, on every rank).
std::vector<double> gather_results(Collective& c, std::span<const double> mine);
// The same for several result lists at once (the driver's EvalSpec::gather): values[k] holds this
// rank's results of output k and afterwards every rank's, in rank order. One allgather.
void gather_each(Collective& c, std::vector<std::vector<double>>& values);

// The mean over ranks of per-rank values (each rank's share of a step's mean loss), in place.
void average(Collective& c, std::span<double> values);

}  // namespace metagrad
