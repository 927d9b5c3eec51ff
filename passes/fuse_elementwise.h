// Elementwise fusion: merges chains of fusable elementwise ops of one output shape, whose
// intermediate values have no other reader, into single fused_elementwise nodes; a chain whose
// only reader is a sum or mean becomes one fused_reduce node with it.
#pragma once
#include "metagrad/graph.h"

namespace metagrad {
// For graphs about to execute: fused nodes have no gradient rule.
bool fuse_elementwise(Graph& g);
}  // namespace metagrad
