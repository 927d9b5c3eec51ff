// The IDX reader (plain or gzip). The input is split in two files: its first byte says where the
// image file ends (as a fraction of the rest), the remainder is the label file.
#include "meta/data/idx.h"
#include "metagrad/error.h"
#include "tests/fuzz/fuzz_util.h"

using namespace metagrad;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t rest = size - 1, split = rest * data[0] / 255;
  const std::string images = (fuzz::scratch_dir() / "images").string(), labels = (fuzz::scratch_dir() / "labels").string();
  fuzz::write_file(images, data + 1, split);
  fuzz::write_file(labels, data + 1 + split, rest - split);
  try {
    ImageSet s = load_idx(images, labels);
    pixel_mean_std(s);
    select_classes(s, 0, 4);
  } catch (const Error&) {
  }
  return 0;
}
