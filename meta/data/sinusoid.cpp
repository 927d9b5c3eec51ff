// Sinusoid task sampler.
#include "meta/data/sinusoid.h"

#include <cmath>

namespace metagrad {

namespace {
constexpr double kPi = 3.14159265358979323846;
}

void SinusoidSampler::sample(SinusoidBatch& b, int64_t tasks, int64_t shots, int64_t query) {
  b.tasks = tasks, b.shots = shots, b.query = query;
  b.xs.resize(size_t(tasks * shots)), b.ys.resize(b.xs.size());
  b.xq.resize(size_t(tasks * query)), b.yq.resize(b.xq.size());
  b.amplitude.resize(size_t(tasks)), b.phase.resize(size_t(tasks));
  std::uniform_real_distribution<double> amp(0.1, 5.0), ph(0.0, kPi), x(-5.0, 5.0);
  for (int64_t t = 0; t < tasks; ++t) {
    double a = amp(rng_), p = ph(rng_);
    b.amplitude[size_t(t)] = float(a);
    b.phase[size_t(t)] = float(p);
    for (int64_t i = 0; i < shots; ++i) {
      double v = x(rng_);
      b.xs[size_t(t * shots + i)] = float(v);
      b.ys[size_t(t * shots + i)] = float(a * std::sin(v - p));
    }
    for (int64_t i = 0; i < query; ++i) {
      double v = x(rng_);
      b.xq[size_t(t * query + i)] = float(v);
      b.yq[size_t(t * query + i)] = float(a * std::sin(v - p));
    }
  }
}

}  // namespace metagrad
