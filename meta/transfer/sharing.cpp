// Parameter-sharing building blocks as graph: multi-task loss weighting, an L2 tie between towers,
// cross-stitch units, a top-k mixture of experts and cross-layer weight sharing.
#include "meta/transfer/sharing.h"

#include <fmt/format.h>

#include <cmath>

#include "metagrad/error.h"
#include "metagrad/ops.h"

namespace metagrad {

namespace {

std::string describe(const Tensor& t) { return t.graph().describe(t.value().node); }

void check_defined(const Tensor& t, const std::string& what) {
  if (!t.defined()) throw GraphError(fmt::format("{}: undefined tensor", what));
}

void check_same_graph(const Graph& g, const Tensor& t, const std::string& what) {
  check_defined(t, what);
  if (&t.graph() != &g) throw GraphError(fmt::format("{}: {} belongs to another graph", what, describe(t)));
}

// Stands in for -infinity in masks: exp() of it is exactly 0, and it stays finite in f32.
constexpr double kMasked = -1e30;

}  // namespace

Tensor weighted_task_loss(Graph& g, const std::vector<Tensor>& task_losses, const std::string& mode,
                          const std::vector<double>& fixed_weights, const std::string& prefix) {
  if (task_losses.empty()) throw GraphError("weighted_task_loss: no task losses given");
  if (mode != "fixed" && mode != "uncertainty")
    throw GraphError(fmt::format("weighted_task_loss: unknown mode '{}' (expected fixed or uncertainty)", mode));
  std::vector<Tensor> losses;
  for (size_t i = 0; i < task_losses.size(); ++i) {
    const Tensor& l = task_losses[i];
    check_same_graph(g, l, fmt::format("weighted_task_loss: task loss {}", i));
    if (l.numel() != 1)
      throw ShapeError(fmt::format("weighted_task_loss: task loss {} ({}) has shape {}; a one-element loss is needed",
                                   i, describe(l), shape_str(l.shape())));
    losses.push_back(l.rank() == 0 ? l : reshape(l, {}));
  }
  Tensor total;
  auto accumulate = [&](const Tensor& term) { total = total.defined() ? total + term : term; };
  if (mode == "fixed") {
    if (!fixed_weights.empty() && fixed_weights.size() != losses.size())
      throw GraphError(
          fmt::format("weighted_task_loss: {} fixed weights for {} task losses", fixed_weights.size(), losses.size()));
    for (size_t i = 0; i < losses.size(); ++i)
      accumulate(fixed_weights.empty() ? losses[i] : losses[i] * fixed_weights[i]);
    return total;
  }
  if (!fixed_weights.empty())
    throw GraphError("weighted_task_loss: fixed weights given with mode 'uncertainty' (its weights are learned)");
  for (size_t i = 0; i < losses.size(); ++i) {
    // A scalar parameter: the engine supports rank-0 tensors, so no reshapes are needed.
    Tensor s = parameter(g, fmt::format("{}.log_var.{}", prefix, i), {}, Init::zeros());
    // exp(-s) L + s: precision-weighted loss plus the log-variance that keeps s from growing without bound.
    accumulate(exp(-s) * losses[i] + s);
  }
  return total;
}

Tensor l2_tie_penalty(const std::vector<std::vector<Tensor>>& towers, double strength) {
  if (towers.size() < 2)
    throw GraphError(fmt::format("l2_tie_penalty: {} towers given, at least 2 needed", towers.size()));
  if (!(strength >= 0.0) || !std::isfinite(strength))
    throw GraphError(fmt::format("l2_tie_penalty: strength must be finite and non-negative, got {}", strength));
  const size_t n = towers[0].size();
  if (n == 0) throw GraphError("l2_tie_penalty: towers hold no tensors");
  for (size_t t = 1; t < towers.size(); ++t)
    if (towers[t].size() != n)
      throw GraphError(
          fmt::format("l2_tie_penalty: tower {} has {} tensors but tower 0 has {}", t, towers[t].size(), n));
  Graph* g = nullptr;
  for (size_t t = 0; t < towers.size(); ++t)
    for (size_t k = 0; k < n; ++k) {
      const Tensor& x = towers[t][k];
      check_defined(x, fmt::format("l2_tie_penalty: tower {} tensor {}", t, k));
      if (!g) g = &x.graph();
      if (&x.graph() != g)
        throw GraphError(
            fmt::format("l2_tie_penalty: tower {} tensor {} ({}) belongs to another graph", t, k, describe(x)));
      const Tensor& ref = towers[0][k];
      if (x.shape() != ref.shape())
        throw ShapeError(
            fmt::format("l2_tie_penalty: tower {} tensor {} ({}) has shape {} but tower 0 tensor {} ({}) has {}", t, k,
                        describe(x), shape_str(x.shape()), k, describe(ref), shape_str(ref.shape())));
    }
  Tensor total;
  for (size_t a = 0; a < towers.size(); ++a)
    for (size_t b = a + 1; b < towers.size(); ++b)
      for (size_t k = 0; k < n; ++k) {
        Tensor d = sum(square(towers[a][k] - towers[b][k]));
        total = total.defined() ? total + d : d;
      }
  return total * strength;
}

std::vector<double> cross_stitch_init(int64_t tasks, double self_weight) {
  if (tasks < 2) throw GraphError(fmt::format("cross_stitch: {} task activations given, at least 2 needed", tasks));
  const double other = (1.0 - self_weight) / double(tasks - 1);
  std::vector<double> a(size_t(tasks * tasks), other);
  for (int64_t i = 0; i < tasks; ++i) a[size_t(i * tasks + i)] = self_weight;
  return a;
}

std::vector<Tensor> cross_stitch(const std::vector<Tensor>& acts, const Tensor& alpha) {
  const int64_t t = int64_t(acts.size());
  if (t < 2) throw GraphError(fmt::format("cross_stitch: {} task activations given, at least 2 needed", t));
  check_defined(alpha, "cross_stitch: alpha");
  Graph& g = alpha.graph();
  if (alpha.shape() != Shape{t, t})
    throw ShapeError(fmt::format("cross_stitch: mixing matrix {} has shape {}; [{}, {}] needed for {} tasks",
                                 describe(alpha), shape_str(alpha.shape()), t, t, t));
  for (int64_t i = 0; i < t; ++i) {
    check_same_graph(g, acts[size_t(i)], fmt::format("cross_stitch: activation {}", i));
    if (acts[size_t(i)].shape() != acts[0].shape())
      throw ShapeError(fmt::format("cross_stitch: activation {} ({}) has shape {} but activation 0 ({}) has {}", i,
                                   describe(acts[size_t(i)]), shape_str(acts[size_t(i)].shape()), describe(acts[0]),
                                   shape_str(acts[0].shape())));
  }
  const Shape shape = acts[0].shape();
  const int64_t m = acts[0].numel();
  // Stack as rows [T, M] so the whole unit is one matmul alpha @ stack.
  std::vector<Tensor> rows;
  for (const Tensor& a : acts) rows.push_back(reshape(a, {1, m}));
  Tensor mixed = matmul(alpha, concat(rows, 0));
  std::vector<Tensor> out;
  for (int64_t i = 0; i < t; ++i) out.push_back(reshape(slice(mixed, {i, 0}, {i + 1, m}), shape));
  return out;
}

std::vector<Tensor> cross_stitch(Graph& g, const std::vector<Tensor>& acts, const std::string& name,
                                 double self_weight) {
  const int64_t t = int64_t(acts.size());
  Tensor start = constant(g, {t, t}, cross_stitch_init(t, self_weight), name + ".alpha_init");
  // Learned as an offset from the start, since initializers cannot write a non-uniform matrix.
  Tensor delta = parameter(g, name + ".alpha_delta", {t, t}, Init::zeros());
  return cross_stitch(acts, start + delta);
}

Tensor top_k_mask(const Tensor& logits, int64_t k) {
  check_defined(logits, "top_k_mask: logits");
  if (logits.rank() != 2)
    throw ShapeError(
        fmt::format("top_k_mask: logits {} have shape {}; [N, E] needed", describe(logits), shape_str(logits.shape())));
  const int64_t e = logits.dim(1);
  if (k < 1 || k > e) throw GraphError(fmt::format("top_k_mask: k = {} outside [1, {}]", k, e));
  Graph& g = logits.graph();
  // strictly_before[j][i] = 1 for j < i: hits @ it counts the hits left of each entry.
  std::vector<double> before(size_t(e * e), 0.0);
  for (int64_t j = 0; j < e; ++j)
    for (int64_t i = j + 1; i < e; ++i) before[size_t(j * e + i)] = 1.0;
  Tensor strictly_before = constant(g, {e, e}, before);
  Tensor remaining = stop_gradient(logits);
  Tensor mask;
  for (int64_t r = 0; r < k; ++r) {
    Tensor hits = greater_equal(remaining, max(remaining, {1}, true));
    // Keep only the first of tied maxima, so exactly k entries per row are chosen.
    Tensor first = hits * equal(matmul(hits, strictly_before), scalar(g, 0.0));
    mask = mask.defined() ? mask + first : first;
    remaining = where(first, scalar(g, kMasked), remaining);
  }
  return mask;
}

MoeLayer mixture_of_experts(Graph& g, const Tensor& x, int64_t experts, int64_t out, int64_t top_k,
                            const std::string& name, uint64_t seed) {
  check_same_graph(g, x, "mixture_of_experts: x");
  if (x.rank() != 2)
    throw ShapeError(
        fmt::format("mixture_of_experts: x ({}) has shape {}; [N, D] needed", describe(x), shape_str(x.shape())));
  if (experts < 1 || out < 1)
    throw GraphError(fmt::format("mixture_of_experts: experts ({}) and out ({}) must be positive", experts, out));
  if (top_k < 1 || top_k > experts)
    throw GraphError(fmt::format("mixture_of_experts: top_k = {} outside [1, experts = {}]", top_k, experts));
  const int64_t n = x.dim(0), d = x.dim(1);
  const double bound = 1.0 / std::sqrt(double(d));
  int64_t s = int64_t(seed) * 8;
  Tensor w = parameter(g, name + ".expert.w", {experts, d, out}, Init::uniform(-bound, bound, s++));
  Tensor b = parameter(g, name + ".expert.b", {experts, 1, out}, Init::uniform(-bound, bound, s++));
  // Random, not zero: a zero gate ties every logit, and routing would start degenerate.
  Tensor gw = parameter(g, name + ".gate.w", {d, experts}, Init::uniform(-bound, bound, s++));

  Tensor logits = matmul(x, gw);      // [N, E]
  Tensor probs = softmax(logits, 1);  // full gate probabilities, for the balance loss
  MoeLayer layer;
  Tensor share;  // f_e: share of the routing slots, a constant [E]
  if (top_k == experts) {
    layer.gates = probs;
    share = full(g, {experts}, 1.0 / double(experts));
  } else {
    Tensor mask = top_k_mask(logits, top_k);
    layer.gates = softmax(where(mask, logits, scalar(g, kMasked)), 1);  // renormalised over the chosen
    share = stop_gradient(sum(mask, {0}) * (1.0 / double(n * top_k)));
  }
  // Every expert on every row: [1, N, D] @ [E, D, out] + [E, 1, out] -> [E, N, out].
  Tensor expert_out = matmul(reshape(x, {1, n, d}), w) + b;
  Tensor g3 = reshape(transpose(layer.gates, {1, 0}), {experts, n, 1});
  layer.output = sum(g3 * expert_out, {0});
  // E * sum_e f_e P_e: minimal (1) when both routing and probabilities are uniform.
  layer.balance_loss = sum(share * mean(probs, {0})) * double(experts);
  return layer;
}

Tensor shared_mlp(const Tensor& x, const Tensor& w, const Tensor& b, int64_t layers) {
  check_defined(x, "shared_mlp: x");
  check_defined(w, "shared_mlp: w");
  check_defined(b, "shared_mlp: b");
  if (layers < 1) throw GraphError(fmt::format("shared_mlp: layers = {}; at least 1 needed", layers));
  if (w.rank() != 2 || w.dim(0) != w.dim(1))
    throw ShapeError(fmt::format("shared_mlp: weight {} has shape {}; a square [D, D] matrix is needed to reuse it",
                                 describe(w), shape_str(w.shape())));
  if (x.rank() < 1 || x.dim(-1) != w.dim(0))
    throw ShapeError(fmt::format("shared_mlp: x ({}) has shape {}; its last axis must be {}", describe(x),
                                 shape_str(x.shape()), w.dim(0)));
  Tensor h = x;
  for (int64_t l = 0; l < layers; ++l) {
    if (l > 0) h = relu(h);
    h = linear(h, w, b);
  }
  return h;
}

}  // namespace metagrad
