// Sinusoid regression tasks (Finn et al. 2017): y = A sin(x - phase), A ~ U[0.1, 5],
// phase ~ U[0, pi], x ~ U[-5, 5]; batches of K-shot support and Q-point query sets.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace metagrad {

struct SinusoidBatch {
  int64_t tasks = 0, shots = 0, query = 0;
  std::vector<float> xs, ys, xq, yq;  // [tasks, shots, 1] and [tasks, query, 1]
  std::vector<float> amplitude, phase;
};

class SinusoidSampler {
 public:
  explicit SinusoidSampler(uint64_t seed) : rng_(seed) {}
  // Refills `b` in place (no allocation after the first call with the same sizes).
  void sample(SinusoidBatch& b, int64_t tasks, int64_t shots, int64_t query);

 private:
  std::mt19937_64 rng_;
};

}  // namespace metagrad
