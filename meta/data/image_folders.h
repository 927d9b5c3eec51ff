// Few-shot data of your own: a folder of class-per-folder PNG images, read into the class-indexed
// set the Omniglot zip loader produces, so every few-shot algorithm and sampler takes it as it is.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "meta/data/omniglot.h"

namespace metagrad {

struct ImageFolderOptions {
  int64_t image = 28;   // side of the square every image is resized to (resize_area)
  bool invert = false;  // 1 - grey: dark strokes on white (Omniglot's scans) become ink = 1 on 0
};

// Two layouts, told apart per top-level folder: DIR/<class>/<image>.png (a generic dataset; the
// class's alphabet is "") and DIR/<alphabet>/<character>/<image>.png (Omniglot's; a character is a
// class, and within-alphabet sampling draws from one alphabet). Grey, grey+alpha, RGB or RGBA of
// any size: colour becomes grey by libpng's luminance, then the area resize. Classes are sorted by
// (alphabet, class) and images by file name; files that are not .png are skipped. RuntimeError
// naming the folder or file for a missing folder, no class folders, a class folder without images,
// a folder that mixes images and subfolders, or an undecodable PNG.
OmniglotSet load_image_folders(const std::string& dir, const ImageFolderOptions& opt = {});

// The folder of class c in a set loaded from `dir` (for messages).
std::string class_folder(const std::string& dir, const OmniglotClass& c);

// RuntimeError naming the first class folder with fewer than `needed` images (shots + query).
void require_images_per_class(const OmniglotSet& set, int64_t needed, const std::string& dir);

// Splits the classes into meta-training and held-out ones: a seeded shuffle of the alphabets (of the
// classes, if the set has no alphabets), `held_out` of them (at least one, at most all but one) held
// out, so no held-out class is ever seen in training. RuntimeError if there are fewer than two units.
std::pair<OmniglotSet, OmniglotSet> split_classes(const OmniglotSet& set, double held_out, uint64_t seed,
                                                  const std::string& dir);

// Writes 8-bit PNG: `channels` 1 (grey) or 3 (RGB) interleaved values in [0, 1] (tests, fixtures).
void write_png(const std::string& path, const std::vector<float>& pixels, int64_t width, int64_t height, int channels);

}  // namespace metagrad
