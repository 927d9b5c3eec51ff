// The text IR round-trips exactly; the parser names the line of every error; DOT and JSON writers.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "meta/learn/maml.h"
#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/ops.h"
#include "metagrad/pipeline.h"
#include "metagrad/serialize.h"

namespace metagrad {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Leaves of every kind, attributes of every kind, values that stress the number printer, and
// names that need escapes. Needs no op.
Graph leaf_graph() {
  Graph g;
  g.add_input("x", {DType::f32, {2, 3}});
  g.add_input("labels \"quoted\" \\ back\nslash # not a comment", {DType::i32, {2}});
  g.add_input("scalar", {DType::f32, {}});
  g.add_input("empty", {DType::f32, {0, 3}});
  g.add_parameter("w", {DType::f32, {3, 4}}, "normal", {{"mean", 0.0}, {"std", 0.5}, {"seed", int64_t(7)}});
  g.add_parameter("opt.t", {DType::f32, {}}, "zeros", {}, false);
  g.add_parameter("every attr", {DType::f32, {2}}, "custom init",
                  {{"i", int64_t(-3)}, {"f", -0.0}, {"big", 1e300}, {"tiny", 5e-324}, {"inf", -kInf},
                   {"ints", std::vector<int64_t>{1, -2, 3}}, {"no ints", std::vector<int64_t>{}},
                   {"floats", std::vector<double>{0.5, 1.0, 1.0 / 3.0, kInf}}, {"no floats", std::vector<double>{}},
                   {"s", std::string("a \"b\" \\c\nd")}, {"empty s", std::string()}});
  g.add_constant({DType::f32, {2, 2}}, {0.1, 1e-30, -0.0, 1.0 / 3.0}, "eps");
  g.add_constant({DType::f32, {4}}, {kInf, -kInf, std::numeric_limits<double>::quiet_NaN(),
                                    -std::numeric_limits<double>::quiet_NaN()});
  g.add_constant({DType::i32, {3}}, {-7, 0, 2147483647});
  g.add_constant({DType::f32, {}}, {0.5});
  g.add_output("x again", {0, 0});
  g.add_output("eps", {7, 0});
  g.add_update(4, {4, 0});
  return g;
}

// Op nodes: float, int, int-list attributes, a multi-use value, a named op that needs escapes, an
// i32 input, outputs and an update.
Graph op_graph() {
  Graph g;
  Tensor x = input(g, "x", {2, 3});
  Tensor lab = input(g, "labels", {2}, DType::i32);
  Tensor w = parameter(g, "w", {3, 4}, Init::normal(0.0, 0.5, 7));
  Tensor t = parameter(g, "opt.t", {}, Init::zeros(), false);
  Tensor c = constant(g, {2}, {0.1, 1e-30}, "eps");
  Tensor h = leaky_relu(matmul(x, w), 0.2).named("hid\"den\\");
  Tensor logits = slice(h, {0, 0}, {2, 2}) + c;
  Tensor loss = cross_entropy(logits, lab) + sum(h * h, {0, 1}, true).named("reg") * 0.0;
  g.add_output("loss", reshape(loss, {}).value());
  g.add_output("h", h.value());
  g.add_update(t.value().node, (t + 1.0).value());
  return g;
}

void expect_same_graph(const Graph& a, const Graph& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const Node &x = a.node(int(i)), &y = b.node(int(i));
    EXPECT_EQ(x.kind, y.kind) << i;
    EXPECT_EQ(x.name, y.name) << i;
    EXPECT_EQ(x.op, y.op) << i;
    EXPECT_EQ(x.inputs, y.inputs) << i;
    EXPECT_EQ(x.outputs, y.outputs) << i;
    EXPECT_EQ(x.init, y.init) << i;
    EXPECT_EQ(x.trainable, y.trainable) << i;
    // Bitwise, so -0.0 and NaN count; the attribute maps compare by value except for NaN (unused here).
    ASSERT_EQ(x.data.size(), y.data.size()) << i;
    if (!x.data.empty()) {
      EXPECT_EQ(std::memcmp(x.data.data(), y.data.data(), x.data.size() * sizeof(double)), 0) << i;
    }
    EXPECT_TRUE(x.attrs == y.attrs) << i;
  }
  ASSERT_EQ(a.outputs().size(), b.outputs().size());
  for (size_t i = 0; i < a.outputs().size(); ++i) {
    EXPECT_EQ(a.outputs()[i].name, b.outputs()[i].name);
    EXPECT_EQ(a.outputs()[i].value, b.outputs()[i].value);
  }
  ASSERT_EQ(a.updates().size(), b.updates().size());
  for (size_t i = 0; i < a.updates().size(); ++i) {
    EXPECT_EQ(a.updates()[i].param, b.updates()[i].param);
    EXPECT_EQ(a.updates()[i].value, b.updates()[i].value);
  }
}

void expect_round_trip(const Graph& g) {
  std::string once = to_text(g);
  Graph parsed = parse_text(once);
  EXPECT_EQ(to_text(parsed), once);
  expect_same_graph(g, parsed);
}

TEST(TextIr, PiecesPrint) {
  EXPECT_EQ(value_str({4, 0}), "%4");
  EXPECT_EQ(value_str({4, 1}), "%4.1");
  EXPECT_EQ(quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
}

TEST(TextIr, LeavesRoundTripExactly) { expect_round_trip(leaf_graph()); }

TEST(TextIr, OpsRoundTripExactly) {
  expect_round_trip(op_graph());
  Graph meta = build_meta_step(MamlConfig{});  // second-order gradients, optimizer state, updates
  expect_round_trip(meta);
  optimize(meta);  // fused nodes carry string, int-list and float-list attributes
  expect_round_trip(meta);
}

TEST(TextIr, GradientGraphRoundTrips) {
  Graph g = op_graph();
  Tensor loss(&g, g.output("loss"));
  Tensor w(&g, {g.find("w"), 0});
  auto dw = grad(loss, {w});
  auto ddw = grad(sum(dw[0] * dw[0]), {w});
  g.add_output("ddw", ddw[0].value());
  expect_round_trip(g);
}

TEST(TextIr, PrintsTheDocumentedForm) {
  Graph g;
  Tensor x = input(g, "x", {2, 3});
  Tensor w = parameter(g, "w", {3, 4}, Init::normal(0.0, 0.01, 1));
  Tensor t = parameter(g, "adam.t", {}, Init::zeros(), false);
  Tensor h = relu(matmul(x, w)).named("h1");
  g.add_output("loss", sum(h * 0.5).value());
  g.add_update(t.value().node, (t + 1.0).value());
  EXPECT_EQ(to_text(g),
            "graph {\n"
            "  %0 = input \"x\" : f32[2,3]\n"
            "  %1 = param \"w\" : f32[3,4] init normal {mean=0.0, seed=1, std=0.01}\n"
            "  %2 = param \"adam.t\" : f32[] init zeros {} state\n"
            "  %3 = matmul(%0, %1) {transpose_a=0, transpose_b=0} : f32[2,4]\n"
            "  %4 = relu(%3) \"h1\" : f32[2,4]\n"
            "  %5 = const : f32[] {0.5}\n"
            "  %6 = mul(%4, %5) : f32[2,4]\n"
            "  %7 = sum(%6) {axes=[0,1], keepdims=0} : f32[]\n"
            "  %8 = const : f32[] {1}\n"
            "  %9 = add(%2, %8) : f32[]\n"
            "  output \"loss\" = %7\n"
            "  update \"adam.t\" = %9\n"
            "}\n");
}

TEST(TextIr, ReadsCommentsLooseLayoutAndDefaults) {
  // Statements may share lines, comments run to the end of a line, '#' in a name is not a
  // comment, default attributes are filled in and %N.0 reads as %N.
  Graph g = parse_text(
      "# a hand-written graph\n"
      "graph{%0=input \"a#b\":f32[2,3] %1 = param \"w\" : f32[3] init ones {}  # trained\n"
      "  %2 = add(%0, %1) : f32[2,3]\n"
      "  %3 = sum(%2.0) {axes=[1]} : f32[2]   # keepdims defaults to 0\n"
      "  output \"s\" = %3.0 }  # trailing comment\n");
  ASSERT_EQ(g.size(), 4u);
  EXPECT_EQ(g.node(0).name, "a#b");
  EXPECT_EQ(attr_int(g.node(3).attrs, "keepdims"), 0);
  EXPECT_EQ(g.outputs()[0].value, (Value{3, 0}));
  expect_round_trip(g);
}

std::string parse_error(const std::string& text) {
  try {
    parse_text(text);
  } catch (const GraphError& e) {
    return e.what();
  }
  return "";
}

TEST(TextIr, ParseErrorsNameLineAndWhat) {
  const std::string head = "graph {\n  %0 = input \"x\" : f32[2,3]\n";
  struct Case {
    std::string text, position, fragment;
  };
  const std::vector<Case> cases = {
      {head + "  %1 = frob(%0) : f32[2,3]\n}\n", "line 3, column 8", "unknown op 'frob'"},
      {head + "  %1 = relu(%0) : q32[2,3]\n}\n", "line 3, column 19", "unknown dtype 'q32'"},
      {head + "  %1 = input \"y\" : f32[2,-3]\n}\n", "line 3, column 26", "expected a dimension, found '-3'"},
      {head + "  %1 = relu(%2) : f32[2,3]\n}\n", "line 3, column 13", "%2 is not an earlier node"},
      {head + "  %1 = relu(%0) : f32[3,2]\n}\n", "line 3, column 3", "relu infers f32[2,3], the text says f32[3,2]"},
      {head + "  %1 = add(%0, %0) : f32[2,3], f32[2,3]\n}\n", "line 3, column 3", "the text says f32[2,3], f32[2,3]"},
      {head + "  %1 = matmul(%0, %0) : f32[2,2]\n}\n", "line 3, column 3", "matmul"},
      {head + "  %1 = relu(%0) : f32[2,3]\n", "line 4, column 1", "missing '}'"},
      {head + "  %1 = relu(%0 : f32[2,3]\n}\n", "line 3, column 16", "expected ',' or ')' after an input, found ':'"},
      {head + "  %1 = input \"x\" : f32[1]\n}\n", "line 3, column 3", "name \"x\" is already used"},
      {head + "  %1 = param \"x\" : f32[1] init zeros {}\n}\n", "line 3, column 3", "already used"},
      {head + "  output \"y\" = %0\n  output \"y\" = %0\n}\n", "line 4, column 3", "declared twice"},
      {head + "  %3 = relu(%0) : f32[2,3]\n}\n", "line 3, column 3", "expected node %1"},
      {head + "  output \"y\" = %7\n}\n", "line 3, column 16", "%7 is not an earlier node"},
      {head + "  output \"y\" = %0.1\n}\n", "line 3, column 16", "has no output 1"},
      {head + "  %1 = const : f32[2] {1.0}\n}\n", "line 3, column 16", "needs 2 values, has 1"},
      {head + "  %1 = const : i32[2] {1, 2.5}\n}\n", "line 3, column 27", "not a 32-bit integer"},
      {head + "  %1 = const : f32[1] {abc}\n}\n", "line 3, column 24", "expected a number, found 'abc'"},
      {head + "  %1 = const : f32[1] {1e999}\n}\n", "line 3, column 24", "'1e999' is out of range"},
      {head + "  %1 = leaky_relu(%0) {alpha=0.1, alpha=0.2} : f32[2,3]\n}\n", "line 3, column 35", "given twice"},
      {head + "  %1 = leaky_relu(%0) {alpha=x} : f32[2,3]\n}\n", "line 3, column 30", "expected an integer, found 'x'"},
      {head + "  %1 = leaky_relu(%0) {beta=1.0} : f32[2,3]\n}\n", "line 3, column 3", "no attribute 'beta'"},
      {head + "  %1 = leaky_relu(%0) {alpha=0.1 : f32[2,3]\n}\n", "line 3, column 34", "expected ',' or '}'"},
      {head + "  %1 = input \"y : f32[2]\n}\n", "line 3, column 14", "unterminated string"},
      {head + "  %1 = input \"y\\t\" : f32[2]\n}\n", "line 3, column 17", "unknown escape"},
      {head + "  update \"x\" = %0\n}\n", "line 3, column 3", "not a parameter"},
      {head + "  %1 = param \"p\" : f32[3] init zeros {}\n  update \"p\" = %0\n}\n", "line 4, column 3",
       "has type f32[2,3], parameter is f32[3]"},
      {head + "  frob \"y\" = %0\n}\n", "line 3, column 3", "found 'frob'"},
      {head + "}\n}\n", "line 4, column 1", "expected the end of the text"},
      {"graf {\n}\n", "line 1, column 1", "expected 'graph', found 'graf'"},
      {"", "line 1, column 1", "expected 'graph', found the end of the text"},
  };
  for (const auto& c : cases) {
    std::string msg = parse_error(c.text);
    EXPECT_EQ(msg.rfind(c.position + ": ", 0), 0u) << "text:\n" << c.text << "message: " << msg;
    EXPECT_NE(msg.find(c.fragment), std::string::npos) << "text:\n" << c.text << "message: " << msg;
  }
  EXPECT_EQ(parse_error(head + "  # a comment\n  %1 = relu(%0) : f32[2,3]\n}\n"), "");
}

TEST(Writers, DotHasNodesEdgesOutputsAndUpdates) {
  Graph g = op_graph();
  std::string dot = to_dot(g);
  EXPECT_EQ(dot.rfind("digraph metagrad {", 0), 0u);
  EXPECT_EQ(dot, to_dot(g));  // deterministic
  EXPECT_NE(dot.find("n0 [label=\"%0 input \\\"x\\\"\\nf32[2,3]\", shape=ellipse];"), std::string::npos) << dot;
  EXPECT_NE(dot.find("n3 [label=\"%3 param (state) \\\"opt.t\\\"\\nf32[]\", shape=cylinder];"), std::string::npos);
  EXPECT_NE(dot.find("n4 [label=\"%4 const \\\"eps\\\"\\nf32[2] = 0.1 1e-30\", shape=plaintext];"), std::string::npos);
  EXPECT_NE(dot.find("n0 -> n5 [label=\"f32[2,3]\"];"), std::string::npos);  // x into matmul
  EXPECT_NE(dot.find("hid\\\"den\\\\"), std::string::npos);               // the escaped op name
  EXPECT_NE(dot.find("shape=doubleoctagon"), std::string::npos);
  EXPECT_NE(dot.find(" -> n3 [style=dashed"), std::string::npos);  // the update edge into opt.t
  for (const Node& n : g.nodes()) EXPECT_NE(dot.find(fmt::format("  n{} [", n.id)), std::string::npos) << n.id;
}

TEST(Writers, DotRendersWithGraphviz) {
  // Graphviz is a test dependency (tools/install-deps.sh installs it).
  ASSERT_EQ(std::system("command -v dot >/dev/null 2>&1"), 0) << "graphviz (dot) is not installed";
  Graph meta = build_meta_step(MamlConfig{});
  optimize(meta);  // fused clusters too
  // One graph per file: Graphviz 2.43 crashes on a file holding a graph after one with clusters.
  std::string path = ::testing::TempDir() + "metagrad_text_test.dot";
  for (const Graph& g : {meta, leaf_graph(), op_graph()}) {
    std::ofstream(path) << to_dot(g);
    EXPECT_EQ(std::system(("dot -Tsvg " + path + " -o /dev/null").c_str()), 0);
  }
  std::remove(path.c_str());
}

TEST(Writers, JsonHasTheSchema) {
  Graph g = op_graph();
  auto j = nlohmann::json::parse(to_json(g));
  ASSERT_EQ(j["nodes"].size(), g.size());
  const auto& x = j["nodes"][0];
  EXPECT_EQ(x["id"], 0);
  EXPECT_EQ(x["kind"], "input");
  EXPECT_EQ(x["name"], "x");
  EXPECT_TRUE(x["op"].is_null());
  EXPECT_EQ(x["outputs"][0]["dtype"], "f32");
  EXPECT_EQ(x["outputs"][0]["shape"], nlohmann::json::array({2, 3}));
  EXPECT_EQ(j["nodes"][1]["outputs"][0]["dtype"], "i32");
  EXPECT_EQ(j["nodes"][2]["init"], "normal");
  EXPECT_EQ(j["nodes"][2]["trainable"], true);
  EXPECT_EQ(j["nodes"][2]["attrs"]["seed"], 7);
  EXPECT_EQ(j["nodes"][3]["trainable"], false);
  EXPECT_EQ(j["nodes"][4]["data"], nlohmann::json::array({0.1, 1e-30}));
  const auto& mm = j["nodes"][5];
  EXPECT_EQ(mm["kind"], "op");
  EXPECT_EQ(mm["op"], "matmul");
  EXPECT_EQ(mm["inputs"], nlohmann::json::parse("[[0,0],[2,0]]"));
  EXPECT_TRUE(mm["attrs"]["transpose_a"].is_number_integer());
  EXPECT_TRUE(j["nodes"][6]["attrs"]["alpha"].is_number_float());
  EXPECT_EQ(j["nodes"][6]["name"], "hid\"den\\");
  EXPECT_EQ(j["outputs"][0]["name"], "loss");
  EXPECT_EQ(j["outputs"][1]["value"], nlohmann::json::array({6, 0}));
  EXPECT_EQ(j["updates"][0]["param"], "opt.t");
  EXPECT_EQ(j["updates"][0]["param_id"], 3);

  auto leaves = nlohmann::json::parse(to_json(leaf_graph()));
  const auto& attrs = leaves["nodes"][6]["attrs"];
  EXPECT_EQ(attrs["s"], "a \"b\" \\c\nd");
  EXPECT_EQ(attrs["inf"], "-inf");
  EXPECT_EQ(attrs["ints"], nlohmann::json::array({1, -2, 3}));
  EXPECT_EQ(attrs["floats"][3], "inf");
  EXPECT_EQ(leaves["nodes"][8]["data"], nlohmann::json::array({"inf", "-inf", "nan", "nan"}));
  EXPECT_EQ(leaves["nodes"][9]["data"], nlohmann::json::array({-7, 0, 2147483647}));
}

}  // namespace
}  // namespace metagrad
