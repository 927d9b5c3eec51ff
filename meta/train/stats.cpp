#include "metagrad/stats.h"

#include <cmath>

namespace metagrad {

MeanCi mean_ci95(const std::vector<double>& v) {
  if (v.empty()) return {0.0, 0.0};
  double mean = 0;
  for (double x : v) mean += x;
  mean /= double(v.size());
  if (v.size() < 2) return {mean, 0.0};
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean);
  var /= double(v.size() - 1);
  // Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom; few seeds need them.
  static const double t95[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                               2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                               2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  const size_t df = v.size() - 1;
  const double t = df <= 30 ? t95[df - 1] : 1.96;
  return {mean, t * std::sqrt(var / double(v.size()))};
}

}  // namespace metagrad
