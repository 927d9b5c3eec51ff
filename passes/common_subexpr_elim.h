// Common subexpression elimination: merges op nodes with equal op, inputs and attributes, and
// constants with equal type and data.
#pragma once
#include "metagrad/graph.h"

namespace metagrad {
bool eliminate_common_subexpressions(Graph& g);
}  // namespace metagrad
