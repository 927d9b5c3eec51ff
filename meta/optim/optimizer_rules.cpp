// The optimizer rules, one row each: state slots, the direction d of p' = p - lr * scale * d, and
// for the bases of hypergradient variants the direction's tangent along the HD horizon.
#include "meta/optim/optimizer_rules.h"

#include "metagrad/ops.h"

// GCC 12 reports every member a designated initializer leaves to its default, which is what the
// rows below rely on.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace metagrad {

namespace {

// v' = mu v + g; d = v' (heavy ball) or g + mu v' (Nesterov, as in PyTorch).
Direction momentum_direction(const DirectionArgs& a, bool nesterov) {
  Tensor v = a.state(0);
  Tensor v1 = a.h.momentum * v + a.grad;
  return {nesterov ? a.grad + a.h.momentum * v1 : v1, {v1}, {}};
}

// RMSprop: s' = rho s + (1 - rho) g^2, d = g / (sqrt(s') + eps); centred, the mean gradient m'
// (the same EMA of g) is taken out of the second moment: d = g / (sqrt(s' - m'^2) + eps).
Direction rmsprop_direction(const DirectionArgs& a, bool centered) {
  const Hyper& h = a.h;
  Tensor s = a.state(0);
  Tensor s1 = h.rho * s + (1.0 - h.rho) * square(a.grad);
  Direction out{{}, {s1}, {}};
  Tensor denom = s1;
  if (centered) {
    Tensor m = a.state(1);
    Tensor m1 = h.rho * m + (1.0 - h.rho) * a.grad;
    out.next.push_back(m1);
    denom = s1 - square(m1);
  }
  out.d = a.grad / (sqrt(denom) + h.eps);
  return out;
}

enum class AdamForm { Adam, AdamW, Nadam };

// Bias corrections of the Adam family: 1 - beta^t.
std::vector<Tensor> adam_terms(Graph&, const Hyper& h, const Tensor& t1) {
  return {1.0 - pow(h.beta1, t1), 1.0 - pow(h.beta2, t1)};
}

// m' = b1 m + (1 - b1) g, v' = b2 v + (1 - b2) g^2, d = mhat / (sqrt(vhat) + eps) with the bias
// corrected moments. aux: mhat and sqrt(vhat), for the HD tangent.
Direction adam_direction(const DirectionArgs& a, AdamForm form) {
  const Hyper& h = a.h;
  const Tensor &bc1 = a.terms[0], &bc2 = a.terms[1];
  Tensor m = a.state(0);
  Tensor v = a.state(1);
  Tensor m1 = h.beta1 * m + (1.0 - h.beta1) * a.grad;
  Tensor v1 = h.beta2 * v + (1.0 - h.beta2) * square(a.grad);
  Tensor mhat = m1 / bc1;
  Direction out{{}, {m1, v1}, {mhat}};
  if (form == AdamForm::Nadam)  // Dozat's Nesterov form with constant beta1 (as in Keras/optax)
    mhat = h.beta1 * mhat + (1.0 - h.beta1) * a.grad / bc1;
  Tensor root = sqrt(v1 / bc2);
  out.aux.push_back(root);
  out.d = mhat / (root + h.eps);
  if (form == AdamForm::AdamW && a.cfg.weight_decay != 0.0) out.d = out.d + h.weight_decay * a.p;  // decoupled decay
  return out;
}

// The tangents below differentiate the direction along u: the gradient's derivative is hu, and
// each slot's tangent follows its own update, discounted by mu for the next step.

Tangent sgd_tangent(const TangentArgs& a) { return {a.hu, {}}; }

Tangent nesterov_tangent(const TangentArgs& a) {
  Tensor dv1 = a.h.momentum * a.tangents[0] + a.hu;
  Tensor next = a.mu * dv1;
  return {a.hu + a.h.momentum * dv1, {next}};
}

// d = mhat / (sqrt(vhat) + eps), by the quotient and chain rules.
Tangent adam_tangent(const TangentArgs& a) {
  const Hyper& h = a.h;
  const Tensor &bc1 = a.terms[0], &bc2 = a.terms[1];
  const Tensor &mhat = a.dir.aux[0], &root = a.dir.aux[1];
  Tensor dm1 = h.beta1 * a.tangents[0] + (1.0 - h.beta1) * a.hu;
  Tensor dv1 = h.beta2 * a.tangents[1] + (1.0 - h.beta2) * 2.0 * a.grad * a.hu;
  Tangent out{{}, {a.mu * dm1, a.mu * dv1}};
  Tensor denom = root + h.eps;
  // d sqrt(v)/dv is infinite at v = 0, where m and the tangent of v are 0 as well; the 1e-20
  // keeps that 0/0 at 0, and dividing by denom first keeps f32 from underflowing.
  out.du = dm1 / bc1 / denom - (mhat / denom) * (dv1 / bc2 / denom) / (2.0 * (root + 1e-20));
  return out;
}

}  // namespace

const std::vector<RuleRow>& optimizer_rules() {
  static const std::vector<RuleRow> rows = {
      {.name = "sgd", .direction = [](const DirectionArgs& a) { return Direction{a.grad, {}, {}}; },
       .tangent = sgd_tangent},
      {.name = "momentum",
       .slots = {{"velocity", true}},
       .direction = [](const DirectionArgs& a) { return momentum_direction(a, false); }},
      {.name = "nesterov",
       .slots = {{"velocity", true}},
       .direction = [](const DirectionArgs& a) { return momentum_direction(a, true); },
       .tangent = nesterov_tangent},
      // s' = s + g^2, d = g / (sqrt(s') + eps)
      {.name = "adagrad",
       .slots = {{"sum_sq"}},
       .direction =
           [](const DirectionArgs& a) {
             Tensor s = a.state(0);
             Tensor s1 = s + square(a.grad);
             return Direction{a.grad / (sqrt(s1) + a.h.eps), {s1}, {}};
           }},
      {.name = "rmsprop",
       .slots = {{"mean_sq"}},
       .direction = [](const DirectionArgs& a) { return rmsprop_direction(a, false); }},
      {.name = "rmsprop_centered",
       .slots = {{"mean_sq"}, {"mean"}},
       .direction = [](const DirectionArgs& a) { return rmsprop_direction(a, true); }},
      {.name = "adam",
       .slots = {{"m"}, {"v"}},
       .step_terms = adam_terms,
       .direction = [](const DirectionArgs& a) { return adam_direction(a, AdamForm::Adam); },
       .tangent = adam_tangent},
      {.name = "adamw",
       .slots = {{"m"}, {"v"}},
       .step_terms = adam_terms,
       .direction = [](const DirectionArgs& a) { return adam_direction(a, AdamForm::AdamW); },
       .decoupled_decay = true},
      {.name = "nadam",
       .slots = {{"m"}, {"v"}},
       .step_terms = adam_terms,
       .direction = [](const DirectionArgs& a) { return adam_direction(a, AdamForm::Nadam); }},
      // Hypergradient descent on the rate of a base rule (meta/optim/hypergradient.cpp).
      {.name = "sgd_hd", .hd_of = "sgd", .hd_default_beta = 1e-3},
      {.name = "sgdn_hd", .hd_of = "nesterov", .hd_default_beta = 1e-3},
      {.name = "adam_hd", .hd_of = "adam", .hd_default_beta = 1e-5},
  };
  return rows;
}

const RuleRow* find_rule(const std::string& name) {
  for (const RuleRow& r : optimizer_rules())
    if (r.name == name) return &r;
  return nullptr;
}

}  // namespace metagrad
