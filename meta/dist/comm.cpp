// connect(): which process group this run is in, and the group of one.
#include "meta/dist/comm.h"

#include <fmt/format.h>

#include <cstdlib>
#include <string>

#include "metagrad/error.h"

namespace metagrad {

#ifdef METAGRAD_WITH_MPI
std::unique_ptr<Comm> mpi_comm(double timeout_seconds);  // meta/dist/mpi_comm.cpp
#endif

namespace {

class LocalComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(float*, size_t count) override {
    ++stats_.calls;
    stats_.bytes += int64_t(count * sizeof(float));
  }
  void allreduce_sum(double*, size_t) override {}
  void broadcast(void*, size_t, int) override {}
  std::vector<double> allgather(std::span<const double> mine) override { return {mine.begin(), mine.end()}; }
  void barrier() override {}
  const CommStats& stats() const override { return stats_; }
  void reset_stats() override { stats_ = {}; }
  void finish() override {}

 private:
  CommStats stats_;
};

// The number of processes of the launch this process belongs to, from the launcher's environment.
int launched_size() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
    if (const char* v = std::getenv(var)) return std::max(1, std::atoi(v));
  return 1;
}

}  // namespace

double dist_timeout_seconds() {
  const char* v = std::getenv("METAGRAD_DIST_TIMEOUT");
  if (!v || !*v) return 120.0;
  char* end = nullptr;
  double t = std::strtod(v, &end);
  if (*end != '\0' || !(t > 0)) throw Error(fmt::format("METAGRAD_DIST_TIMEOUT must be a positive number of seconds, got \"{}\"", v));
  return t;
}

bool mpi_built() {
#ifdef METAGRAD_WITH_MPI
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Comm> local_comm() { return std::make_unique<LocalComm>(); }

std::unique_ptr<Comm> connect(double timeout_seconds) {
  const int n = launched_size();
  if (n <= 1) return local_comm();
#ifdef METAGRAD_WITH_MPI
  return mpi_comm(timeout_seconds);
#else
  (void)timeout_seconds;
  throw Error(fmt::format("started as one of {} processes, but this metagrad was built without MPI "
                          "(install libopenmpi-dev and reconfigure)", n));
#endif
}

}  // namespace metagrad
