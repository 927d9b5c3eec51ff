// Class-per-folder PNG datasets: layout detection per top-level folder, decoding and resizing
// shared with the Omniglot loader, and a class split that keeps held-out classes unseen.
#include "meta/data/image_folders.h"

#include <fmt/format.h>
#include <png.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "metagrad/error.h"

namespace metagrad {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw RuntimeError("image folders: " + where + ": " + what);
}

bool is_png(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return ext == ".png";
}

bool hidden(const fs::path& p) { return !p.filename().empty() && p.filename().string()[0] == '.'; }

struct Listing {
  std::vector<fs::path> images, folders;  // sorted
};

Listing list(const fs::path& dir) {
  Listing l;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    if (hidden(p)) continue;
    if (it->is_directory()) l.folders.push_back(p);
    else if (it->is_regular_file() && is_png(p)) l.images.push_back(p);
  }
  if (ec) fail(dir.string(), "cannot list folder (" + ec.message() + ")");
  std::sort(l.images.begin(), l.images.end());
  std::sort(l.folders.begin(), l.folders.end());
  return l;
}

std::vector<uint8_t> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(p.string(), "cannot open file");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail(p.string(), "read error");
  return bytes;
}

// Every image of one class folder, resized, back to back.
std::vector<float> load_class(const fs::path& folder, const std::vector<fs::path>& files, const ImageFolderOptions& opt) {
  if (files.empty()) fail(folder.string(), "class folder has no .png images");
  std::vector<float> out;
  out.reserve(files.size() * size_t(opt.image * opt.image));
  for (const fs::path& f : files) {
    int64_t w = 0, h = 0;
    // decode_png_gray names the file in its own errors (corrupt, truncated, absurd size).
    const std::vector<float> gray = decode_png_gray(read_file(f), w, h, f.string());
    for (float x : resize_area(gray, w, h, opt.image, opt.image)) out.push_back(opt.invert ? 1.0f - x : x);
  }
  return out;
}

}  // namespace

OmniglotSet load_image_folders(const std::string& dir, const ImageFolderOptions& opt) {
  if (opt.image <= 0 || opt.image > 4096) fail(dir, fmt::format("image side {} out of range", opt.image));
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(dir, "no such folder");
  const Listing top = list(dir);
  if (top.folders.empty())
    fail(dir, "no class folders (expected DIR/<class>/<image>.png or DIR/<alphabet>/<character>/<image>.png)");
  OmniglotSet set;
  set.image = opt.image;
  for (const fs::path& f : top.folders) {
    const Listing inner = list(f);
    if (!inner.images.empty() && !inner.folders.empty())
      fail(f.string(), "holds both images and subfolders: a class folder holds images, an alphabet folder class folders");
    if (inner.folders.empty()) {  // DIR/<class>/<image>.png
      set.images.push_back(load_class(f, inner.images, opt));
      set.classes.push_back({"", f.filename().string(), 0});
      continue;
    }
    for (const fs::path& c : inner.folders) {  // DIR/<alphabet>/<character>/<image>.png
      const Listing chars = list(c);
      if (!chars.folders.empty()) fail(c.string(), "character folder holds subfolders; expected only images");
      set.images.push_back(load_class(c, chars.images, opt));
      set.classes.push_back({f.filename().string(), c.filename().string(), 0});
    }
  }
  return set;
}

std::string class_folder(const std::string& dir, const OmniglotClass& c) {
  return (c.alphabet.empty() ? fs::path(dir) / c.character : fs::path(dir) / c.alphabet / c.character).string();
}

void require_images_per_class(const OmniglotSet& set, int64_t needed, const std::string& dir) {
  for (size_t c = 0; c < set.classes.size(); ++c)
    if (set.count(int64_t(c)) < needed)
      fail(class_folder(dir, set.classes[c]),
           fmt::format("{} images, an episode needs {} per class (shots + query)", set.count(int64_t(c)), needed));
}

std::pair<OmniglotSet, OmniglotSet> split_classes(const OmniglotSet& set, double held_out, uint64_t seed,
                                                  const std::string& dir) {
  if (!(held_out > 0 && held_out < 1)) fail(dir, fmt::format("held-out share {} is not in (0, 1)", held_out));
  // The unit of the split: an alphabet where there are alphabets, else the class itself.
  std::vector<std::string> units;
  auto unit_of = [&](const OmniglotClass& c) { return c.alphabet.empty() ? "/" + c.character : c.alphabet; };
  {
    std::set<std::string> seen;
    for (const OmniglotClass& c : set.classes)
      if (seen.insert(unit_of(c)).second) units.push_back(unit_of(c));
  }
  if (units.size() < 2) fail(dir, fmt::format("{} class group(s): at least two are needed to hold some out", units.size()));
  std::mt19937_64 rng(seed);
  std::shuffle(units.begin(), units.end(), rng);
  const size_t n_out = std::clamp<size_t>(size_t(std::lround(held_out * double(units.size()))), 1, units.size() - 1);
  const std::set<std::string> out(units.begin(), units.begin() + long(n_out));
  OmniglotSet train, test;
  train.image = test.image = set.image;
  for (size_t c = 0; c < set.classes.size(); ++c) {
    OmniglotSet& dst = out.count(unit_of(set.classes[c])) ? test : train;
    dst.classes.push_back(set.classes[c]);
    dst.images.push_back(set.images[c]);
  }
  return {std::move(train), std::move(test)};
}

void write_png(const std::string& path, const std::vector<float>& pixels, int64_t width, int64_t height, int channels) {
  if (channels != 1 && channels != 3) fail(path, fmt::format("{} channels: 1 (grey) or 3 (RGB)", channels));
  if (width <= 0 || height <= 0 || width > (int64_t{1} << 24) || height > (int64_t{1} << 24) ||
      int64_t(pixels.size()) != width * height * channels)
    fail(path, fmt::format("{} values for a {}x{} image of {} channels", pixels.size(), width, height, channels));
  std::vector<uint8_t> bytes(pixels.size());
  for (size_t i = 0; i < pixels.size(); ++i) {
    if (std::isnan(pixels[i])) fail(path, fmt::format("value {} is NaN", i));
    bytes[i] = uint8_t(std::lround(std::clamp(pixels[i], 0.0f, 1.0f) * 255.0f));
  }
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = png_uint_32(width);
  img.height = png_uint_32(height);
  img.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  const bool ok = png_image_write_to_file(&img, path.c_str(), 0, bytes.data(), 0, nullptr);
  const std::string msg = img.message;
  png_image_free(&img);
  if (!ok) fail(path, "cannot write PNG (" + msg + ")");
}

}  // namespace metagrad
