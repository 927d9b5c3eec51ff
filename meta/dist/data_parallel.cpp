// Rank shares of a batch, parameter broadcast and result gathering.
#include "meta/dist/data_parallel.h"

#include <fmt/format.h>

#include "metagrad/error.h"

namespace metagrad {

Share even_share(int64_t global, int rank, int ranks, const char* what) {
  if (ranks < 1 || rank < 0 || rank >= ranks) throw Error(fmt::format("rank {} of {} processes", rank, ranks));
  if (global % ranks != 0)
    throw Error(fmt::format("the {} of {} does not split evenly over {} processes: use a multiple of {}", what, global,
                            ranks, ranks));
  const int64_t n = global / ranks;
  return {rank * n, (rank + 1) * n};
}

Share balanced_share(int64_t total, int rank, int ranks) {
  if (ranks < 1 || rank < 0 || rank >= ranks) throw Error(fmt::format("rank {} of {} processes", rank, ranks));
  const int64_t base = total / ranks, extra = total % ranks;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

namespace {

// FNV-1a over every tensor's name and shape, in the store's (sorted) order.
double store_signature(const ParamStore& store) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const void* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  };
  for (const std::string& name : store.names()) {
    mix(name.data(), name.size() + 1);
    for (int64_t d : store.type(name).shape) mix(&d, sizeof d);
  }
  return double(h >> 12);  // 52 bits: exact in a double
}

}  // namespace

void broadcast_params(Collective& c, ParamStore& store, int root) {
  if (c.size() <= 1) return;
  const double mine = store_signature(store);
  std::vector<double> all = c.allgather(std::span<const double>(&mine, 1));
  for (int r = 0; r < c.size(); ++r)
    if (all[size_t(r)] != all[size_t(root)])
      throw Error(fmt::format("rank {} holds other parameters (names or shapes) than rank {}: every rank must build "
                              "the same model",
                              r, root));
  for (const std::string& name : store.names()) {
    std::span<float> d = store.data(name);
    c.broadcast(d.data(), d.size_bytes(), root);
  }
}

std::vector<double> gather_results(Collective& c, std::span<const double> mine) { return c.allgather(mine); }

}  // namespace metagrad
