// A small program tests/mpi/mpi_test.cpp runs under mpirun: collectives, the allreduce_sum op in
// a compiled graph, faults (a rank that hangs or dies), a data-parallel training run whose
// loss curve is compared with one process's, and a supervised evaluation split over the ranks.
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>

#include "meta/dist/comm.h"
#include "meta/dist/data_parallel.h"
#include "meta/dist/gradient_allreduce.h"
#include "meta/train/supervised.h"
#include "metagrad/metagrad.h"

using namespace metagrad;

namespace {

int fail(Comm& c, const std::string& what) {
  std::fprintf(stderr, "rank %d: %s\n", c.rank(), what.c_str());
  return 1;  // the Comm's destructor aborts the job: no rank waits for this one
}

// Sums of known values, small and large (the large one crosses Open MPI's eager limit), and a
// gather of unequal lengths.
int collectives(Comm& c) {
  const int n = c.size(), r = c.rank();
  for (size_t count : {size_t(3), size_t(1) << 20}) {
    std::vector<float> v(count);
    for (size_t i = 0; i < count; ++i) v[i] = float(r + 1) * float(i % 7);
    c.allreduce_sum(v.data(), v.size());
    const float want = float(n * (n + 1) / 2);
    for (size_t i = 0; i < count; ++i)
      if (v[i] != want * float(i % 7)) return fail(c, fmt::format("allreduce[{}] = {}", i, v[i]));
  }
  double d[2] = {double(r), 1.0};
  c.allreduce_sum(d, 2);
  if (d[0] != n * (n - 1) / 2.0 || d[1] != n) return fail(c, "double allreduce");
  std::vector<double> mine(size_t(r + 1), double(r));
  std::vector<double> all = gather_results(c, mine);
  size_t at = 0;
  for (int q = 0; q < n; ++q)
    for (int k = 0; k <= q; ++k)
      if (all.at(at++) != q) return fail(c, "allgather order");
  if (at != all.size()) return fail(c, "allgather length");
  std::vector<std::vector<double>> outs = {std::vector<double>(size_t(r + 1), r), {double(10 + r)}};
  gather_each(c, outs);
  if (outs[0].size() != size_t(n * (n + 1) / 2) || outs[1].size() != size_t(n) || outs[1].back() != 10 + n - 1 ||
      outs[0].back() != n - 1 || outs[0].front() != 0)
    return fail(c, "gather_each");
  double mean_of[1] = {double(r)};
  average(c, mean_of);
  if (mean_of[0] != (n - 1) / 2.0) return fail(c, "average");
  int64_t root_value = r == 0 ? 42 : -1;
  c.broadcast(&root_value, sizeof root_value, 0);
  if (root_value != 42) return fail(c, "broadcast");
  std::printf("rank %d of %d: collectives ok\n", r, n);
  return 0;
}

// allreduce_sum as a graph node: y = allreduce(x * x), L = sum(y * w) with w fed per rank, so
// dL/dx on rank r is 2 x_r * sum_q w_q through the op's derivative.
int graph_op(Comm& c) {
  Graph g;
  Tensor x = input(g, "x", {3});
  Tensor w = input(g, "w", {3});
  Tensor y = allreduce_sum(x * x);
  Tensor loss = sum(y * w);
  Tensor gx = grad(loss, {x})[0];
  g.add_output("y", y.value());
  g.add_output("gx", gx.value());
  optimize(g);
  ParamStore store;
  CompileOptions opts;
  opts.collective = &c;
  Executable exe(g, store, {}, opts);
  const float r = float(c.rank() + 1);
  std::vector<float> xv = {r, 2 * r, -r}, wv = {1.f * r, 0.5f * r, 2.f * r};
  exe.run({Feed::f32("x", {3}, xv), Feed::f32("w", {3}, wv)});
  double sq = 0, ws = 0;
  for (int q = 1; q <= c.size(); ++q) sq += double(q) * q, ws += q;
  const double base_w[3] = {1, 0.5, 2}, base_x[3] = {1, 2, -1};
  for (int i = 0; i < 3; ++i) {
    if (std::abs(exe.fetch("y")[size_t(i)] - sq * base_x[i] * base_x[i]) > 1e-4) return fail(c, "allreduce_sum value");
    if (std::abs(exe.fetch("gx")[size_t(i)] - 2 * xv[size_t(i)] * ws * base_w[i]) > 1e-4)
      return fail(c, fmt::format("allreduce_sum gradient {}", exe.fetch("gx")[size_t(i)]));
  }
  std::printf("rank %d: graph op ok\n", c.rank());
  return 0;
}

// A rank that stops answering (sleeps past the others' deadline) or dies before a collective.
int fault(Comm& c, const std::string& kind, int who) {
  if (c.rank() == who) {
    if (kind == "die") _exit(3);
    std::this_thread::sleep_for(std::chrono::seconds(30));
  }
  std::vector<float> v(16, 1.f);
  c.allreduce_sum(v.data(), v.size());
  std::printf("rank %d: allreduce returned\n", c.rank());
  return 0;
}

// Data-parallel Adam on a tanh MLP regression: every step draws one global batch of `global`
// rows from the step's seed, each rank feeds its even share, gradients are averaged by the
// bucketed allreduce. Rank 1 starts from other weights, so only the broadcast makes the ranks
// agree. Rank 0 prints the global loss of every step and the final weights.
int train(Comm& c, int steps, int64_t global, size_t bucket_bytes) {
  const TaskRange share = Shard{c.rank(), c.size()}.of(global);
  const int64_t local = share.size();
  Graph g;
  Tensor x = input(g, "x", {local, 2});
  Tensor t = input(g, "t", {local, 1});
  const int64_t seed = c.rank() == 0 ? 1 : 99;
  Tensor w1 = parameter(g, "w1", {2, 16}, Init::normal(0, 0.7, seed));
  Tensor b1 = parameter(g, "b1", {16}, Init::zeros());
  Tensor w2 = parameter(g, "w2", {16, 1}, Init::normal(0, 0.3, seed + 1));
  Tensor b2 = parameter(g, "b2", {1}, Init::zeros());
  Tensor pred = matmul(tanh(matmul(x, w1) + b1), w2) + b2;
  Tensor loss = mse(pred, t);
  std::vector<Tensor> params = {w1, b1, w2, b2};
  OptimizerConfig adam;
  adam.name = "adam";
  adam.lr = 0.02;
  AllreduceOptions ao;
  ao.bucket_bytes = bucket_bytes;
  adam.combine_gradients = gradient_allreduce(c.size(), ao);
  add_updates(g, params, optimizer_step(g, adam, params, grad(loss, params)));
  g.add_output("loss", loss.value());
  optimize(g);
  const AllreduceCount ar = count_allreduces(g);
  ParamStore store;
  CompileOptions opts;
  opts.collective = &c;
  Executable exe(g, store, {"loss"}, opts);
  broadcast_params(c, store);
  std::vector<float> xs(static_cast<size_t>(global * 2)), ts(static_cast<size_t>(global));
  for (int s = 0; s < steps; ++s) {
    std::mt19937_64 rng(uint64_t(1000 + s));
    std::uniform_real_distribution<float> u(-2.f, 2.f);
    for (int64_t i = 0; i < global; ++i) {
      xs[size_t(2 * i)] = u(rng);
      xs[size_t(2 * i + 1)] = u(rng);
      ts[size_t(i)] = std::sin(2 * xs[size_t(2 * i)]) * std::cos(xs[size_t(2 * i + 1)]);
    }
    exe.run({Feed::f32("x", {local, 2}, std::span<const float>(xs).subspan(size_t(share.begin * 2), size_t(local * 2))),
             Feed::f32("t", {local, 1}, std::span<const float>(ts).subspan(size_t(share.begin), size_t(local)))});
    double l = exe.fetch("loss")[0];
    c.allreduce_sum(&l, 1);
    if (c.rank() == 0) std::printf("step %d loss %.9g\n", s, l / c.size());
  }
  if (c.rank() == 0) {
    for (const char* name : {"w1", "b1", "w2", "b2"})
      for (float v : store.data(name)) std::printf("param %s %.9g\n", name, v);
    std::printf("buckets %lld floats %lld calls %lld\n", (long long)ar.buckets, (long long)ar.floats,
                (long long)c.stats().calls);
  }
  return 0;
}

// The MLP classifier (its initial weights) on the first `images` Fashion-MNIST test images in
// chunks of `batch`, split over the ranks as a data-parallel run's epoch evaluation is: every
// rank must get what it computes alone over all chunks, exactly; its own chunks without the
// gather give a part of the mean, and the parts add up to it. Rank 0 prints loss and accuracy.
int classify(Comm& c, int64_t images, int64_t batch) {
  ClassifierConfig model;
  model.model = "mlp";
  const ImageSet test = first_images(load_fashion_mnist(kFashionMnistDir, false), images);
  ParamStore store;
  init_classifier(store, model);
  DriverConfig run;
  join_data_parallel(c, run);
  const EvalResult split = evaluate_classifier(model, store, test, batch, &run);
  const EvalResult whole = evaluate_classifier(model, store, test, batch);
  if (split.loss != whole.loss || split.accuracy != whole.accuracy)
    return fail(c, fmt::format("split evaluation {} / {}, alone {} / {}", split.loss, split.accuracy, whole.loss, whole.accuracy));
  DriverConfig own = run;
  own.gather = nullptr;
  const EvalResult part = evaluate_classifier(model, store, test, batch, &own);
  double parts[2] = {part.loss, part.accuracy};
  c.allreduce_sum(parts, 2);
  if (std::abs(parts[0] - whole.loss) > 1e-9 * whole.loss || std::abs(parts[1] - whole.accuracy) > 1e-9 ||
      (c.size() > 1 && !(part.loss < whole.loss)))
    return fail(c, fmt::format("this rank's part {} of the loss {}; all parts {}", part.loss, whole.loss, parts[0]));
  if (c.rank() == 0) std::printf("loss %.17g\naccuracy %.17g\n", split.loss, split.accuracy);
  return 0;
}

// Rank 1 builds a model with one more tensor: broadcast_params must refuse on every rank.
int mismatch(Comm& c) {
  Graph g;
  parameter(g, "w", {4}, Init::zeros());
  if (c.rank() == 1) parameter(g, "extra", {2}, Init::zeros());
  ParamStore store;
  store.ensure(g);
  try {
    broadcast_params(c, store);
  } catch (const Error& e) {
    std::printf("rank %d: %s\n", c.rank(), e.what());
    c.finish();
    return 0;
  }
  return fail(c, "mismatched stores were broadcast");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: metagrad_dist_probe collectives|graph-op|hang RANK|die RANK|train STEPS GLOBAL "
                         "[BUCKET_BYTES]|mismatch|classify IMAGES BATCH\n");
    return 2;
  }
  std::unique_ptr<Comm> comm = connect();
  const std::string mode = argv[1];
  int rc = 2;
  try {
    if (mode == "collectives") rc = collectives(*comm);
    else if (mode == "graph-op") rc = graph_op(*comm);
    else if ((mode == "hang" || mode == "die") && argc > 2) rc = fault(*comm, mode, std::atoi(argv[2]));
    else if (mode == "train" && argc > 3)
      rc = train(*comm, std::atoi(argv[2]), std::atoll(argv[3]), argc > 4 ? size_t(std::atoll(argv[4])) : size_t(4) << 20);
    else if (mode == "mismatch") return mismatch(*comm);
    else if (mode == "classify" && argc > 3) rc = classify(*comm, std::atoll(argv[2]), std::atoll(argv[3]));
  } catch (const std::exception& e) {
    return fail(*comm, e.what());
  }
  if (rc == 0) comm->finish();
  return rc;
}
