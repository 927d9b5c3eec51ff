// The arena planner: reuse where lifetimes allow, never overlap where they do not.
#include "runtime/memory_plan.h"

#include <gtest/gtest.h>

#include <random>

namespace metagrad {
namespace {

TEST(MemoryPlan, ReusesDeadBuffers) {
  // a: 0..1, b: 1..2, c: 2..3 — c can take a's space, b cannot.
  auto plan = plan_memory({{1000, 0, 1}, {1000, 1, 2}, {1000, 2, 3}});
  EXPECT_EQ(plan.offsets[0], plan.offsets[2]);
  EXPECT_NE(plan.offsets[0], plan.offsets[1]);
  EXPECT_LT(plan.peak_bytes, plan.naive_bytes);
  EXPECT_EQ(plan.naive_bytes, 3u * 1024u);
}

TEST(MemoryPlan, OutputNeverSharesWithInputOfSameStep) {
  // b is written at step 1 where a is read for the last time: they must not overlap.
  auto plan = plan_memory({{256, 0, 1}, {256, 1, 2}});
  EXPECT_NE(plan.offsets[0], plan.offsets[1]);
}

TEST(MemoryPlan, InPlacePartnerIsTakenOverOnlyWhenItDiesThere) {
  // b may overwrite a, which dies at b's step; c names b but b lives on, so c gets new space.
  std::vector<BufferRequest> req{{512, 0, 1}, {512, 1, 3}, {512, 2, 3}};
  req[1].inplace_of = 0;
  req[2].inplace_of = 1;
  auto plan = plan_memory(req);
  EXPECT_EQ(plan.offsets[1], plan.offsets[0]);
  EXPECT_NE(plan.offsets[2], plan.offsets[1]);
}

TEST(MemoryPlan, RandomLifetimesNeverOverlap) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<BufferRequest> req;
    for (int i = 0; i < 40; ++i) {
      int first = int(rng() % 30), len = int(rng() % 10);
      req.push_back({size_t(1 + rng() % 5000), first, first + len});
    }
    auto plan = plan_memory(req);
    for (size_t i = 0; i < req.size(); ++i) {
      EXPECT_EQ(plan.offsets[i] % 64, 0u);
      EXPECT_LE(plan.offsets[i] + req[i].bytes, plan.peak_bytes);
      for (size_t j = i + 1; j < req.size(); ++j) {
        bool live_together = !(req[i].last < req[j].first || req[j].last < req[i].first);
        bool mem_overlap = plan.offsets[i] < plan.offsets[j] + req[j].bytes && plan.offsets[j] < plan.offsets[i] + req[i].bytes;
        EXPECT_FALSE(live_together && mem_overlap) << "buffers " << i << " and " << j;
      }
    }
  }
}

}  // namespace
}  // namespace metagrad
