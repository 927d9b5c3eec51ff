// One-shot run folders: a fixed run01 with two training classes and two test items, whose
// class_labels.txt is the input up to its first NUL byte; the bytes after it, if any, replace
// test/item01.png.
#include <cstring>
#include <vector>

#include "meta/data/oneshot_runs.h"
#include "metagrad/error.h"
#include "tests/fuzz/fuzz_util.h"

using namespace metagrad;

namespace {

const std::filesystem::path& runs_dir() {
  static const std::filesystem::path dir = [] {
    const std::filesystem::path d = fuzz::scratch_dir() / "runs", run = d / "run01";
    std::filesystem::create_directories(run / "training");
    std::filesystem::create_directories(run / "test");
    std::vector<float> a(12 * 12, 1.0f), b(12 * 12, 1.0f);
    for (int i = 0; i < 12; ++i) a[size_t(i * 12 + 5)] = 0.0f, b[size_t(5 * 12 + i)] = 0.0f;
    write_png_gray((run / "training" / "class01.png").string(), a, 12, 12);
    write_png_gray((run / "training" / "class02.png").string(), b, 12, 12);
    write_png_gray((run / "test" / "item02.png").string(), a, 12, 12);
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<uint8_t> item01 = [] {
    const std::filesystem::path p = runs_dir() / "item01_source.png";
    std::vector<float> b(12 * 12, 1.0f);
    for (int i = 0; i < 12; ++i) b[size_t(5 * 12 + i)] = 0.0f;
    write_png_gray(p.string(), b, 12, 12);
    std::ifstream in(p, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
  }();
  const std::filesystem::path run = runs_dir() / "run01";
  const uint8_t* nul = static_cast<const uint8_t*>(std::memchr(data, 0, size));
  const size_t labels = nul ? size_t(nul - data) : size;
  fuzz::write_file(run / "class_labels.txt", data, labels);
  if (nul) fuzz::write_file(run / "test" / "item01.png", nul + 1, size - labels - 1);
  else fuzz::write_file(run / "test" / "item01.png", item01.data(), item01.size());
  try {
    load_oneshot_runs(runs_dir().string(), 8);
  } catch (const Error&) {
  }
  return 0;
}
