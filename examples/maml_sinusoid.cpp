// Example: second-order MAML on sinusoids (Finn et al. 2017) on the public API, written the plain
// way: one Learner per task on the shared weights. The compiled graph holds every task's inner
// step, the outer gradient through them and the Adam update. (examples/standalone/ batches the
// tasks instead, with per-task weight copies; `metagrad bench sinusoid` is the full benchmark.)
#include <cmath>
#include <cstdio>
#include <random>

#include <metagrad/metagrad.h>

using namespace metagrad;

int main() {
  const int64_t tasks = 10, shots = 10, hidden = 40;
  Graph g;
  std::vector<Tensor> w{parameter(g, "w1", {1, hidden}, Init::truncated_normal(0, 0.5, 1)),
                        parameter(g, "b1", {hidden}, Init::zeros()),
                        parameter(g, "w2", {hidden, hidden}, Init::truncated_normal(0, 0.15, 2)),
                        parameter(g, "b2", {hidden}, Init::zeros()),
                        parameter(g, "w3", {hidden, 1}, Init::truncated_normal(0, 0.15, 3)),
                        parameter(g, "b3", {1}, Init::zeros())};
  auto mlp = [](const Tensor& x, const std::vector<Tensor>& p) {
    return matmul(relu(matmul(relu(matmul(x, p[0]) + p[1]), p[2]) + p[3]), p[4]) + p[5];
  };
  // Task t's support and query points are rows [t*shots, (t+1)*shots) of xs/ys and xq/yq.
  Tensor xs = input(g, "xs", {tasks * shots, 1}), ys = input(g, "ys", {tasks * shots, 1});
  Tensor xq = input(g, "xq", {tasks * shots, 1}), yq = input(g, "yq", {tasks * shots, 1});
  Tensor pre = scalar(g, 0.0), post = scalar(g, 0.0);
  for (int64_t t = 0; t < tasks; ++t) {
    auto rows = [&](const Tensor& v) { return slice(v, {t * shots, 0}, {(t + 1) * shots, 1}); };
    Tensor txs = rows(xs), tys = rows(ys), txq = rows(xq), tyq = rows(yq);
    Learner l;
    l.initial = w;
    l.support_loss = [&mlp, txs, tys](const std::vector<Tensor>& p) { return mse(mlp(txs, p), tys); };
    l.predict = [&mlp, txq](const std::vector<Tensor>& p) { return mlp(txq, p); };
    pre = pre + mse(l.predict(w), tyq) / double(tasks);
    post = post + mse(l.predict(adapt(l, 1, 0.01, /*first_order=*/false)), tyq) / double(tasks);
  }
  add_meta_update(g, w, grad(post, w), 1e-3);  // Adam on the meta-gradient through the inner step
  g.add_output("pre", pre);
  g.add_output("post", post);
  optimize(g);

  ParamStore params;
  Executable step(g, params);
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> amplitude(0.1f, 5.0f), phase(0.0f, 3.14159f), x(-5.0f, 5.0f);
  std::vector<float> bxs(size_t(tasks * shots)), bys(bxs.size()), bxq(bxs.size()), byq(bxs.size());
  const Shape s{tasks * shots, 1};
  for (int it = 0; it <= 3000; ++it) {
    for (int64_t t = 0; t < tasks; ++t) {
      const float a = amplitude(rng), p = phase(rng);
      for (int64_t i = t * shots; i < (t + 1) * shots; ++i) {
        bxs[size_t(i)] = x(rng), bys[size_t(i)] = a * std::sin(bxs[size_t(i)] - p);
        bxq[size_t(i)] = x(rng), byq[size_t(i)] = a * std::sin(bxq[size_t(i)] - p);
      }
    }
    step.run({Feed::f32("xs", s, bxs), Feed::f32("ys", s, bys), Feed::f32("xq", s, bxq), Feed::f32("yq", s, byq)});
    if (it % 500 == 0)
      std::printf("iteration %4d  query MSE before adaptation %.3f, after one step %.3f\n", it, step.fetch("pre")[0],
                  step.fetch("post")[0]);
  }
}
