// The public API as a user meets it: updates and outputs given as Tensors, and the installed
// headers (include/metagrad/) that the umbrella header covers and that need nothing but the
// standard library.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <string>

#include "metagrad/metagrad.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

using testing::error_of;

TEST(PublicApi, TensorUpdatesAndOutputsRunLikeTheValueForms) {
  Graph g;
  Tensor w = parameter(g, "w", {2}, Init::constant(3.0));
  Tensor x = input(g, "x", {2});
  Tensor loss = sum(square(w * x));
  g.add_update(w, w - 0.25 * grad(loss, {w})[0]);
  g.add_output("loss", loss);
  ASSERT_EQ(g.updates().size(), 1u);
  EXPECT_EQ(g.updates()[0].param, w.value().node);
  EXPECT_EQ(g.output("loss"), loss.value());

  // d/dw sum((w x)^2) = 2 w x^2: with w = 3, x = (1, 2) the step gives 3 - 0.25 * (6, 24).
  RefValues feeds{{"x", {{2}, {1.0, 2.0}}}};
  RefValues next = reference_step(g, feeds, {});
  EXPECT_DOUBLE_EQ(next.at("w").data[0], 1.5);
  EXPECT_DOUBLE_EQ(next.at("w").data[1], -3.0);
}

TEST(PublicApi, TensorFormsNameWhatIsWrong) {
  Graph g, other;
  Tensor w = parameter(g, "w", {2}, Init::zeros());
  Tensor x = input(g, "x", {2});
  Tensor foreign = input(other, "x", {2});
  EXPECT_NE(error_of([&] { g.add_update(x, x * 2.0); }).find("is not a parameter"), std::string::npos);
  EXPECT_NE(error_of([&] { g.add_update(w, foreign); }).find("belongs to another graph"),
            std::string::npos);
  EXPECT_NE(error_of([&] { g.add_output("y", foreign); }).find("output \"y\" belongs to another graph"),
            std::string::npos);
  EXPECT_NE(error_of([&] { g.add_output("y", Tensor()); }).find("undefined"), std::string::npos);
  EXPECT_THROW(g.add_update(w, input(g, "z", {3})), ShapeError);
  EXPECT_TRUE(g.updates().empty());
  EXPECT_TRUE(g.outputs().empty());
}

std::filesystem::path public_dir() { return std::filesystem::path(METAGRAD_SOURCE_DIR) / "include" / "metagrad"; }

std::vector<std::string> includes_of(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::vector<std::string> out;
  static const std::regex include_line(R"(^\s*#\s*include\s*([<"][^>"]+[>"]))");
  std::smatch m;
  for (std::string line; std::getline(in, line);)
    if (std::regex_search(line, m, include_line)) out.push_back(m[1]);
  return out;
}

TEST(PublicApi, UmbrellaHeaderIncludesEveryPublicHeader) {
  std::set<std::string> umbrella;
  for (const std::string& inc : includes_of(public_dir() / "metagrad.h")) umbrella.insert(inc);
  size_t headers = 0;
  for (const auto& e : std::filesystem::directory_iterator(public_dir())) {
    const std::string name = e.path().filename().string();
    if (name == "metagrad.h" || e.path().extension() != ".h") continue;
    ++headers;
    EXPECT_TRUE(umbrella.count("\"metagrad/" + name + "\"")) << "metagrad/metagrad.h does not include " << name;
  }
  EXPECT_GE(headers, 10u);
}

// Installed headers may include each other and the standard library (<vector>, <cstdint>: no
// '/' or '.'), nothing else: not oneDNN, Eigen, fmt or an internal header of the repository.
TEST(PublicApi, PublicHeadersIncludeOnlyPublicAndStandardHeaders) {
  for (const auto& e : std::filesystem::directory_iterator(public_dir())) {
    for (const std::string& inc : includes_of(e.path())) {
      const std::string name = inc.substr(1, inc.size() - 2);
      const bool public_header =
          inc.front() == '"' && name.rfind("metagrad/", 0) == 0 && std::filesystem::exists(public_dir() / name.substr(9));
      const bool standard = inc.front() == '<' && name.find_first_of("/.") == std::string::npos;
      EXPECT_TRUE(public_header || standard) << e.path().filename().string() << " includes " << inc;
    }
  }
}

}  // namespace
}  // namespace metagrad
