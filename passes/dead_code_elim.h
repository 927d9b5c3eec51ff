// Dead code elimination: drops op and constant nodes that no output or update reads.
#pragma once
#include "metagrad/graph.h"

namespace metagrad {
// Inputs and parameters always stay: they are the graph's interface. Returns whether anything changed.
bool eliminate_dead_code(Graph& g);
}  // namespace metagrad
