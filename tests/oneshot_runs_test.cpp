// One-shot run folders: fixtures written from the real small archive and read back (each loaded image is
// traced to its source image in the archive, so labels are checked against what was drawn, not against the
// writer's own bookkeeping), PNG writing, the tolerated label-file variations and every error path.
#include "meta/data/oneshot_runs.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <set>

#include "metagrad/error.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

namespace fs = std::filesystem;

std::string small2_path() {
  return std::string(METAGRAD_SOURCE_DIR) + "/data/omniglot/images_background_small2.zip";
}

// A fresh folder per test (pid + counter, so parallel test processes do not collide), removed afterwards.
class ScratchDir {
 public:
  ScratchDir() {
    static std::atomic<int> counter{0};
    const std::string name = "metagrad_oneshot_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    path_ = fs::temp_directory_path() / name;
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const fs::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& rel) const { return (path_ / rel).string(); }

 private:
  fs::path path_;
};

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// Every regular file below `root`, relative path -> bytes.
std::map<std::string, std::string> snapshot(const fs::path& root) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) files[fs::relative(e.path(), root).generic_string()] = read_bytes(e.path());
  return files;
}


// ---- runs written from the real archive -------------------------------------------------------

class OneShotRunsFromArchive : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    full_ = new OmniglotSet(load_omniglot_zip(small2_path(), {.image = 105, .rotations = false}));
    small_ = new OmniglotSet(load_omniglot_zip(small2_path(), {.image = 28, .rotations = false}));
  }
  static void TearDownTestSuite() {
    delete full_;
    delete small_;
    full_ = small_ = nullptr;
  }

  struct Source {
    int64_t cls = -1, index = -1;
  };

  // The archive image (at 28, as load_omniglot_zip preprocesses it) that `img` reproduces within 1e-5.
  static Source find_source(const float* img) {
    const int64_t pixels = small_->image * small_->image;
    Source found;
    for (int64_t c = 0; c < static_cast<int64_t>(small_->classes.size()); ++c)
      for (int64_t i = 0; i < small_->count(c); ++i) {
        const float* s = small_->image_ptr(c, i);
        bool same = true;
        for (int64_t p = 0; p < pixels && same; ++p) same = std::abs(s[p] - img[p]) <= 1e-5f;
        if (same) {
          EXPECT_EQ(found.cls, -1) << "two archive images match";
          found = {c, i};
        }
      }
    EXPECT_GE(found.cls, 0) << "no archive image matches";
    return found;
  }

  static OmniglotSet* full_;
  static OmniglotSet* small_;
};

OmniglotSet* OneShotRunsFromArchive::full_ = nullptr;
OmniglotSet* OneShotRunsFromArchive::small_ = nullptr;

TEST_F(OneShotRunsFromArchive, RoundTripMatchesSourceImagesAndLabels) {
  ScratchDir dir;
  write_oneshot_runs(*full_, dir.str(), 3, 5, true, 42);
  const std::vector<OneShotRun> runs = load_oneshot_runs(dir.str());
  ASSERT_EQ(runs.size(), 3u);
  const int64_t pixels = 28 * 28;
  for (size_t r = 0; r < runs.size(); ++r) {
    const OneShotRun& run = runs[r];
    SCOPED_TRACE(run.name);
    EXPECT_EQ(run.name, "run0" + std::to_string(r + 1));
    EXPECT_EQ(run.image, 28);
    ASSERT_EQ(run.classes(), 5);
    ASSERT_EQ(run.items(), 5);
    ASSERT_EQ(run.training.size(), static_cast<size_t>(5 * pixels));
    ASSERT_EQ(run.test.size(), static_cast<size_t>(5 * pixels));
    ASSERT_EQ(run.test_labels.size(), 5u);
    for (int64_t k = 0; k < 5; ++k) {
      EXPECT_EQ(fs::path(run.training_files[k]).filename(), "class0" + std::to_string(k + 1) + ".png");
      EXPECT_EQ(fs::path(run.training_files[k]).parent_path(), dir.path() / run.name / "training");
      EXPECT_EQ(fs::path(run.test_files[k]).filename(), "item0" + std::to_string(k + 1) + ".png");
    }

    std::vector<Source> classes, items;
    std::set<int64_t> distinct;
    std::set<std::string> alphabets;
    for (int64_t k = 0; k < 5; ++k) {
      classes.push_back(find_source(&run.training[k * pixels]));
      items.push_back(find_source(&run.test[k * pixels]));
      distinct.insert(classes.back().cls);
      alphabets.insert(small_->classes[classes.back().cls].alphabet);
    }
    EXPECT_EQ(distinct.size(), 5u) << "classes repeat within a run";
    EXPECT_EQ(alphabets.size(), 1u) << "within_alphabet run mixes alphabets";
    std::set<int32_t> used;
    for (int64_t k = 0; k < 5; ++k) {
      const int32_t label = run.test_labels[k];
      ASSERT_GE(label, 0);
      ASSERT_LT(label, 5);
      used.insert(label);
      EXPECT_EQ(items[k].cls, classes[label].cls) << "item " << k << " labelled with another class";
      EXPECT_NE(items[k].index, classes[label].index) << "item " << k << " is its class's training image";
    }
    EXPECT_EQ(used.size(), 5u) << "each class has exactly one test item";

    // The file's own lines agree with the loaded labels.
    std::ifstream labels(dir.path() / run.name / "class_labels.txt");
    std::string item, cls;
    int64_t lines = 0;
    while (labels >> item >> cls) {
      const int64_t k = std::stoi(item.substr(item.size() - 6, 2)) - 1,
                    c = std::stoi(cls.substr(cls.size() - 6, 2)) - 1;
      EXPECT_EQ(item, run.name + "/test/item0" + std::to_string(k + 1) + ".png");
      EXPECT_EQ(run.test_labels[k], c) << item;
      ++lines;
    }
    EXPECT_EQ(lines, 5);
  }
}

TEST_F(OneShotRunsFromArchive, WrittenPngsAreTheFullSizeImagesExactly) {
  ScratchDir dir;
  write_oneshot_runs(*full_, dir.str(), 1, 3, false, 7);
  const std::vector<OneShotRun> at105 = load_oneshot_runs(dir.str(), 105);
  ASSERT_EQ(at105.size(), 1u);
  const int64_t pixels = 105 * 105;
  for (int64_t k = 0; k < at105[0].classes(); ++k) {
    const float* img = &at105[0].training[k * pixels];
    bool matched = false;
    for (int64_t c = 0; c < static_cast<int64_t>(full_->classes.size()) && !matched; ++c)
      for (int64_t i = 0; i < full_->count(c) && !matched; ++i)
        matched = std::equal(img, img + pixels, full_->image_ptr(c, i));
    EXPECT_TRUE(matched) << "class " << k << " is not bit-identical to an archive image";
  }
  // The 28-pixel load is the area resize of the 105 one, inverted after resizing like load_omniglot_zip.
  const std::vector<OneShotRun> at28 = load_oneshot_runs(dir.str());
  int64_t w = 0, h = 0;
  const std::vector<float> gray = read_png_gray(at28[0].test_files[0], w, h);
  const std::vector<float> small = resize_area(gray, w, h, 28, 28);
  for (int64_t p = 0; p < 28 * 28; ++p) ASSERT_EQ(at28[0].test[p], 1.0f - small[p]) << p;
}

TEST_F(OneShotRunsFromArchive, DeterministicForASeed) {
  ScratchDir a, b, c;
  write_oneshot_runs(*full_, a.str(), 3, 5, true, 123);
  write_oneshot_runs(*full_, b.str(), 3, 5, true, 123);
  write_oneshot_runs(*full_, c.str(), 3, 5, true, 124);
  const auto sa = snapshot(a.path()), sb = snapshot(b.path()), sc = snapshot(c.path());
  EXPECT_EQ(sa.size(), 3u * (5 + 5 + 1));
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc);
}

TEST_F(OneShotRunsFromArchive, AcrossAlphabetsAndTwentyWays) {
  ScratchDir dir;
  write_oneshot_runs(*full_, dir.str(), 2, 20, false, 5);
  const std::vector<OneShotRun> runs = load_oneshot_runs(dir.str());
  ASSERT_EQ(runs.size(), 2u);
  for (const OneShotRun& run : runs) {
    EXPECT_EQ(run.classes(), 20);
    EXPECT_EQ(run.items(), 20);
    std::vector<int32_t> sorted = run.test_labels;
    std::sort(sorted.begin(), sorted.end());
    for (int32_t k = 0; k < 20; ++k) EXPECT_EQ(sorted[k], k);
  }
  EXPECT_EQ(fs::path(runs[0].training_files[19]).filename(), "class20.png");
}

TEST_F(OneShotRunsFromArchive, WriterRefusesBadShapesAndExistingRuns) {
  ScratchDir dir;
  testing::expect_runtime_error([&] { write_oneshot_runs(*full_, dir.str(), 0, 5, true, 1); }, {dir.str(), "0 runs"});
  testing::expect_runtime_error([&] { write_oneshot_runs(*full_, dir.str(), 1, 1000, true, 1); }, {"1000"});
  EXPECT_TRUE(fs::is_empty(dir.path())) << "a failed write left files behind";
  write_oneshot_runs(*full_, dir.str(), 1, 2, true, 1);
  testing::expect_runtime_error([&] { write_oneshot_runs(*full_, dir.str(), 1, 2, true, 1); }, {dir / "run01", "already exists"});
}

// ---- PNG writing --------------------------------------------------------------------------------

TEST(OneShotRunsPng, WriteReadRoundTrip) {
  ScratchDir dir;
  const int64_t w = 7, h = 5;
  std::vector<float> pixels(static_cast<size_t>(w * h));
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<float>((i * 37) % 256) / 255.0f;
  pixels[0] = 0.0f;
  pixels[1] = 1.0f;
  const std::string path = dir / "gray.png";
  write_png_gray(path, pixels, w, h);
  int64_t rw = 0, rh = 0;
  const std::vector<float> back = read_png_gray(path, rw, rh);
  EXPECT_EQ(rw, w);
  EXPECT_EQ(rh, h);
  ASSERT_EQ(back.size(), pixels.size());
  for (size_t i = 0; i < pixels.size(); ++i) EXPECT_NEAR(back[i], pixels[i], 1e-6) << i;
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  // Out-of-range values clamp; in-between values round to the nearest of 256 levels (127.5 up to 128).
  write_png_gray(path, {-0.5f, 2.0f, 0.5f, 0.25f}, 2, 2);
  const std::vector<float> clamped = read_png_gray(path, rw, rh);
  ASSERT_EQ(clamped.size(), 4u);
  EXPECT_EQ(clamped[0], 0.0f);
  EXPECT_EQ(clamped[1], 1.0f);
  EXPECT_EQ(clamped[2], 128 / 255.0f);
  EXPECT_EQ(clamped[3], 64 / 255.0f);
}

TEST(OneShotRunsPng, WriteErrorsNameThePath) {
  ScratchDir dir;
  const std::string path = dir / "bad.png";
  testing::expect_runtime_error([&] { write_png_gray(path, {0.5f, 0.5f, 0.5f}, 2, 2); }, {path, "3 pixel values"});
  testing::expect_runtime_error([&] { write_png_gray(path, {}, 0, 0); }, {path, "out of range"});
  testing::expect_runtime_error([&] { write_png_gray(path, {0.5f, NAN}, 2, 1); }, {path, "NaN"});
  const std::string nowhere = dir / "no/such/folder/x.png";
  testing::expect_runtime_error([&] { write_png_gray(nowhere, {0.5f}, 1, 1); }, {nowhere});
  EXPECT_FALSE(fs::exists(path));
}

// ---- hand-made run folders ----------------------------------------------------------------------

// Tiny 3x3 images whose centre pixel tells them apart: 2 classes, 2 test items (item01 -> class02,
// item02 -> class01), labels relative to DIR like the original files.
void make_run(const fs::path& dir, const std::string& name) {
  fs::create_directories(dir / name / "training");
  fs::create_directories(dir / name / "test");
  auto image = [&](const std::string& rel, float centre) {
    std::vector<float> px(9, 1.0f);
    px[4] = centre;
    write_png_gray((dir / name / rel).string(), px, 3, 3);
  };
  image("training/class01.png", 0.0f);
  image("training/class02.png", 0.2f);
  image("test/item01.png", 0.4f);
  image("test/item02.png", 0.6f);
  write_bytes(dir / name / "class_labels.txt", name + "/test/item01.png " + name + "/training/class02.png\n" + name +
                                                   "/test/item02.png " + name + "/training/class01.png\n");
}

TEST(OneShotRunsLoad, HandMadeRunsSortedAndPreprocessed) {
  ScratchDir dir;
  make_run(dir.path(), "run02");
  make_run(dir.path(), "run01");
  fs::create_directories(dir.path() / "other");  // not a run: ignored
  write_bytes(dir.path() / "run_notes.txt", "a file, not a run folder");
  write_bytes(dir.path() / "run01" / "training" / "notes.txt", "not an image");  // ignored
  const std::vector<OneShotRun> runs = load_oneshot_runs(dir.str(), 3);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].name, "run01");
  EXPECT_EQ(runs[1].name, "run02");
  const OneShotRun& run = runs[0];
  EXPECT_EQ(run.training_files,
            (std::vector<std::string>{dir / "run01/training/class01.png", dir / "run01/training/class02.png"}));
  EXPECT_EQ(run.test_files, (std::vector<std::string>{dir / "run01/test/item01.png", dir / "run01/test/item02.png"}));
  EXPECT_EQ(run.test_labels, (std::vector<int32_t>{1, 0}));
  ASSERT_EQ(run.training.size(), 18u);
  EXPECT_EQ(run.training[0], 0.0f);  // white background -> 0
  EXPECT_EQ(run.training[4], 1.0f);  // black centre -> 1
  EXPECT_NEAR(run.training[9 + 4], 0.8f, 0.5f / 255);
  EXPECT_NEAR(run.test[4], 0.6f, 0.5f / 255);
  EXPECT_NEAR(run.test[9 + 4], 0.4f, 0.5f / 255);

  // Resized to 1x1, each image becomes its mean ink.
  const std::vector<OneShotRun> tiny = load_oneshot_runs(dir.str(), 1);
  ASSERT_EQ(tiny[0].training.size(), 2u);
  EXPECT_NEAR(tiny[0].training[0], 1.0f / 9, 1e-6);
}

TEST(OneShotRunsLoad, ToleratesRunRelativePathsCrlfAndBlankLines) {
  ScratchDir dir;
  make_run(dir.path(), "run01");
  write_bytes(dir.path() / "run01" / "class_labels.txt",
              "\r\n  test/item02.png   training/class01.png  \r\n\n\t\nrun01/test/item01.png "
              "run01/training/class02.png\t \r\n");
  const std::vector<OneShotRun> runs = load_oneshot_runs(dir.str());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].test_labels, (std::vector<int32_t>{1, 0}));
  EXPECT_EQ(runs[0].training.size(), 2u * 28 * 28);
}

TEST(OneShotRunsErrors, MissingEmptyOrNonFolderDir) {
  ScratchDir dir;
  const std::string missing = dir / "nope";
  testing::expect_runtime_error([&] { load_oneshot_runs(missing); }, {missing, "no such folder"});
  testing::expect_runtime_error([&] { load_oneshot_runs(dir.str()); }, {dir.str(), "no run* folders"});
  const std::string file = dir / "file";
  write_bytes(file, "x");
  testing::expect_runtime_error([&] { load_oneshot_runs(file); }, {file, "not a folder"});
  testing::expect_runtime_error([&] { load_oneshot_runs(dir.str(), 0); }, {dir.str(), "out of range"});
}

TEST(OneShotRunsErrors, MissingLabelFileOrFolders) {
  ScratchDir dir;
  make_run(dir.path(), "run01");
  fs::remove(dir.path() / "run01" / "class_labels.txt");
  testing::expect_runtime_error([&] { load_oneshot_runs(dir.str()); }, {dir / "run01/class_labels.txt", "missing label file"});
  make_run(dir.path(), "run01");
  fs::remove_all(dir.path() / "run01" / "test");
  testing::expect_runtime_error([&] { load_oneshot_runs(dir.str()); }, {dir / "run01/test", "missing folder"});
  make_run(dir.path(), "run01");
  for (const char* f : {"class01.png", "class02.png"}) fs::remove(dir.path() / "run01" / "training" / f);
  testing::expect_runtime_error([&] { load_oneshot_runs(dir.str()); }, {dir / "run01/training", "no PNG images"});
}

TEST(OneShotRunsErrors, LabelNamingMissingFile) {
  ScratchDir dir;
  make_run(dir.path(), "run01");
  write_bytes(dir.path() / "run01" / "class_labels.txt",
              "run01/test/item01.png run01/training/class07.png\nrun01/test/item02.png run01/training/class01.png\n");
  const std::string labels = dir / "run01/class_labels.txt";
  testing::expect_runtime_error([&] { load_oneshot_runs(dir.str()); }, {labels + ":1", "run01/training/class07.png", "does not exist"});
  write_bytes(dir.path() / "run01" / "class_labels.txt", "run01/test/item09.png run01/training/class01.png\n");
  testing::expect_runtime_error([&] { load_oneshot_runs(dir.str()); }, {labels + ":1", "run01/test/item09.png", "does not exist"});
}

TEST(OneShotRunsErrors, LabelNamingFileOutsideTheRightFolder) {
  ScratchDir dir;
  make_run(dir.path(), "run01");
  make_run(dir.path(), "run02");
  const std::string labels = dir / "run01/class_labels.txt";
  // Swapped columns: the first path must be a test item.
  write_bytes(labels, "run01/training/class01.png run01/test/item01.png\n");
  testing::expect_runtime_error([&] { load_oneshot_runs(dir.str()); },
               {labels + ":1", "run01/training/class01.png", "not a PNG image in"});
  // Another run's class.
  write_bytes(labels, "run01/test/item01.png run02/training/class01.png\n");
  testing::expect_runtime_error([&] { load_oneshot_runs(dir.str()); }, {labels + ":1", "run02/training/class01.png"});
  // The label file itself exists but is no image.
  write_bytes(labels, "run01/test/item01.png run01/class_labels.txt\n");
  testing::expect_runtime_error([&] { load_oneshot_runs(dir.str()); }, {labels + ":1", "run01/class_labels.txt"});
}

TEST(OneShotRunsErrors, MalformedLine) {
  ScratchDir dir;
  make_run(dir.path(), "run01");
  const std::string labels = dir / "run01/class_labels.txt";
  write_bytes(labels, "run01/test/item01.png run01/training/class02.png\nrun01/test/item02.png\n");
  testing::expect_runtime_error([&] { load_oneshot_runs(dir.str()); }, {labels + ":2", "malformed line"});
  write_bytes(labels, "run01/test/item01.png run01/training/class02.png extra\n");
  testing::expect_runtime_error([&] { load_oneshot_runs(dir.str()); }, {labels + ":1", "malformed line"});
}

TEST(OneShotRunsErrors, ItemLabelledTwice) {
  ScratchDir dir;
  make_run(dir.path(), "run01");
  const std::string labels = dir / "run01/class_labels.txt";
  write_bytes(labels,
              "run01/test/item01.png run01/training/class02.png\n\n"
              "test/item01.png training/class01.png\nrun01/test/item02.png run01/training/class01.png\n");
  testing::expect_runtime_error([&] { load_oneshot_runs(dir.str()); }, {labels + ":3", dir / "run01/test/item01.png", "line 1"});
}

TEST(OneShotRunsErrors, TestItemWithoutLabel) {
  ScratchDir dir;
  make_run(dir.path(), "run01");
  write_bytes(dir.path() / "run01" / "class_labels.txt", "run01/test/item01.png run01/training/class02.png\n");
  testing::expect_runtime_error([&] { load_oneshot_runs(dir.str()); }, {dir / "run01/test/item02.png", "no label"});
}

TEST(OneShotRunsErrors, CorruptPng) {
  ScratchDir dir;
  make_run(dir.path(), "run01");
  const fs::path png = dir.path() / "run01" / "test" / "item02.png";
  const std::string bytes = read_bytes(png);
  write_bytes(png, bytes.substr(0, bytes.size() / 2));
  testing::expect_runtime_error([&] { load_oneshot_runs(dir.str()); }, {png.string(), "corrupt PNG"});
  write_bytes(png, "");
  testing::expect_runtime_error([&] { load_oneshot_runs(dir.str()); }, {png.string(), "corrupt PNG"});
  write_bytes(png, "not a png at all");
  testing::expect_runtime_error([&] { load_oneshot_runs(dir.str()); }, {png.string(), "corrupt PNG"});
}

}  // namespace
}  // namespace metagrad
