// Parameter initializers: zeros, ones, constant, normal, truncated_normal, uniform.
#include "runtime/initializers.h"

#include <fmt/format.h>

#include <cmath>
#include <random>

#include "metagrad/error.h"

namespace metagrad {

namespace {
int64_t seed_of(const Node& n) {
  auto it = n.attrs.find("seed");
  return it == n.attrs.end() ? 0 : attr_int(n.attrs, "seed");
}
double attr_or(const Node& n, const char* name, double dflt) {
  return n.attrs.count(name) ? attr_float(n.attrs, name) : dflt;
}
// Box-Muller on our own uniform draws, so results do not depend on the standard library's
// distribution implementation.
double normal01(std::mt19937_64& rng) {
  constexpr double two_pi = 6.283185307179586;
  double u1 = (double(rng() >> 11) + 0.5) * 0x1.0p-53;
  double u2 = (double(rng() >> 11) + 0.5) * 0x1.0p-53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(two_pi * u2);
}
}  // namespace

std::vector<double> initial_values(const Node& n) {
  const int64_t count = n.type().numel();
  std::vector<double> v(size_t(count), 0.0);
  std::mt19937_64 rng(uint64_t(seed_of(n)) * 0x9E3779B97F4A7C15ULL + 1);
  const std::string& kind = n.init;
  if (kind == "zeros") return v;
  if (kind == "ones") return std::vector<double>(size_t(count), 1.0);
  if (kind == "constant") return std::vector<double>(size_t(count), attr_or(n, "value", 0.0));
  if (kind == "normal" || kind == "truncated_normal") {
    double mean = attr_or(n, "mean", 0.0), sd = attr_or(n, "std", 1.0);
    for (double& x : v) {
      double z = normal01(rng);
      while (kind == "truncated_normal" && std::abs(z) > 2.0) z = normal01(rng);
      x = mean + sd * z;
    }
    return v;
  }
  if (kind == "uniform") {
    double lo = attr_or(n, "lo", 0.0), hi = attr_or(n, "hi", 1.0);
    for (double& x : v) x = lo + (hi - lo) * (double(rng() >> 11) * 0x1.0p-53);
    return v;
  }
  throw GraphError(fmt::format("parameter \"{}\": unknown initializer '{}'", n.name, kind));
}

}  // namespace metagrad
