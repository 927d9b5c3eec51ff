// Example: fit a small MLP to y = sin(x) with plain SGD, the training step compiled once.
#include <cmath>
#include <cstdio>
#include <random>

#include <metagrad/metagrad.h>

using namespace metagrad;

int main() {
  Graph g;
  Tensor x = input(g, "x", {64, 1});
  Tensor y = input(g, "y", {64, 1});
  Tensor w1 = parameter(g, "w1", {1, 32}, Init::normal(0, 1.0, 1));
  Tensor b1 = parameter(g, "b1", {32}, Init::zeros());
  Tensor w2 = parameter(g, "w2", {32, 1}, Init::normal(0, 0.2, 2));
  Tensor loss = mse(matmul(tanh(matmul(x, w1) + b1), w2), y);
  std::vector<Tensor> params{w1, b1, w2};
  std::vector<Tensor> grads = grad(loss, params);  // gradients are graph nodes too
  for (size_t i = 0; i < params.size(); ++i) g.add_update(params[i], params[i] - 0.05 * grads[i]);
  g.add_output("loss", loss);
  optimize(g);

  ParamStore store;
  Executable step(g, store);  // kernels and memory planned once
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> u(-3, 3);
  std::vector<float> xs(64), ys(64);
  for (int it = 0; it <= 2000; ++it) {
    for (int i = 0; i < 64; ++i) xs[size_t(i)] = u(rng), ys[size_t(i)] = std::sin(xs[size_t(i)]);
    step.run({Feed::f32("x", {64, 1}, xs), Feed::f32("y", {64, 1}, ys)});
    if (it % 500 == 0) std::printf("step %4d  loss %.4f\n", it, step.fetch("loss")[0]);
  }
}
