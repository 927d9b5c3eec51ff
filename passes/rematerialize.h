// Rematerialization: recomputes a large value at a late reader instead of keeping it alive until
// then, when its own operands are alive there anyway or small.
#pragma once
#include "metagrad/graph.h"

namespace metagrad {
// For each large single-output elementwise node N (f32, at least 256 KiB) and each of its readers
// U after the first: if U is elementwise of N's shape (so fusion can absorb the copy) and every
// large operand of N is still read at or after U (small operands, such as per-channel batch-norm
// statistics, are cheap to keep), U reads a fresh copy of N built just before it. N then dies at
// its first reader. Batch norm's normalized activations are the case this is for: the backward
// pass reads them again long after the forward, while the centred input it is made from is kept
// for the backward anyway. Likewise a large non-elementwise value made from small operands (at
// most 1/8 of its size: a first-layer convolution of images) is made again once, just before its
// second reader, for every later reader. Returns whether any copy was made.
bool rematerialize(Graph& g);
}  // namespace metagrad
