// Typed builder functions for every registered op, and composites built from them.
// Each function is defined in the ops/ family file that registers its op.
#pragma once
#include <vector>

#include "metagrad/builder.h"

namespace metagrad {

// ---- elementwise binary, NumPy broadcasting (ops/elementwise.cpp) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);  // a > 0 where b is differentiated
Tensor pow(const Tensor& a, double exponent);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
// Comparisons give 0/1 in f32 and have zero derivative.
Tensor equal(const Tensor& a, const Tensor& b);
Tensor not_equal(const Tensor& a, const Tensor& b);
Tensor less(const Tensor& a, const Tensor& b);
Tensor less_equal(const Tensor& a, const Tensor& b);
Tensor greater(const Tensor& a, const Tensor& b);
Tensor greater_equal(const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);  // cond != 0 ? a : b

// ---- elementwise unary (ops/unary.cpp) ----
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor sign(const Tensor& x);
Tensor square(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double alpha = 0.01);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor softplus(const Tensor& x);
Tensor floor(const Tensor& x);  // derivative zero (staircase schedules)
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor stop_gradient(const Tensor& x);  // identity whose derivative is cut
// Sum over the processes of a data-parallel run (CompileOptions::collective); identity in one process.
Tensor allreduce_sum(const Tensor& x);

// ---- reductions over axes (ops/reduce.cpp); empty axes = all axes ----
Tensor sum(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdims = false);
Tensor mean(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdims = false);
Tensor max(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdims = false);
// Sums a broadcast value back down to `shape` (the adjoint of broadcast_to).
Tensor sum_to_shape(const Tensor& x, const Shape& shape);

// ---- shape and data movement (ops/shape.cpp) ----
Tensor reshape(const Tensor& x, const Shape& shape);  // one dimension may be -1
Tensor transpose(const Tensor& x, std::vector<int64_t> perm);
Tensor transpose_last2(const Tensor& x);
Tensor broadcast_to(const Tensor& x, const Shape& shape);
Tensor slice(const Tensor& x, std::vector<int64_t> begin, std::vector<int64_t> end);  // per axis [begin, end)
Tensor concat(const std::vector<Tensor>& xs, int64_t axis);
Tensor pad(const Tensor& x, std::vector<int64_t> before, std::vector<int64_t> after);  // zeros
Tensor gather(const Tensor& x, const Tensor& indices, int64_t axis = 0);  // i32 indices
Tensor scatter_add(const Tensor& updates, const Tensor& indices, int64_t axis, int64_t size);  // adjoint of gather
Tensor one_hot(const Tensor& labels, int64_t depth);  // i32 labels [...] -> f32 [..., depth]

// ---- linear algebra (ops/linalg.cpp) ----
// Batched matrix product over the last two axes with NumPy broadcasting of batch axes.
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false);

// ---- neural-network ops (ops/conv.cpp, ops/pooling.cpp, ops/softmax.cpp) ----
// NCHW input, OIHW weights.
Tensor conv2d(const Tensor& x, const Tensor& w, std::vector<int64_t> stride = {1, 1},
              std::vector<int64_t> padding = {0, 0});
Tensor max_pool2d(const Tensor& x, std::vector<int64_t> kernel, std::vector<int64_t> stride = {},
                  std::vector<int64_t> padding = {0, 0});
Tensor avg_pool2d(const Tensor& x, std::vector<int64_t> kernel, std::vector<int64_t> stride = {},
                  std::vector<int64_t> padding = {0, 0});
Tensor softmax(const Tensor& x, int64_t axis = -1);
Tensor log_softmax(const Tensor& x, int64_t axis = -1);

// ---- composites (ops/composite.cpp): built from primitives, so every order of derivative exists ----
Tensor cross_entropy(const Tensor& logits, const Tensor& labels);  // mean over rows; i32 labels
Tensor mse(const Tensor& pred, const Tensor& target);              // mean of squared error
// Batch norm in training mode over all axes but `channel_axis`, with batch statistics.
Tensor batch_norm_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, int64_t channel_axis = 1,
                        double eps = 1e-5);
// The same batch norm over [N, C, ...] (channels on axis 1), optionally followed by relu, as one
// op whose kernels make two passes over memory forward and three backward (ops/batch_norm.cpp).
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps = 1e-5, bool relu = false);
// ||a_i - b_j||^2 for rows of a [..., N, D] and b [..., M, D] -> [..., N, M].
Tensor pairwise_sq_dist(const Tensor& a, const Tensor& b);
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b);  // x @ w + b

}  // namespace metagrad
