// One-shot run folders: label parsing that checks every path against the run's own listing (so a typo
// or a file from another run is reported rather than silently loaded), image preprocessing shared with
// the zip loader, and libpng's simplified write API for the fixture writer.
#include "meta/data/oneshot_runs.h"

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
#include <sstream>
#include <utility>

#include "metagrad/error.h"

namespace metagrad {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw RuntimeError("oneshot runs: " + where + ": " + what);
}

bool is_png_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return ext == ".png";
}

// Listed rather than taken from class_labels.txt so that an image the labels forget is caught too.
std::vector<fs::path> list_pngs(const fs::path& folder) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) fail(folder.string(), "missing folder");
  std::vector<fs::path> files;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_regular_file(type_ec) && is_png_name(it->path())) files.push_back(it->path());
  }
  if (ec) fail(folder.string(), "cannot list folder (" + ec.message() + ")");
  if (files.empty()) fail(folder.string(), "no PNG images");
  std::sort(files.begin(), files.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
  return files;
}

std::vector<std::string> find_runs(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) fail(dir.string(), "no such folder");
  if (!fs::is_directory(dir, ec)) fail(dir.string(), "not a folder");
  std::vector<std::string> runs;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    const std::string name = it->path().filename().string();
    if (name.starts_with("run") && it->is_directory(type_ec)) runs.push_back(name);
  }
  if (ec) fail(dir.string(), "cannot list folder (" + ec.message() + ")");
  if (runs.empty()) fail(dir.string(), "no run* folders");
  std::sort(runs.begin(), runs.end());
  return runs;
}

// Normalised path -> index into `files`, for matching label paths written in either accepted form.
std::map<std::string, int32_t> index_by_path(const std::vector<fs::path>& files) {
  std::map<std::string, int32_t> index;
  for (size_t i = 0; i < files.size(); ++i) index[files[i].lexically_normal().string()] = static_cast<int32_t>(i);
  return index;
}

struct LabelContext {
  fs::path dir, run_dir, labels_path;
};

// The original files name paths relative to DIR; hand-made ones often name them relative to the run.
int32_t resolve(const LabelContext& ctx, const std::string& token, const std::map<std::string, int32_t>& index,
                const char* folder, const std::string& where) {
  const fs::path p(token);
  std::vector<fs::path> candidates;
  if (p.is_absolute()) {
    candidates.push_back(p.lexically_normal());
  } else {
    candidates.push_back((ctx.dir / p).lexically_normal());
    candidates.push_back((ctx.run_dir / p).lexically_normal());
  }
  for (const fs::path& c : candidates)
    if (auto it = index.find(c.string()); it != index.end()) return it->second;
  std::error_code ec;
  for (const fs::path& c : candidates)
    if (fs::exists(c, ec))
      fail(where, "'" + token + "' (" + c.string() + ") is not a PNG image in " + (ctx.run_dir / folder).string());
  std::string looked;
  for (const fs::path& c : candidates) looked += (looked.empty() ? "" : " or ") + c.string();
  fail(where, "'" + token + "' does not exist (looked for " + looked + ")");
}

// labels[i] for test_files[i]; every test item must get exactly one.
std::vector<int32_t> read_labels(const LabelContext& ctx, const std::vector<fs::path>& training_files,
                                 const std::vector<fs::path>& test_files) {
  std::error_code ec;
  if (!fs::is_regular_file(ctx.labels_path, ec)) fail(ctx.labels_path.string(), "missing label file");
  std::ifstream in(ctx.labels_path);
  if (!in) fail(ctx.labels_path.string(), "cannot open label file");
  const auto training_index = index_by_path(training_files), test_index = index_by_path(test_files);
  std::vector<int32_t> labels(test_files.size(), -1);
  std::vector<int64_t> labelled_on(test_files.size(), 0);
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    const std::string where = ctx.labels_path.string() + ":" + std::to_string(number);
    // Whitespace splitting also drops the '\r' of CRLF files; trimmed first so messages do not carry it.
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    std::istringstream fields(line);
    std::vector<std::string> tokens;
    for (std::string t; fields >> t;) tokens.push_back(t);
    if (tokens.empty()) continue;
    if (tokens.size() != 2)
      fail(where, "malformed line '" + line + "' (expected '<run>/test/<item>.png <run>/training/<class>.png')");
    const int32_t item = resolve(ctx, tokens[0], test_index, "test", where);
    const int32_t cls = resolve(ctx, tokens[1], training_index, "training", where);
    if (labels[item] >= 0)
      fail(where, test_files[item].string() + " is already labelled on line " + std::to_string(labelled_on[item]));
    labels[item] = cls;
    labelled_on[item] = number;
  }
  if (in.bad()) fail(ctx.labels_path.string(), "read error");
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] < 0) fail(test_files[i].string(), "test item has no label in " + ctx.labels_path.string());
  return labels;
}

// Must stay the same as load_omniglot_zip's preprocessing (resize, then invert), or a model trained on
// the archives would be evaluated on differently scaled inputs.
std::vector<float> load_images(const std::vector<fs::path>& files, int64_t side) {
  std::vector<float> out;
  out.reserve(files.size() * static_cast<size_t>(side * side));
  for (const fs::path& f : files) {
    int64_t w = 0, h = 0;
    const std::vector<float> gray = read_png_gray(f.string(), w, h);
    for (float x : resize_area(gray, w, h, side, side)) out.push_back(1.0f - x);
  }
  return out;
}

std::vector<std::string> strings(const std::vector<fs::path>& paths) {
  std::vector<std::string> out;
  out.reserve(paths.size());
  for (const fs::path& p : paths) out.push_back(p.string());
  return out;
}

void write_file_atomically(const std::string& path, const void* data, size_t size) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(tmp, "cannot create file");
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!out.flush()) {
      out.close();
      std::error_code ignored;
      fs::remove(tmp, ignored);
      fail(tmp, "write error");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    fail(path, "cannot move the file into place (" + ec.message() + ")");
  }
}

// Zero-padded to a common width so that sorting by name (as the loader does) keeps numeric order.
std::string numbered(const char* prefix, int64_t n, int64_t count) {
  const int width = std::max<int>(2, static_cast<int>(std::to_string(count).size()));
  return fmt::format("{}{:0{}}", prefix, n, width);
}

}  // namespace

std::vector<OneShotRun> load_oneshot_runs(const std::string& dir, int64_t image) {
  if (image <= 0 || image > 4096) fail(dir, "image side " + std::to_string(image) + " out of range");
  const fs::path root(dir);
  std::vector<OneShotRun> runs;
  for (const std::string& name : find_runs(root)) {
    const LabelContext ctx{root, root / name, root / name / "class_labels.txt"};
    const std::vector<fs::path> training_files = list_pngs(ctx.run_dir / "training");
    const std::vector<fs::path> test_files = list_pngs(ctx.run_dir / "test");
    OneShotRun run;
    run.name = name;
    run.image = image;
    run.test_labels = read_labels(ctx, training_files, test_files);  // before decoding: it is the cheap check
    run.training = load_images(training_files, image);
    run.test = load_images(test_files, image);
    run.training_files = strings(training_files);
    run.test_files = strings(test_files);
    runs.push_back(std::move(run));
  }
  return runs;
}

void write_png_gray(const std::string& path, const std::vector<float>& pixels, int64_t width, int64_t height) {
  constexpr int64_t kMaxSide = int64_t{1} << 24;  // well inside PNG's 2^31 - 1 and any sane image
  if (width <= 0 || height <= 0 || width > kMaxSide || height > kMaxSide)
    fail(path, fmt::format("PNG size {}x{} out of range", width, height));
  if (static_cast<int64_t>(pixels.size()) != width * height)
    fail(path, fmt::format("{} pixel values for a {}x{} image", pixels.size(), width, height));
  std::vector<uint8_t> gray(pixels.size());
  for (size_t i = 0; i < pixels.size(); ++i) {
    if (std::isnan(pixels[i])) fail(path, fmt::format("pixel {} is NaN", i));
    gray[i] = static_cast<uint8_t>(std::lround(std::clamp(pixels[i], 0.0f, 1.0f) * 255.0f));
  }
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = static_cast<png_uint_32>(width);
  img.height = static_cast<png_uint_32>(height);
  img.format = PNG_FORMAT_GRAY;
  // Encoded in memory first so that the file only ever appears complete (see write_file_atomically).
  png_alloc_size_t size = 0;
  std::vector<uint8_t> encoded;
  bool ok = png_image_write_to_memory(&img, nullptr, &size, 0, gray.data(), 0, nullptr);
  if (ok) {
    encoded.resize(size);
    ok = png_image_write_to_memory(&img, encoded.data(), &size, 0, gray.data(), 0, nullptr);
  }
  const std::string msg = img.message;
  png_image_free(&img);
  if (!ok) fail(path, "cannot encode PNG (" + msg + ")");
  write_file_atomically(path, encoded.data(), size);
}

void write_oneshot_runs(const OmniglotSet& full_size_set, const std::string& dir, int64_t runs, int64_t ways,
                        bool within_alphabet, uint64_t seed) {
  const OmniglotSet& set = full_size_set;
  if (runs <= 0 || ways <= 0) fail(dir, fmt::format("bad run shape: {} runs of {} ways", runs, ways));
  if (set.image <= 0 || set.images.size() != set.classes.size()) fail(dir, "inconsistent OmniglotSet");
  const fs::path root(dir);
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) fail(dir, "cannot create folder (" + ec.message() + ")");
  std::mt19937_64 rng(seed);
  const int64_t pixels = set.image * set.image;
  for (int64_t r = 1; r <= runs; ++r) {
    const std::string name = numbered("run", r, runs);
    // Stale images from an earlier, larger run would turn into unlabelled items; refuse rather than delete.
    if (fs::exists(root / name, ec)) fail((root / name).string(), "already exists");
    // One shot and one query image per class is exactly a run: distinct classes, two distinct images each.
    // Drawn before creating folders so that a set too small for the run leaves nothing behind.
    const Episode ep = sample_episode(set, ways, 1, 1, within_alphabet, rng);
    for (const char* sub : {"training", "test"}) {
      fs::create_directories(root / name / sub, ec);
      if (ec) fail((root / name / sub).string(), "cannot create folder (" + ec.message() + ")");
    }
    std::vector<int64_t> order(static_cast<size_t>(ways));  // order[k]: the class of test item k
    for (int64_t k = 0; k < ways; ++k) order[k] = k;
    std::shuffle(order.begin(), order.end(), rng);
    auto write_image = [&](const std::string& rel, const float* ink) {
      std::vector<float> white(static_cast<size_t>(pixels));
      for (int64_t i = 0; i < pixels; ++i) white[i] = 1.0f - ink[i];  // back to the file convention
      write_png_gray((root / rel).string(), white, set.image, set.image);
    };
    std::string labels;
    for (int64_t k = 0; k < ways; ++k)
      write_image(name + "/training/" + numbered("class", k + 1, ways) + ".png", &ep.support[k * pixels]);
    for (int64_t k = 0; k < ways; ++k) {
      const std::string item = name + "/test/" + numbered("item", k + 1, ways) + ".png";
      write_image(item, &ep.query[order[k] * pixels]);
      labels += item + " " + name + "/training/" + numbered("class", order[k] + 1, ways) + ".png\n";
    }
    write_file_atomically((root / name / "class_labels.txt").string(), labels.data(), labels.size());
  }
}

}  // namespace metagrad
