#include "meta/data/idx.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>

#include "metagrad/error.h"
#include "metagrad/types.h"

namespace metagrad {

namespace {

constexpr size_t kMaxInflated = size_t(1) << 30;

// The whole file, inflated when gzip-compressed (gzread passes plain files through unchanged).
std::vector<uint8_t> read_maybe_gz(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) throw RuntimeError(fmt::format("{}: no such file", path));
  std::unique_ptr<gzFile_s, int (*)(gzFile)> f(gzopen(path.c_str(), "rb"), gzclose);
  if (!f) throw RuntimeError(fmt::format("{}: cannot open", path));
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  for (;;) {
    int n = gzread(f.get(), buf, sizeof buf);
    if (n < 0) {
      int err = 0;
      throw RuntimeError(fmt::format("{}: corrupt compressed data ({})", path, gzerror(f.get(), &err)));
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
    // A small gzip file can inflate to any size; no IDX file of ours is near this.
    if (out.size() > kMaxInflated)
      throw RuntimeError(fmt::format("{}: more than {} MiB once inflated (not an IDX file of images)", path, kMaxInflated >> 20));
  }
  return out;
}

uint32_t be32(const std::vector<uint8_t>& b, size_t at) {
  return uint32_t(b[at]) << 24 | uint32_t(b[at + 1]) << 16 | uint32_t(b[at + 2]) << 8 | uint32_t(b[at + 3]);
}

// Checks the magic number (unsigned bytes, `dims` dimensions) and returns the dimensions.
std::vector<uint32_t> idx_header(const std::vector<uint8_t>& b, uint32_t dims, const std::string& path) {
  const size_t header = 4 + 4 * size_t(dims);
  if (b.size() < header) throw RuntimeError(fmt::format("{}: truncated IDX header ({} bytes)", path, b.size()));
  const uint32_t magic = be32(b, 0), expected = 0x0800u | dims;
  if (magic != expected)
    throw RuntimeError(fmt::format("{}: not an IDX file of {}-dimensional unsigned bytes (magic 0x{:08x}, expected 0x{:08x})",
                                   path, dims, magic, expected));
  std::vector<uint32_t> d;
  uint64_t total = 1;
  for (uint32_t i = 0; i < dims; ++i) {
    d.push_back(be32(b, 4 + 4 * i));
    // Three 32-bit dimensions can wrap a 64-bit product around to a small size that matches the file.
    if (d.back() != 0 && total > uint64_t(kMaxTensorElements) / d.back())
      throw RuntimeError(fmt::format("{}: the header declares {} dimensions whose product is beyond {} elements", path,
                                     dims, kMaxTensorElements));
    total *= d.back();
  }
  if (b.size() != header + total)
    throw RuntimeError(fmt::format("{}: {} data bytes, the header promises {}{}", path, b.size() - header, total,
                                   b.size() < header + total ? " (truncated)" : ""));
  return d;
}

}  // namespace

ImageSet load_idx(const std::string& images_path, const std::string& labels_path) {
  std::vector<uint8_t> img = read_maybe_gz(images_path), lab = read_maybe_gz(labels_path);
  std::vector<uint32_t> di = idx_header(img, 3, images_path), dl = idx_header(lab, 1, labels_path);
  if (di[0] != dl[0])
    throw RuntimeError(fmt::format("{} holds {} images but {} holds {} labels", images_path, di[0], labels_path, dl[0]));
  ImageSet s;
  s.count = di[0];
  s.rows = di[1];
  s.cols = di[2];
  s.pixels.resize(img.size() - 16);
  for (size_t i = 0; i < s.pixels.size(); ++i) s.pixels[i] = float(img[16 + i]) / 255.0f;
  s.labels.resize(size_t(s.count));
  for (size_t i = 0; i < s.labels.size(); ++i) s.labels[i] = lab[8 + i];
  return s;
}

ImageSet load_fashion_mnist(const std::string& dir, bool train) {
  if (!std::filesystem::is_directory(dir))
    throw RuntimeError(fmt::format("{}: no such data folder (install the Debian package dataset-fashion-mnist or pass --data)", dir));
  const std::string stem = train ? "train" : "t10k";
  auto pick = [&](const std::string& kind) {
    std::string plain = fmt::format("{}/{}-{}", dir, stem, kind);
    return std::filesystem::exists(plain + ".gz") || !std::filesystem::exists(plain) ? plain + ".gz" : plain;
  };
  return load_idx(pick("images-idx3-ubyte"), pick("labels-idx1-ubyte"));
}

std::pair<double, double> pixel_mean_std(const ImageSet& set) {
  double sum = 0, sq = 0;
  for (float v : set.pixels) {
    sum += v;
    sq += double(v) * v;
  }
  const double n = double(std::max<size_t>(set.pixels.size(), 1)), mean = sum / n;
  return {mean, std::sqrt(std::max(sq / n - mean * mean, 1e-12))};
}

ImageSet select_classes(const ImageSet& set, int32_t lo, int32_t hi) {
  ImageSet out;
  out.rows = set.rows;
  out.cols = set.cols;
  const int64_t ppi = set.pixels_per_image();
  for (int64_t i = 0; i < set.count; ++i) {
    int32_t y = set.labels[size_t(i)];
    if (y < lo || y > hi) continue;
    out.labels.push_back(y - lo);
    out.pixels.insert(out.pixels.end(), set.pixels.begin() + i * ppi, set.pixels.begin() + (i + 1) * ppi);
  }
  out.count = int64_t(out.labels.size());
  return out;
}

ImageSet first_images(ImageSet set, int64_t n) {
  if (n <= 0 || n >= set.count) return set;
  set.count = n;
  set.labels.resize(size_t(n));
  set.pixels.resize(size_t(n * set.pixels_per_image()));
  return set;
}

}  // namespace metagrad
