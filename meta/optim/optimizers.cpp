// One optimizer step built from graph ops: gradients combined, clipped and decayed, then the
// rule of the table (meta/optim/optimizer_rules.cpp) and, for HD variants, the rate's own update.
#include "metagrad/optimizers.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "meta/optim/hypergradient.h"
#include "meta/optim/optimizer_rules.h"
#include "metagrad/error.h"
#include "metagrad/ops.h"

namespace metagrad {

const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const RuleRow& r : optimizer_rules()) out.push_back(r.name);
    return out;
  }();
  return names;
}

bool is_hypergradient(const std::string& optimizer) {
  const RuleRow* r = find_rule(optimizer);
  return r && !r->hd_of.empty();
}

Tensor slot_state(Graph& g, const std::string& prefix, const Tensor& p, const std::string& slot) {
  std::string pname = g.node(p.value().node).name;
  if (pname.empty()) pname = fmt::format("v{}", p.value().node);
  return parameter(g, fmt::format("{}.{}.{}", prefix, pname, slot), p.shape(), Init::zeros(), /*trainable=*/false);
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

Tensor or_const(Graph& g, const Tensor& t, double v) { return t.defined() ? t : scalar(g, v); }

// The row of `name` and the rule it runs (the base rule of an HD variant).
std::pair<const RuleRow*, const RuleRow*> rule_of(const std::string& name) {
  const RuleRow* row = find_rule(name);
  if (!row) throw GraphError(fmt::format("unknown optimizer '{}' (expected one of: {})", name, fmt::join(optimizer_names(), ", ")));
  if (row->hd_of.empty()) return {row, row};
  const RuleRow* base = find_rule(row->hd_of);
  if (!base || !base->direction)
    throw GraphError(fmt::format("optimizer '{}' adapts the rate of '{}', which is no rule", name, row->hd_of));
  return {row, base};
}

}  // namespace

OptimizerStep optimizer_step(Graph& g, const OptimizerConfig& cfg, const std::vector<Tensor>& params,
                             const std::vector<Tensor>& grads_in, Hyper h, const std::string& prefix) {
  // Not a structured binding: clang 14 (the fuzz build) cannot capture those in the lambdas below.
  const std::pair<const RuleRow*, const RuleRow*> row_rule = rule_of(cfg.name);
  const RuleRow* const row = row_rule.first;
  const RuleRow* const rule = row_rule.second;
  if (params.size() != grads_in.size())
    throw GraphError(fmt::format("optimizer: {} parameters but {} gradients", params.size(), grads_in.size()));
  for (size_t i = 0; i < params.size(); ++i)
    if (params[i].shape() != grads_in[i].shape())
      throw ShapeError(fmt::format("optimizer: gradient {} has shape {}, parameter has {}", i,
                                   shape_str(grads_in[i].shape()), shape_str(params[i].shape())));
  const bool hd = row != rule;
  if (hd && h.lr.defined())
    throw GraphError(fmt::format("{} keeps its learning rate as state; do not pass one (or a schedule)", cfg.name));
  if (!h.lr_scale.empty() && h.lr_scale.size() != params.size())
    throw GraphError(fmt::format("optimizer: {} lr scales for {} parameters", h.lr_scale.size(), params.size()));
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
  if (cfg.weight_decay != 0.0 && !rule->decoupled_decay)
    for (size_t i = 0; i < grads.size(); ++i) grads[i] = grads[i] + h.weight_decay * params[i];

  OptimizerStep out;
  Tensor t = step_counter(g, prefix);
  Tensor t1 = t + 1.0;
  out.state.push_back({t, t1});
  out.step = t1;
  const std::vector<Tensor> terms = rule->step_terms ? rule->step_terms(g, h, t1) : std::vector<Tensor>{};
  // Each rule gives a direction d with p' = p - lr * scale * d, and its slots' new values.
  std::vector<Direction> dirs;
  const size_t rule_state_begin = out.state.size();
  std::vector<bool> velocity;  // per entry of the rule's state in out.state
  for (size_t i = 0; i < params.size(); ++i) {
    std::vector<Tensor> slots(rule->slots.size());
    auto state = [&](size_t k) {
      if (!slots.at(k).defined()) slots[k] = slot_state(g, prefix, params[i], rule->slots[k].name);
      return slots[k];
    };
    dirs.push_back(rule->direction({g, h, cfg, terms, params[i], grads[i], state}));
    const Direction& d = dirs.back();
    if (d.next.size() != slots.size())
      throw GraphError(fmt::format("optimizer {}: the rule updated {} of its {} slots", rule->name, d.next.size(), slots.size()));
    for (size_t k = 0; k < slots.size(); ++k) {
      out.state.push_back({state(k), d.next[k]});
      velocity.push_back(rule->slots[k].velocity);
    }
  }
  auto scaled = [&](size_t i, const Tensor& x) {
    return h.lr_scale.empty() || !h.lr_scale[i].defined() ? x : h.lr_scale[i] * x;
  };
  std::vector<Tensor> steps;  // p' = p - lr * steps[i]
  for (size_t i = 0; i < params.size(); ++i) steps.push_back(scaled(i, dirs[i].d));
  HdRate rate;
  if (hd)
    rate = hypergradient_rate(g, cfg.hd, cfg, h,
                              {*row, *rule, params, grads, dirs, steps, terms, scaled, t, rule_state_begin, velocity},
                              prefix, out);
  h.lr = hd ? rate.lr : or_const(g, h.lr, cfg.lr);
  out.lr = h.lr;
  for (size_t i = 0; i < params.size(); ++i) {
    Tensor next = params[i] - h.lr * steps[i];
    if (rate.spike.defined()) next = guard_restore(g, rate.spike, params[i], next, prefix, out);
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
