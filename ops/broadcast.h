// NumPy broadcasting: result shapes and per-operand strides, shared by kernels and references.
#pragma once
#include <utility>
#include <vector>

#include "metagrad/types.h"

namespace metagrad {

// The broadcast of two shapes (right-aligned, 1 stretches); throws ShapeError naming both.
Shape broadcast_shapes(const Shape& a, const Shape& b);

// Element strides of `in` indexed by positions of `out` (right-aligned; 0 on broadcast axes).
std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out);

// Merges adjacent axes that every operand walks contiguously (stride[d] == stride[d+1] * shape[d+1]),
// and drops size-1 axes, so loops run over as few, as long axes as possible. Shapes and strides
// are rewritten in place; a scalar becomes shape [1].
void coalesce_axes(Shape& shape, std::vector<std::vector<int64_t>>& strides);

// Copies elements [start, start + n) of `src` broadcast to `shape` into dst, where `strides`
// comes from broadcast_strides(src shape, shape). Allocation-free.
void gather_broadcast(const float* src, const std::vector<int64_t>& strides, const Shape& shape, int64_t start,
                      int64_t n, float* dst);

// Calls f(out_index, offset_0, ..., offset_k) for every element of `out` in row-major order,
// where offset_j indexes operand j through strides[j] (from broadcast_strides).
template <class F, size_t K>
void for_each_broadcast(const Shape& out, const std::vector<int64_t> (&strides)[K], F&& f);

constexpr size_t kMaxRank = 8, kMaxOperands = 4;

// Runtime-sized variant: offsets passed as a pointer to K values. Allocation-free, so kernels
// may call it on their hot path (rank <= kMaxRank, operands <= kMaxOperands).
template <class F>
void for_each_broadcast_n(const Shape& out, const std::vector<std::vector<int64_t>>& strides, F&& f) {
  const size_t rank = out.size(), k = strides.size();
  const int64_t total = num_elements(out);
  int64_t idx[kMaxRank] = {}, off[kMaxOperands] = {};
  for (int64_t i = 0; i < total; ++i) {
    f(i, static_cast<const int64_t*>(off));
    for (size_t d = rank; d-- > 0;) {
      if (++idx[d] < out[d]) {
        for (size_t j = 0; j < k; ++j) off[j] += strides[j][d];
        break;
      }
      for (size_t j = 0; j < k; ++j) off[j] -= strides[j][d] * (out[d] - 1);
      idx[d] = 0;
    }
  }
}

template <class F, size_t K>
void for_each_broadcast(const Shape& out, const std::vector<int64_t> (&strides)[K], F&& f) {
  // Kernels should prefer for_each_broadcast_n with strides built at compile time.
  std::vector<std::vector<int64_t>> s(strides, strides + K);
  for_each_broadcast_n(out, s, [&](int64_t i, const int64_t* off) {
    [&]<size_t... J>(std::index_sequence<J...>) { f(i, off[J]...); }(std::make_index_sequence<K>{});
  });
}

}  // namespace metagrad
