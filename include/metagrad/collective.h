// Communication among the processes of a data-parallel run, as the engine sees it: an abstract
// interface, so the engine core never depends on MPI (meta/dist/ implements it over Open MPI).
#pragma once
#include <cstddef>
#include <span>
#include <vector>

namespace metagrad {

// Every call is collective: each process of the group makes the same calls in the same order.
// Implementations report a peer that died or stopped answering as an error instead of waiting
// forever. A kernel calls allreduce_sum on the hot path, so it must not allocate or lock.
class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place: data becomes the element-wise sum of every process's data.
  virtual void allreduce_sum(float* data, size_t count) = 0;
  virtual void allreduce_sum(double* data, size_t count) = 0;
  // `bytes` at data on `root` are copied to every other process.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  // Every process's values (any length each), concatenated in rank order, on every process.
  virtual std::vector<double> allgather(std::span<const double> mine) = 0;
};

// A group of one process: every collective is the identity.
class SingleProcess final : public Collective {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(float*, size_t) override {}
  void allreduce_sum(double*, size_t) override {}
  void broadcast(void*, size_t, int) override {}
  std::vector<double> allgather(std::span<const double> mine) override { return {mine.begin(), mine.end()}; }
};

}  // namespace metagrad
