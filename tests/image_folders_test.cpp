// Class-per-folder image datasets: both layouts, grey and RGB of any size, resizing, inversion,
// the class split, and errors that name the folder or file at fault.
#include "meta/data/image_folders.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "metagrad/error.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

namespace fs = std::filesystem;

// A fresh folder under the test temp dir, removed at the end of the test.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) : path(fs::path(::testing::TempDir()) / ("metagrad_folders_" + name)) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string str() const { return path.string(); }
};

// An image of one grey level (RGB: the same level in each channel).
void write_flat(const fs::path& p, int64_t w, int64_t h, int channels, float level) {
  fs::create_directories(p.parent_path());
  write_png(p.string(), std::vector<float>(size_t(w * h * channels), level), w, h, channels);
}

TEST(ImageFolders, ReadsGreyAndRgbClassFoldersOfAnySizeResized) {
  TempDir d("generic");
  for (int i = 0; i < 3; ++i) write_flat(d.path / "cat" / ("img" + std::to_string(i) + ".png"), 10, 10, 1, 0.2f);
  for (int i = 0; i < 4; ++i) write_flat(d.path / "dog" / ("x" + std::to_string(i) + ".PNG"), 7, 5, 3, 0.8f);
  { std::ofstream(d.path / "dog" / "notes.txt") << "not an image"; }  // skipped
  ImageFolderOptions opt;
  opt.image = 4;
  const OmniglotSet s = load_image_folders(d.str(), opt);
  ASSERT_EQ(s.classes.size(), 2u);
  EXPECT_EQ(s.image, 4);
  EXPECT_EQ(s.classes[0].character, "cat");
  EXPECT_EQ(s.classes[0].alphabet, "");
  EXPECT_EQ(s.count(0), 3);
  EXPECT_EQ(s.count(1), 4);
  // A flat image stays flat under the area resize, at its 8-bit level.
  for (int64_t p = 0; p < 16; ++p) {
    EXPECT_NEAR(s.image_ptr(0, 2)[p], 51 / 255.0, 1e-6);
    EXPECT_NEAR(s.image_ptr(1, 0)[p], 204 / 255.0, 1e-6);
  }
  opt.invert = true;
  EXPECT_NEAR(load_image_folders(d.str(), opt).image_ptr(0, 0)[5], 1 - 51 / 255.0, 1e-6);
}

TEST(ImageFolders, ResizesByAreaAveraging) {
  TempDir d("area");
  // Left half black, right half white, 8x2 -> 2x1: each output pixel averages its half.
  std::vector<float> px(16);
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 8; ++c) px[size_t(r * 8 + c)] = c < 4 ? 0.f : 1.f;
  fs::create_directories(d.path / "a");
  write_png((d.path / "a" / "0.png").string(), px, 8, 2, 1);
  ImageFolderOptions opt;
  opt.image = 2;
  const OmniglotSet s = load_image_folders(d.str(), opt);
  EXPECT_NEAR(s.image_ptr(0, 0)[0], 0.0, 1e-6);
  EXPECT_NEAR(s.image_ptr(0, 0)[1], 1.0, 1e-6);
}

TEST(ImageFolders, ReadsTheOmniglotLayoutWithAlphabets) {
  TempDir d("omniglot");
  for (const char* alphabet : {"Greek", "Latin"})
    for (const char* ch : {"character01", "character02"})
      for (int i = 0; i < 2; ++i) write_flat(d.path / alphabet / ch / (std::to_string(i) + ".png"), 6, 6, 1, 1.0f);
  const OmniglotSet s = load_image_folders(d.str());
  ASSERT_EQ(s.classes.size(), 4u);
  EXPECT_EQ(s.classes[2].alphabet, "Latin");
  EXPECT_EQ(s.classes[2].character, "character01");
  EXPECT_EQ(class_folder(d.str(), s.classes[2]), (d.path / "Latin" / "character01").string());
  // Within-alphabet episodes draw from one alphabet of the folder.
  std::mt19937_64 rng(1);
  const Episode e = sample_episode(s, 2, 1, 1, /*within_alphabet=*/true, rng);
  EXPECT_EQ(e.support_labels.size(), 2u);
}

TEST(ImageFolders, SplitHoldsOutWholeAlphabetsOrClasses) {
  TempDir d("split");
  for (int c = 0; c < 10; ++c) write_flat(d.path / ("class" + std::to_string(c)) / "0.png", 3, 3, 1, 0.5f);
  const OmniglotSet all = load_image_folders(d.str());
  auto [train, test] = split_classes(all, 0.3, 7, d.str());
  EXPECT_EQ(test.classes.size(), 3u);
  EXPECT_EQ(train.classes.size(), 7u);
  std::set<std::string> names;
  for (const auto* s : {&train, &test})
    for (const OmniglotClass& c : s->classes) names.insert(c.character);
  EXPECT_EQ(names.size(), 10u) << "every class on exactly one side";
  auto [train2, test2] = split_classes(all, 0.3, 7, d.str());
  EXPECT_EQ(test2.classes[0].character, test.classes[0].character) << "the split is seeded";
  OmniglotSet one = all;
  one.classes.resize(1);
  one.images.resize(1);
  EXPECT_NE(testing::error_of([&] { split_classes(one, 0.3, 1, d.str()); }).find("at least two"), std::string::npos);
}

TEST(ImageFolders, ErrorsNameTheFolderOrFile) {
  TempDir d("errors");
  const std::string missing = d.str() + "/nope";
  EXPECT_NE(testing::error_of([&] { load_image_folders(missing); }).find(missing + ": no such folder"), std::string::npos);
  EXPECT_NE(testing::error_of([&] { load_image_folders(d.str()); }).find("no class folders"), std::string::npos);

  fs::create_directories(d.path / "empty");
  write_flat(d.path / "full" / "0.png", 4, 4, 1, 0.5f);
  std::string msg = testing::error_of([&] { load_image_folders(d.str()); });
  EXPECT_NE(msg.find((d.path / "empty").string() + ": class folder has no .png images"), std::string::npos) << msg;
  fs::remove_all(d.path / "empty");

  { std::ofstream(d.path / "full" / "1.png") << "not a png"; }
  msg = testing::error_of([&] { load_image_folders(d.str()); });
  EXPECT_NE(msg.find((d.path / "full" / "1.png").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("corrupt PNG"), std::string::npos) << msg;
  fs::remove(d.path / "full" / "1.png");

  write_flat(d.path / "full" / "sub" / "0.png", 4, 4, 1, 0.5f);
  msg = testing::error_of([&] { load_image_folders(d.str()); });
  EXPECT_NE(msg.find((d.path / "full").string() + ": holds both images and subfolders"), std::string::npos) << msg;
  fs::remove_all(d.path / "full" / "sub");

  const OmniglotSet s = load_image_folders(d.str());
  msg = testing::error_of([&] { require_images_per_class(s, 3, d.str()); });
  EXPECT_NE(msg.find((d.path / "full").string() + ": 1 images, an episode needs 3"), std::string::npos) << msg;
  EXPECT_NO_THROW(require_images_per_class(s, 1, d.str()));
}

}  // namespace
}  // namespace metagrad
