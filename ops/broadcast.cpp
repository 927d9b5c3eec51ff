// Broadcast shape rule and strides.
#include "ops/broadcast.h"

#include <fmt/format.h>

#include "graph/error.h"

namespace metagrad {

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da != db && da != 1 && db != 1)
      throw ShapeError(fmt::format("shapes {} and {} do not broadcast (axis {}: {} vs {})", shape_str(a), shape_str(b),
                                   i, da, db));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<int64_t> s(out.size(), 0);
  int64_t stride = 1;
  for (size_t i = in.size(); i-- > 0;) {
    size_t o = i + (out.size() - in.size());
    s[o] = in[i] == 1 ? 0 : stride;
    stride *= in[i];
  }
  return s;
}

void gather_broadcast(const float* src, const std::vector<int64_t>& strides, const Shape& shape, int64_t start,
                      int64_t n, float* dst) {
  const size_t rank = shape.size();
  int64_t idx[kMaxRank] = {}, off = 0, rem = start;
  for (size_t d = rank; d-- > 0;) {
    idx[d] = rem % shape[d];
    rem /= shape[d];
    off += idx[d] * strides[d];
  }
  for (int64_t i = 0; i < n; ++i) {
    dst[i] = src[off];
    for (size_t d = rank; d-- > 0;) {
      off += strides[d];
      if (++idx[d] < shape[d]) break;
      off -= strides[d] * shape[d];
      idx[d] = 0;
    }
  }
}

}  // namespace metagrad
