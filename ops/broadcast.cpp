// Broadcast shape rule and strides.
#include "ops/broadcast.h"

#include <fmt/format.h>

#include <algorithm>

#include "metagrad/error.h"

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

void coalesce_axes(Shape& shape, std::vector<std::vector<int64_t>>& strides) {
  Shape out_shape;
  std::vector<std::vector<int64_t>> out_strides(strides.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !out_shape.empty();
    for (size_t k = 0; k < strides.size() && merge; ++k) merge = out_strides[k].back() == strides[k][d] * shape[d];
    if (merge) {
      out_shape.back() *= shape[d];
      for (size_t k = 0; k < strides.size(); ++k) out_strides[k].back() = strides[k][d];
    } else {
      out_shape.push_back(shape[d]);
      for (size_t k = 0; k < strides.size(); ++k) out_strides[k].push_back(strides[k][d]);
    }
  }
  if (out_shape.empty()) {
    out_shape.push_back(1);
    for (auto& s : out_strides) s.push_back(0);
  }
  shape = std::move(out_shape);
  strides = std::move(out_strides);
}

void gather_broadcast(const float* src, const std::vector<int64_t>& strides, const Shape& shape, int64_t start,
                      int64_t n, float* dst) {
  const size_t rank = shape.size(), last = rank - 1;
  int64_t idx[kMaxRank] = {}, off = 0, rem = start;
  for (size_t d = rank; d-- > 0;) {
    idx[d] = rem % shape[d];
    rem /= shape[d];
    off += idx[d] * strides[d];
  }
  const int64_t inner = shape[last], step = strides[last];
  for (int64_t done = 0; done < n;) {
    // A run along the innermost axis: a copy, a fill or a strided walk.
    const int64_t run = std::min(inner - idx[last], n - done);
    const float* from = src + off;
    if (step == 1) std::copy(from, from + run, dst + done);
    else if (step == 0) std::fill(dst + done, dst + done + run, *from);
    else
      for (int64_t i = 0; i < run; ++i) dst[done + i] = from[i * step];
    done += run;
    off += run * step;
    idx[last] += run;
    for (size_t d = last; d > 0 && idx[d] == shape[d]; --d) {
      off -= strides[d] * shape[d];
      idx[d] = 0;
      ++idx[d - 1];
      off += strides[d - 1];
    }
  }
}

}  // namespace metagrad
