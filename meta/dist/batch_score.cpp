// score_across_ranks: round-robin candidates, one allgather of every rank's scores or its error.
#include "meta/dist/batch_score.h"

#include <fmt/format.h>

#include <exception>
#include <string>

#include "metagrad/error.h"

namespace metagrad {

namespace {

std::vector<double> checked(const CandidateScore& score, size_t i, size_t width) {
  std::vector<double> v = score(i);
  if (v.size() != width) throw Error(fmt::format("candidate {} gave {} scores, expected {}", i, v.size(), width));
  return v;
}

}  // namespace

std::vector<double> score_across_ranks(Collective* c, size_t n, size_t width, const CandidateScore& score) {
  std::vector<double> all(n * width);
  if (!c || c->size() <= 1) {
    for (size_t i = 0; i < n; ++i) {
      const std::vector<double> v = checked(score, i, width);
      std::copy(v.begin(), v.end(), all.begin() + long(i * width));
    }
    return all;
  }
  const size_t rank = size_t(c->rank()), ranks = size_t(c->size());
  // This rank's message: [1, its candidates' values in order] or [0, candidate, length, the
  // error's characters]; the text rides in doubles because allgather moves doubles only.
  std::vector<double> mine{1.0};
  for (size_t i = rank; i < n; i += ranks) {
    try {
      const std::vector<double> v = checked(score, i, width);
      mine.insert(mine.end(), v.begin(), v.end());
    } catch (const std::exception& e) {
      const std::string what = e.what();
      mine = {0.0, double(i), double(what.size())};
      for (unsigned char ch : what) mine.push_back(double(ch));
      break;
    }
  }
  const std::vector<double> got = c->allgather(mine);
  size_t at = 0;
  for (size_t r = 0; r < ranks; ++r) {
    if (got.at(at) == 0.0) {
      const size_t i = size_t(got.at(at + 1)), len = size_t(got.at(at + 2));
      std::string what;
      for (size_t k = 0; k < len; ++k) what.push_back(char(static_cast<unsigned char>(got.at(at + 3 + k))));
      throw Error(fmt::format("rank {} of {}, candidate {}: {}", r, ranks, i, what));
    }
    ++at;
    for (size_t i = r; i < n; i += ranks, at += width) {
      if (at + width > got.size()) throw Error(fmt::format("score_across_ranks: rank {} sent too few scores", r));
      std::copy(got.begin() + long(at), got.begin() + long(at + width), all.begin() + long(i * width));
    }
  }
  return all;
}

}  // namespace metagrad
