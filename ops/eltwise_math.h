// f32 block math of the elementwise ops (EltwiseFn): the kernels of the ops that have no exact
// oneDNN primitive, and the steps of fused elementwise kernels, so an op gives the same numbers
// fused or not. Each function maps n contiguous, already-broadcast inputs to n outputs; out may
// alias an input.
#pragma once
#include <cmath>
#include <cstdint>

#include "ops/accurate_math.h"

namespace metagrad::eltwise {

#define METAGRAD_EW1(NAME, EXPR)                                                   \
  inline void NAME(int64_t n, const float* const* in, float* out, float param) { \
    const float* a = in[0];                                                      \
    (void)param;                                                                 \
    for (int64_t i = 0; i < n; ++i) {                                            \
      const float x = a[i];                                                      \
      out[i] = (EXPR);                                                           \
    }                                                                            \
  }
#define METAGRAD_EW2(NAME, EXPR)                                                   \
  inline void NAME(int64_t n, const float* const* in, float* out, float param) { \
    const float* a = in[0];                                                      \
    const float* b = in[1];                                                      \
    (void)param;                                                                 \
    for (int64_t i = 0; i < n; ++i) {                                            \
      const float x = a[i], y = b[i];                                            \
      out[i] = (EXPR);                                                           \
    }                                                                            \
  }

METAGRAD_EW2(add, x + y)
METAGRAD_EW2(sub, x - y)
METAGRAD_EW2(mul, x * y)
METAGRAD_EW2(div, x / y)
METAGRAD_EW2(pow, std::pow(x, y))
METAGRAD_EW2(maximum, x > y ? x : y)
METAGRAD_EW2(minimum, x < y ? x : y)
METAGRAD_EW2(equal, x == y ? 1.0f : 0.0f)
METAGRAD_EW2(not_equal, x != y ? 1.0f : 0.0f)
METAGRAD_EW2(less, x < y ? 1.0f : 0.0f)
METAGRAD_EW2(less_equal, x <= y ? 1.0f : 0.0f)
METAGRAD_EW2(greater, x > y ? 1.0f : 0.0f)
METAGRAD_EW2(greater_equal, x >= y ? 1.0f : 0.0f)
METAGRAD_EW1(neg, -x)
// The transcendental functions, within 1 ulp (ops/accurate_math.h).
#define METAGRAD_EW_ACCURATE(NAME)                                                                  \
  inline void NAME(int64_t n, const float* const* in, float* out, float) {                         \
    amath::map(n, in[0], out, [](amath::d2 x) { return amath::NAME(x); });                         \
  }
METAGRAD_EW_ACCURATE(exp)
METAGRAD_EW_ACCURATE(log)
METAGRAD_EW_ACCURATE(sigmoid)
METAGRAD_EW_ACCURATE(tanh)
METAGRAD_EW_ACCURATE(softplus)
METAGRAD_EW1(sqrt, std::sqrt(x))
// 1 / sqrt(x) rounded once (from f64), not twice.
METAGRAD_EW1(rsqrt, float(1.0 / std::sqrt(double(x))))
METAGRAD_EW1(abs, std::fabs(x))
METAGRAD_EW1(sign, x > 0 ? 1.0f : (x < 0 ? -1.0f : 0.0f))
METAGRAD_EW1(square, x * x)
METAGRAD_EW1(relu, x > 0 ? x : 0.0f)
METAGRAD_EW1(leaky_relu, x > 0 ? x : param * x)
METAGRAD_EW1(identity, x)
METAGRAD_EW1(floor, std::floor(x))
METAGRAD_EW1(sin, std::sin(x))
METAGRAD_EW1(cos, std::cos(x))

inline void where(int64_t n, const float* const* in, float* out, float) {
  const float *c = in[0], *a = in[1], *b = in[2];
  for (int64_t i = 0; i < n; ++i) out[i] = c[i] != 0.0f ? a[i] : b[i];
}

#undef METAGRAD_EW_ACCURATE
#undef METAGRAD_EW1
#undef METAGRAD_EW2

}  // namespace metagrad::eltwise
