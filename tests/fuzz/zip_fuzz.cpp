// The Omniglot zip reader: central directory, local headers, stored and deflate members, CRC,
// folder layout, PNG decoding and resizing of every member.
#include "meta/data/omniglot.h"
#include "metagrad/error.h"
#include "tests/fuzz/fuzz_util.h"

using namespace metagrad;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = (fuzz::scratch_dir() / "archive.zip").string();
  fuzz::write_file(path, data, size);
  try {
    OmniglotOptions opt;
    opt.image = 8;
    opt.rotations = size > 0 && (data[size - 1] & 1);
    load_omniglot_zip(path, opt);
  } catch (const Error&) {
  }
  return 0;
}
