// PNG decoding (libpng's simplified API behind decode_png_gray) and the area resize after it.
#include <vector>

#include "meta/data/omniglot.h"
#include "metagrad/error.h"

using namespace metagrad;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  try {
    int64_t w = 0, h = 0;
    const std::vector<float> gray = decode_png_gray(bytes, w, h, "fuzz.png");
    resize_area(gray, w, h, 7, 9);
  } catch (const Error&) {
  }
  return 0;
}
