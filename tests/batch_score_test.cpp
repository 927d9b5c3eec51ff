// score_across_ranks: the plain loop of one process (local_comm), and several ranks simulated by
// threads sharing an in-memory allgather: who scores which candidate, every rank getting every
// score, and one rank's error reaching all of them.
#include "meta/dist/batch_score.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "meta/dist/comm.h"
#include "metagrad/error.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

// The ranks of a simulated job: allgather waits for every rank's values, then hands everyone all of
// them in rank order. Only allgather is needed here.
struct Threads {
  explicit Threads(int n) : parts(size_t(n)) {}
  std::mutex m;
  std::condition_variable cv;
  std::vector<std::vector<double>> parts;
  int arrived = 0, round = 0;
};

class ThreadRank final : public Collective {
 public:
  ThreadRank(Threads& t, int rank) : t_(t), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return int(t_.parts.size()); }
  void allreduce_sum(float*, size_t) override { throw std::logic_error("unused"); }
  void allreduce_sum(double*, size_t) override { throw std::logic_error("unused"); }
  void broadcast(void*, size_t, int) override { throw std::logic_error("unused"); }
  std::vector<double> allgather(std::span<const double> mine) override {
    std::unique_lock<std::mutex> lock(t_.m);
    const int round = t_.round;
    t_.parts[size_t(rank_)].assign(mine.begin(), mine.end());
    if (++t_.arrived == size()) {
      t_.arrived = 0;
      ++t_.round;
      t_.cv.notify_all();
    } else {
      t_.cv.wait(lock, [&] { return t_.round != round; });
    }
    std::vector<double> all;
    for (const auto& p : t_.parts) all.insert(all.end(), p.begin(), p.end());
    return all;
  }

 private:
  Threads& t_;
  int rank_;
};

struct RankRun {
  std::vector<double> scores;
  std::vector<size_t> scored;  // the candidates this rank trained
  std::string error;
};

// Runs score_across_ranks on `ranks` threads; candidate i scores {10 i, 10 i + 1}, or throws on
// rank `fail_rank` at candidate `fail_at`.
std::vector<RankRun> run_ranks(int ranks, size_t n, int fail_rank = -1, size_t fail_at = 0) {
  Threads t(ranks);
  std::vector<RankRun> out(static_cast<size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      ThreadRank me(t, r);
      RankRun& o = out[size_t(r)];
      try {
        o.scores = score_across_ranks(&me, n, 2, [&](size_t i) {
          if (r == fail_rank && i == fail_at) throw std::runtime_error("out of memory in candidate");
          o.scored.push_back(i);
          return std::vector<double>{10.0 * double(i), 10.0 * double(i) + 1};
        });
      } catch (const Error& e) {
        o.error = e.what();
      }
    });
  for (std::thread& th : threads) th.join();
  return out;
}

std::vector<double> expected(size_t n) {
  std::vector<double> v;
  for (size_t i = 0; i < n; ++i) v.insert(v.end(), {10.0 * double(i), 10.0 * double(i) + 1});
  return v;
}

TEST(BatchScore, OneProcessIsAPlainLoop) {
  std::unique_ptr<Comm> c = local_comm();
  std::vector<size_t> order;
  const std::vector<double> s = score_across_ranks(c.get(), 5, 2, [&](size_t i) {
    order.push_back(i);
    return std::vector<double>{10.0 * double(i), 10.0 * double(i) + 1};
  });
  EXPECT_EQ(s, expected(5));
  EXPECT_EQ(order, (std::vector<size_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(score_across_ranks(nullptr, 3, 2, [](size_t i) { return std::vector<double>{10.0 * double(i), 10.0 * double(i) + 1}; }),
            expected(3));
  EXPECT_TRUE(score_across_ranks(c.get(), 0, 2, [](size_t) { return std::vector<double>{}; }).empty());
  // Its own exceptions pass through unchanged; a wrong number of values is an Error.
  EXPECT_THROW(score_across_ranks(c.get(), 2, 1, [](size_t) -> std::vector<double> { throw std::runtime_error("x"); }),
               std::runtime_error);
  const std::string e = testing::error_of([&] { score_across_ranks(c.get(), 2, 2, [](size_t) { return std::vector<double>{1}; }); });
  EXPECT_NE(e.find("candidate 0 gave 1 scores, expected 2"), std::string::npos) << e;
}

TEST(BatchScore, EachCandidateOnOneRankAndEveryScoreOnEveryRank) {
  for (int ranks : {2, 3}) {
    for (size_t n : {size_t(1), size_t(2), size_t(7)}) {
      const std::vector<RankRun> runs = run_ranks(ranks, n);
      for (int r = 0; r < ranks; ++r) {
        const RankRun& o = runs[size_t(r)];
        EXPECT_EQ(o.error, "");
        EXPECT_EQ(o.scores, expected(n)) << ranks << " ranks, " << n << " candidates, rank " << r;
        std::vector<size_t> mine;
        for (size_t i = size_t(r); i < n; i += size_t(ranks)) mine.push_back(i);
        EXPECT_EQ(o.scored, mine) << "round-robin";
      }
    }
  }
}

TEST(BatchScore, AnErrorOnOneRankReachesEveryRank) {
  const std::vector<RankRun> runs = run_ranks(3, 7, 1, 4);
  for (const RankRun& o : runs) {
    EXPECT_TRUE(o.scores.empty());
    EXPECT_NE(o.error.find("rank 1 of 3, candidate 4: out of memory in candidate"), std::string::npos) << o.error;
  }
  // The failing rank stops at its error: candidate 1 done, 4 failed, 7 is beyond n.
  EXPECT_EQ(runs[1].scored, (std::vector<size_t>{1}));
}

}  // namespace
}  // namespace metagrad
