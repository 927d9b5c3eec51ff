// CompileOptions::check_numerics: the first kernel that writes a NaN or Inf is named with its op
// and the ranges of its inputs; off, the same graph runs through and returns the NaN.
#include <gtest/gtest.h>

#include <cmath>
#include <regex>

#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/ops.h"
#include "tests/cli_run.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

// x -> relu(x) + 1 ("shifted", finite) -> log(x) ("log_x": NaN for x < 0) -> sum.
Graph log_graph() {
  Graph g;
  Tensor x = input(g, "x", {2, 3});
  Tensor shifted = (relu(x) + 1.0).named("shifted");
  Tensor lx = log(x).named("log_x");
  g.add_output("loss", sum(lx * shifted).value());
  return g;
}

const std::vector<float> kPositive = {1, 2, 3, 4, 5, 6}, kOneNegative = {1, 2, -3, 4, 5, 6};

TEST(CheckNumerics, NamesTheFirstKernelWithANaNAndItsInputRanges) {
  Graph g = log_graph();
  ParamStore store;
  Executable exe(g, store, {}, CompileOptions{.check_numerics = true});
  const std::string err = testing::error_of([&] { exe.run({Feed::f32("x", {2, 3}, kOneNegative)}); });
  EXPECT_NE(err.find("check-numerics"), std::string::npos) << err;
  EXPECT_NE(err.find("(log \"log_x\")"), std::string::npos) << "the node, its op and its name: " << err;
  EXPECT_NE(err.find("1 NaN and 0 Inf of 6 values"), std::string::npos) << err;
  EXPECT_NE(err.find("input 0 %0 (input \"x\") f32[2,3]: [-3, 6]"), std::string::npos) << err;
  EXPECT_EQ(err.find("\"shifted\""), std::string::npos) << "a later or finite kernel is not the culprit: " << err;
}

TEST(CheckNumerics, InfIsCaughtAndNonFiniteInputsAreCounted) {
  Graph g;
  Tensor x = input(g, "x", {4});
  g.add_output("y", (exp(x) * 2.0).named("grow").value());
  ParamStore store;
  Executable exe(g, store, {}, CompileOptions{.check_numerics = true});
  const std::vector<float> v = {0, 1, 200, 3};  // exp(200) overflows f32
  const std::string err = testing::error_of([&] { exe.run({Feed::f32("x", {4}, v)}); });
  EXPECT_NE(err.find("0 NaN and 1 Inf of 4 values"), std::string::npos) << err;
  EXPECT_NE(err.find("[0, 200]"), std::string::npos) << err;
  // A NaN fed in is reported at the first kernel reading it, with the NaN in its input's range.
  const std::vector<float> nan_in = {0, std::nanf(""), 1, 2};
  const std::string err2 = testing::error_of([&] { exe.run({Feed::f32("x", {4}, nan_in)}); });
  EXPECT_NE(err2.find("[0, 2], 1 NaN"), std::string::npos) << err2;
}

TEST(CheckNumerics, OffByDefaultAndEqualResultsWhenFinite) {
  Graph g = log_graph();
  ParamStore store;
  Executable plain(g, store), checked(g, store, {}, CompileOptions{.check_numerics = true});
  plain.run({Feed::f32("x", {2, 3}, kOneNegative)});
  EXPECT_TRUE(std::isnan(plain.fetch("loss")[0])) << "without the guard the NaN runs through";
  plain.run({Feed::f32("x", {2, 3}, kPositive)});
  checked.run({Feed::f32("x", {2, 3}, kPositive)});
  EXPECT_EQ(plain.fetch("loss")[0], checked.fetch("loss")[0]);
  EXPECT_TRUE(std::isfinite(checked.fetch("loss")[0]));
}

// "check-numerics: %12 (matmul) wrote ...": the node and, in its description, the op.
bool names_a_kernel(const std::string& err) {
  static const std::regex re(R"(check-numerics: %[0-9]+ \([a-z_0-9]+[^)]*\) wrote [0-9]+ NaN)");
  return std::regex_search(err, re);
}

// End to end: a diverging run names the kernel with the flag and suggests the flag without it.
TEST(CheckNumerics, CliDivergenceMessages) {
  const std::string args = "bench sinusoid --inner-lr 1e30 --iters 3 --eval-tasks 1 --quiet --threads 1";
  testing::CliRun off = testing::run(args);
  EXPECT_EQ(off.status, 1);
  EXPECT_NE(off.err.find("training diverged at step 1"), std::string::npos) << off.err;
  EXPECT_NE(off.err.find("run again with --check-numerics"), std::string::npos) << off.err;
  EXPECT_EQ(testing::lines(off.err), 1u) << off.err;
  testing::CliRun on = testing::run(args + " --check-numerics");
  EXPECT_EQ(on.status, 1);
  EXPECT_NE(on.err.find("check-numerics: %"), std::string::npos) << on.err;
  EXPECT_TRUE(names_a_kernel(on.err)) << on.err;
  EXPECT_NE(on.err.find("input 0 %"), std::string::npos) << on.err;
  EXPECT_EQ(testing::lines(on.err), 1u) << on.err;
}

// The supervised trainers (fashion-mnist, optimizer-table, transfer, multitask) go through the
// same driver configuration: the flag reaches their training step too.
TEST(CheckNumerics, CliSupervisedTrainerNamesTheKernel) {
  const std::string args =
      "bench fashion-mnist --model mlp --optimizer sgd --lr 1e30 --epochs 1 --max-train 256 --quiet --threads 1";
  testing::CliRun off = testing::run(args);
  EXPECT_EQ(off.status, 1);
  EXPECT_NE(off.err.find("run again with --check-numerics"), std::string::npos) << off.err;
  testing::CliRun on = testing::run(args + " --check-numerics");
  EXPECT_EQ(on.status, 1);
  EXPECT_NE(on.err.find("check-numerics: %"), std::string::npos) << on.err;
  EXPECT_TRUE(names_a_kernel(on.err)) << on.err;
  EXPECT_EQ(testing::lines(on.err), 1u) << on.err;
}

}  // namespace
}  // namespace metagrad
