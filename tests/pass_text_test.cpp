// Passes as text: graph text in, the pass to run by name, the expected text out (or "unchanged"),
// each rewrite rule of passes/simplify.cpp with a negative twin where it must not fire, and
// constant folding, CSE and DCE likewise; every case is also run on the f64 reference
// interpreter with random inputs before and after. Then the pipeline's verification before its
// first pass.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "metagrad/error.h"
#include "metagrad/pipeline.h"
#include "metagrad/reference.h"
#include "metagrad/serialize.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

constexpr const char* kUnchanged = "unchanged";

struct PassCase {
  const char* name;  // the test's name
  const char* pass;  // a name of all_passes()
  const char* rule;  // simplify: the rule's op ("operands" for reading through broadcasts); else the pass
  const char* in;
  const char* out;   // the expected text, or kUnchanged: the pass reports no change and keeps the text
};

void PrintTo(const PassCase& c, std::ostream* os) { *os << c.name << " (" << c.pass << ")"; }

// The graph's outputs and the updates' new values, in order.
std::vector<Value> results(const Graph& g) {
  std::vector<Value> vs;
  for (const auto& o : g.outputs()) vs.push_back(o.value);
  for (const auto& u : g.updates()) vs.push_back(u.value);
  return vs;
}

// Every input and parameter gets random values in [0.5, 1.5], away from the kinks of the ops.
void random_leaves(const Graph& g, uint64_t seed, RefValues& feeds, RefValues& params) {
  for (const Node& n : g.nodes()) {
    if (n.kind == NodeKind::Input) feeds[n.name] = testing::random_ref(n.type().shape, seed++, 0.5, 1.5);
    if (n.kind == NodeKind::Parameter) params[n.name] = testing::random_ref(n.type().shape, seed++, 0.5, 1.5);
  }
}

const PassInfo& pass_named(const std::string& name) {
  for (const PassInfo& p : all_passes())
    if (p.name == name) return p;
  throw Error("no pass named " + name);
}

const std::vector<PassCase>& cases() {
  static const std::vector<PassCase> table = {
      // ---- simplify: x + 0 = x, 0 + x = x
      {"AddZero", "simplify", "add", R"(graph {
  %0 = input "x" : f32[2,3]
  %1 = const : f32[] {0}
  %2 = add(%0, %1) : f32[2,3]
  %3 = add(%1, %2) : f32[2,3]
  output "y" = %3
})",
       R"(graph {
  %0 = input "x" : f32[2,3]
  %1 = const : f32[] {0}
  output "y" = %0
})"},
      // adding a non-zero constant is work
      {"AddNonZeroStays", "simplify", "add", R"(graph {
  %0 = input "x" : f32[2,3]
  %1 = const : f32[] {0.5}
  %2 = add(%0, %1) : f32[2,3]
  output "y" = %2
})",
       kUnchanged},
      // a zero that broadcasts x to a larger shape is a broadcast, not an identity
      {"AddZeroThatBroadcastsStays", "simplify", "add", R"(graph {
  %0 = input "x" : f32[3]
  %1 = const : f32[2,3] {0, 0, 0, 0, 0, 0}
  %2 = add(%0, %1) : f32[2,3]
  output "y" = %2
})",
       kUnchanged},
      // ---- x - 0 = x
      {"SubZero", "simplify", "sub", R"(graph {
  %0 = input "x" : f32[4]
  %1 = const : f32[] {0}
  %2 = sub(%0, %1) : f32[4]
  output "y" = %2
})",
       R"(graph {
  %0 = input "x" : f32[4]
  %1 = const : f32[] {0}
  output "y" = %0
})"},
      // 0 - x is -x, not x: subtraction is not symmetric
      {"ZeroMinusXStays", "simplify", "sub", R"(graph {
  %0 = input "x" : f32[4]
  %1 = const : f32[] {0}
  %2 = sub(%1, %0) : f32[4]
  output "y" = %2
})",
       kUnchanged},
      // ---- x * 1 = x, 1 * x = x
      {"MulOne", "simplify", "mul", R"(graph {
  %0 = input "x" : f32[3]
  %1 = const : f32[3] {1, 1, 1}
  %2 = mul(%0, %1) : f32[3]
  %3 = mul(%1, %2) : f32[3]
  output "y" = %3
})",
       R"(graph {
  %0 = input "x" : f32[3]
  %1 = const : f32[3] {1, 1, 1}
  output "y" = %0
})"},
      // a constant that is 1 in only some elements is a scaling
      {"MulByNonUniformOnesStays", "simplify", "mul", R"(graph {
  %0 = input "x" : f32[3]
  %1 = const : f32[3] {1, 1, 2}
  %2 = mul(%0, %1) : f32[3]
  output "y" = %2
})",
       kUnchanged},
      // ---- x / 1 = x
      {"DivOne", "simplify", "div", R"(graph {
  %0 = input "x" : f32[2]
  %1 = const : f32[] {1}
  %2 = div(%0, %1) : f32[2]
  output "y" = %2
})",
       R"(graph {
  %0 = input "x" : f32[2]
  %1 = const : f32[] {1}
  output "y" = %0
})"},
      // 1 / x is a reciprocal
      {"OneOverXStays", "simplify", "div", R"(graph {
  %0 = input "x" : f32[2]
  %1 = const : f32[] {1}
  %2 = div(%1, %0) : f32[2]
  output "y" = %2
})",
       kUnchanged},
      // ---- -(-x) = x
      {"NegNeg", "simplify", "neg", R"(graph {
  %0 = input "x" : f32[2]
  %1 = neg(%0) : f32[2]
  %2 = neg(%1) : f32[2]
  output "y" = %2
})",
       R"(graph {
  %0 = input "x" : f32[2]
  %1 = neg(%0) : f32[2]
  output "y" = %0
})"},
      // -(exp x): one negation alone is work
      {"NegOfOtherOpStays", "simplify", "neg", R"(graph {
  %0 = input "x" : f32[2]
  %1 = exp(%0) : f32[2]
  %2 = neg(%1) : f32[2]
  output "y" = %2
})",
       kUnchanged},
      // ---- broadcast_to(x, shape(x)) = x
      {"BroadcastToOwnShape", "simplify", "broadcast_to", R"(graph {
  %0 = input "x" : f32[2,3]
  %1 = broadcast_to(%0) {shape=[2,3]} : f32[2,3]
  output "y" = %1
})",
       R"(graph {
  %0 = input "x" : f32[2,3]
  output "y" = %0
})"},
      // a broadcast that grows its operand, read by no elementwise op, stays
      {"BroadcastThatGrowsStays", "simplify", "broadcast_to", R"(graph {
  %0 = input "x" : f32[1,3]
  %1 = broadcast_to(%0) {shape=[2,3]} : f32[2,3]
  output "y" = %1
})",
       kUnchanged},
      // ---- stop_gradient(x) = x
      {"StopGradient", "simplify", "stop_gradient", R"(graph {
  %0 = input "x" : f32[3]
  %1 = stop_gradient(%0) : f32[3]
  output "y" = %1
})",
       R"(graph {
  %0 = input "x" : f32[3]
  output "y" = %0
})"},
      // the rule has no condition; its twin: it removes the stop_gradient only, not the work under it
      {"StopGradientKeepsItsOperand", "simplify", "stop_gradient", R"(graph {
  %0 = input "x" : f32[3]
  %1 = exp(%0) : f32[3]
  %2 = stop_gradient(%1) : f32[3]
  output "y" = %2
})",
       R"(graph {
  %0 = input "x" : f32[3]
  %1 = exp(%0) : f32[3]
  output "y" = %1
})"},
      // ---- reshape(x, shape(x)) = x
      {"ReshapeToOwnShape", "simplify", "reshape", R"(graph {
  %0 = input "x" : f32[2,3]
  %1 = reshape(%0) {shape=[2,3]} : f32[2,3]
  output "y" = %1
})",
       R"(graph {
  %0 = input "x" : f32[2,3]
  output "y" = %0
})"},
      // ---- reshape(reshape(x)) = reshape(x)
      {"ReshapeChain", "simplify", "reshape", R"(graph {
  %0 = input "x" : f32[2,3]
  %1 = reshape(%0) {shape=[3,2]} : f32[3,2]
  %2 = reshape(%1) {shape=[6]} : f32[6]
  output "y" = %2
})",
       R"(graph {
  %0 = input "x" : f32[2,3]
  %1 = reshape(%0) {shape=[3,2]} : f32[3,2]
  %2 = reshape(%0) {shape=[6]} : f32[6]
  output "y" = %2
})"},
      // one reshape that changes the shape, and a reshape of a transpose (which moves data), stay
      {"ReshapeOfTransposeStays", "simplify", "reshape", R"(graph {
  %0 = input "x" : f32[2,3]
  %1 = transpose(%0) {perm=[1,0]} : f32[3,2]
  %2 = reshape(%1) {shape=[6]} : f32[6]
  output "y" = %2
})",
       kUnchanged},
      // ---- transpose with the identity permutation = x
      {"TransposeIdentity", "simplify", "transpose", R"(graph {
  %0 = input "x" : f32[2,3]
  %1 = transpose(%0) {perm=[0,1]} : f32[2,3]
  output "y" = %1
})",
       R"(graph {
  %0 = input "x" : f32[2,3]
  output "y" = %0
})"},
      // ---- transpose(transpose(x, p), q) = transpose(x, p o q)
      {"TransposeChain", "simplify", "transpose", R"(graph {
  %0 = input "x" : f32[2,3,4]
  %1 = transpose(%0) {perm=[1,0,2]} : f32[3,2,4]
  %2 = transpose(%1) {perm=[0,2,1]} : f32[3,4,2]
  output "y" = %2
})",
       R"(graph {
  %0 = input "x" : f32[2,3,4]
  %1 = transpose(%0) {perm=[1,0,2]} : f32[3,2,4]
  %2 = transpose(%0) {perm=[1,2,0]} : f32[3,4,2]
  output "y" = %2
})"},
      // a transpose of a reshape is no chain
      {"TransposeOfReshapeStays", "simplify", "transpose", R"(graph {
  %0 = input "x" : f32[6]
  %1 = reshape(%0) {shape=[2,3]} : f32[2,3]
  %2 = transpose(%1) {perm=[1,0]} : f32[3,2]
  output "y" = %2
})",
       kUnchanged},
      // ---- a sum over axes of size 1 only = reshape (or x itself with keepdims)
      {"SumOverUnitAxis", "simplify", "sum", R"(graph {
  %0 = input "x" : f32[2,1,3]
  %1 = sum(%0) {axes=[1], keepdims=0} : f32[2,3]
  %2 = sum(%0) {axes=[1], keepdims=1} : f32[2,1,3]
  output "y" = %1
  output "z" = %2
})",
       R"(graph {
  %0 = input "x" : f32[2,1,3]
  %1 = reshape(%0) {shape=[2,3]} : f32[2,3]
  output "y" = %1
  output "z" = %0
})"},
      // a sum over an axis of size 2 adds, and so does a sum over all axes of more than one element
      {"SumThatAddsStays", "simplify", "sum", R"(graph {
  %0 = input "x" : f32[2,1,3]
  %1 = sum(%0) {axes=[0,1], keepdims=0} : f32[3]
  %2 = sum(%0) {axes=[], keepdims=0} : f32[]
  output "y" = %1
  output "z" = %2
})",
       kUnchanged},
      // ---- an elementwise op reads through a broadcast operand (it broadcasts itself)
      {"ElementwiseReadsThroughBroadcast", "simplify", "operands", R"(graph {
  %0 = input "x" : f32[2,3]
  %1 = input "b" : f32[1,3]
  %2 = broadcast_to(%1) {shape=[2,3]} : f32[2,3]
  %3 = mul(%0, %2) : f32[2,3]
  output "y" = %3
})",
       R"(graph {
  %0 = input "x" : f32[2,3]
  %1 = input "b" : f32[1,3]
  %2 = broadcast_to(%1) {shape=[2,3]} : f32[2,3]
  %3 = mul(%0, %1) : f32[2,3]
  output "y" = %3
})"},
      // ---- an op on broadcasts only runs small and broadcasts its result
      {"OpOnBroadcastsRunsSmall", "simplify", "operands", R"(graph {
  %0 = input "b" : f32[1,3]
  %1 = broadcast_to(%0) {shape=[4,3]} : f32[4,3]
  %2 = exp(%1) : f32[4,3]
  output "y" = %2
})",
       R"(graph {
  %0 = input "b" : f32[1,3]
  %1 = broadcast_to(%0) {shape=[4,3]} : f32[4,3]
  %2 = exp(%0) : f32[1,3]
  %3 = broadcast_to(%2) {shape=[4,3]} : f32[4,3]
  output "y" = %3
})"},
      // a reduction is not elementwise: it must read the broadcast's every element
      {"ReductionOfBroadcastStays", "simplify", "operands", R"(graph {
  %0 = input "b" : f32[1,3]
  %1 = broadcast_to(%0) {shape=[4,3]} : f32[4,3]
  %2 = sum(%1) {axes=[0], keepdims=0} : f32[3]
  output "y" = %2
})",
       kUnchanged},
      // ---- fold: ops whose operands are all constants become constants
      {"FoldConstants", "fold", "fold", R"(graph {
  %0 = input "x" : f32[2]
  %1 = const : f32[2] {1, 2}
  %2 = const : f32[] {0.5}
  %3 = mul(%1, %2) : f32[2]
  %4 = neg(%3) : f32[2]
  %5 = add(%0, %4) : f32[2]
  output "y" = %5
})",
       R"(graph {
  %0 = input "x" : f32[2]
  %1 = const : f32[2] {1, 2}
  %2 = const : f32[] {0.5}
  %3 = const : f32[2] {0.5, 1}
  %4 = const : f32[2] {-0.5, -1}
  %5 = add(%0, %4) : f32[2]
  output "y" = %5
})"},
      // an op reading an input is not constant, and a broadcast of a constant only grows memory
      {"FoldLeavesInputsAndBroadcasts", "fold", "fold", R"(graph {
  %0 = input "x" : f32[2]
  %1 = const : f32[] {3}
  %2 = mul(%0, %1) : f32[2]
  %3 = broadcast_to(%1) {shape=[2]} : f32[2]
  %4 = add(%2, %3) : f32[2]
  output "y" = %4
})",
       kUnchanged},
      // ---- cse: equal ops on equal operands, and equal constants, are computed once
      {"CseMergesEqualOpsAndConstants", "cse", "cse", R"(graph {
  %0 = input "x" : f32[3]
  %1 = const : f32[] {2}
  %2 = const : f32[] {2}
  %3 = mul(%0, %1) : f32[3]
  %4 = mul(%0, %2) : f32[3]
  %5 = exp(%3) : f32[3]
  %6 = exp(%4) : f32[3]
  %7 = add(%5, %6) : f32[3]
  output "y" = %7
})",
       R"(graph {
  %0 = input "x" : f32[3]
  %1 = const : f32[] {2}
  %2 = mul(%0, %1) : f32[3]
  %3 = exp(%2) : f32[3]
  %4 = add(%3, %3) : f32[3]
  output "y" = %4
})"},
      // swapped operands, other attributes and other constants are other values
      {"CseKeepsDifferentValues", "cse", "cse", R"(graph {
  %0 = input "x" : f32[2,2]
  %1 = input "z" : f32[2,2]
  %2 = sub(%0, %1) : f32[2,2]
  %3 = sub(%1, %0) : f32[2,2]
  %4 = sum(%2) {axes=[0], keepdims=0} : f32[2]
  %5 = sum(%2) {axes=[1], keepdims=0} : f32[2]
  %6 = const : f32[] {2}
  %7 = const : f32[] {3}
  %8 = mul(%4, %6) : f32[2]
  %9 = mul(%5, %7) : f32[2]
  output "a" = %3
  output "b" = %8
  output "c" = %9
})",
       kUnchanged},
      // ---- dce: ops and constants no output or update reads are dropped
      {"DceDropsUnreadNodes", "dce", "dce", R"(graph {
  %0 = input "x" : f32[3]
  %1 = exp(%0) : f32[3]
  %2 = const : f32[] {2}
  %3 = mul(%1, %2) : f32[3]
  %4 = neg(%0) : f32[3]
  output "y" = %4
})",
       R"(graph {
  %0 = input "x" : f32[3]
  %1 = neg(%0) : f32[3]
  output "y" = %1
})"},
      // inputs and parameters stay though unread (they are the graph's interface), and a value
      // only an update reads is live
      {"DceKeepsLeavesAndUpdates", "dce", "dce", R"(graph {
  %0 = input "x" : f32[3]
  %1 = input "unused" : f32[2]
  %2 = param "w" : f32[3] init zeros {} state
  %3 = param "v" : f32[2] init zeros {}
  %4 = add(%2, %0) : f32[3]
  %5 = neg(%0) : f32[3]
  output "y" = %5
  update "w" = %4
})",
       kUnchanged},
  };
  return table;
}

class PassText : public ::testing::TestWithParam<PassCase> {};

TEST_P(PassText, Case) {
  const PassCase& c = GetParam();
  const Graph before = parse_text(c.in);
  Graph g = before;
  const bool changed = pass_named(c.pass).run(g);
  ASSERT_NO_THROW(verify(g));
  const bool unchanged = std::string(c.out) == kUnchanged;
  EXPECT_EQ(changed, !unchanged) << c.pass << " reports " << (changed ? "a change" : "no change");
  // Parsing the expected text too compares canonical forms and checks that text's types.
  EXPECT_EQ(to_text(g), to_text(unchanged ? before : parse_text(c.out)));
  // The same meaning on random inputs: every output and update, in f64.
  RefValues feeds, params;
  random_leaves(before, 11, feeds, params);
  const std::vector<RefTensor> a = reference_eval(before, results(before), feeds, params);
  const std::vector<RefTensor> b = reference_eval(g, results(g), feeds, params);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].shape, b[i].shape) << "result " << i;
    for (size_t k = 0; k < a[i].data.size(); ++k)
      EXPECT_NEAR(a[i].data[k], b[i].data[k], 1e-12 * std::max(1.0, std::abs(a[i].data[k]))) << "result " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Rules, PassText, ::testing::ValuesIn(cases()), [](const auto& info) { return std::string(info.param.name); });

// Every rule of simplify's table (passes/simplify.cpp) has a case where it fires and a twin where
// it must not; stop_gradient's rule has no condition, so its twin shows what it must not remove.
TEST(PassText, EverySimplifyRuleHasATwin) {
  const std::vector<std::string> rules = {"add", "sub", "mul", "div", "neg", "broadcast_to", "stop_gradient",
                                          "reshape", "transpose", "sum", "operands"};
  for (const std::string& rule : rules) {
    bool fires = false, stays = false;
    for (const PassCase& c : cases())
      if (std::string(c.pass) == "simplify" && c.rule == rule) (std::string(c.out) == kUnchanged ? stays : fires) = true;
    EXPECT_TRUE(fires) << rule;
    if (rule != "stop_gradient") {
      EXPECT_TRUE(stays) << rule << " has no negative twin";
    }
  }
  for (const PassCase& c : cases()) {
    EXPECT_NO_THROW(pass_named(c.pass)) << c.name;
    if (std::string(c.pass) == "simplify") {
      EXPECT_NE(std::find(rules.begin(), rules.end(), c.rule), rules.end()) << c.name;
    }
  }
}

// A graph that is malformed when handed over is the caller's fault: the pipeline names the node
// before any pass runs (one could drop or rebuild the node and blame itself, or hide it).
TEST(PassText, PipelineRejectsAMalformedGraphBeforeItsFirstPass) {
  Graph g = parse_text(R"(graph {
  %0 = input "x" : f32[2,3]
  %1 = const : f32[] {1}
  %2 = mul(%0, %1) : f32[2,3]
  %3 = exp(%0) "dead" : f32[2,3]
  output "y" = %2
})");
  g.node(3).outputs[0] = TensorType{DType::f32, {3, 2}};  // a stored type the shape rule disagrees with
  const std::string text = to_text(g);
  bool dumped = false;
  PipelineOptions opts;
  opts.dump_after = "simplify";
  opts.dump = [&](const std::string&, const Graph&) { dumped = true; };
  const std::string err = testing::error_of([&] { optimize(g, opts); });
  EXPECT_EQ(err.rfind("before the first pass: %3 (exp \"dead\"): stored output types", 0), 0u) << err;
  EXPECT_FALSE(dumped) << "simplify ran";
  EXPECT_EQ(to_text(g), text) << "the graph was changed";
  // The node is dead: DCE would have dropped it and every later verify() passed.
  g.node(3).outputs[0] = TensorType{DType::f32, {2, 3}};
  EXPECT_NO_THROW(optimize(g, opts));
  EXPECT_TRUE(dumped);
}

}  // namespace
}  // namespace metagrad
