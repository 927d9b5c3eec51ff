// The f64 reference interpreter: plain loops over every op, the ground truth for kernel tests,
// pass tests and finite-difference gradient checks.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "metagrad/graph.h"

namespace metagrad {

// f64 reference evaluation: every value is a row-major array of doubles (i32 values included).
struct RefTensor {
  Shape shape;
  std::vector<double> data;
};

using RefValues = std::map<std::string, RefTensor>;

// Evaluates `fetches`. Inputs come from `feeds` by name; parameters from `params` by name, or
// from their initializer when absent. Throws RuntimeError on a missing feed or a wrong shape.
std::vector<RefTensor> reference_eval(const Graph& g, const std::vector<Value>& fetches, const RefValues& feeds,
                                      const RefValues& params = {});

// Runs one step: evaluates the graph's updates and returns the new parameter values, merged
// over `params` (parameters without an update keep their value).
RefValues reference_step(const Graph& g, const RefValues& feeds, const RefValues& params);

}  // namespace metagrad
