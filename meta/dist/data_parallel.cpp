// Parameter broadcast, result gathering and the driver's distributed plug points.
#include "meta/dist/data_parallel.h"

#include <fmt/format.h>

#include "metagrad/error.h"

namespace metagrad {

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

void gather_each(Collective& c, std::vector<std::vector<double>>& values) {
  if (c.size() <= 1) return;
  // Packed as [k, n_k, values...] per output; every rank has the same outputs.
  std::vector<double> mine;
  for (size_t k = 0; k < values.size(); ++k) {
    mine.push_back(double(k));
    mine.push_back(double(values[k].size()));
    mine.insert(mine.end(), values[k].begin(), values[k].end());
  }
  const std::vector<double> all = c.allgather(mine);
  for (auto& v : values) v.clear();
  size_t at = 0;
  while (at < all.size()) {
    const size_t k = size_t(all[at]), n = size_t(all[at + 1]);
    if (k >= values.size()) throw Error("gather_each: the ranks gathered different numbers of outputs");
    values[k].insert(values[k].end(), all.begin() + long(at + 2), all.begin() + long(at + 2 + n));
    at += 2 + n;
  }
}

void average(Collective& c, std::span<double> values) {
  if (c.size() <= 1) return;
  c.allreduce_sum(values.data(), values.size());
  for (double& v : values) v /= double(c.size());
}

void join_data_parallel(Collective& c, DriverConfig& d, const AllreduceOptions& options) {
  if (c.size() <= 1) return;
  d.shard = {c.rank(), c.size()};
  d.combine_gradients = gradient_allreduce(c.size(), options);
  d.compile.collective = &c;
  d.sync_params = [&c](ParamStore& store) { broadcast_params(c, store); };
  d.reduce_metrics = [&c](std::span<double> metrics) { average(c, metrics); };
  d.gather = [&c](std::vector<std::vector<double>>& values) { gather_each(c, values); };
}

}  // namespace metagrad
