// Labelled image sets in the IDX format of MNIST and Fashion-MNIST (optionally gzip-compressed).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace metagrad {

struct ImageSet {
  int64_t count = 0, rows = 0, cols = 0;
  std::vector<float> pixels;    // count * rows * cols, scaled to [0, 1]
  std::vector<int32_t> labels;  // count
  int64_t pixels_per_image() const { return rows * cols; }
};

// Reads an IDX image file and its label file; a missing, truncated or malformed file, or a
// count mismatch between the two, is a RuntimeError naming the file.
ImageSet load_idx(const std::string& images_path, const std::string& labels_path);

// Where Debian's dataset-fashion-mnist package puts the files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// `train-*` or `t10k-*` of a Fashion-MNIST (or MNIST) folder; accepts .gz or uncompressed files.
ImageSet load_fashion_mnist(const std::string& dir, bool train);

// Mean and standard deviation over all pixels (for input standardisation).
std::pair<double, double> pixel_mean_std(const ImageSet& set);

// The first n images of a set (all of it when n is 0 or at least its size).
ImageSet first_images(ImageSet set, int64_t n);

// The images whose label is in [lo, hi], relabelled to 0..hi-lo (for split-class tasks).
ImageSet select_classes(const ImageSet& set, int32_t lo, int32_t hi);

}  // namespace metagrad
