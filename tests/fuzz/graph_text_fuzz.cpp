// Graph text -> parser -> verifier -> compile -> one run, for graphs whose values fit in a few MiB.
#include <cstring>
#include <vector>

#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/serialize.h"
#include "tests/fuzz/fuzz_util.h"

using namespace metagrad;

namespace {
constexpr size_t kMaxBytes = 8u << 20;  // all values of the graph together, so compiling stays quick
constexpr size_t kMaxNodes = 400;
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::single_threaded();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    Graph g = parse_text(text);
    if (g.size() > kMaxNodes) return 0;
    size_t total = 0;
    for (const Node& n : g.nodes())
      for (const TensorType& t : n.outputs) total += t.bytes();  // each at most 16 GiB: no overflow
    if (total > kMaxBytes) return 0;
    ParamStore store;
    Executable exe(g, store);
    for (const Node& n : g.nodes()) {
      if (n.kind != NodeKind::Input) continue;
      const int slot = exe.find_input_slot(n.name);
      if (slot < 0) continue;  // not needed by the outputs
      // Small non-negative integers: valid class labels and indices for most shapes.
      std::vector<int32_t> zeros_i(size_t(n.type().numel()), 0);
      std::vector<float> ones_f(size_t(n.type().numel()), 1.0f);
      if (n.type().dtype == DType::i32) exe.set_input(slot, std::span<const int32_t>(zeros_i));
      else exe.set_input(slot, std::span<const float>(ones_f));
    }
    exe.run();
  } catch (const Error&) {
  }
  return 0;
}
