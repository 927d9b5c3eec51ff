// The 20-way one-shot classification runs of Lake et al. (2015), read from their original folder layout so
// results are comparable with the published numbers, and written in that same layout from an Omniglot set so
// that tests and new evaluation splits need no downloaded run folders:
//   DIR/runNN/training/classJJ.png   one 105x105 image per class (black strokes on white)
//   DIR/runNN/test/itemKK.png        the test items
//   DIR/runNN/class_labels.txt       lines "runNN/test/itemKK.png runNN/training/classJJ.png"
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "meta/data/omniglot.h"

namespace metagrad {

struct OneShotRun {
  std::string name;                                     // the run folder's name, e.g. "run01"
  int64_t image = 28;                                   // side length after resizing
  std::vector<std::string> training_files, test_files;  // the paths opened, each list sorted by file name
  std::vector<float> training;                          // [classes, 1, image, image]; ink = 1, background = 0
  std::vector<float> test;                              // [items, 1, image, image]
  std::vector<int32_t> test_labels;                     // per test item: its class's index into training_files

  int64_t classes() const { return static_cast<int64_t>(training_files.size()); }
  int64_t items() const { return static_cast<int64_t>(test_files.size()); }
};

// The runs are DIR's subfolders named run*, sorted by name. Images get the same preprocessing as
// load_omniglot_zip (area resize to `image`, then inverted), so a model trained on the archives sees the
// run images exactly as it saw its training data. Label paths may be relative to DIR (as in the original)
// or to the run folder. Throws RuntimeError naming the folder or file at fault: DIR missing, not a folder
// or without runs; a missing class_labels.txt, training/ or test/; a label line that is malformed, names a
// missing file or one outside the run's test/ (first path) or training/ (second path), or relabels an item;
// a test item without a label; an unreadable or corrupt PNG.
std::vector<OneShotRun> load_oneshot_runs(const std::string& dir, int64_t image = 28);

// 8-bit gray PNG of values in [0, 1] (white = 1, the file convention; values outside are clamped). Written
// to a temporary file and renamed into place, so a crash never leaves a truncated image behind. Throws
// RuntimeError naming the path on bad arguments (size mismatch, NaN) or any write failure.
void write_png_gray(const std::string& path, const std::vector<float>& pixels, int64_t width, int64_t height);

// Builds `runs` run folders run01, run02, ... in DIR (created if needed) from a set loaded with
// OmniglotOptions{.image = 105, .rotations = false} (the original runs' image size; other sizes are written
// as they are). Each run draws `ways` distinct classes (all from one alphabet when within_alphabet, the
// original setting) and two distinct images of each: one becomes training/classJJ.png in draw order, the
// other a test item, with the items shuffled so that item order says nothing about the class. The same set
// and seed give byte-identical folders. Throws RuntimeError if the set cannot supply such runs.
void write_oneshot_runs(const OmniglotSet& full_size_set, const std::string& dir, int64_t runs, int64_t ways,
                        bool within_alphabet, uint64_t seed);

}  // namespace metagrad
