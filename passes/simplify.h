// Algebraic simplification: removes identities that autodiff and model code leave behind
// (x*1, x+0, x-0, x/1, neg(neg x), no-op reshapes/broadcasts/transposes, reshape and transpose
// chains, sums over size-1 axes, stop_gradient at execution time).
#pragma once
#include "metagrad/graph.h"

namespace metagrad {
// Meant for graphs about to be executed: stop_gradient becomes the identity, so differentiate
// before simplifying, not after.
bool simplify(Graph& g);
}  // namespace metagrad
