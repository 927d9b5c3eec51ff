// Prints the accuracy of the f32 kernels as a Markdown table: for every transcendental op of the
// Accuracy sweep (tests/accuracy_sweep.h), max and mean ulp against the f64 value rounded to
// f32, alone and inside a fused_elementwise program; then softmax and log-softmax per row set.
// Usage: metagrad_ulp_table [--all]   (--all: every elementwise op, exact ones included)
#include <cstdio>
#include <cstring>
#include <string>

#include "tests/accuracy_sweep.h"

using namespace metagrad;
using namespace metagrad::accuracy;

namespace {

std::string worst(const Stats& s) {
  std::string in;
  char b[64];
  for (float v : s.worst_in) {
    std::snprintf(b, sizeof b, "%s%.8g", in.empty() ? "" : ", ", double(v));
    in += b;
  }
  char line[200];
  std::snprintf(line, sizeof line, "(%s) = %.8g, exact %.8g", in.c_str(), double(s.worst_got), double(s.worst_want));
  return line;
}

}  // namespace

int main(int argc, char** argv) {
  bool all = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--all") == 0) all = true;
    else {
      std::fprintf(stderr, "usage: metagrad_ulp_table [--all]\n");
      return std::strcmp(argv[i], "--help") == 0 ? 0 : 2;
    }
  }
  try {
    std::printf("| op | points | max ulp | mean ulp | max ulp, normal results | fused max ulp | fused differs | worst case |\n");
    std::printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (const Domain& d : domains()) {
      if (!d.math && !all) continue;
      const Stats s = sweep_op(d), f = sweep_fused(d);
      std::printf("| `%s` | %lld | %.4g | %.4g | %.4g | %.4g | %lld | %s |\n", d.op.c_str(), (long long)s.points, s.max_ulp,
                  s.mean_ulp, s.max_ulp_normal, f.max_ulp, (long long)f.mismatches, s.max_ulp > 0 ? worst(s).c_str() : "-");
    }
    std::printf("\n| op | rows | points | max ulp | mean ulp | max ulp, normal results | dominant entry inexact | out of range | worst case |\n");
    std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (const char* op : {"softmax", "log_softmax"})
      for (const RowSet& r : row_sets()) {
        const RowStats s = sweep_rows(op, r);
        char w[64];
        std::snprintf(w, sizeof w, "%.8g, exact %.8g", double(s.stats.worst_got), double(s.stats.worst_want));
        std::printf("| `%s` | %s | %lld | %.4g | %.4g | %.4g | %s | %lld | %s |\n", op, r.what.c_str(), (long long)s.stats.points,
                    s.stats.max_ulp, s.stats.mean_ulp, s.stats.max_ulp_normal,
                    r.kind == RowSet::Saturated ? std::to_string(s.dominant_misses).c_str() : "-",
                    (long long)s.above_bounds, s.stats.max_ulp > 0 ? w : "-");
      }
    std::printf("\n| HVP through a confident cross-entropy | relative error | f32 log p(true class) | exact |\n");
    std::printf("| --- | --- | --- | --- |\n");
    for (bool opt : {false, true}) {
      const HvpCase h = confident_prototype_hvp(opt);
      std::printf("| %s | %.3g | %.8g | %.8g |\n", opt ? "optimized graph (fused)" : "graph as built", h.rel_error,
                  double(h.dominant_logprob), h.dominant_exact);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "metagrad_ulp_table: %s\n", e.what());
    return 1;
  }
  return 0;
}
