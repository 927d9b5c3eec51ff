// Data-parallel gradient sums as graph: gradients flattened into buckets, each bucket one
// allreduce_sum node, then sliced back to the parameters' shapes.
#pragma once
#include <cstddef>
#include <cstdint>

#include "metagrad/collective.h"
#include "metagrad/optimizers.h"

namespace metagrad {

struct AllreduceOptions {
  // Gradients are packed, last parameter first (the order a backward pass finishes them), into
  // buckets of at most this many bytes; a larger gradient is a bucket of its own.
  size_t bucket_bytes = size_t(4) << 20;
  // The bucket sum is multiplied by this; 0 means 1/ranks: the mean of the ranks' gradients,
  // which is the gradient of the global batch when each rank's loss is the mean over an equal
  // share of it.
  double scale = 0.0;
};

// The combiner for OptimizerConfig::combine_gradients and add_meta_update: empty for one rank
// (the step's graph is then exactly the one-process graph). The executable must be compiled with
// CompileOptions::collective set to a Collective of `ranks` processes.
GradientCombiner gradient_allreduce(int ranks, const AllreduceOptions& options = {});

// How many allreduce_sum nodes (buckets) a graph holds, and the floats they sum: for reports.
struct AllreduceCount {
  int64_t buckets = 0;
  int64_t floats = 0;
};
AllreduceCount count_allreduces(const Graph& g);

}  // namespace metagrad
