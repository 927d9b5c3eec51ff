// Small helpers shared by the test suites.
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "metagrad/error.h"
#include "metagrad/reference.h"

namespace metagrad::testing {

inline RefTensor random_ref(const Shape& s, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  RefTensor r{s, std::vector<double>(size_t(num_elements(s)))};
  for (double& v : r.data) v = double(float(d(rng)));  // f32-exact, so kernels see the same input
  return r;
}

inline std::vector<float> to_f32(const RefTensor& t) { return std::vector<float>(t.data.begin(), t.data.end()); }

// Central differences of a scalar reference value with respect to every element of one feed.
inline std::vector<double> finite_diff(const Graph& g, Value scalar, RefValues feeds, const std::string& name,
                                       const RefValues& params = {}, double h = 1e-5) {
  std::vector<double> out(feeds.at(name).data.size());
  for (size_t k = 0; k < out.size(); ++k) {
    double x0 = feeds.at(name).data[k];
    feeds[name].data[k] = x0 + h;
    double fp = reference_eval(g, {scalar}, feeds, params)[0].data[0];
    feeds[name].data[k] = x0 - h;
    double fm = reference_eval(g, {scalar}, feeds, params)[0].data[0];
    feeds[name].data[k] = x0;
    out[k] = (fp - fm) / (2 * h);
  }
  return out;
}

// The message of the metagrad::Error that f throws, or "" if it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Runs `f`, which must throw RuntimeError with every one of `needles` in its message.
inline void expect_runtime_error(const std::function<void()>& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning " << needles.front();
  } catch (const RuntimeError& e) {
    const std::string msg = e.what();
    for (const std::string& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

}  // namespace metagrad::testing
