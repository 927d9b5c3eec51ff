// The checkpoint loader against a fixed small model. An input whose first byte is odd gets a
// correct CRC in its last four bytes, so the fuzzer also reaches the parser behind the checksum.
#include <zlib.h>

#include <cstring>
#include <vector>

#include "metagrad/builder.h"
#include "metagrad/checkpoint.h"
#include "metagrad/error.h"
#include "tests/fuzz/fuzz_util.h"

using namespace metagrad;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Graph model = [] {
    Graph g;
    g.add_parameter("w", {DType::f32, {2, 3}}, "zeros", {});
    g.add_parameter("b", {DType::f32, {3}}, "zeros", {});
    g.add_parameter("opt.t", {DType::f32, {}}, "zeros", {}, false);
    return g;
  }();
  std::vector<uint8_t> bytes(data, data + size);
  if (size >= 5 && (data[0] & 1)) {
    const uint32_t crc = uint32_t(crc32(crc32(0, nullptr, 0), bytes.data(), uInt(size - 4)));
    std::memcpy(bytes.data() + size - 4, &crc, 4);
  }
  const std::string path = (fuzz::scratch_dir() / "checkpoint").string();
  fuzz::write_file(path, bytes.data(), bytes.size());
  ParamStore store;
  store.ensure(model);
  try {
    load_checkpoint(store, path);
  } catch (const Error&) {
  }
  return 0;
}
