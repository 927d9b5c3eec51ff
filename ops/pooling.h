// Pooling geometry and window iteration shared by the pooling ops (ops/pooling.cpp) and their
// derivative ops (ops/pooling_backward.cpp).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "graph/op_def.h"

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

// Max pooling's one tie rule, for the f64 reference and the f32 kernels alike: a window's winner
// is its first maximum in window order (row by row, left to right) among the positions inside the
// input; padding never wins (it acts as -inf, as in PyTorch). Calls f(o, best) for every window
// of one (n, c) plane: o its index in the pooled plane, best the plane index of its winner.
template <typename T, typename F>
inline void plane_argmax(const PoolGeom& g, const T* x, F&& f) {
  for (int64_t i = 0; i < g.oh; ++i)
    for (int64_t j = 0; j < g.ow; ++j) {
      const WindowSpan s = window_span(g, i, j);
      int64_t best = (s.r0 + s.p0) * g.w + s.c0 + s.q0;
      T top = x[best];
      for (int64_t p = s.p0; p < s.p1; ++p) {
        const int64_t row = (s.r0 + p) * g.w + s.c0;
        for (int64_t q = s.q0; q < s.q1; ++q)
          if (x[row + q] > top) top = x[row + q], best = row + q;
      }
      f(i * g.ow + j, best);
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
