// Constant folding: evaluates small op nodes whose inputs are all constants (f64 reference)
// and replaces them by constants. Broadcasts are left alone: folding them would only grow memory.
#pragma once
#include "metagrad/graph.h"

namespace metagrad {
bool fold_constants(Graph& g, int64_t max_elements = 1024);
}  // namespace metagrad
