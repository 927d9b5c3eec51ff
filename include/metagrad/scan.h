// Loops in the IR: `scan` runs a body graph a static number of times over carried values.
#pragma once
#include <functional>
#include <vector>

#include "metagrad/builder.h"

namespace metagrad {

// What the body returns for one iteration: the next carries (same types as the carries it was
// given) and the per-iteration outputs, which the loop stacks along a new leading axis.
struct ScanStep {
  std::vector<Tensor> carries;
  std::vector<Tensor> ys;
};

// The body callback builds one iteration in a graph of its own. It receives, as inputs of that
// graph, the carries, one slice `xs[i][t]` of each stacked input and the loop-invariant values
// (`consts`, the only way the body reads values of the enclosing graph: weights, data, rates).
using ScanBody = std::function<ScanStep(const std::vector<Tensor>& carries, const std::vector<Tensor>& x_slices,
                                        const std::vector<Tensor>& consts)>;

struct ScanResult {
  std::vector<Tensor> carries;  // after the last iteration
  std::vector<Tensor> ys;       // [length, ...] per body output, iteration t at index t
};

// carry_{t+1}, y_t = body(carry_t, xs[t], consts) for t = 0..length-1 (length-1..0 when
// `reverse`). Each xs tensor has `length` as its leading dimension. The loop stays one node: the
// runtime compiles its body once, and its derivative is a loop running the other way over the
// body's derivative (which differentiates again). Throws ShapeError when the body's outputs do
// not match the carries.
ScanResult scan(int64_t length, const std::vector<Tensor>& init, const std::vector<Tensor>& xs,
                const std::vector<Tensor>& consts, const ScanBody& body, bool reverse = false);

// The same loop with its step written in the enclosing graph, so it may read any value there
// (weights, data, closures such as a Learner's losses): `step` is called once with stand-ins for
// the carries and the slices; the nodes depending on them become the body, constants are copied
// into it, and every other value it reads becomes a loop invariant (computed once, outside).
using ScanClosure = std::function<ScanStep(const std::vector<Tensor>& carries, const std::vector<Tensor>& x_slices)>;
ScanResult scan_closure(int64_t length, const std::vector<Tensor>& init, const std::vector<Tensor>& xs,
                        const ScanClosure& step, bool reverse = false);

}  // namespace metagrad
