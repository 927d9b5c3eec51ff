// Shared pieces of op registry entries: test-case and kernel builders used by several families.
#pragma once
#include <dnnl.hpp>

#include <memory>
#include <vector>

#include "graph/op_def.h"
#include "metagrad/builder.h"
#include "metagrad/error.h"
#include "runtime/kernel.h"

namespace metagrad {

// The ulps within which every pointwise f32 kernel (elementwise ops, softmax, log-softmax) is
// checked against its f64 reference (the Accuracy suite's bound).
constexpr double kKernelUlp = 4.0;

// An f32 test case over the given input shapes with inputs drawn from [lo, hi].
OpTestCase tcase(std::vector<Shape> shapes, Attrs attrs = {}, double lo = -2.0, double hi = 2.0);

// Pads a shape with leading 1s to `rank` (oneDNN wants equal ranks for broadcasting operands).
Shape pad_rank(const Shape& s, size_t rank);

// oneDNN binary primitive with NumPy broadcasting; oneDNN broadcasts only its second operand,
// so commutative ops swap operands, and other cases fall back to `fallback` over gathered copies.
std::unique_ptr<Kernel> binary_kernel(const KernelCtx& ctx, dnnl::algorithm alg, EltwiseFn fallback, bool commutative);

// oneDNN eltwise primitive (forward inference) over a dense tensor.
std::unique_ptr<Kernel> eltwise_kernel(const KernelCtx& ctx, dnnl::algorithm alg, float alpha = 0.f, float beta = 0.f);

// Any-arity elementwise loop kernel: broadcast operands are gathered into buffers made at
// compile time, then `fn` runs once over the whole output.
std::unique_ptr<Kernel> loop_eltwise_kernel(const KernelCtx& ctx, EltwiseFn fn, float param = 0.f);

// Reference helper: out[i] = f(inputs at i) with NumPy broadcasting.
template <class F>
void ref_broadcast(const std::vector<const RefTensor*>& in, RefTensor& out, F&& f);

// An axis counted from the end when negative; throws ShapeError when out of range.
int64_t normalize_axis(int64_t axis, size_t rank);
// The "axis" attribute of concat and gather: their builders store it canonical, but generic
// apply() and parsed graphs may carry a negative axis, which the shape rules accept.
int64_t axis_attr(const Attrs& a, size_t rank);

// Reduction axes made non-negative and sorted; empty means all. Throws on out-of-range or repeats.
std::vector<int64_t> canonical_axes(std::vector<int64_t> axes, size_t rank);
// `in` with the (canonical) reduced axes set to 1, or dropped when !keepdims.
Shape keep_shape(const Shape& in, const std::vector<int64_t>& axes);
Shape reduced_shape(const Shape& in, const std::vector<int64_t>& axes, bool keepdims);
// Sum of a contiguous f32 run in 16 independent lanes: without -ffast-math the compiler may not
// reorder a single accumulator's additions, and the scalar chain is ~10x slower.
float sum_run(const float* x, int64_t n);
// Reference sum (or mean) of x over canonical axes into out, already shaped.
void reduce_reference(const RefTensor& x, const std::vector<int64_t>& axes, bool mean, RefTensor& out);

// The cotangent of a zero-grad or integer input.
inline Tensor none() { return Tensor(); }

}  // namespace metagrad

#include "ops/broadcast.h"

namespace metagrad {
template <class F>
void ref_broadcast(const std::vector<const RefTensor*>& in, RefTensor& out, F&& f) {
  std::vector<std::vector<int64_t>> strides;
  for (const RefTensor* t : in) strides.push_back(broadcast_strides(t->shape, out.shape));
  double args[kMaxOperands];
  for_each_broadcast_n(out.shape, strides, [&](int64_t i, const int64_t* off) {
    for (size_t k = 0; k < in.size(); ++k) args[k] = in[k]->data[size_t(off[k])];
    out.data[size_t(i)] = f(args);
  });
}
// Right padding of a pooling or convolution window covers only what the last window reaches:
// oneDNN checks the size arithmetic exactly, and the result is negative when the stride skips
// trailing rows (allowed down to 1 - stride).
dnnl::memory::dims right_pad(int64_t oh, int64_t ow, int64_t sh, int64_t sw, int64_t kh, int64_t kw, int64_t h, int64_t w,
                             int64_t ph, int64_t pw);

}  // namespace metagrad
