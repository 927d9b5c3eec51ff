// TEMPORARY (deleted before landing): weak placeholders so tests link while op families are written.
#include "graph/error.h"
#include "ops/ops.h"
namespace metagrad {
__attribute__((weak)) Tensor add(const Tensor& a, const Tensor& b) { throw GraphError("op function add not written yet"); }
__attribute__((weak)) Tensor sub(const Tensor& a, const Tensor& b) { throw GraphError("op function sub not written yet"); }
__attribute__((weak)) Tensor mul(const Tensor& a, const Tensor& b) { throw GraphError("op function mul not written yet"); }
__attribute__((weak)) Tensor div(const Tensor& a, const Tensor& b) { throw GraphError("op function div not written yet"); }
__attribute__((weak)) Tensor pow(const Tensor& a, const Tensor& b) { throw GraphError("op function pow not written yet"); }
__attribute__((weak)) Tensor pow(const Tensor& a, double exponent) { throw GraphError("op function pow not written yet"); }
__attribute__((weak)) Tensor maximum(const Tensor& a, const Tensor& b) { throw GraphError("op function maximum not written yet"); }
__attribute__((weak)) Tensor minimum(const Tensor& a, const Tensor& b) { throw GraphError("op function minimum not written yet"); }
__attribute__((weak)) Tensor equal(const Tensor& a, const Tensor& b) { throw GraphError("op function equal not written yet"); }
__attribute__((weak)) Tensor not_equal(const Tensor& a, const Tensor& b) { throw GraphError("op function not_equal not written yet"); }
__attribute__((weak)) Tensor less(const Tensor& a, const Tensor& b) { throw GraphError("op function less not written yet"); }
__attribute__((weak)) Tensor less_equal(const Tensor& a, const Tensor& b) { throw GraphError("op function less_equal not written yet"); }
__attribute__((weak)) Tensor greater(const Tensor& a, const Tensor& b) { throw GraphError("op function greater not written yet"); }
__attribute__((weak)) Tensor greater_equal(const Tensor& a, const Tensor& b) { throw GraphError("op function greater_equal not written yet"); }
__attribute__((weak)) Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) { throw GraphError("op function where not written yet"); }
__attribute__((weak)) Tensor neg(const Tensor& x) { throw GraphError("op function neg not written yet"); }
__attribute__((weak)) Tensor exp(const Tensor& x) { throw GraphError("op function exp not written yet"); }
__attribute__((weak)) Tensor log(const Tensor& x) { throw GraphError("op function log not written yet"); }
__attribute__((weak)) Tensor sqrt(const Tensor& x) { throw GraphError("op function sqrt not written yet"); }
__attribute__((weak)) Tensor rsqrt(const Tensor& x) { throw GraphError("op function rsqrt not written yet"); }
__attribute__((weak)) Tensor abs(const Tensor& x) { throw GraphError("op function abs not written yet"); }
__attribute__((weak)) Tensor sign(const Tensor& x) { throw GraphError("op function sign not written yet"); }
__attribute__((weak)) Tensor square(const Tensor& x) { throw GraphError("op function square not written yet"); }
__attribute__((weak)) Tensor relu(const Tensor& x) { throw GraphError("op function relu not written yet"); }
__attribute__((weak)) Tensor leaky_relu(const Tensor& x, double alpha) { throw GraphError("op function leaky_relu not written yet"); }
__attribute__((weak)) Tensor sigmoid(const Tensor& x) { throw GraphError("op function sigmoid not written yet"); }
__attribute__((weak)) Tensor tanh(const Tensor& x) { throw GraphError("op function tanh not written yet"); }
__attribute__((weak)) Tensor softplus(const Tensor& x) { throw GraphError("op function softplus not written yet"); }
__attribute__((weak)) Tensor stop_gradient(const Tensor& x) { throw GraphError("op function stop_gradient not written yet"); }
__attribute__((weak)) Tensor sum(const Tensor& x, std::vector<int64_t> axes, bool keepdims) { throw GraphError("op function sum not written yet"); }
__attribute__((weak)) Tensor mean(const Tensor& x, std::vector<int64_t> axes, bool keepdims) { throw GraphError("op function mean not written yet"); }
__attribute__((weak)) Tensor max(const Tensor& x, std::vector<int64_t> axes, bool keepdims) { throw GraphError("op function max not written yet"); }
__attribute__((weak)) Tensor sum_to_shape(const Tensor& x, const Shape& shape) { throw GraphError("op function sum_to_shape not written yet"); }
__attribute__((weak)) Tensor reshape(const Tensor& x, const Shape& shape) { throw GraphError("op function reshape not written yet"); }
__attribute__((weak)) Tensor transpose(const Tensor& x, std::vector<int64_t> perm) { throw GraphError("op function transpose not written yet"); }
__attribute__((weak)) Tensor transpose_last2(const Tensor& x) { throw GraphError("op function transpose_last2 not written yet"); }
__attribute__((weak)) Tensor broadcast_to(const Tensor& x, const Shape& shape) { throw GraphError("op function broadcast_to not written yet"); }
__attribute__((weak)) Tensor slice(const Tensor& x, std::vector<int64_t> begin, std::vector<int64_t> end) { throw GraphError("op function slice not written yet"); }
__attribute__((weak)) Tensor concat(const std::vector<Tensor>& xs, int64_t axis) { throw GraphError("op function concat not written yet"); }
__attribute__((weak)) Tensor pad(const Tensor& x, std::vector<int64_t> before, std::vector<int64_t> after) { throw GraphError("op function pad not written yet"); }
__attribute__((weak)) Tensor gather(const Tensor& x, const Tensor& indices, int64_t axis) { throw GraphError("op function gather not written yet"); }
__attribute__((weak)) Tensor scatter_add(const Tensor& updates, const Tensor& indices, int64_t axis, int64_t size) { throw GraphError("op function scatter_add not written yet"); }
__attribute__((weak)) Tensor one_hot(const Tensor& labels, int64_t depth) { throw GraphError("op function one_hot not written yet"); }
__attribute__((weak)) Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) { throw GraphError("op function matmul not written yet"); }
__attribute__((weak)) Tensor conv2d(const Tensor& x, const Tensor& w, std::vector<int64_t> stride, std::vector<int64_t> padding) { throw GraphError("op function conv2d not written yet"); }
__attribute__((weak)) Tensor max_pool2d(const Tensor& x, std::vector<int64_t> kernel, std::vector<int64_t> stride, std::vector<int64_t> padding) { throw GraphError("op function max_pool2d not written yet"); }
__attribute__((weak)) Tensor avg_pool2d(const Tensor& x, std::vector<int64_t> kernel, std::vector<int64_t> stride, std::vector<int64_t> padding) { throw GraphError("op function avg_pool2d not written yet"); }
__attribute__((weak)) Tensor softmax(const Tensor& x, int64_t axis) { throw GraphError("op function softmax not written yet"); }
__attribute__((weak)) Tensor log_softmax(const Tensor& x, int64_t axis) { throw GraphError("op function log_softmax not written yet"); }
__attribute__((weak)) Tensor cross_entropy(const Tensor& logits, const Tensor& labels) { throw GraphError("op function cross_entropy not written yet"); }
__attribute__((weak)) Tensor mse(const Tensor& pred, const Tensor& target) { throw GraphError("op function mse not written yet"); }
__attribute__((weak)) Tensor batch_norm_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, int64_t channel_axis, double eps) { throw GraphError("op function batch_norm_train not written yet"); }
__attribute__((weak)) Tensor pairwise_sq_dist(const Tensor& a, const Tensor& b) { throw GraphError("op function pairwise_sq_dist not written yet"); }
__attribute__((weak)) Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) { throw GraphError("op function linear not written yet"); }
}  // namespace metagrad
