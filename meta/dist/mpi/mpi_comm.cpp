// The process group over Open MPI. Every collective is started non-blocking and then polled
// against a deadline: a rank that died or stopped answering aborts the job with a message
// instead of leaving the others blocked forever inside MPI.
#include <fmt/format.h>
#include <mpi.h>
#include <sched.h>
#include <time.h>

#include <chrono>
#include <climits>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "meta/dist/comm.h"
#include "metagrad/error.h"

namespace metagrad {

namespace {

using Clock = std::chrono::steady_clock;

class MpiComm final : public Comm {
 public:
  explicit MpiComm(double timeout_seconds) : timeout_(timeout_seconds) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      // Kernels run on OpenMP threads, but only the thread that runs the executable calls MPI.
      int provided = 0;
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        throw Error("MPI_Init_thread failed");
    }
    // Errors come back as codes we turn into an abort with a message, not MPI's own abort.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiComm() override {
    if (!finished_) MPI_Abort(MPI_COMM_WORLD, 1);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void allreduce_sum(float* data, size_t count) override {
    const auto t0 = Clock::now();
    for (size_t at = 0; at < count; at += kChunk) {
      MPI_Request req;
      check(MPI_Iallreduce(MPI_IN_PLACE, data + at, chunk(count - at), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req),
            "allreduce", count);
      wait(req, "allreduce", count);
    }
    ++stats_.calls;
    stats_.bytes += int64_t(count * sizeof(float));
    stats_.seconds += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  void allreduce_sum(double* data, size_t count) override {
    for (size_t at = 0; at < count; at += kChunk) {
      MPI_Request req;
      check(MPI_Iallreduce(MPI_IN_PLACE, data + at, chunk(count - at), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &req),
            "allreduce", count);
      wait(req, "allreduce", count);
    }
  }
  void broadcast(void* data, size_t bytes, int root) override {
    char* p = static_cast<char*>(data);
    for (size_t at = 0; at < bytes; at += kChunk) {
      MPI_Request req;
      check(MPI_Ibcast(p + at, chunk(bytes - at), MPI_BYTE, root, MPI_COMM_WORLD, &req), "broadcast", bytes);
      wait(req, "broadcast", bytes);
    }
  }
  std::vector<double> allgather(std::span<const double> mine) override {
    if (mine.size() > size_t(INT_MAX)) throw Error("allgather: too many values");
    std::vector<int> counts(size_t(size_), 0), offsets(size_t(size_), 0);
    int n = int(mine.size());
    MPI_Request req;
    check(MPI_Iallgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD, &req), "allgather", 1);
    wait(req, "allgather", 1);
    long total = 0;
    for (int r = 0; r < size_; ++r) {
      offsets[size_t(r)] = int(total);
      total += counts[size_t(r)];
    }
    if (total > long(INT_MAX)) throw Error("allgather: too many values");
    std::vector<double> all(static_cast<size_t>(total));
    check(MPI_Iallgatherv(mine.data(), n, MPI_DOUBLE, all.data(), counts.data(), offsets.data(), MPI_DOUBLE,
                          MPI_COMM_WORLD, &req),
          "allgather", size_t(total));
    wait(req, "allgather", size_t(total));
    return all;
  }
  void barrier() override {
    MPI_Request req;
    check(MPI_Ibarrier(MPI_COMM_WORLD, &req), "barrier", 0);
    wait(req, "barrier", 0);
  }
  const CommStats& stats() const override { return stats_; }
  void reset_stats() override { stats_ = {}; }
  void finish() override {
    if (finished_) return;
    barrier();  // bounded: a missing rank aborts here instead of hanging in MPI_Finalize
    finished_ = true;
    MPI_Finalize();
  }

 private:
  static constexpr size_t kChunk = size_t(1) << 30;
  static int chunk(size_t left) { return int(std::min(left, kChunk)); }

  [[noreturn]] void fail(const char* what, size_t count, const std::string& why) const {
    std::fprintf(stderr, "metagrad: rank %d of %d: %s of %zu values %s; aborting the run\n", rank_, size_, what, count,
                 why.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::abort();
  }
  void check(int rc, const char* what, size_t count) const {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    fail(what, count, fmt::format("failed: {}", std::string(msg, size_t(len))));
  }
  // Polls the request until it completes or the deadline passes. The first milliseconds spin
  // (a balanced step's partner is usually microseconds away); after that each poll yields and
  // sleeps briefly, since the cores are shared with the other ranks and other work.
  void wait(MPI_Request& req, const char* what, size_t count) const {
    const auto start = Clock::now();
    const auto spin_until = start + std::chrono::milliseconds(2);
    const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_));
    for (;;) {
      int done = 0;
      check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what, count);
      if (done) return;
      const auto now = Clock::now();
      if (now > deadline)
        fail(what, count, fmt::format("got no answer within {:g} s (METAGRAD_DIST_TIMEOUT): another rank died or stopped responding", timeout_));
      if (now > spin_until) {
        timespec ts{0, 50'000};
        nanosleep(&ts, nullptr);
      } else {
        sched_yield();
      }
    }
  }

  double timeout_;
  int rank_ = 0, size_ = 1;
  bool finished_ = false;
  CommStats stats_;
};

}  // namespace

std::unique_ptr<Comm> mpi_comm(double timeout_seconds) { return std::make_unique<MpiComm>(timeout_seconds); }

}  // namespace metagrad
