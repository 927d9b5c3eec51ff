// Hypergradient descent (Baydin et al. 2018) on any rule of the optimizer table, with Donini et
// al.'s discounted horizon, a loss-spike guard in the manner of Vogl et al.'s "bold driver", and a
// limit on how fast the rate rises.
#include "meta/optim/hypergradient.h"

#include <fmt/format.h>

#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/ops.h"

namespace metagrad {

namespace {

constexpr double kGuardCut = 0.25;  // the guard's factor on the rate at a loss spike

Tensor plus(const Tensor& total, const Tensor& x) { return total.defined() ? total + x : x; }

// The guard's detector: 1 when this step's loss lies more than k mean absolute deviations above
// its running mean, else 0. Both statistics are EMAs kept as state, so the threshold follows the
// minibatch noise as the loss falls; the deviation starts at a tenth of the first loss. A spike
// enters them clipped to the threshold, so a lasting rise is absorbed instead of cutting forever.
// "<prefix>.hd_cuts" counts the spikes, for reports. t: steps taken before this one.
Tensor loss_spike(Graph& g, const std::string& prefix, const Tensor& loss, const Tensor& t, double k,
                  std::vector<std::pair<Tensor, Tensor>>& state) {
  Tensor avg = parameter(g, prefix + ".loss_avg", {}, Init::zeros(), false);
  Tensor dev = parameter(g, prefix + ".loss_dev", {}, Init::zeros(), false);
  Tensor first = equal(t, scalar(g, 0.0));
  Tensor ref = where(first, loss, avg);
  Tensor spread = where(first, 0.1 * loss, dev);
  Tensor limit = ref + k * spread;
  Tensor spike = greater(loss, limit);
  Tensor clipped = minimum(loss, limit);
  state.push_back({avg, 0.95 * ref + 0.05 * clipped});
  state.push_back({dev, 0.95 * spread + 0.05 * abs(clipped - ref)});
  Tensor cuts = parameter(g, prefix + ".hd_cuts", {}, Init::zeros(), false);
  state.push_back({cuts, cuts + spike});
  return spike;
}

}  // namespace

HdRate hypergradient_rate(Graph& g, const HypergradientOptions& o, const OptimizerConfig& cfg, const Hyper& hyper,
                          const HdStepInputs& in, const std::string& prefix, OptimizerStep& out) {
  if (o.horizon > 0 && !in.base.tangent)
    throw GraphError(fmt::format("{}: rule {} has no tangent for a horizon (hd horizon {})", in.variant.name,
                                 in.base.name, o.horizon));
  if (o.guard > 0 && !hyper.loss.defined())
    throw GraphError(fmt::format("{}: hd_guard needs the step's loss (Hyper::loss)", in.variant.name));
  if (o.guard > 0 && !hyper.loss.shape().empty())
    throw ShapeError(fmt::format("{}: hd_guard needs a scalar loss, got shape {}", in.variant.name,
                                 shape_str(hyper.loss.shape())));
  const std::vector<Tensor>& params = in.params;
  const std::vector<Tensor>& grads = in.grads;
  // dL/dlr of the previous step is -g_t . u_{t-1}, with u the previous scaled direction, so
  // lr_t = lr_{t-1} + beta * g_t . u_{t-1}.
  const double beta = o.hyper_lr >= 0 ? o.hyper_lr : o.multiplicative ? 0.02 : in.variant.hd_default_beta;
  Tensor lr = parameter(g, prefix + ".lr", {}, Init::constant(cfg.lr), false);
  Tensor dot, gg, uu;
  std::vector<Tensor> u;
  for (size_t i = 0; i < params.size(); ++i) {
    u.push_back(slot_state(g, prefix, params[i], "prev_dir"));
    dot = plus(dot, sum(grads[i] * u[i]));
    if (o.multiplicative) {
      gg = plus(gg, sum(square(grads[i])));
      uu = plus(uu, sum(square(u[i])));
    }
  }
  // The multiplicative form (Baydin et al., section 3.3) moves lr by a fraction set by the cosine
  // of gradient and previous direction, so the same beta serves any scale of loss or lr; the
  // additive form's step grows with the gradients and can overshoot to a negative rate. Their
  // factor 1 + beta cos is taken as exp(beta cos), equal to first order: with beta >= 1 (which
  // long horizons want) a cosine near -1 would otherwise zero the rate or flip its sign.
  HdRate rate;
  rate.lr = o.multiplicative ? lr * exp(beta * dot / (sqrt(gg) * sqrt(uu) + 1e-12)) : lr + beta * dot;
  // Rising past the edge of stability can do damage no later cut repairs, while rising slowly
  // only costs time: on the first steps gradients agree and the hypergradient raises any rate,
  // with no loss spike for the guard to see (docs/ARCHITECTURE.md has the run).
  if (o.max_rise > 0) rate.lr = minimum(rate.lr, (1.0 + o.max_rise) * lr);
  // keep is 0 on a step whose loss spiked (the guard cut the rate) and 1 otherwise.
  Tensor keep;
  if (o.guard > 0) {
    rate.spike = loss_spike(g, prefix, hyper.loss, in.t, o.guard, out.state);
    // A spike means the rate is past the edge of stability, and the hypergradient raises it again
    // on the next aligned steps, so the cut is deep: a quarter, not Vogl et al.'s half (measured
    // in docs/ARCHITECTURE.md).
    rate.lr = where(rate.spike, kGuardCut * lr, rate.lr);
    keep = 1.0 - rate.spike;
    // A spike means the last step went too far: like Vogl et al.'s "bold driver", return to the
    // parameters before it (guard_restore) and leave the rule's state as it was, so the outlying
    // gradient enters no second moment; and, as they do, drop a velocity, which would carry the
    // parameters back along the path that failed. Adam's first moment is left alone: Adam-HD was
    // cut too rarely in the measured runs for a measurement to choose either way.
    for (size_t k = 0; k < in.rule_state_velocity.size(); ++k) {
      auto& [s, next] = out.state[in.rule_state_begin + k];
      next = where(rate.spike, in.rule_state_velocity[k] ? 0.0 * s : s, next);
    }
  }
  out.state.push_back({lr, rate.lr});
  auto restart = [&](const Tensor& x) { return keep.defined() ? keep * x : x; };
  std::vector<Tensor> next_u = in.steps;
  if (o.horizon > 0) {
    // With a horizon mu, -u is the derivative of the parameters with respect to the learning
    // rate over the past steps, each step's contribution discounted by mu (Donini et al.'s
    // MARTHE; mu = 0 is Baydin et al.'s rule): u' = mu (u - lr Du) + d, where Du is the
    // derivative of this step's direction along u, through the gradient (a Hessian-vector
    // product) and the rule's own state, whose tangents are kept as state too.
    const std::vector<Tensor> hu = grad(dot, params);  // H u: dot = sum g . u with u constant
    std::vector<std::pair<Tensor, Tensor>> rule_tangents;  // (state, its new value)
    for (size_t i = 0; i < params.size(); ++i) {
      std::vector<Tensor> tangents;
      for (const RuleSlot& slot : in.base.slots) tangents.push_back(slot_state(g, prefix, params[i], slot.name + "_tangent"));
      Tangent tan = in.base.tangent({g, hyper, in.terms, grads[i], hu[i], in.dirs[i], tangents, o.horizon});
      for (size_t k = 0; k < tangents.size(); ++k) rule_tangents.push_back({tangents[k], tan.next.at(k)});
      next_u[i] = o.horizon * (u[i] - rate.lr * in.scaled(i, tan.du)) + next_u[i];
    }
    if (o.horizon < 1) {
      // Steady directions add up to a tangent 1/(1 - mu) times as long as one of them; a longer
      // one is being amplified by curvature the rate makes unstable. Followed unchecked it grows
      // until |u|^2 overflows and the cosine reads 0, freezing the rate where it is too large.
      // The whole tangent (u and the rule's part) is shortened to that bound instead: the
      // cosine does not see the scale, only how much older steps weigh against new ones.
      Tensor uu1, dd;
      for (size_t i = 0; i < params.size(); ++i) {
        uu1 = plus(uu1, sum(square(next_u[i])));
        dd = plus(dd, sum(square(in.steps[i])));
      }
      Tensor shrink = minimum(scalar(g, 1.0), sqrt(dd) / (1.0 - o.horizon) / (sqrt(uu1) + 1e-30));
      for (auto& [s, v] : rule_tangents) v = shrink * v;
      for (Tensor& x : next_u) x = shrink * x;
    }
    for (const auto& [s, v] : rule_tangents) out.state.push_back({s, restart(v)});
  }
  for (size_t i = 0; i < params.size(); ++i) out.state.push_back({u[i], restart(next_u[i])});
  return rate;
}

Tensor guard_restore(Graph& g, const Tensor& spike, const Tensor& p, const Tensor& next, const std::string& prefix,
                     OptimizerStep& out) {
  Tensor before = slot_state(g, prefix, p, "guard_prev");
  out.state.push_back({before, where(spike, before, p)});
  return where(spike, before, next);
}

}  // namespace metagrad
