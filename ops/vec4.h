// Four-float vectors (GCC/Clang vector extensions) for loop kernels whose GCC auto-vectorization
// falls short: several accumulators, or deinterleaving pairs. The build targets baseline x86-64,
// where a vector is one SSE register.
#pragma once
#include <cstdint>

namespace metagrad::vec4 {

typedef float v4 __attribute__((vector_size(16)));
typedef int32_t i4 __attribute__((vector_size(16)));

inline v4 load(const float* p) {
  v4 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, v4 v) { __builtin_memcpy(p, &v, sizeof v); }
inline v4 splat(float x) { return v4{x, x, x, x}; }
inline double hsum(v4 a, v4 b) { return double(a[0]) + a[1] + a[2] + a[3] + b[0] + b[1] + b[2] + b[3]; }
// Lane-wise a > b ? a : b, the maximum the scalar kernels and references use.
inline v4 max(v4 a, v4 b) { return a > b ? a : b; }

}  // namespace metagrad::vec4
