// Checkpoints: round trip, resumed training identical to uninterrupted training, and every
// corrupt or mismatched file rejected without touching the store.
#include "metagrad/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/ops.h"
#include "metagrad/optimizers.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

// A small regression step with Adam state and a step counter, fed deterministic batches.
Graph training_step(int64_t width) {
  Graph g;
  Tensor x = input(g, "x", {8, 3}), y = input(g, "y", {8, 1});
  Tensor w = parameter(g, "w", {3, width}, Init::normal(0, 0.5, 1)), v = parameter(g, "v", {width, 1}, Init::normal(0, 0.5, 2));
  Tensor loss = mse(matmul(tanh(matmul(x, w)), v), y);
  add_updates(g, {w, v}, optimizer_step(g, OptimizerConfig{}, {w, v}, grad(loss, {w, v})));
  g.add_output("loss", loss.value());
  return g;
}

void run_steps(Executable& e, int from, int to) {
  for (int s = from; s < to; ++s) {
    std::vector<float> x(24), y(8);
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::sin(0.37 * double(s * 24 + int(i))));
    for (size_t i = 0; i < y.size(); ++i) y[i] = float(std::cos(0.11 * double(s * 8 + int(i))));
    e.run({Feed::f32("x", {8, 3}, x), Feed::f32("y", {8, 1}, y)});
  }
}

std::string path_of(const std::string& name) { return ::testing::TempDir() + "metagrad_ckpt_" + name; }

std::vector<char> bytes_of(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& p, const std::vector<char>& b) {
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(b.data(), std::streamsize(b.size()));
}

TEST(Checkpoint, ResumedTrainingIsIdentical) {
  Graph g = training_step(5);
  ParamStore straight;
  Executable a(g, straight);
  run_steps(a, 0, 10);

  const std::string p = path_of("resume");
  {
    ParamStore first;
    Executable b(g, first);
    run_steps(b, 0, 4);
    save_checkpoint(first, p);
  }
  EXPECT_FALSE(std::filesystem::exists(p + ".tmp"));
  ParamStore resumed;
  Executable c(g, resumed);  // fresh initialisation, then overwritten by the checkpoint
  load_checkpoint(resumed, p);
  EXPECT_EQ(resumed.data("opt.t")[0], 4.0f);
  run_steps(c, 4, 10);
  for (const std::string& name : straight.names()) {
    auto x = straight.data(name), y = resumed.data(name);
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], y[i]) << name << "[" << i << "]";  // bit-identical
  }
  std::filesystem::remove(p);
}

TEST(Checkpoint, CorruptAndMismatchedFilesAreRejectedWithoutPartialLoad) {
  Graph g = training_step(5);
  ParamStore store;
  Executable e(g, store);
  run_steps(e, 0, 2);
  const std::string good = path_of("good"), bad = path_of("bad");
  save_checkpoint(store, good);
  const std::vector<char> image = bytes_of(good);
  const std::vector<float> before(store.data("w").begin(), store.data("w").end());
  ParamStore target;
  Executable t(g, target);
  const std::vector<float> target_w(target.data("w").begin(), target.data("w").end());
  auto error_loading = [&](const std::vector<char>& b) {
    write_bytes(bad, b);
    return testing::error_of([&] { load_checkpoint(target, bad); });
  };
  std::vector<char> flipped = image;
  flipped[image.size() / 2] ^= 0x10;
  EXPECT_NE(error_loading(flipped).find("checksum mismatch"), std::string::npos);
  EXPECT_NE(error_loading(std::vector<char>(image.begin(), image.begin() + long(image.size()) - 9)).find(bad),
            std::string::npos);
  EXPECT_NE(error_loading({'n', 'o', 'p', 'e'}).find("not a metagrad checkpoint"), std::string::npos);
  std::vector<char> version = image;
  version[8] = 7;
  EXPECT_NE(error_loading(version).find("checkpoint version 7"), std::string::npos);
  EXPECT_NE(testing::error_of([&] { load_checkpoint(target, path_of("absent")); }).find("no such checkpoint"),
            std::string::npos);
  // Another model: a reshaped tensor, and a store with a tensor the file lacks.
  ParamStore wider;
  Executable w(training_step(6), wider);
  EXPECT_NE(testing::error_of([&] { load_checkpoint(wider, good); }).find("has shape [5,1] in the file, [6,1] in the model"),
            std::string::npos);
  Graph extra = training_step(5);
  extra.add_output("e", parameter(extra, "extra", {2}, Init::zeros()).value());
  ParamStore more;
  Executable m(extra, more);
  EXPECT_NE(testing::error_of([&] { load_checkpoint(more, good); }).find("'extra' is missing"), std::string::npos);
  // Nothing of the failed loads reached the target store.
  EXPECT_EQ(std::vector<float>(target.data("w").begin(), target.data("w").end()), target_w);
  load_checkpoint(target, good);
  EXPECT_EQ(std::vector<float>(target.data("w").begin(), target.data("w").end()), before);
  std::filesystem::remove(good);
  std::filesystem::remove(bad);
}

}  // namespace
}  // namespace metagrad
