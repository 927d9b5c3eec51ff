// Bucketed gradient allreduce: concat -> allreduce_sum -> scale -> slice, per bucket.
#include "meta/dist/gradient_allreduce.h"

#include <fmt/format.h>

#include <algorithm>

#include "graph/op_def.h"
#include "metagrad/error.h"
#include "metagrad/ops.h"

namespace metagrad {

namespace {

std::vector<Tensor> combine(Graph& g, const std::vector<Tensor>& grads, int ranks, const AllreduceOptions& o) {
  const double scale = o.scale != 0.0 ? o.scale : 1.0 / double(ranks);
  const int64_t cap = std::max<int64_t>(1, int64_t(o.bucket_bytes / sizeof(float)));
  std::vector<Tensor> out(grads.size());
  std::vector<size_t> bucket;
  int64_t filled = 0;
  auto flush = [&] {
    if (bucket.empty()) return;
    std::vector<Tensor> flat;
    for (size_t i : bucket) flat.push_back(reshape(grads[i], {grads[i].shape().empty() ? 1 : -1}));
    Tensor sum = allreduce_sum(flat.size() == 1 ? flat[0] : concat(flat, 0)) * scalar(g, scale);
    int64_t at = 0;
    for (size_t i : bucket) {
      const int64_t n = std::max<int64_t>(1, num_elements(grads[i].shape()));
      Tensor part = bucket.size() == 1 ? sum : slice(sum, {at}, {at + n});
      out[i] = reshape(part, grads[i].shape());
      at += n;
    }
    bucket.clear();
    filled = 0;
  };
  for (size_t k = grads.size(); k-- > 0;) {
    if (!grads[k]) continue;  // no gradient: nothing to sum
    if (grads[k].dtype() != DType::f32)
      throw ShapeError(fmt::format("gradient_allreduce: gradient {} is {}, not f32", k, dtype_name(grads[k].dtype())));
    const int64_t n = std::max<int64_t>(1, num_elements(grads[k].shape()));
    if (filled > 0 && filled + n > cap) flush();
    bucket.push_back(k);
    filled += n;
  }
  flush();
  return out;
}

}  // namespace

GradientCombiner gradient_allreduce(int ranks, const AllreduceOptions& options) {
  if (ranks < 1) throw Error(fmt::format("gradient_allreduce: {} ranks", ranks));
  if (ranks == 1) return {};
  return [ranks, options](Graph& g, const std::vector<Tensor>& grads) { return combine(g, grads, ranks, options); };
}

AllreduceCount count_allreduces(const Graph& g) {
  AllreduceCount c;
  for (const Node& n : g.nodes())
    if (n.kind == NodeKind::Op && n.op->collective) {
      ++c.buckets;
      c.floats += n.type().numel();
    }
  return c;
}

}  // namespace metagrad
