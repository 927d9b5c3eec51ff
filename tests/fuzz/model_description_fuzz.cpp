// The model description beside a checkpoint ("CKPT.json"); a small valid one is also built into a
// training-step graph, which is what the CLI does next with it.
#include "meta/learn/fewshot.h"
#include "meta/learn/model_description.h"
#include "metagrad/error.h"
#include "metagrad/param_store.h"
#include "tests/fuzz/fuzz_util.h"

using namespace metagrad;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    FewShotConfig m = parse_model_description(text, "fuzz.json");
    // Building is linear in these; beyond them an input only costs time.
    if (m.ways * std::max(m.shots, m.query) * m.meta_batch > 64 || m.inner_steps > 2 || m.net.image > 32 ||
        m.net.filters > 8 || m.net.blocks > 4 || m.metric_rank > 16)
      return 0;
    ParamStore store;
    store.ensure(build_fewshot_step(m));
  } catch (const Error&) {
  }
  return 0;
}
