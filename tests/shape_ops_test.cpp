// Targeted checks of shape and elementwise ops beyond the registry cases.
#include <gtest/gtest.h>

#include "graph/error.h"
#include "ops/ops.h"
#include "runtime/executable.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

using testing::error_of;

TEST(ShapeOps, SumToShapeOverRankDifferences) {
  Graph g;
  Tensor x = input(g, "x", {2, 3, 4});
  EXPECT_EQ(sum_to_shape(x, {4}).shape(), (Shape{4}));
  EXPECT_EQ(sum_to_shape(x, {3, 1}).shape(), (Shape{3, 1}));
  EXPECT_EQ(sum_to_shape(x, {}).shape(), (Shape{}));
  EXPECT_EQ(sum_to_shape(x, {2, 3, 4}).value(), x.value());
  auto r = reference_eval(g, {sum_to_shape(x, {3, 1}).value()}, {{"x", testing::random_ref({2, 3, 4}, 1)}});
  auto xs = testing::random_ref({2, 3, 4}, 1).data;
  for (int j = 0; j < 3; ++j) {
    double want = 0;
    for (int i = 0; i < 2; ++i)
      for (int k = 0; k < 4; ++k) want += xs[size_t((i * 3 + j) * 4 + k)];
    EXPECT_NEAR(r[0].data[size_t(j)], want, 1e-12);
  }
  EXPECT_THROW(sum_to_shape(x, {5}), ShapeError);
}

TEST(ShapeOps, ReshapeInfersOneDimensionAndNamesShapesOnError) {
  Graph g;
  Tensor x = input(g, "x", {4, 6});
  EXPECT_EQ(reshape(x, {-1, 3}).shape(), (Shape{8, 3}));
  std::string msg = error_of([&] { reshape(x, {5, 5}); });
  EXPECT_NE(msg.find("[4,6]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[5,5]"), std::string::npos) << msg;
  EXPECT_THROW(reshape(x, {-1, -1}), ShapeError);
}

TEST(ShapeOps, GatherAndScatterAddAreAdjoint) {
  Graph g;
  Tensor x = input(g, "x", {5, 3});
  Tensor u = input(g, "u", {4, 3});
  Tensor idx = input(g, "idx", {4}, DType::i32);
  Tensor lhs = sum(gather(x, idx) * u);
  Tensor rhs = sum(x * scatter_add(u, idx, 0, 5));
  RefValues f{{"x", testing::random_ref({5, 3}, 1)}, {"u", testing::random_ref({4, 3}, 2)}, {"idx", RefTensor{{4}, {4, 0, 4, 2}}}};
  auto r = reference_eval(g, {lhs.value(), rhs.value()}, f);
  EXPECT_NEAR(r[0].data[0], r[1].data[0], 1e-12);
  RefValues bad = f;
  bad["idx"].data[1] = 7;
  EXPECT_THROW(reference_eval(g, {lhs.value()}, bad), RuntimeError);
}

TEST(ShapeOps, OutOfRangeIndexAtRunTimeIsAnError) {
  Graph g;
  Tensor labels = input(g, "labels", {3}, DType::i32);
  g.add_output("y", one_hot(labels, 4).value());
  ParamStore store;
  Executable exe(g, store);
  std::vector<int32_t> ok{0, 3, 1}, bad{0, 4, 1};
  exe.run({Feed::i32("labels", {3}, ok)});
  EXPECT_EQ(exe.fetch(0)[7], 1.0f);
  EXPECT_THROW(exe.run({Feed::i32("labels", {3}, bad)}), RuntimeError);
}

TEST(ElementwiseOps, BroadcastErrorNamesBothShapes) {
  Graph g;
  std::string msg = error_of([&] { input(g, "a", {2, 3}) + input(g, "b", {4}); });
  EXPECT_NE(msg.find("[2,3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("add"), std::string::npos) << msg;
}

TEST(ElementwiseOps, WhereSelectsBothBranchesAndFirstOperandBroadcastRuns) {
  Graph g;
  Tensor c = input(g, "c", {4});
  Tensor a = input(g, "a", {1, 4}), b = input(g, "b", {3, 1});
  g.add_output("w", where(c, a, b).value());
  g.add_output("d", (a - b).value());  // oneDNN broadcasts only its second operand: a loop runs this
  RefValues f{{"c", RefTensor{{4}, {1, 0, 0, 1}}}, {"a", testing::random_ref({1, 4}, 3)}, {"b", testing::random_ref({3, 1}, 4)}};
  auto ref = reference_eval(g, {g.output("w"), g.output("d")}, f);
  ParamStore store;
  Executable exe(g, store);
  auto cf = testing::to_f32(f["c"]), af = testing::to_f32(f["a"]), bf = testing::to_f32(f["b"]);
  exe.run({Feed::f32("c", {4}, cf), Feed::f32("a", {1, 4}, af), Feed::f32("b", {3, 1}, bf)});
  for (size_t k = 0; k < 12; ++k) {
    EXPECT_NEAR(exe.fetch(0)[k], ref[0].data[k], 1e-6);
    EXPECT_NEAR(exe.fetch(1)[k], ref[1].data[k], 1e-6);
  }
  EXPECT_EQ(ref[0].data[1], f["b"].data[0]) << "c == 0 picks b";
  EXPECT_EQ(ref[0].data[0], f["a"].data[0]) << "c != 0 picks a";
}

}  // namespace
}  // namespace metagrad
