// Targeted checks of shape and elementwise ops beyond the registry cases.
#include <gtest/gtest.h>

#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/ops.h"
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
  EXPECT_THROW(sum_to_shape(x, {2, 1, 1, 4}), ShapeError);
  // Leading 1s in the target that x lacks, and size-1 axes of x inside the target.
  Tensor y = input(g, "y", {3, 1, 4});
  EXPECT_EQ(sum_to_shape(y, {1, 1, 4}).shape(), (Shape{1, 1, 4}));
  EXPECT_EQ(sum_to_shape(y, {1, 3, 1, 4}).shape(), (Shape{1, 3, 1, 4}));
  EXPECT_EQ(sum_to_shape(y, {1, 1}).shape(), (Shape{1, 1}));
  auto ry = reference_eval(g, {sum_to_shape(y, {1, 1}).value()}, {{"y", testing::random_ref({3, 1, 4}, 2)}});
  double total = 0;
  for (double v : testing::random_ref({3, 1, 4}, 2).data) total += v;
  EXPECT_NEAR(ry[0].data[0], total, 1e-12);
}

TEST(ShapeOps, ReductionAxesAreStoredCanonical) {
  Graph g;
  Tensor x = input(g, "x", {2, 3, 4});
  Tensor s = sum(x, {-1, 0}, true);
  EXPECT_EQ(s.shape(), (Shape{1, 3, 1}));
  EXPECT_EQ(attr_ints(s.node().attrs, "axes"), (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(mean(x, {-2}).shape(), (Shape{2, 4}));
  EXPECT_EQ(max(x).shape(), (Shape{}));
  EXPECT_THROW(sum(x, {3}), ShapeError);
  EXPECT_THROW(sum(x, {1, -2}), ShapeError);  // the same axis twice
}

TEST(ShapeOps, MatmulShapeErrorNamesBothShapes) {
  Graph g;
  Tensor a = input(g, "a", {2, 3}), b = input(g, "b", {4, 5});
  std::string msg = error_of([&] { matmul(a, b); });
  EXPECT_NE(msg.find("[2,3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4,5]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("matmul"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { matmul(a, b, true, false); }).find("[2,3]^T"), std::string::npos);
  // Batch axes that do not broadcast: the message names the operands, not just their batches.
  msg = error_of([&] { matmul(input(g, "c", {2, 3, 4}), input(g, "d", {3, 4, 5})); });
  EXPECT_NE(msg.find("[2,3,4]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3,4,5]"), std::string::npos) << msg;
  EXPECT_THROW(matmul(input(g, "v", {4}), b), ShapeError);
}

TEST(ShapeOps, ReshapeInfersOneDimensionAndNamesShapesOnError) {
  Graph g;
  Tensor x = input(g, "x", {4, 6});
  EXPECT_EQ(reshape(x, {-1, 3}).shape(), (Shape{8, 3}));
  std::string msg = error_of([&] { reshape(x, {5, 5}); });
  EXPECT_NE(msg.find("[4,6]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[5,5]"), std::string::npos) << msg;
  EXPECT_THROW(reshape(x, {-1, -1}), ShapeError);
  msg = error_of([&] { reshape(x, {-1, 5}); });
  EXPECT_NE(msg.find("[4,6]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[-1,5]"), std::string::npos) << msg;
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

TEST(ShapeOps, GatherAndScatterAddAreAdjointOnInnerAxes) {
  Graph g;
  Tensor x = input(g, "x", {2, 5, 3});
  Tensor u = input(g, "u", {2, 2, 3, 3});
  Tensor idx = input(g, "idx", {2, 3}, DType::i32);
  Tensor lhs = sum(gather(x, idx, -2) * u);
  Tensor rhs = sum(x * scatter_add(u, idx, 1, 5));
  EXPECT_EQ(attr_int(gather(x, idx, -2).node().attrs, "axis"), 1);
  RefValues f{{"x", testing::random_ref({2, 5, 3}, 3)},
              {"u", testing::random_ref({2, 2, 3, 3}, 4)},
              {"idx", RefTensor{{2, 3}, {4, 0, 4, 2, 1, 4}}}};
  auto r = reference_eval(g, {lhs.value(), rhs.value()}, f);
  EXPECT_NEAR(r[0].data[0], r[1].data[0], 1e-12);
}

// Generic apply() (and parsed text) may store a negative axis; every consumer normalizes it.
TEST(ShapeOps, NegativeAxisAttributesEvaluateCorrectly) {
  Graph g;
  Tensor a = input(g, "a", {2, 3}), b = input(g, "b", {2, 2});
  Tensor idx = input(g, "idx", {2}, DType::i32);
  g.add_output("c", apply("concat", {a, b}, {{"axis", int64_t(-1)}}).value());
  g.add_output("g", apply("gather", {a, idx}, {{"axis", int64_t(-1)}}).value());
  RefValues f{{"a", RefTensor{{2, 3}, {1, 2, 3, 4, 5, 6}}}, {"b", RefTensor{{2, 2}, {7, 8, 9, 10}}}, {"idx", RefTensor{{2}, {2, 0}}}};
  auto r = reference_eval(g, {g.output("c"), g.output("g")}, f);
  EXPECT_EQ(r[0].data, (std::vector<double>{1, 2, 3, 7, 8, 4, 5, 6, 9, 10}));
  EXPECT_EQ(r[1].data, (std::vector<double>{3, 1, 6, 4}));
  ParamStore store;
  Executable exe(g, store);
  auto af = testing::to_f32(f["a"]), bf = testing::to_f32(f["b"]);
  std::vector<int32_t> ix{2, 0};
  exe.run({Feed::f32("a", {2, 3}, af), Feed::f32("b", {2, 2}, bf), Feed::i32("idx", {2}, ix)});
  for (size_t k = 0; k < 10; ++k) EXPECT_EQ(exe.fetch(0)[k], float(r[0].data[k]));
  for (size_t k = 0; k < 4; ++k) EXPECT_EQ(exe.fetch(1)[k], float(r[1].data[k]));
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
