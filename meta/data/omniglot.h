// Omniglot (Lake et al. 2015) for few-shot classification: characters read straight from the
// released zip archives, so no unpacking step or temporary files are needed before training.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace metagrad {

struct OmniglotClass {
  std::string alphabet, character;
  int rotation = 0;  // degrees counter-clockwise: 0, 90, 180 or 270 (rotations count as new classes)
};

struct OmniglotSet {
  int64_t image = 28;  // side length after resizing
  std::vector<OmniglotClass> classes;
  // images[c] holds every image of class c back to back, image*image floats each; ink = 1, background = 0
  // (inverted so that the mostly empty background contributes zeros to the network's inputs).
  std::vector<std::vector<float>> images;

  int64_t count(int64_t c) const;  // images of class c
  const float* image_ptr(int64_t c, int64_t i) const;
};

struct OmniglotOptions {
  int64_t image = 28;
  bool rotations = true;
};

// Reads the zip's central directory itself (stored and deflate members, CRC-32 checked) rather than
// depending on an unzip tool. Classes are sorted by (alphabet, character, rotation) and images within
// a class by file name, so class and image indices are reproducible across runs and machines.
// Throws RuntimeError naming the archive (and member) for any missing, corrupt or unsupported input.
OmniglotSet load_omniglot_zip(const std::string& zip_path, const OmniglotOptions& opt = {});

// Grayscale in [0, 1] with white = 1 (the file's own convention; load_omniglot_zip inverts). Also used
// for the 105x105 images of the one-shot run folders, which are plain files rather than zip members.
std::vector<float> decode_png_gray(const std::vector<uint8_t>& bytes, int64_t& width, int64_t& height,
                                   const std::string& name_for_errors);
std::vector<float> read_png_gray(const std::string& path, int64_t& width, int64_t& height);

// Area averaging: each output pixel is the mean of the source area it covers (fractional overlaps
// weighted), which keeps thin 1-bit strokes visible when 105 shrinks to 28 where sampling would drop them.
std::vector<float> resize_area(const std::vector<float>& src, int64_t w, int64_t h, int64_t out_w, int64_t out_h);

// support: [ways*shots, 1, image, image] and query: [ways*query, 1, image, image], both class-major;
// labels are 0..ways-1 in the order the classes were drawn.
struct Episode {
  std::vector<float> support, query;
  std::vector<int32_t> support_labels, query_labels;
};

// Draws `ways` distinct classes (all from one alphabet when within_alphabet, the harder setting of the
// original one-shot task) and shots + query distinct images of each.
Episode sample_episode(const OmniglotSet& set, int64_t ways, int64_t shots, int64_t query, bool within_alphabet,
                       std::mt19937_64& rng);

}  // namespace metagrad
