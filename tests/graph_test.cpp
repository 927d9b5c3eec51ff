// Graph construction: builder errors name op, node and shapes; the verifier catches malformed graphs.
#include <gtest/gtest.h>

#include "metagrad/error.h"
#include "metagrad/ops.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

using testing::error_of;

TEST(Graph, ShapeErrorNamesOpNodeAndShapes) {
  Graph g;
  Tensor a = input(g, "a", {2, 3});
  Tensor b = input(g, "b", {4, 5});
  std::string msg = error_of([&] { apply("matmul", {a, b}, {}, "logits"); });
  EXPECT_NE(msg.find("matmul"), std::string::npos) << msg;
  EXPECT_NE(msg.find("logits"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2,3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4,5]"), std::string::npos) << msg;
}

TEST(Graph, UnknownOpAndBadAttributes) {
  Graph g;
  Tensor a = input(g, "a", {2, 3});
  EXPECT_NE(error_of([&] { apply("frobnicate", {a}); }).find("unknown op 'frobnicate'"), std::string::npos);
  EXPECT_NE(error_of([&] { apply("relu", {a}, {{"alpha", 0.1}}); }).find("no attribute 'alpha'"), std::string::npos);
  EXPECT_NE(error_of([&] { apply("sum", {a}, {{"axes", std::string("x")}}); }).find("must be ints"), std::string::npos);
}

TEST(Graph, NamesAreUnique) {
  Graph g;
  input(g, "x", {1});
  EXPECT_THROW(input(g, "x", {2}), GraphError);
  EXPECT_THROW(parameter(g, "x", {2}, Init::zeros()), GraphError);
}

TEST(Graph, VerifierRejectsForwardReferencesAndBadTypes) {
  Graph g;
  Tensor a = input(g, "a", {2});
  Tensor b = relu(a);
  verify(g);
  Graph forward = g;
  forward.node(b.value().node).inputs[0] = Value{5, 0};
  EXPECT_NE(error_of([&] { verify(forward); }).find("not an earlier node"), std::string::npos);
  Graph wrong = g;
  wrong.node(b.value().node).outputs[0].shape = {3};
  EXPECT_NE(error_of([&] { verify(wrong); }).find("differ from inferred"), std::string::npos);
}

TEST(Graph, UpdatesMustMatchTheParameterType) {
  Graph g;
  Tensor w = parameter(g, "w", {2}, Init::zeros());
  Tensor x = input(g, "x", {3});
  EXPECT_THROW(g.add_update(w.value().node, x.value()), ShapeError);
  EXPECT_THROW(g.add_update(x.value().node, x.value()), GraphError);
  g.add_update(w.value().node, (w * 2.0).value());
  EXPECT_THROW(g.add_update(w.value().node, w.value()), GraphError);  // twice
}

}  // namespace
}  // namespace metagrad
