// Deterministic parameter initializers, shared by the ParamStore (f32) and the reference (f64).
#pragma once
#include <vector>

#include "metagrad/graph.h"

namespace metagrad {

// Values of a Parameter node from its initializer name and attributes; throws on unknown names.
std::vector<double> initial_values(const Node& param);

}  // namespace metagrad
