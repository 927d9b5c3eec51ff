// Pooling geometry and window iteration shared by the pooling ops (ops/pooling.cpp) and their
// derivative ops (ops/pooling_backward.cpp).
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "graph/op_def.h"
#include "ops/vec4.h"

namespace metagrad {

class OpRegistry;

struct PoolGeom {
  int64_t n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow;
  int64_t planes() const { return n * c; }
  // Non-overlapping 2x2 windows that tile the input: the vectorized row-pair loops.
  bool tiles_2x2() const { return kh == 2 && kw == 2 && sh == 2 && sw == 2 && !ph && !pw && h % 2 == 0 && w % 2 == 0; }
};

// The window geometry of pooling `x` [N, C, H, W] with the kernel, stride (empty: the kernel)
// and padding attributes; throws ShapeError when a window does not fit or lies wholly in padding.
PoolGeom pool_geom(const Shape& x, const Attrs& a);
std::vector<AttrSpec> pool_attr_schema();

// The rows [p0, p1) and columns [q0, q1) of a window that lie inside the input, and the input
// row r0 and column c0 of its (possibly padded) top-left corner. Non-empty: padding < kernel.
struct WindowSpan {
  int64_t r0, c0, p0, p1, q0, q1;
};
inline WindowSpan window_span(const PoolGeom& g, int64_t i, int64_t j) {
  const int64_t r0 = i * g.sh - g.ph, c0 = j * g.sw - g.pw;
  return {r0, c0, std::max<int64_t>(0, -r0), std::min(g.kh, g.h - r0), std::max<int64_t>(0, -c0), std::min(g.kw, g.w - c0)};
}

// The output columns [first, end) whose windows lie wholly inside the input's columns.
inline std::pair<int64_t, int64_t> interior_columns(const PoolGeom& g) {
  const int64_t first = std::min(g.ow, (g.pw + g.sw - 1) / g.sw), room = g.w + g.pw - g.kw;
  const int64_t end = room < 0 ? 0 : std::min(g.ow, room / g.sw + 1);
  return {first, std::max(first, end)};
}

// One window position across a row of windows: window j reads src[j * sw] (plane index
// at + j * sw) and takes it when it exceeds its running maximum top[j].
template <typename T>
inline void running_max(const T* src, int32_t sw, int32_t n, int32_t at, T* top, int32_t* best) {
  for (int32_t j = 0; j < n; ++j)
    if (src[j * sw] > top[j]) top[j] = src[j * sw], best[j] = at + j * sw;
}

// The same in four-float vectors, with the stride a constant for 1 and 2 (SW = 0: any stride).
template <int SW>
inline void running_max4(const float* src, int32_t sw, int32_t n, int32_t at, float* top, int32_t* best) {
  using vec4::i4;
  using vec4::v4;
  if (SW) sw = SW;
  const i4 lanes = i4{0, 1, 2, 3} * sw;
  auto block = [&](int32_t j) {
    v4 v;
    if constexpr (SW == 1) {
      v = vec4::load(src + j);
    } else if constexpr (SW == 2) {
      // Eight floats hold four windows' values (even lanes): the loop stops while the eighth is
      // still one a window reads.
      v = __builtin_shufflevector(vec4::load(src + 2 * j), vec4::load(src + 2 * j + 4), 0, 2, 4, 6);
    } else {
      v = v4{src[j * sw], src[(j + 1) * sw], src[(j + 2) * sw], src[(j + 3) * sw]};
    }
    const v4 t = vec4::load(top + j);
    const i4 gt = v > t;
    vec4::store(top + j, vec4::max(v, t));
    i4 b;
    __builtin_memcpy(&b, best + j, sizeof b);
    b = ((at + j * sw + lanes) & gt) | (b & ~gt);
    __builtin_memcpy(best + j, &b, sizeof b);
  };
  int32_t j = 0;
  for (; j + 4 + (SW == 2) <= n; j += 4) block(j);
  // The last windows one at a time, as selections rather than branches on random outcomes.
  // (Overlapping them as one more block made its loads wait for the stores of the block before.)
  for (; j < n; ++j) {
    const float v = src[j * sw], t = top[j];
    const int32_t gt = -int32_t(v > t);
    top[j] = v > t ? v : t;
    best[j] = ((at + j * sw) & gt) | (best[j] & ~gt);
  }
}
inline void running_max(const float* src, int32_t sw, int32_t n, int32_t at, float* top, int32_t* best) {
  if (sw == 1) running_max4<1>(src, sw, n, at, top, best);
  else if (sw == 2) running_max4<2>(src, sw, n, at, top, best);
  else running_max4<0>(src, sw, n, at, top, best);
}

// Max pooling's one tie rule, for the f64 reference and the f32 kernels alike: a window's winner
// is its first maximum in window order (row by row, left to right) among the positions inside the
// input; padding never wins (it acts as -inf, as in PyTorch). Writes win[o], the plane index of
// the winner of every window o of one (n, c) plane; `top` is scratch for one pooled row.
// Windows inside the input's columns are visited a window position at a time across the whole
// row, so the compiler vectorizes the comparisons (one window at a time, they were branches on
// random outcomes); each window still sees its positions in window order.
template <typename T>
inline void plane_winners(const PoolGeom& g, const T* x, T* top, int32_t* win) {
  const auto [first, end] = interior_columns(g);
  const int32_t n = int32_t(end - first), sw = int32_t(g.sw);
  for (int64_t i = 0; i < g.oh; ++i) {
    int32_t* best = win + i * g.ow;
    auto edge = [&](int64_t j) {
      const WindowSpan s = window_span(g, i, j);
      int64_t at = (s.r0 + s.p0) * g.w + s.c0 + s.q0;
      T hi = x[at];
      for (int64_t p = s.p0; p < s.p1; ++p)
        for (int64_t q = s.q0; q < s.q1; ++q) {
          const int64_t k = (s.r0 + p) * g.w + s.c0 + q;
          if (x[k] > hi) hi = x[k], at = k;
        }
      best[j] = int32_t(at);
    };
    for (int64_t j = 0; j < first; ++j) edge(j);
    for (int64_t j = end; j < g.ow; ++j) edge(j);
    if (n <= 0) continue;
    const WindowSpan s = window_span(g, i, first);  // the rows are the same for the whole row
    int32_t* b = best + first;
    for (int64_t p = s.p0; p < s.p1; ++p)
      for (int64_t q = 0; q < g.kw; ++q) {
        const int32_t at = int32_t((s.r0 + p) * g.w + s.c0 + q);  // window `first`'s position (p, q)
        const T* src = x + at;
        if (p == s.p0 && q == 0) {
          for (int32_t j = 0; j < n; ++j) top[j] = src[j * sw], b[j] = at + j * sw;
          continue;
        }
        running_max(src, sw, n, at, top, b);
      }
  }
}

// The window configurations every pooling op's registry entry tests: x shape, kernel, stride,
// padding, and what the case is for.
struct PoolCase {
  Shape x;
  std::vector<int64_t> kernel, stride, padding;
  const char* note;
};
std::vector<PoolCase> pool_test_cases();
Attrs pool_attrs(const PoolCase& c);

// max_pool2d_backward, max_pool2d_select and avg_pool2d_backward (ops/pooling_backward.cpp).
void add_pool_derivative_ops(OpRegistry& r);
Tensor max_pool_backward(const Tensor& x, const Tensor& gy, const Attrs& a);
// The adjoint of avg_pool2d over an input of x_shape, from a cotangent of the pooled shape.
Tensor avg_pool_backward(const Tensor& gy, const Shape& x_shape, const Attrs& a);

}  // namespace metagrad
