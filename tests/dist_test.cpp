// The distributed unit without MPI: the bucketed gradient combiner as graph, rank shares, and the
// allreduce_sum op under a stand-in Collective (the MPI runs are in tests/mpi/mpi_test.cpp).
#include <gtest/gtest.h>

#include "graph/op_def.h"
#include "meta/dist/comm.h"
#include "meta/dist/data_parallel.h"
#include "meta/dist/gradient_allreduce.h"
#include "metagrad/metagrad.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

// What every rank of a group of `n` sees when all of them hold the same values: n times each.
class IdenticalRanks final : public Collective {
 public:
  explicit IdenticalRanks(int n) : n_(n) {}
  int rank() const override { return 0; }
  int size() const override { return n_; }
  void allreduce_sum(float* d, size_t count) override {
    ++calls;
    for (size_t i = 0; i < count; ++i) d[i] *= float(n_);
  }
  void allreduce_sum(double* d, size_t count) override {
    for (size_t i = 0; i < count; ++i) d[i] *= n_;
  }
  void broadcast(void*, size_t, int) override {}
  std::vector<double> allgather(std::span<const double> mine) override { return {mine.begin(), mine.end()}; }
  int calls = 0;

 private:
  int n_;
};

TEST(Dist, GradientAllreduceBucketsLastFirstAndRestoresShapes) {
  Graph g;
  std::vector<Shape> shapes = {{3, 4}, {4}, {}, {5}};
  std::vector<Tensor> grads;
  for (size_t i = 0; i < shapes.size(); ++i) grads.push_back(input(g, "g" + std::to_string(i), shapes[i]));
  AllreduceOptions o;
  o.bucket_bytes = 8 * sizeof(float);  // {5} and {} share a bucket; {4} and {3,4} do not fit with them
  std::vector<Tensor> out = gradient_allreduce(2, o)(g, grads);
  ASSERT_EQ(out.size(), grads.size());
  for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i].shape(), shapes[i]);
  AllreduceCount c = count_allreduces(g);
  EXPECT_EQ(c.buckets, 3);
  EXPECT_EQ(c.floats, 12 + 4 + 1 + 5);
  // In one process (the reference) the sum over ranks is the value itself, so the mean is x / 2.
  RefValues feeds;
  std::vector<Value> fetch;
  for (size_t i = 0; i < grads.size(); ++i) {
    feeds["g" + std::to_string(i)] = testing::random_ref(shapes[i], 7 + i);
    fetch.push_back(out[i].value());
  }
  std::vector<RefTensor> r = reference_eval(g, fetch, feeds, {});
  for (size_t i = 0; i < grads.size(); ++i)
    for (size_t k = 0; k < r[i].data.size(); ++k)
      EXPECT_DOUBLE_EQ(r[i].data[k], 0.5 * feeds["g" + std::to_string(i)].data[k]) << i << " " << k;
}

TEST(Dist, CompiledAllreduceOfIdenticalRanksAveragesBackToTheGradient) {
  // Three ranks with the same gradients: each bucket sums to 3x and is scaled by 1/3.
  Graph g;
  Tensor a = input(g, "a", {6}), b = input(g, "b", {2, 2});
  std::vector<Tensor> out = gradient_allreduce(3)(g, {a, b});
  g.add_output("a", out[0].value());
  g.add_output("b", out[1].value());
  optimize(g);
  IdenticalRanks ranks(3);
  CompileOptions opts;
  opts.collective = &ranks;
  ParamStore store;
  Executable exe(g, store, {}, opts);
  std::vector<float> av = {1, -2, 3, 0.5f, 6, 9}, bv = {3, 6, -9, 12};
  exe.run({Feed::f32("a", {6}, av), Feed::f32("b", {2, 2}, bv)});
  EXPECT_EQ(ranks.calls, 1);  // one bucket of 10 floats
  for (size_t i = 0; i < av.size(); ++i) EXPECT_FLOAT_EQ(exe.fetch("a")[i], av[i]);
  for (size_t i = 0; i < bv.size(); ++i) EXPECT_FLOAT_EQ(exe.fetch("b")[i], bv[i]);
}

TEST(Dist, OneRankAddsNoNodes) {
  EXPECT_FALSE(bool(gradient_allreduce(1)));
  EXPECT_NE(testing::error_of([] { gradient_allreduce(0); }).find("0 ranks"), std::string::npos);
}

TEST(Dist, AllreduceIsNeverConstantFolded) {
  // Folding would use the one-process reference and drop the other ranks' contributions.
  Graph g;
  Tensor c = constant(g, {3}, {1, 2, 3});
  g.add_output("y", allreduce_sum(c * 2.0).value());
  optimize(g);
  EXPECT_EQ(count_allreduces(g).buckets, 1);
  IdenticalRanks ranks(2);
  CompileOptions opts;
  opts.collective = &ranks;
  ParamStore store;
  Executable exe(g, store, {}, opts);
  exe.run(std::vector<Feed>{});
  EXPECT_EQ(std::vector<float>(exe.fetch("y").begin(), exe.fetch("y").end()), (std::vector<float>{4, 8, 12}));
  // Without a Collective the same graph is one process: the identity.
  Executable alone(g, store);
  alone.run(std::vector<Feed>{});
  EXPECT_EQ(alone.fetch("y")[2], 6.f);
}

TEST(Dist, SharesOfABatch) {
  EXPECT_EQ(Shard({1, 3}).of(12).begin, 4);
  EXPECT_EQ(Shard({2, 3}).of(12).end, 12);
  EXPECT_NE(testing::error_of([] { (void)Shard({0, 4}).of(10, "meta-batch"); })
                .find("the meta-batch of 10 does not split evenly over 4 processes: choose a multiple of 4"),
            std::string::npos);
  // Balanced shares cover 0..total-1 in rank order, sizes differing by at most one.
  int64_t next = 0;
  for (int r = 0; r < 4; ++r) {
    TaskRange s = Shard{r, 4}.balanced(10);
    EXPECT_EQ(s.begin, next);
    EXPECT_EQ(s.size(), r < 2 ? 3 : 2);
    next = s.end;
  }
  EXPECT_EQ(next, 10);
}

TEST(Dist, OneProcessGroupWithoutMpirun) {
  // The test binary is not started by mpirun: connect() must not touch MPI.
  std::unique_ptr<Comm> c = connect();
  EXPECT_EQ(c->size(), 1);
  EXPECT_FALSE(c->distributed());
  float v[2] = {1, 2};
  c->allreduce_sum(v, 2);
  EXPECT_EQ(v[1], 2.f);
  EXPECT_EQ(c->stats().calls, 1);
  EXPECT_EQ(c->stats().bytes, 8);
  std::vector<double> mine = {3, 4};
  EXPECT_EQ(gather_results(*c, mine), mine);
  c->finish();
}

}  // namespace
}  // namespace metagrad
