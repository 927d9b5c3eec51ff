// Composite ops built from primitives, so every order of derivative exists and fusion recovers
// their speed: cross-entropy, MSE, batch norm (training mode), pairwise distances, linear.
#include <fmt/format.h>

#include "metagrad/error.h"
#include "metagrad/ops.h"

namespace metagrad {

Tensor cross_entropy(const Tensor& logits, const Tensor& labels) {
  if (logits.rank() != 2 || labels.rank() != 1 || labels.dim(0) != logits.dim(0) || labels.dtype() != DType::i32)
    throw ShapeError(fmt::format("cross_entropy expects logits [N,C] and i32 labels [N], got {} and {}",
                                 type_str(logits.type()), type_str(labels.type())));
  Tensor picked = sum(one_hot(labels, logits.dim(1)) * log_softmax(logits, -1), {1});
  return -mean(picked);
}

Tensor mse(const Tensor& pred, const Tensor& target) {
  if (pred.shape() != target.shape())
    throw ShapeError(fmt::format("mse of {} and {}: shapes must match", shape_str(pred.shape()), shape_str(target.shape())));
  return mean(square(pred - target));
}

Tensor batch_norm_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, int64_t channel_axis, double eps) {
  const int64_t rank = x.rank();
  if (channel_axis < 0) channel_axis += rank;
  if (channel_axis < 0 || channel_axis >= rank)
    throw ShapeError(fmt::format("batch_norm_train: channel axis out of range for {}", shape_str(x.shape())));
  const int64_t c = x.dim(channel_axis);
  if (gamma.shape() != Shape{c} || beta.shape() != Shape{c})
    throw ShapeError(fmt::format("batch_norm_train: gamma {} and beta {} must be [{}] for input {}",
                                 shape_str(gamma.shape()), shape_str(beta.shape()), c, shape_str(x.shape())));
  std::vector<int64_t> axes;
  Shape bshape(size_t(rank), 1);
  bshape[size_t(channel_axis)] = c;
  for (int64_t i = 0; i < rank; ++i)
    if (i != channel_axis) axes.push_back(i);
  Tensor mu = mean(x, axes, true);
  Tensor centered = x - mu;
  Tensor var = mean(square(centered), axes, true);
  Tensor xhat = centered * rsqrt(var + eps);
  return xhat * reshape(gamma, bshape) + reshape(beta, bshape);
}

Tensor pairwise_sq_dist(const Tensor& a, const Tensor& b) {
  if (a.rank() < 2 || b.rank() < 2 || a.dim(-1) != b.dim(-1))
    throw ShapeError(fmt::format("pairwise_sq_dist expects [...,N,D] and [...,M,D], got {} and {}",
                                 shape_str(a.shape()), shape_str(b.shape())));
  Tensor aa = sum(square(a), {-1}, true);                   // [..., N, 1]
  Tensor bb = transpose_last2(sum(square(b), {-1}, true));  // [..., 1, M]
  return aa + bb - 2.0 * matmul(a, b, false, true);
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) { return matmul(x, w) + b; }

}  // namespace metagrad
