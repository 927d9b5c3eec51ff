// A user's own meta-learning problem on metagrad's public API alone: second-order MAML on damped
// oscillations y = A exp(-d t) sin(w t + p), with its own task sampler and its own MLP. The meta-step
// (every task's inner step, the outer gradient through it, the Adam update) is one graph compiled
// once; an evaluation graph shares the learned weights through the ParamStore. Exits 1 unless
// adaptation lowers the query error on fresh tasks, so running it is a check.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <metagrad/metagrad.h>

using namespace metagrad;

namespace {

constexpr int64_t kShots = 10, kQuery = 10, kHidden = 32;
constexpr int64_t kInnerSteps = 2;
constexpr double kInnerLr = 0.05, kMetaLr = 5e-3;

// One batch of tasks: K support and Q query points per task, [tasks, points, 1] row-major.
struct Batch {
  std::vector<float> xs, ys, xq, yq;
};

class OscillatorTasks {
 public:
  explicit OscillatorTasks(uint64_t seed) : rng_(seed) {}
  void sample(Batch& b, int64_t tasks) {
    b.xs.resize(size_t(tasks * kShots)), b.ys.resize(b.xs.size());
    b.xq.resize(size_t(tasks * kQuery)), b.yq.resize(b.xq.size());
    std::uniform_real_distribution<double> amp(0.5, 2.0), decay(0.1, 0.8), freq(1.0, 2.5), phase(0.0, 3.14159),
        t(0.0, 5.0);
    for (int64_t k = 0; k < tasks; ++k) {
      const double a = amp(rng_), d = decay(rng_), w = freq(rng_), p = phase(rng_);
      auto fill = [&](std::vector<float>& x, std::vector<float>& y, int64_t n) {
        for (int64_t i = k * n; i < (k + 1) * n; ++i) {
          x[size_t(i)] = float(t(rng_));
          y[size_t(i)] = float(a * std::exp(-d * x[size_t(i)]) * std::sin(w * x[size_t(i)] + p));
        }
      };
      fill(b.xs, b.ys, kShots);
      fill(b.xq, b.yq, kQuery);
    }
  }

 private:
  std::mt19937_64 rng_;
};

// The model: 1 -> 32 -> 32 -> 1 with tanh. Biases are [1, width], so a per-task copy [T, 1, width]
// broadcasts over a task's points like the shared bias does.
std::vector<Tensor> model_params(Graph& g) {
  auto weight = [&](const std::string& name, int64_t in, int64_t out, int64_t seed) {
    return parameter(g, name, {in, out}, Init::truncated_normal(0, std::sqrt(1.0 / double(in)), seed));
  };
  return {weight("w1", 1, kHidden, 1), parameter(g, "b1", {1, kHidden}, Init::zeros()),
          weight("w2", kHidden, kHidden, 2), parameter(g, "b2", {1, kHidden}, Init::zeros()),
          weight("w3", kHidden, 1, 3), parameter(g, "b3", {1, 1}, Init::zeros())};
}

Tensor model(const Tensor& x, const std::vector<Tensor>& w) {
  Tensor h = tanh(matmul(x, w[0]) + w[1]);
  h = tanh(matmul(h, w[2]) + w[3]);
  return matmul(h, w[4]) + w[5];
}

// Per-task query MSE [tasks]; summed over tasks, its gradient for per-task weights is each
// task's own gradient.
Tensor task_mse(const Tensor& pred, const Tensor& y) { return mean(square(pred - y), {1, 2}); }

struct Problem {
  Tensor xs, ys, xq, yq;
  std::vector<Tensor> params;
  Tensor pre, post;  // mean query MSE before and after adaptation
};

// Inputs, parameters and the inner loop of `tasks` tasks; `first_order` for evaluation, where no
// outer gradient is taken.
Problem build(Graph& g, int64_t tasks, bool first_order) {
  Problem p;
  p.xs = input(g, "xs", {tasks, kShots, 1}), p.ys = input(g, "ys", {tasks, kShots, 1});
  p.xq = input(g, "xq", {tasks, kQuery, 1}), p.yq = input(g, "yq", {tasks, kQuery, 1});
  p.params = model_params(g);
  Learner l;
  for (const Tensor& w : p.params) {  // one copy of the weights per task, adapted separately
    Shape s{tasks};
    s.insert(s.end(), w.shape().begin(), w.shape().end());
    l.initial.push_back(broadcast_to(w, s));
  }
  Tensor xs = p.xs, ys = p.ys, xq = p.xq;
  l.support_loss = [xs, ys](const std::vector<Tensor>& w) { return sum(task_mse(model(xs, w), ys)); };
  l.predict = [xq](const std::vector<Tensor>& w) { return model(xq, w); };
  p.pre = mean(task_mse(model(p.xq, p.params), p.yq));
  p.post = mean(task_mse(l.predict(adapt(l, kInnerSteps, kInnerLr, first_order)), p.yq));
  return p;
}

void run(Executable& exe, const Batch& b, int64_t tasks) {
  const Shape s{tasks, kShots, 1}, q{tasks, kQuery, 1};
  exe.run({Feed::f32("xs", s, b.xs), Feed::f32("ys", s, b.ys), Feed::f32("xq", q, b.xq), Feed::f32("yq", q, b.yq)});
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t meta_batch = 16, eval_tasks = 500, iterations = 600;
  try {
    Graph train;
    Problem p = build(train, meta_batch, /*first_order=*/false);
    add_meta_update(train, p.params, grad(p.post, p.params), kMetaLr);  // second order: through adapt()
    train.add_output("pre", p.pre);
    train.add_output("post", p.post);
    optimize(train);

    Graph eval;
    Problem e = build(eval, eval_tasks, /*first_order=*/true);
    eval.add_output("pre", e.pre);
    eval.add_output("post", e.post);
    optimize(eval);

    ParamStore store;  // shared: the evaluation graph reads the weights the meta-step trains
    Executable step(train, store), test(eval, store);
    OscillatorTasks tasks(7), fresh(1234);
    Batch b, held_out;
    fresh.sample(held_out, eval_tasks);

    run(test, held_out, eval_tasks);
    const float pre0 = test.fetch("pre")[0], post0 = test.fetch("post")[0];
    for (int64_t it = 1; it <= iterations; ++it) {
      tasks.sample(b, meta_batch);
      run(step, b, meta_batch);
      if (it % 150 == 0)
        std::printf("meta-iteration %4lld  training query MSE: before adaptation %.4f, after %.4f\n", (long long)it,
                    step.fetch("pre")[0], step.fetch("post")[0]);
    }
    run(test, held_out, eval_tasks);
    const float pre = test.fetch("pre")[0], post = test.fetch("post")[0];
    std::printf("%lld fresh tasks, query MSE before / after %lld inner steps: untrained %.4f / %.4f, meta-trained %.4f / %.4f\n",
                (long long)eval_tasks, (long long)kInnerSteps, pre0, post0, pre, post);
    if (argc > 1) save_checkpoint(store, argv[1]);  // weights and Adam state
    // Both claims of MAML: adapting helps, and meta-training made adapting help more.
    if (!(post < 0.8f * pre) || !(post < post0)) {
      std::printf("FAIL: adaptation does not lower the query error by 20%%, or meta-training did not help it\n");
      return 1;
    }
    std::printf("ok: adaptation lowers the query error %.1fx (%.1fx before meta-training)\n", pre / post, pre0 / post0);
  } catch (const Error& e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
  return 0;
}
