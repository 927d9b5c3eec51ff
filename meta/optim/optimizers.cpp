// Optimizer update rules built from graph ops.
#include "metagrad/optimizers.h"

#include <fmt/format.h>

#include <algorithm>

#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/ops.h"

namespace metagrad {

const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> names = {"sgd",  "momentum", "nesterov", "adagrad", "rmsprop", "rmsprop_centered",
                                                 "adam", "adamw",    "nadam",    "sgd_hd",  "sgdn_hd", "adam_hd"};
  return names;
}

bool is_hypergradient(const std::string& optimizer) {
  return optimizer.size() > 3 && optimizer.compare(optimizer.size() - 3, 3, "_hd") == 0;
}

std::vector<Tensor> clip_by_value(const std::vector<Tensor>& grads, double v) {
  std::vector<Tensor> out;
  for (const Tensor& gr : grads) out.push_back(minimum(maximum(gr, scalar(gr.graph(), -v)), scalar(gr.graph(), v)));
  return out;
}

std::vector<Tensor> clip_by_global_norm(const std::vector<Tensor>& grads, double max_norm) {
  if (grads.empty()) return {};
  Graph& g = grads[0].graph();
  Tensor sq;
  for (const Tensor& gr : grads) sq = sq.defined() ? sq + sum(square(gr)) : sum(square(gr));
  // scale = max_norm / max(norm, max_norm): 1 when within the bound.
  Tensor scale = scalar(g, max_norm) / maximum(sqrt(sq + 1e-30), scalar(g, max_norm));
  std::vector<Tensor> out;
  for (const Tensor& gr : grads) out.push_back(gr * scale);
  return out;
}

namespace {

Tensor state(Graph& g, const std::string& prefix, const Tensor& p, const std::string& slot, double init = 0.0) {
  std::string pname = g.node(p.value().node).name;
  if (pname.empty()) pname = fmt::format("v{}", p.value().node);
  return parameter(g, fmt::format("{}.{}.{}", prefix, pname, slot), p.shape(),
                   init == 0.0 ? Init::zeros() : Init::constant(init), /*trainable=*/false);
}

Tensor or_const(Graph& g, const Tensor& t, double v) { return t.defined() ? t : scalar(g, v); }

constexpr double kGuardCut = 0.25;  // the HD guard's factor on the rate at a loss spike

// The HD guard's detector: 1 when this step's loss lies more than k mean absolute deviations above
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

OptimizerStep optimizer_step(Graph& g, const OptimizerConfig& cfg, const std::vector<Tensor>& params,
                             const std::vector<Tensor>& grads_in, Hyper h, const std::string& prefix) {
  const auto& names = optimizer_names();
  if (std::find(names.begin(), names.end(), cfg.name) == names.end())
    throw GraphError(fmt::format("unknown optimizer '{}'", cfg.name));
  if (params.size() != grads_in.size())
    throw GraphError(fmt::format("optimizer: {} parameters but {} gradients", params.size(), grads_in.size()));
  for (size_t i = 0; i < params.size(); ++i)
    if (params[i].shape() != grads_in[i].shape())
      throw ShapeError(fmt::format("optimizer: gradient {} has shape {}, parameter has {}", i,
                                   shape_str(grads_in[i].shape()), shape_str(params[i].shape())));
  const bool hd = is_hypergradient(cfg.name);
  if (hd && h.lr.defined())
    throw GraphError(fmt::format("{} keeps its learning rate as state; do not pass one (or a schedule)", cfg.name));
  if (!h.lr_scale.empty() && h.lr_scale.size() != params.size())
    throw GraphError(fmt::format("optimizer: {} lr scales for {} parameters", h.lr_scale.size(), params.size()));
  const std::string rule = cfg.name == "sgd_hd" ? "sgd" : cfg.name == "sgdn_hd" ? "nesterov" : cfg.name == "adam_hd" ? "adam" : cfg.name;
  h.momentum = or_const(g, h.momentum, cfg.momentum);
  h.beta1 = or_const(g, h.beta1, cfg.beta1);
  h.beta2 = or_const(g, h.beta2, cfg.beta2);
  h.rho = or_const(g, h.rho, cfg.rho);
  h.eps = or_const(g, h.eps, cfg.eps);
  h.weight_decay = or_const(g, h.weight_decay, cfg.weight_decay);

  std::vector<Tensor> grads = grads_in;
  if (cfg.combine_gradients) {
    grads = cfg.combine_gradients(g, grads_in);
    if (grads.size() != grads_in.size())
      throw GraphError(fmt::format("optimizer: the gradient combiner returned {} gradients for {}", grads.size(),
                                   grads_in.size()));
    for (size_t i = 0; i < grads.size(); ++i)
      if (grads[i].shape() != grads_in[i].shape())
        throw ShapeError(fmt::format("optimizer: the gradient combiner changed gradient {} from {} to {}", i,
                                     shape_str(grads_in[i].shape()), shape_str(grads[i].shape())));
  }
  if (cfg.clip_value > 0) grads = clip_by_value(grads, cfg.clip_value);
  if (cfg.clip_norm > 0) grads = clip_by_global_norm(grads, cfg.clip_norm);
  const bool coupled_decay = cfg.weight_decay != 0.0 && rule != "adamw";
  if (coupled_decay)
    for (size_t i = 0; i < grads.size(); ++i) grads[i] = grads[i] + h.weight_decay * params[i];

  OptimizerStep out;
  Tensor t = step_counter(g, prefix);
  Tensor t1 = t + 1.0;
  out.state.push_back({t, t1});
  out.step = t1;
  // Bias corrections of the Adam family: 1 - beta^t.
  Tensor bc1, bc2;
  if (rule == "adam" || rule == "adamw" || rule == "nadam") {
    bc1 = 1.0 - pow(h.beta1, t1);
    bc2 = 1.0 - pow(h.beta2, t1);
  }
  // Each rule gives a direction d with p' = p - lr * scale * d. Adam's mhat and sqrt(vhat) are
  // kept for the HD tangent below.
  std::vector<Tensor> dirs, adam_mhat(params.size()), adam_root(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    const Tensor& gr = grads[i];
    if (rule == "sgd") {
      dirs.push_back(gr);
    } else if (rule == "momentum" || rule == "nesterov") {
      // v' = mu v + g; d = v' (heavy ball) or g + mu v' (Nesterov, as in PyTorch).
      Tensor v = state(g, prefix, p, "velocity");
      Tensor v1 = h.momentum * v + gr;
      out.state.push_back({v, v1});
      dirs.push_back(rule == "momentum" ? v1 : gr + h.momentum * v1);
    } else if (rule == "adagrad") {
      Tensor s = state(g, prefix, p, "sum_sq");
      Tensor s1 = s + square(gr);
      out.state.push_back({s, s1});
      dirs.push_back(gr / (sqrt(s1) + h.eps));
    } else if (rule == "rmsprop" || rule == "rmsprop_centered") {
      Tensor s = state(g, prefix, p, "mean_sq");
      Tensor s1 = h.rho * s + (1.0 - h.rho) * square(gr);
      out.state.push_back({s, s1});
      Tensor denom = s1;
      if (rule == "rmsprop_centered") {
        Tensor m = state(g, prefix, p, "mean");
        Tensor m1 = h.rho * m + (1.0 - h.rho) * gr;
        out.state.push_back({m, m1});
        denom = s1 - square(m1);
      }
      dirs.push_back(gr / (sqrt(denom) + h.eps));
    } else {  // adam, adamw, nadam
      Tensor m = state(g, prefix, p, "m");
      Tensor v = state(g, prefix, p, "v");
      Tensor m1 = h.beta1 * m + (1.0 - h.beta1) * gr;
      Tensor v1 = h.beta2 * v + (1.0 - h.beta2) * square(gr);
      out.state.push_back({m, m1});
      out.state.push_back({v, v1});
      Tensor mhat = m1 / bc1;
      adam_mhat[i] = mhat;
      if (rule == "nadam")  // Dozat's Nesterov form with constant beta1 (as in Keras/optax)
        mhat = h.beta1 * mhat + (1.0 - h.beta1) * gr / bc1;
      adam_root[i] = sqrt(v1 / bc2);
      Tensor d = mhat / (adam_root[i] + h.eps);
      if (rule == "adamw" && cfg.weight_decay != 0.0) d = d + h.weight_decay * p;  // decoupled decay
      dirs.push_back(d);
    }
  }
  auto scaled = [&](size_t i, const Tensor& d) {
    return h.lr_scale.empty() || !h.lr_scale[i].defined() ? d : h.lr_scale[i] * d;
  };
  std::vector<Tensor> steps;  // p' = p - lr * steps[i]
  for (size_t i = 0; i < params.size(); ++i) steps.push_back(scaled(i, dirs[i]));
  const size_t rule_state_end = out.state.size();  // out.state[1, rule_state_end): the rule's own state
  Tensor spike;  // HD guard: 1 on a step whose loss spiked, which undoes the previous step
  if (hd) {
    // Hypergradient descent: dL/dlr of the previous step is -g_t . u_{t-1}, with u the previous
    // scaled direction, so lr_t = lr_{t-1} + beta * g_t . u_{t-1}.
    const double beta = cfg.hyper_lr >= 0       ? cfg.hyper_lr
                        : cfg.hd_multiplicative ? 0.02
                        : rule == "adam"        ? 1e-5
                                                : 1e-3;
    Tensor lr = parameter(g, prefix + ".lr", {}, Init::constant(cfg.lr), false);
    Tensor dot, gg, uu;
    auto add = [](const Tensor& total, const Tensor& x) { return total.defined() ? total + x : x; };
    std::vector<Tensor> u;
    for (size_t i = 0; i < params.size(); ++i) {
      u.push_back(state(g, prefix, params[i], "prev_dir"));
      dot = add(dot, sum(grads[i] * u[i]));
      if (cfg.hd_multiplicative) {
        gg = add(gg, sum(square(grads[i])));
        uu = add(uu, sum(square(u[i])));
      }
    }
    // The multiplicative form (Baydin et al., section 3.3) moves lr by a fraction set by the cosine
    // of gradient and previous direction, so the same beta serves any scale of loss or lr; the
    // additive form's step grows with the gradients and can overshoot to a negative rate. Their
    // factor 1 + beta cos is taken as exp(beta cos), equal to first order: with beta >= 1 (which
    // long horizons want) a cosine near -1 would otherwise zero the rate or flip its sign.
    h.lr = cfg.hd_multiplicative ? lr * exp(beta * dot / (sqrt(gg) * sqrt(uu) + 1e-12)) : lr + beta * dot;
    // Rising past the edge of stability can do damage no later cut repairs, while rising slowly
    // only costs time. On the first steps gradients agree and the hypergradient raises any rate:
    // Nesterov-HD from 0.1 (LeNet-5, seed 3) rose to 0.25 in 7 steps and the network died at
    // chance, with no loss spike for the guard to see; at 0.1 or 0.12 held constant it trains.
    if (cfg.hd_max_rise > 0) h.lr = minimum(h.lr, (1.0 + cfg.hd_max_rise) * lr);
    // keep is 0 on a step whose loss spiked (the guard cut the rate) and 1 otherwise.
    Tensor keep;
    if (cfg.hd_guard > 0) {
      if (!h.loss.defined()) throw GraphError(fmt::format("{}: hd_guard needs the step's loss (Hyper::loss)", cfg.name));
      if (!h.loss.shape().empty()) throw ShapeError(fmt::format("{}: hd_guard needs a scalar loss, got shape {}", cfg.name, shape_str(h.loss.shape())));
      spike = loss_spike(g, prefix, h.loss, t, cfg.hd_guard, out.state);
      // A spike means the rate is past the edge of stability, and the hypergradient raises it again
      // on the next aligned steps, so the cut is deep: a quarter, not Vogl et al.'s half. Measured
      // (LeNet-5, SGD-HD from 10x its tuned rate, seed 2): halving needed more spikes, each one
      // damaging, and ended 84.6%; a quarter ended 89.8% against the tuned base's 88.8%.
      h.lr = where(spike, kGuardCut * lr, h.lr);
      keep = 1.0 - spike;
      // A spike means the last step went too far: like Vogl et al.'s "bold driver", return to the
      // parameters before it (kept as state) and leave the rule's state as it was, so the outlying
      // gradient enters no second moment; and, as they do, drop the velocity, which would carry the
      // parameters back along the path that failed. Adam's first moment is left alone: Adam-HD was
      // cut 3 times in 18 measured runs, too rarely for a measurement to choose either way.
      const bool velocities = rule == "nesterov";  // its only state; Adam's is m and v
      for (size_t k = 1; k < rule_state_end; ++k)
        out.state[k].second = where(spike, velocities ? 0.0 * out.state[k].first : out.state[k].first, out.state[k].second);
    }
    out.state.push_back({lr, h.lr});
    auto restart = [&](const Tensor& x) { return keep.defined() ? keep * x : x; };
    std::vector<Tensor> next_u = steps;
    if (cfg.hd_horizon > 0) {
      // With a horizon mu, -u is the derivative of the parameters with respect to the learning
      // rate over the past steps, each step's contribution discounted by mu (Donini et al.'s
      // MARTHE; mu = 0 is Baydin et al.'s rule): u' = mu (u - lr Du) + d, where Du is the
      // derivative of this step's direction along u, through the gradient (a Hessian-vector
      // product) and the rule's own state, whose tangents are kept as state too.
      const std::vector<Tensor> hu = grad(dot, params);  // H u: dot = sum g . u with u constant
      std::vector<std::pair<Tensor, Tensor>> rule_tangents;  // (state, its new value)
      for (size_t i = 0; i < params.size(); ++i) {
        const Tensor& p = params[i];
        Tensor du;
        if (rule == "sgd") {
          du = hu[i];
        } else if (rule == "nesterov") {
          Tensor w = state(g, prefix, p, "velocity_tangent");
          Tensor dv1 = h.momentum * w + hu[i];
          rule_tangents.push_back({w, cfg.hd_horizon * dv1});
          du = hu[i] + h.momentum * dv1;
        } else {  // adam: d = mhat / (sqrt(vhat) + eps)
          Tensor a = state(g, prefix, p, "m_tangent");
          Tensor b = state(g, prefix, p, "v_tangent");
          Tensor dm1 = h.beta1 * a + (1.0 - h.beta1) * hu[i];
          Tensor dv1 = h.beta2 * b + (1.0 - h.beta2) * 2.0 * grads[i] * hu[i];
          rule_tangents.push_back({a, cfg.hd_horizon * dm1});
          rule_tangents.push_back({b, cfg.hd_horizon * dv1});
          Tensor denom = adam_root[i] + h.eps;
          // d sqrt(v)/dv is infinite at v = 0, where m and the tangent of v are 0 as well; the
          // 1e-20 keeps that 0/0 at 0, and dividing by denom first keeps f32 from underflowing.
          du = dm1 / bc1 / denom - (adam_mhat[i] / denom) * (dv1 / bc2 / denom) / (2.0 * (adam_root[i] + 1e-20));
        }
        next_u[i] = cfg.hd_horizon * (u[i] - h.lr * scaled(i, du)) + next_u[i];
      }
      if (cfg.hd_horizon < 1) {
        // Steady directions add up to a tangent 1/(1 - mu) times as long as one of them; a longer
        // one is being amplified by curvature the rate makes unstable. Followed unchecked it grows
        // until |u|^2 overflows and the cosine reads 0, freezing the rate where it is too large.
        // The whole tangent (u and the rule's part) is shortened to that bound instead: the
        // cosine does not see the scale, only how much older steps weigh against new ones.
        Tensor uu1, dd;
        for (size_t i = 0; i < params.size(); ++i) {
          uu1 = add(uu1, sum(square(next_u[i])));
          dd = add(dd, sum(square(steps[i])));
        }
        Tensor shrink = minimum(scalar(g, 1.0), sqrt(dd) / (1.0 - cfg.hd_horizon) / (sqrt(uu1) + 1e-30));
        for (auto& [s, v] : rule_tangents) v = shrink * v;
        for (Tensor& x : next_u) x = shrink * x;
      }
      for (const auto& [s, v] : rule_tangents) out.state.push_back({s, restart(v)});
    }
    for (size_t i = 0; i < params.size(); ++i) out.state.push_back({u[i], restart(next_u[i])});
  }
  h.lr = or_const(g, h.lr, cfg.lr);
  out.lr = h.lr;
  for (size_t i = 0; i < params.size(); ++i) {
    Tensor next = params[i] - h.lr * steps[i];
    if (spike.defined()) {
      Tensor before = state(g, prefix, params[i], "guard_prev");
      out.state.push_back({before, where(spike, before, params[i])});
      next = where(spike, before, next);
    }
    out.new_params.push_back(next);
  }
  return out;
}

Tensor step_counter(Graph& g, const std::string& prefix) {
  const std::string name = prefix + ".t";
  const int node = g.find(name);
  if (node >= 0) return Tensor(&g, Value{node, 0});
  return parameter(g, name, {}, Init::zeros(), false);
}

void add_updates(Graph& g, const std::vector<Tensor>& params, const OptimizerStep& step) {
  for (size_t i = 0; i < params.size(); ++i) g.add_update(params[i].value().node, step.new_params[i].value());
  for (const auto& [s, v] : step.state) g.add_update(s.value().node, v.value());
}

}  // namespace metagrad
