// Fashion-MNIST IDX loading (real files and every corrupt-file case), the classifiers, and a
// short supervised training run through the compiled step.
#include "meta/train/supervised.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

// The installed Fashion-MNIST sets, read once for the tests that train on their first images.
const ImageSet& fashion_mnist(bool train) {
  static const ImageSet train_set = load_fashion_mnist(kFashionMnistDir, true);
  static const ImageSet test_set = load_fashion_mnist(kFashionMnistDir, false);
  return train ? train_set : test_set;
}

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "metagrad_idx_" + name; }

void write_bytes(const std::string& path, const std::vector<uint8_t>& b, bool gz) {
  if (gz) {
    gzFile f = gzopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(gzwrite(f, b.data(), unsigned(b.size())), int(b.size()));
    gzclose(f);
  } else {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  }
}

void put32(std::vector<uint8_t>& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
}

std::vector<uint8_t> idx_images(uint32_t n, uint32_t rows, uint32_t cols) {
  std::vector<uint8_t> b;
  put32(b, 0x803);
  put32(b, n);
  put32(b, rows);
  put32(b, cols);
  for (uint32_t i = 0; i < n * rows * cols; ++i) b.push_back(uint8_t(i * 7));
  return b;
}

std::vector<uint8_t> idx_labels(uint32_t n) {
  std::vector<uint8_t> b;
  put32(b, 0x801);
  put32(b, n);
  for (uint32_t i = 0; i < n; ++i) b.push_back(uint8_t(i % 10));
  return b;
}

TEST(Idx, ReadsPlainAndCompressedFiles) {
  for (bool gz : {false, true}) {
    const std::string im = temp_path(gz ? "a.gz" : "a"), lb = temp_path(gz ? "b.gz" : "b");
    write_bytes(im, idx_images(3, 2, 4), gz);
    write_bytes(lb, idx_labels(3), gz);
    ImageSet s = load_idx(im, lb);
    EXPECT_EQ(s.count, 3);
    EXPECT_EQ(s.rows, 2);
    EXPECT_EQ(s.cols, 4);
    ASSERT_EQ(s.pixels.size(), 24u);
    EXPECT_FLOAT_EQ(s.pixels[5], 35.0f / 255.0f);
    EXPECT_EQ(s.labels, (std::vector<int32_t>{0, 1, 2}));
  }
}

TEST(Idx, CorruptFilesAreErrorsNamingTheFile) {
  const std::string im = temp_path("c"), lb = temp_path("d");
  write_bytes(lb, idx_labels(3), false);
  auto err = [&] { return testing::error_of([&] { load_idx(im, lb); }); };
  std::filesystem::remove(im);
  EXPECT_NE(err().find(im + ": no such file"), std::string::npos);
  std::vector<uint8_t> b = idx_images(3, 2, 4);
  b.resize(b.size() - 5);
  write_bytes(im, b, false);
  EXPECT_NE(err().find(im + ": 19 data bytes, the header promises 24 (truncated)"), std::string::npos) << err();
  b = idx_images(3, 2, 4);
  b[2] = 0x0d;  // float data, not bytes
  write_bytes(im, b, false);
  EXPECT_NE(err().find("not an IDX file"), std::string::npos);
  write_bytes(im, {1, 2}, false);
  EXPECT_NE(err().find("truncated IDX header"), std::string::npos);
  write_bytes(im, idx_images(4, 2, 4), false);
  EXPECT_NE(err().find("holds 4 images but"), std::string::npos);
  // A gzip stream cut short is reported as such, not read as a short file.
  write_bytes(im, idx_images(300, 28, 28), true);
  std::filesystem::resize_file(im, std::filesystem::file_size(im) / 2);
  EXPECT_NE(err().find(im), std::string::npos);
  EXPECT_NE(testing::error_of([] { load_fashion_mnist("/nonexistent/fmnist", true); }).find("no such data folder"),
            std::string::npos);
}

TEST(Idx, LoadsTheInstalledFashionMnist) {
  ImageSet train = load_fashion_mnist(kFashionMnistDir, true), test = load_fashion_mnist(kFashionMnistDir, false);
  EXPECT_EQ(train.count, 60000);
  EXPECT_EQ(test.count, 10000);
  EXPECT_EQ(train.rows, 28);
  std::vector<int> per_class(10);
  for (int32_t y : test.labels) per_class[size_t(y)]++;
  for (int c : per_class) EXPECT_EQ(c, 1000);
  auto [mean, sd] = pixel_mean_std(train);
  EXPECT_NEAR(mean, 0.2860, 1e-3);  // the dataset's published statistics
  EXPECT_NEAR(sd, 0.3530, 1e-3);
  ImageSet upper = select_classes(test, 5, 9);
  EXPECT_EQ(upper.count, 5000);
  EXPECT_EQ(*std::max_element(upper.labels.begin(), upper.labels.end()), 4);
}

TEST(Classifier, ShapesAndParameterCounts) {
  for (const std::string& m : classifier_models()) {
    ClassifierConfig c;
    c.model = m;
    Graph g;
    Tensor x = input(g, "x", {5, 1, 28, 28});
    std::vector<Tensor> w = classifier_params(g, c);
    EXPECT_EQ(w.size(), 2 * classifier_layers(c).size());
    EXPECT_EQ(classifier_logits(x, w, c).shape(), (Shape{5, 10}));
    int64_t n = 0;
    for (const Tensor& t : w) n += t.numel();
    EXPECT_EQ(n, m == "lenet5" ? 61706 : 235146) << m;  // LeNet-5 as in LeCun et al. (1998) with a 10-way head
  }
  ClassifierConfig bad;
  bad.model = "resnet";
  Graph g;
  EXPECT_NE(testing::error_of([&] { classifier_params(g, bad); }).find("unknown model 'resnet'"), std::string::npos);
}

// A few hundred steps on real data must learn: an assertion that fails if gradients, the
// optimizer update or the step graph are wrong.
TEST(Supervised, ShortRunLearnsAndPlateauScheduleRuns) {
  const ImageSet train = first_images(fashion_mnist(true), 3200);
  const ImageSet test = first_images(fashion_mnist(false), 2000);
  SupervisedConfig cfg;
  cfg.model.model = "mlp";
  cfg.model.hidden = 64;
  cfg.epochs = 3;
  cfg.opt.name = "adam";
  cfg.opt.lr = 2e-3;
  // The first epoch sets the best metric; no later epoch improves on it by 90%, so every later
  // epoch end halves the rate.
  cfg.schedule = parse_schedule("plateau:factor=0.5,patience=0,threshold=0.9");
  cfg.curve_every = 10;
  ParamStore store;
  SupervisedResult r = train_classifier(cfg, train, test, nullptr, &store);
  ASSERT_EQ(r.epochs.size(), 3u);
  EXPECT_GT(r.best_accuracy, 0.70);
  EXPECT_LT(r.epochs[2].train_loss, r.epochs[0].train_loss);
  EXPECT_EQ(r.loss_curve.size(), 15u);  // 3 epochs x 50 steps / 10
  EXPECT_NEAR(r.epochs[0].lr, 2e-3, 1e-9);
  EXPECT_NEAR(r.epochs[1].lr, 2e-3, 1e-9);
  EXPECT_NEAR(r.epochs[2].lr, 1e-3, 1e-9);  // halved by the plateau update after epoch 2
  EXPECT_NEAR(evaluate_classifier(cfg.model, store, test).accuracy, r.epochs[2].test_accuracy, 1e-6);
  EXPECT_EQ(r.parameters, 784 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10);
}

TEST(Supervised, BadConfigurationsAreClearErrors) {
  ImageSet tiny;
  tiny.count = 2;
  tiny.rows = tiny.cols = 28;
  tiny.pixels.assign(2 * 784, 0.5f);
  tiny.labels = {0, 12};
  SupervisedConfig cfg;
  cfg.batch = 2;
  EXPECT_NE(testing::error_of([&] { train_classifier(cfg, tiny, tiny, nullptr); }).find("label 12 outside"), std::string::npos);
  tiny.labels = {0, 1};
  cfg.batch = 3;
  EXPECT_NE(testing::error_of([&] { train_classifier(cfg, tiny, tiny, nullptr); }).find("batch size 3"), std::string::npos);
  cfg.batch = 2;
  cfg.opt.name = "sgd_hd";
  cfg.schedule = parse_schedule("cosine:total=10");
  EXPECT_NE(testing::error_of([&] { train_classifier(cfg, tiny, tiny, nullptr); }).find("takes no --schedule"), std::string::npos);
}

// From a rate 10x too small, the discounted-tangent horizon raises the rate much further than the
// one-step hypergradient (Baydin et al.), whose bias toward small rates is what the horizon is
// for; a short MLP run.
TEST(Supervised, HdHorizonRaisesARateStartedTooSmall) {
  const ImageSet train = first_images(fashion_mnist(true), 3200);
  const ImageSet test = first_images(fashion_mnist(false), 1000);
  auto final_lr = [&](double horizon) {
    SupervisedConfig cfg;
    cfg.model.model = "mlp";
    cfg.model.hidden = 64;
    cfg.epochs = 1;
    cfg.opt.name = "sgd_hd";
    cfg.opt.lr = 0.005;
    cfg.opt.hd.multiplicative = true;
    cfg.opt.hd.hyper_lr = 0.3;
    cfg.opt.hd.horizon = horizon;
    SupervisedResult r = train_classifier(cfg, train, test, nullptr);
    EXPECT_GT(r.best_accuracy, 0.4) << "horizon " << horizon;  // chance is 0.1
    return r.epochs.back().lr;
  };
  const double one_step = final_lr(0.0), discounted = final_lr(0.99);
  EXPECT_GT(discounted, 0.05);
  EXPECT_GT(discounted, 2 * one_step);
}

// A rate far too large makes an MLP's loss explode within a few steps, before the hypergradient
// can bring it down: without the guard training diverges; with it the steps into the spikes are
// undone and the rate cut, and training goes on to a useful accuracy.
TEST(Supervised, HdGuardRescuesARateThatMakesTrainingDiverge) {
  const ImageSet train = first_images(fashion_mnist(true), 3200);
  const ImageSet test = first_images(fashion_mnist(false), 1000);
  SupervisedConfig cfg;
  cfg.model.model = "mlp";
  cfg.epochs = 1;
  cfg.opt.name = "sgd_hd";
  std::tie(cfg.model.input_mean, cfg.model.input_std) = pixel_mean_std(train);  // as the CLI trains
  cfg.opt.lr = 5.0;
  cfg.opt.hd.multiplicative = true;
  cfg.opt.hd.hyper_lr = 0.3;
  EXPECT_NE(testing::error_of([&] { train_classifier(cfg, train, test, nullptr); }).find("diverged"), std::string::npos);
  cfg.opt.hd.guard = 8;
  const SupervisedResult r = train_classifier(cfg, train, test, nullptr);
  EXPECT_GT(r.best_accuracy, 0.5);  // chance is 0.1
  EXPECT_GE(r.hd_guard_cuts, 1);
  EXPECT_LT(r.epochs.back().lr, 1.0);
}

}  // namespace
}  // namespace metagrad
