// The process group of a data-parallel run: Open MPI when started by mpirun, else one process.
#pragma once
#include <cstdint>
#include <memory>

#include "metagrad/collective.h"

namespace metagrad {

// What the gradient allreduces of a run cost on this rank (allreduce_sum of floats only).
struct CommStats {
  int64_t calls = 0;
  int64_t bytes = 0;     // payload summed by this rank (count x 4); what goes on the wire depends on the algorithm
  double seconds = 0;    // inside the calls, waiting for the slowest rank included
};

class Comm : public Collective {
 public:
  virtual void barrier() = 0;
  virtual const CommStats& stats() const = 0;
  virtual void reset_stats() = 0;
  // Leaves the group cleanly; every rank calls it once at the end of a successful run. A Comm
  // destroyed without it (an error on this rank) aborts the whole job, so no other rank waits
  // for this one.
  virtual void finish() = 0;
  virtual bool distributed() const { return size() > 1; }
};

// Seconds a collective may wait for the other ranks before the run is aborted as hung:
// METAGRAD_DIST_TIMEOUT if set, else 120.
double dist_timeout_seconds();

// True when this build has MPI (the CMake block found it).
bool mpi_built();

// Joins the job mpirun started this process in (it sets OMPI_COMM_WORLD_SIZE / PMI_SIZE) with
// more than one process; otherwise a group of one, without touching MPI. A build without MPI
// started by mpirun with several processes throws Error rather than run N separate copies.
std::unique_ptr<Comm> connect(double timeout_seconds = dist_timeout_seconds());

// The group of one process, for tests and single-process runs.
std::unique_ptr<Comm> local_comm();

}  // namespace metagrad
