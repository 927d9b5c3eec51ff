// Scoring a list of independent candidates (search individuals, hyperparameter configurations)
// across the ranks of a job: each candidate is trained and scored on one rank alone, and every
// rank ends up with every score. Each rank's training is its own (no data parallelism inside a
// candidate), so a candidate's score is the one a single process computes.
#pragma once
#include <cstddef>
#include <functional>
#include <vector>

#include "metagrad/collective.h"

namespace metagrad {

// Scores candidate i (0 <= i < n): exactly `width` values. It runs on one rank only and must not
// call collectives.
using CandidateScore = std::function<std::vector<double>(size_t i)>;

// Candidate i runs on rank i % size (the candidates of one search cost about the same, so
// round-robin balances them as well as a contiguous split and keeps neighbours apart). Returns
// n * width values, candidate-major, identical on every rank, after one allgather. An exception in
// any rank's candidate becomes an Error on every rank naming the rank, the candidate and its
// message (so no rank waits for one that gave up); a wrong number of values is such an error. In a
// group of one (or with c == nullptr) a plain loop that lets exceptions through unchanged.
std::vector<double> score_across_ranks(Collective* c, size_t n, size_t width, const CandidateScore& score);

}  // namespace metagrad
