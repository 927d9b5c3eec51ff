// Keeping the ranks' models identical, combining their results, and wiring a data-parallel run
// into the shared driver (whose Shard says what each rank takes of a global batch).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "meta/dist/gradient_allreduce.h"
#include "metagrad/collective.h"
#include "metagrad/driver.h"
#include "metagrad/param_store.h"

namespace metagrad {

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

// The one place a data-parallel run is wired into the shared driver (metagrad/driver.h): sets this
// rank's shard, the bucketed gradient allreduce as the combiner, the collective its allreduce_sum
// kernels call, the parameter broadcast from rank 0 after compiling (so also after --load), metric
// averaging and the gather of evaluation results. Nothing for a group of one. `c` must outlive
// every run of `d`.
void join_data_parallel(Collective& c, DriverConfig& d, const AllreduceOptions& options = {});

}  // namespace metagrad
