// Early accumulation: a gradient reached along many paths is one n-ary sum (a fused program of
// adds) whose addends are each held from their making to the sum. Summing them as they are made
// holds one running sum instead.
#pragma once
#include "metagrad/graph.h"

namespace metagrad {

// Rewrites every fused program that only adds three or more whole values of its output's type,
// each once, into binary adds placed right after each addend is made (addends in the order they
// are made, so the summation order changes). Returns whether it changed `g`.
bool accumulate_sums_early(Graph& g);

}  // namespace metagrad
