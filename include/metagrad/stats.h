// Summaries of repeated runs (seeds) for the benchmark tables.
#pragma once
#include <vector>

namespace metagrad {

struct MeanCi {
  double mean = 0, ci95 = 0;
};

// Mean and the half-width of its 95% interval from Student's t with n - 1 degrees of freedom (the
// normal 1.96 beyond 30); 0 for fewer than two values. A handful of seeds needs the t quantile.
MeanCi mean_ci95(const std::vector<double>& v);

}  // namespace metagrad
