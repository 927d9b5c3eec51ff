// The text IR round-trips; the parser names the line of every error; DOT and JSON writers.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "graph/error.h"
#include "graph/serialize.h"
#include "meta/maml.h"
#include "ops/ops.h"
#include "passes/pipeline.h"

namespace metagrad {
namespace {

Graph sample_graph() {
  Graph g;
  Tensor x = input(g, "x", {2, 3});
  Tensor lab = input(g, "labels \"quoted\" \\ name", {2}, DType::i32);
  Tensor w = parameter(g, "w", {3, 4}, Init::normal(0.0, 0.5, 7));
  Tensor t = parameter(g, "opt.t", {}, Init::zeros(), false);
  Tensor c = constant(g, {2}, {0.1, 1e-30}, "eps");
  Tensor h = leaky_relu(matmul(x, w, false, false), 0.2).named("hidden");
  Tensor logits = slice(h, {0, 0}, {2, 2}) + c;
  Tensor loss = cross_entropy(logits, lab) + sum(h * h, {0, 1}, true).named("reg") * 0.0;
  g.add_output("loss", reshape(loss, {}).value());
  g.add_update(t.value().node, (t + 1.0).value());
  return g;
}

TEST(TextIr, RoundTripsExactly) {
  for (const Graph& g : {sample_graph(), build_meta_step(MamlConfig{})}) {
    std::string once = to_text(g);
    Graph parsed = parse_text(once);
    EXPECT_EQ(to_text(parsed), once);
    EXPECT_EQ(parsed.size(), g.size());
  }
  Graph opt = build_meta_step(MamlConfig{});
  optimize(opt);  // fused nodes carry string and list attributes
  EXPECT_EQ(to_text(parse_text(to_text(opt))), to_text(opt));
}

std::string parse_error(const std::string& text) {
  try {
    parse_text(text);
  } catch (const GraphError& e) {
    return e.what();
  }
  return "";
}

TEST(TextIr, ParseErrorsNameTheLine) {
  const std::string head = "graph {\n  %0 = input \"x\" : f32[2,3]\n";
  struct Case {
    std::string text, fragment;
  };
  std::vector<Case> cases = {
      {head + "  %1 = frob(%0) : f32[2,3]\n}\n", "line 3"},
      {head + "  %1 = relu(%0) : f32[3,2]\n}\n", "line 3"},
      {head + "  %1 = relu(%2) : f32[2,3]\n}\n", "not an earlier node"},
      {head + "  %1 = input \"x\" : f32[1]\n}\n", "already used"},
      {head + "  %1 = relu(%0) : q32[2,3]\n}\n", "unknown dtype"},
      {head + "  %1 = relu(%0) : f32[2,3]\n", "missing '}'"},
      {head + "  %3 = relu(%0) : f32[2,3]\n}\n", "expected node %1"},
      {head + "  output \"y\" = %7\n}\n", "does not exist"},
      {head + "  %1 = const : f32[2] {1.0}\n}\n", "has 1 values"},
  };
  for (const auto& c : cases) {
    std::string msg = parse_error(c.text);
    EXPECT_NE(msg.find(c.fragment), std::string::npos) << "text:\n" << c.text << "message: " << msg;
    EXPECT_EQ(msg.rfind("line ", 0), 0u) << msg;
  }
  EXPECT_EQ(parse_error(head + "  # a comment\n  %1 = relu(%0) : f32[2,3]\n}\n"), "");
}

TEST(Writers, DotAndJson) {
  Graph g = sample_graph();
  std::string dot = to_dot(g);
  EXPECT_EQ(dot.rfind("digraph metagrad {", 0), 0u);
  EXPECT_NE(dot.find("n0 -> "), std::string::npos);
  EXPECT_NE(dot.find("doubleoctagon"), std::string::npos);
  EXPECT_NE(dot.find("update"), std::string::npos);
  auto j = nlohmann::json::parse(to_json(g));
  ASSERT_EQ(j["nodes"].size(), g.size());
  EXPECT_EQ(j["nodes"][0]["kind"], "input");
  EXPECT_EQ(j["nodes"][2]["init"], "normal");
  EXPECT_EQ(j["outputs"][0]["name"], "loss");
  EXPECT_EQ(j["updates"][0]["param"], "opt.t");
}

}  // namespace
}  // namespace metagrad
