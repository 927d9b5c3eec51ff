// Internal pieces of the scan op shared by its entry (ops/scan.cpp) and its derivative
// (ops/scan_grad.cpp).
#pragma once
#include <vector>

#include "graph/op_def.h"
#include "metagrad/graph.h"

namespace metagrad {

// A scan node's signature: inputs are [carries (nc), stacked slices (nx), invariants (nk)];
// the body's inputs (ids in order) match them one to one, its outputs are [next carries (nc),
// per-iteration outputs (ny)]; the node's outputs are [final carries, stacked outputs, and with
// `save`, the stacked carries each iteration started from].
struct ScanSig {
  int64_t length = 0;
  size_t nc = 0, nx = 0, nk = 0, ny = 0;
  bool reverse = false, save = false;
  std::vector<int> body_inputs;
};
ScanSig scan_sig(const Attrs& attrs, size_t num_inputs, const Graph& body);

std::vector<Tensor> scan_grad(const GradCtx& ctx);

}  // namespace metagrad
