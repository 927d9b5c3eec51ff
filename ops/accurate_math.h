// f32 transcendental functions evaluated in f64 on two-lane vectors (one SSE2 register on the
// baseline x86-64 build): each result is within 1 ulp of the exact value, and in nearly every
// case the exact value rounded to f32. Branch-free, so loops over them are vector code.
//
// Why f64 inside: with 29 extra bits, the usual reductions (x = n ln2 + r for exp, x = 2^k m for
// log) and plain Taylor / atanh series reach an error far below half an f32 ulp, without the
// tables or split-constant tricks an f32-only version needs; results that are subnormal in f32
// are normal in f64, so they round correctly once, at the end. See docs/ARCHITECTURE.md.
#pragma once
#include <cstdint>
#include <cstring>
#include <limits>

namespace metagrad::amath {

typedef double d2 __attribute__((vector_size(16)));
typedef int64_t m2 __attribute__((vector_size(16)));  // lane masks of comparisons: -1 or 0
typedef uint64_t u2 __attribute__((vector_size(16)));
typedef float f2 __attribute__((vector_size(8)));

inline d2 splat(double v) { return d2{v, v}; }
inline u2 bits(d2 x) {
  u2 u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
inline d2 from_bits(u2 u) {
  d2 x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}
inline d2 select(m2 m, d2 a, d2 b) { return from_bits((bits(a) & u2(m)) | (bits(b) & ~u2(m))); }
inline d2 abs(d2 x) { return from_bits(bits(x) & u2{~(1ull << 63), ~(1ull << 63)}); }
inline d2 max0(d2 x) { return select(x > splat(0.0), x, splat(0.0)); }

// e^x = scale * (1 + p) with scale = 2^n and p = expm1(r), r = x - n ln2, |r| <= ln2 / 2.
// x is clamped to [-708, 708], where 2^n is a normal f64 and e^x is far outside f32's range
// (NaN passes through: its comparisons are false).
struct ExpParts {
  d2 scale, p;
};
inline ExpParts exp_parts(d2 x) {
  x = select(x < splat(-708.0), splat(-708.0), x);
  x = select(x > splat(708.0), splat(708.0), x);
  // Adding 1.5 * 2^52 rounds x / ln2 to an integer n held in the low mantissa bits.
  const d2 shift = splat(0x1.8p52);
  const d2 t = x * splat(0x1.71547652b82fep0) + shift;
  const d2 n = t - shift;
  // ln2 in two parts: n * ln2_hi is exact for |n| < 2^11, so r is x - n ln2 to f64 precision.
  const d2 r = (x - n * splat(0x1.62e42fee00000p-1)) - n * splat(0x1.a39ef35793c76p-33);
  // expm1(r) by Taylor through r^11: the remainder is below 2e-14 relative for |r| <= 0.35.
  d2 q = splat(1.0 / 39916800);
  q = q * r + splat(1.0 / 3628800);
  q = q * r + splat(1.0 / 362880);
  q = q * r + splat(1.0 / 40320);
  q = q * r + splat(1.0 / 5040);
  q = q * r + splat(1.0 / 720);
  q = q * r + splat(1.0 / 120);
  q = q * r + splat(1.0 / 24);
  q = q * r + splat(1.0 / 6);
  q = q * r + splat(0.5);
  const d2 p = r + (r * r) * q;
  // 2^n: n + 1023 in the exponent field (t's low bits are n, offset by those of `shift`).
  const u2 e = (bits(t) - bits(shift) + u2{1023, 1023}) << 52;
  return {from_bits(e), p};
}

inline d2 exp(d2 x) {
  const ExpParts e = exp_parts(x);
  return e.scale + e.scale * e.p;
}

// e^x - 1 without cancellation near 0: 2^n p + (2^n - 1), both terms exact to f64 precision.
inline d2 expm1(d2 x) {
  const ExpParts e = exp_parts(x);
  return e.scale * e.p + (e.scale - splat(1.0));
}

// log x for positive, finite, normal f64 x (every f32 but 0 and infinity converts to one):
// x = 2^k m with m in [sqrt(2)/2, sqrt(2)), log m = 2 atanh(s), s = (m - 1) / (m + 1).
inline d2 log_positive(d2 x) {
  const u2 b = bits(x);
  d2 m = from_bits((b & u2{0x000fffffffffffffull, 0x000fffffffffffffull}) | bits(splat(1.0)));  // [1, 2)
  // The biased exponent as a double: its bits under those of 2^52.
  d2 k = from_bits((b >> 52) | bits(splat(0x1p52))) - splat(0x1p52 + 1023.0);
  const m2 big = m > splat(0x1.6a09e667f3bcdp0);
  m = select(big, m * splat(0.5), m);
  k = select(big, k + splat(1.0), k);
  const d2 s = (m - splat(1.0)) / (m + splat(1.0));
  const d2 z = s * s;  // <= 0.0295: the series through z^8 leaves below 1e-14 relative
  d2 q = splat(1.0 / 17);
  q = q * z + splat(1.0 / 15);
  q = q * z + splat(1.0 / 13);
  q = q * z + splat(1.0 / 11);
  q = q * z + splat(1.0 / 9);
  q = q * z + splat(1.0 / 7);
  q = q * z + splat(1.0 / 5);
  q = q * z + splat(1.0 / 3);
  const d2 s2 = s + s;
  return k * splat(0x1.62e42fefa39efp-1) + (s2 + s2 * z * q);
}

// log x for f64 values of f32s: log 0 = -inf, log of a negative or NaN = NaN, log inf = inf.
inline d2 log(d2 x) {
  const double inf = std::numeric_limits<double>::infinity();
  d2 r = log_positive(x);
  r = select(x == splat(0.0), splat(-inf), r);
  r = select(x < splat(0.0), splat(std::numeric_limits<double>::quiet_NaN()), r);
  r = select(x == splat(inf), x, r);
  return select(x != x, x, r);
}

// log(1 + y) for y >= 0: log of u = 1 + y (rounded) plus the rounding error's first-order
// correction (y - (u - 1)) / u, so tiny y comes back as y.
inline d2 log1p(d2 y) {
  const d2 u = splat(1.0) + y;
  return log_positive(u) + (y - (u - splat(1.0))) / u;
}

inline d2 sigmoid(d2 x) { return splat(1.0) / (splat(1.0) + exp(-x)); }

// tanh |x| = -expm1(-2|x|) / (2 + expm1(-2|x|)): no overflow, no cancellation, then the sign.
inline d2 tanh(d2 x) {
  const d2 e = expm1(splat(-2.0) * abs(x));
  const d2 t = abs(e / (splat(2.0) + e));  // abs: tanh(+0) = +0 (e is -0 there)
  return from_bits(bits(t) | (bits(x) & u2{1ull << 63, 1ull << 63}));
}

// log(1 + e^x) = max(x, 0) + log1p(e^-|x|).
inline d2 softplus(d2 x) { return max0(x) + log1p(exp(-abs(x))); }

// out[i] = f(in[i]) for an f64 function of two lanes; out may alias in.
template <class F>
inline void map(int64_t n, const float* in, float* out, F f) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    f2 a, b;
    std::memcpy(&a, in + i, sizeof a);
    std::memcpy(&b, in + i + 2, sizeof b);
    const f2 ya = __builtin_convertvector(f(__builtin_convertvector(a, d2)), f2);
    const f2 yb = __builtin_convertvector(f(__builtin_convertvector(b, d2)), f2);
    std::memcpy(out + i, &ya, sizeof ya);
    std::memcpy(out + i + 2, &yb, sizeof yb);
  }
  for (; i < n; ++i) out[i] = float(f(splat(double(in[i])))[0]);
}

}  // namespace metagrad::amath
