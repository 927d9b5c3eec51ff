// Optimizers: each graph update against its published rule computed independently in f64 over
// several steps, and the step's derivative with respect to a hyperparameter against finite
// differences.
#include "metagrad/optimizers.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "metagrad/error.h"

#include "meta/optim/optimizer_rules.h"
#include "metagrad/autodiff.h"
#include "metagrad/ops.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

// Plain f64 implementations of the update rules, written from the papers / framework docs.
struct Plain {
  OptimizerConfig c;
  std::vector<double> v, s, m, mean, prev_dir;
  std::vector<double> v_tan, m_tan, s_tan;  // HD horizon: tangents of the rule's state
  double alpha = 0;  // HD: the adapted learning rate
  int t = 0;
  int shortened = 0;  // HD horizon: steps on which the tangent was cut to 1/(1 - mu) |d|
  int capped = 0;     // HD: steps on which hd_max_rise held the rate's rise back
  // hess: the diagonal Hessian of the loss at p (used by the HD horizon's tangent).
  void step(std::vector<double>& p, std::vector<double> g, std::vector<double> hess) {
    const size_t n = p.size();
    const bool hd = is_hypergradient(c.name);
    const std::string rule = c.name == "sgd_hd" ? "sgd" : c.name == "sgdn_hd" ? "nesterov" : c.name == "adam_hd" ? "adam" : c.name;
    if (v.empty())
      for (auto* x : {&v, &s, &m, &mean, &prev_dir, &v_tan, &m_tan, &s_tan}) x->assign(n, 0.0);
    if (t == 0) alpha = c.lr;
    ++t;
    if (c.weight_decay != 0 && rule != "adamw")
      for (size_t i = 0; i < n; ++i) g[i] += c.weight_decay * p[i], hess[i] += c.weight_decay;
    std::vector<double> dir(n);
    for (size_t i = 0; i < n; ++i) {
      if (rule == "sgd") {
        dir[i] = g[i];
      } else if (rule == "momentum") {
        v[i] = c.momentum * v[i] + g[i];
        dir[i] = v[i];
      } else if (rule == "nesterov") {
        v[i] = c.momentum * v[i] + g[i];
        dir[i] = g[i] + c.momentum * v[i];
      } else if (rule == "adagrad") {
        s[i] += g[i] * g[i];
        dir[i] = g[i] / (std::sqrt(s[i]) + c.eps);
      } else if (rule == "rmsprop" || rule == "rmsprop_centered") {
        s[i] = c.rho * s[i] + (1 - c.rho) * g[i] * g[i];
        double d = s[i];
        if (rule == "rmsprop_centered") {
          mean[i] = c.rho * mean[i] + (1 - c.rho) * g[i];
          d -= mean[i] * mean[i];
        }
        dir[i] = g[i] / (std::sqrt(d) + c.eps);
      } else {
        m[i] = c.beta1 * m[i] + (1 - c.beta1) * g[i];
        s[i] = c.beta2 * s[i] + (1 - c.beta2) * g[i] * g[i];
        double b1 = 1 - std::pow(c.beta1, t), b2 = 1 - std::pow(c.beta2, t);
        double mhat = m[i] / b1;
        if (rule == "nadam") mhat = c.beta1 * mhat + (1 - c.beta1) * g[i] / b1;
        dir[i] = mhat / (std::sqrt(s[i] / b2) + c.eps);
        if (rule == "adamw") dir[i] += c.weight_decay * p[i];
      }
    }
    // Baydin et al. (2018): alpha_t = alpha_{t-1} + beta * g_t . u_{t-1}, or multiplicatively
    // alpha_t = alpha_{t-1} * exp(beta * cos(g_t, u_{t-1})) (their 1 + beta cos, to first order).
    if (hd) {
      double dot = 0, gg = 0, uu = 0;
      for (size_t i = 0; i < n; ++i) dot += g[i] * prev_dir[i], gg += g[i] * g[i], uu += prev_dir[i] * prev_dir[i];
      const double before = alpha;
      alpha = c.hd.multiplicative ? alpha * std::exp(c.hd.hyper_lr * dot / (std::sqrt(gg) * std::sqrt(uu) + 1e-12)) : alpha + c.hd.hyper_lr * dot;
      if (c.hd.max_rise > 0 && alpha > (1 + c.hd.max_rise) * before) alpha = (1 + c.hd.max_rise) * before, ++capped;
    }
    // With a horizon mu, u follows Donini et al.'s discounted tangent: u' = mu (u - alpha Du) + d,
    // Du the derivative of the direction along u (through g, whose derivative is H u here).
    std::vector<double> next_u = dir;
    if (hd && c.hd.horizon > 0) {
      const double mu = c.hd.horizon;
      for (size_t i = 0; i < n; ++i) {
        const double hu = hess[i] * prev_dir[i];
        double du = hu;
        if (rule == "nesterov") {
          const double dv = c.momentum * v_tan[i] + hu;
          v_tan[i] = mu * dv;
          du = hu + c.momentum * dv;
        } else if (rule == "adam") {
          const double b1 = 1 - std::pow(c.beta1, t), b2 = 1 - std::pow(c.beta2, t);
          const double dm = c.beta1 * m_tan[i] + (1 - c.beta1) * hu;
          const double ds = c.beta2 * s_tan[i] + (1 - c.beta2) * 2 * g[i] * hu;
          m_tan[i] = mu * dm, s_tan[i] = mu * ds;
          // d = mhat / (sqrt(shat) + eps), differentiated by the quotient and chain rules
          const double root = std::sqrt(s[i] / b2), den = root + c.eps;
          du = (dm / b1) / den - (m[i] / b1) * (ds / b2) / (2 * root * den * den);
        }
        next_u[i] = mu * (prev_dir[i] - alpha * du) + dir[i];
      }
      // A tangent longer than 1/(1 - mu) times this step's direction is shortened to that length,
      // the rule's tangents with it.
      double uu1 = 0, dd = 0;
      for (size_t i = 0; i < n; ++i) uu1 += next_u[i] * next_u[i], dd += dir[i] * dir[i];
      const double shrink = std::min(1.0, std::sqrt(dd) / (1 - mu) / (std::sqrt(uu1) + 1e-30));
      if (shrink < 1) ++shortened;
      for (auto* x : {&next_u, &v_tan, &m_tan, &s_tan})
        for (double& e : *x) e *= shrink;
    }
    for (size_t i = 0; i < n; ++i) p[i] -= (hd ? alpha : c.lr) * dir[i];
    prev_dir = next_u;
  }
};

class OptimizerRule : public ::testing::TestWithParam<std::string> {};

// after: if given, the f64 rule after its steps, whose counters say which safeguards acted.
void expect_matches_published_rule(const OptimizerConfig& cfg, Plain* after = nullptr) {
  // A fixed quadratic-plus-quartic loss so gradients change every step.
  Graph g;
  Tensor w = parameter(g, "w", {4}, Init::normal(0, 1, 3));
  Tensor target = input(g, "target", {4});
  Tensor loss = sum(square(w - target)) + 0.1 * sum(square(square(w)));
  Tensor gw = grad(loss, {w})[0];
  OptimizerStep st = optimizer_step(g, cfg, {w}, {gw});
  add_updates(g, {w}, st);

  RefValues feeds{{"target", testing::random_ref({4}, 9)}};
  RefValues params;
  Plain plain;
  plain.c = cfg;
  std::vector<double> p = reference_eval(g, {w.value()}, feeds, {})[0].data;  // same initial weights
  for (int step = 0; step < 6; ++step) {
    params = reference_step(g, feeds, params);
    std::vector<double> grad_plain(4), hess_plain(4);
    for (size_t i = 0; i < 4; ++i) {
      double d = p[i] - feeds["target"].data[i];
      grad_plain[i] = 2 * d + 0.1 * 4 * p[i] * p[i] * p[i];
      hess_plain[i] = 2 + 0.1 * 12 * p[i] * p[i];
    }
    plain.step(p, grad_plain, hess_plain);
    const auto& got = params.at("w").data;
    for (size_t i = 0; i < 4; ++i) ASSERT_NEAR(got[i], p[i], 1e-10) << cfg.name << " step " << step << " elem " << i;
  }
  EXPECT_EQ(params.at("opt.t").data[0], 6.0);
  if (is_hypergradient(cfg.name)) {
    EXPECT_NEAR(params.at("opt.lr").data[0], plain.alpha, 1e-10);
    EXPECT_GT(std::abs(plain.alpha - cfg.lr), 1e-4) << "the hypergradient never moved the learning rate";
  }
  if (after) *after = plain;
}

TEST_P(OptimizerRule, MatchesPublishedRuleOverSteps) {
  OptimizerConfig cfg;
  cfg.name = GetParam();
  cfg.lr = 0.05;
  cfg.weight_decay = cfg.name == "sgd" ? 0.0 : 0.01;
  cfg.hd.hyper_lr = 0.01;  // large enough that the adapted rate differs visibly from lr0
  expect_matches_published_rule(cfg);
  if (is_hypergradient(cfg.name)) {
    cfg.hd.multiplicative = true;
    cfg.hd.hyper_lr = 0.2;
    expect_matches_published_rule(cfg);
    cfg.hd.horizon = 0.7;
    expect_matches_published_rule(cfg);
    cfg.hd.multiplicative = false;
    cfg.hd.hyper_lr = 0.01;
    expect_matches_published_rule(cfg);
    // A rate past the curvature's limit (lr h > 2) makes the tangent grow: the length bound acts.
    cfg.lr = cfg.name == "sgd_hd" ? 0.9 : 0.1;
    cfg.hd.hyper_lr = 0.001;
    cfg.hd.horizon = 0.3;  // a short horizon: its bound, 1/(1 - mu) |d|, is reached within the 6 steps
    Plain after;
    expect_matches_published_rule(cfg, &after);
    EXPECT_GT(after.shortened, 0) << cfg.name;
    // A rate started small, where successive directions agree and the hypergradient raises it
    // faster than the limit allows.
    cfg.lr = 0.005;
    cfg.hd.hyper_lr = 0.2;
    cfg.hd.multiplicative = true;
    cfg.hd.max_rise = 0.01;
    expect_matches_published_rule(cfg, &after);
    EXPECT_GT(after.capped, 0) << cfg.name;
  }
}

// With beta = 0 the rate stays lr0, and with the full horizon (mu = 1) -u is then exactly the
// derivative of the parameters with respect to lr0: checked against finite differences over
// several steps, on two parameter tensors whose loss couples them (an off-diagonal Hessian).
TEST(Optimizers, HdHorizonTangentIsTheDerivativeOfTheParametersInTheRate) {
  for (const std::string name : {"sgd_hd", "sgdn_hd", "adam_hd"}) {
    const double lr0 = name == "adam_hd" ? 0.02 : 0.05;
    auto run = [&](double lr, bool tangent) {
      Graph g;
      Tensor w = parameter(g, "w", {4}, Init::normal(0, 1, 3));
      Tensor w2 = parameter(g, "w2", {3}, Init::normal(0, 1, 5));
      Tensor loss = sum(square(w - 0.5)) + 0.1 * sum(square(square(w))) + 0.3 * sum(w) * sum(square(w2)) + sum(exp(0.2 * w2));
      OptimizerConfig cfg;
      cfg.name = name;
      cfg.lr = lr;
      cfg.hd.hyper_lr = 0;
      cfg.hd.horizon = 1.0;
      cfg.weight_decay = 0.01;
      OptimizerStep st = optimizer_step(g, cfg, {w, w2}, grad(loss, {w, w2}));
      add_updates(g, {w, w2}, st);
      RefValues params;
      for (int step = 0; step < 5; ++step) params = reference_step(g, {}, params);
      std::vector<double> out;
      for (const char* p : {"w", "w2"}) {
        const auto& v = params.at(tangent ? fmt::format("opt.{}.prev_dir", p) : std::string(p)).data;
        out.insert(out.end(), v.begin(), v.end());
      }
      return out;
    };
    const double eps = 1e-6;
    const std::vector<double> up = run(lr0 + eps, false), down = run(lr0 - eps, false), u = run(lr0, true);
    for (size_t i = 0; i < u.size(); ++i) {
      const double fd = (up[i] - down[i]) / (2 * eps);
      EXPECT_NEAR(-u[i], fd, 1e-6 * std::max(1.0, std::abs(fd))) << name << " element " << i;
    }
  }
}

// The guard leaves steps whose loss is ordinary alone. On a step whose loss spikes far above its
// running mean it undoes the previous step (parameters back, the rule's state unchanged except a
// velocity, which is zeroed), cuts the rate to a quarter instead of following the hypergradient, and
// restarts the tangent.
TEST(Optimizers, HdGuardUndoesTheStepBeforeALossSpikeAndCutsTheRate) {
  for (const std::string name : {"sgd_hd", "sgdn_hd", "adam_hd"}) {
    auto run = [&](double guard, const std::vector<double>& scales) {
      Graph g;
      Tensor w = parameter(g, "w", {4}, Init::normal(0, 1, 3));
      Tensor scale = input(g, "scale", {});
      Tensor loss = scale * (sum(square(w - 0.5)) + 0.1 * sum(square(square(w))));
      OptimizerConfig cfg;
      cfg.name = name;
      cfg.lr = 0.02;
      cfg.hd.multiplicative = true;
      cfg.hd.hyper_lr = 0.2;
      cfg.hd.horizon = 0.5;
      cfg.hd.guard = guard;
      Hyper h;
      h.loss = loss;
      add_updates(g, {w}, optimizer_step(g, cfg, {w}, grad(loss, {w}), h));
      RefValues params;
      std::vector<RefValues> after;  // after[s]: parameters and state after step s
      for (double s : scales) after.push_back(params = reference_step(g, {{"scale", RefTensor{{}, {s}}}}, params));
      return after;
    };
    const std::vector<double> calm(6, 1.0);
    std::vector<double> spiked = calm;
    spiked[4] = 50.0;
    const auto plain = run(0, calm), guarded = run(8, calm), hit = run(8, spiked);
    for (size_t s = 0; s < calm.size(); ++s) {
      EXPECT_EQ(guarded[s].at("opt.lr").data[0], plain[s].at("opt.lr").data[0]) << name << " step " << s;
      EXPECT_EQ(guarded[s].at("w").data, plain[s].at("w").data) << name << " step " << s;
    }
    for (size_t s = 0; s < 4; ++s) EXPECT_EQ(hit[s].at("w").data, plain[s].at("w").data) << name;
    EXPECT_DOUBLE_EQ(hit[4].at("opt.lr").data[0], 0.25 * hit[3].at("opt.lr").data[0]) << name;
    EXPECT_EQ(hit[4].at("w").data, hit[2].at("w").data) << name << ": the step into the spike is undone";
    EXPECT_NE(hit[3].at("w").data, hit[2].at("w").data) << name;
    for (const char* slot : {"opt.w.m", "opt.w.v"}) {
      if (hit[4].count(slot)) {
        EXPECT_EQ(hit[4].at(slot).data, hit[3].at(slot).data) << name << " " << slot;
      }
    }
    if (name == "sgdn_hd") {
      EXPECT_NE(hit[3].at("opt.w.velocity").data, std::vector<double>(4, 0.0));
      EXPECT_EQ(hit[4].at("opt.w.velocity").data, std::vector<double>(4, 0.0)) << "the velocity is dropped";
    }
    for (double u : hit[4].at("opt.w.prev_dir").data) EXPECT_EQ(u, 0.0) << name;
    EXPECT_NE(plain[4].at("opt.w.prev_dir").data[0], 0.0) << name;
    EXPECT_EQ(hit[5].at("opt.hd_cuts").data[0], 1.0) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(All, OptimizerRule, ::testing::ValuesIn(optimizer_names()),
                         [](const auto& info) { return info.param; });

TEST(Optimizers, StepIsDifferentiableInItsHyperparameters) {
  for (const std::string& name : optimizer_names()) {
    OptimizerConfig cfg;
    cfg.name = name;
    Graph g;
    Tensor w = input(g, "w", {3});
    Tensor lr = input(g, "lr", {});
    Tensor loss = sum(square(w) * w);
    Tensor gw = grad(loss, {w})[0];
    Hyper h;
    // HD variants own their learning rate; differentiate those through a momentum instead.
    if (!is_hypergradient(name)) h.lr = lr;
    else if (name == "adam_hd") h.beta1 = lr;
    else if (name == "sgdn_hd") h.momentum = lr;
    else h.weight_decay = lr, cfg.weight_decay = 1.0;  // sgd_hd: through the (coupled) weight decay
    OptimizerStep st = optimizer_step(g, cfg, {w}, {gw}, h);
    // Validation-style objective of the updated weights, differentiated w.r.t. the learning rate.
    Tensor after = sum(square(st.new_params[0] - 0.3));
    Tensor dlr = grad(after, {lr})[0];
    RefValues feeds{{"w", testing::random_ref({3}, 4, 0.5, 1.5)}, {"lr", RefTensor{{}, {name == "sgd_hd" ? 0.1 : is_hypergradient(name) ? 0.9 : 0.05}}}};
    double analytic = reference_eval(g, {dlr.value()}, feeds)[0].data[0];
    double fd = testing::finite_diff(g, after.value(), feeds, "lr")[0];
    EXPECT_NEAR(analytic, fd, 1e-6 * std::max(1.0, std::abs(fd))) << name;
  }
}

TEST(Optimizers, ClippingBoundsGradients) {
  Graph g;
  Tensor a = input(g, "a", {3});
  Tensor b = input(g, "b", {2});
  auto byv = clip_by_value({a}, 0.5);
  auto byn = clip_by_global_norm({a, b}, 1.0);
  RefValues f{{"a", RefTensor{{3}, {3.0, -0.2, 4.0}}}, {"b", RefTensor{{2}, {0.0, 0.0}}}};
  auto r = reference_eval(g, {byv[0].value(), byn[0].value()}, f);
  EXPECT_EQ(r[0].data, (std::vector<double>{0.5, -0.2, 0.5}));
  double norm = std::sqrt(9 + 0.04 + 16);
  EXPECT_NEAR(r[1].data[0], 3.0 / norm, 1e-9);
  EXPECT_NEAR(r[1].data[2], 4.0 / norm, 1e-9);
}

TEST(Optimizers, GradientCombinerRunsBeforeTheUpdate) {
  // A combiner that doubles every gradient makes SGD at lr take the step of SGD at 2 lr, and
  // momentum's velocity holds the combined gradient.
  for (const char* name : {"sgd", "momentum"}) {
    Graph g;
    Tensor w = parameter(g, "w", {3}, Init::constant(1.0));
    Tensor gr = input(g, "g", {3});
    OptimizerConfig cfg;
    cfg.name = name;
    cfg.lr = 0.1;
    int calls = 0;
    cfg.combine_gradients = [&](Graph&, const std::vector<Tensor>& grads) {
      ++calls;
      return std::vector<Tensor>{grads[0] * 2.0};
    };
    add_updates(g, {w}, optimizer_step(g, cfg, {w}, {gr}));
    EXPECT_EQ(calls, 1);
    RefValues params = reference_step(g, {{"g", RefTensor{{3}, {1.0, -2.0, 0.5}}}}, {});
    EXPECT_EQ(params.at("w").data, (std::vector<double>{1 - 0.2, 1 + 0.4, 1 - 0.1})) << name;
  }
  Graph g;
  Tensor w = parameter(g, "w", {3}, Init::zeros());
  OptimizerConfig cfg;
  cfg.name = "sgd";
  cfg.combine_gradients = [](Graph&, const std::vector<Tensor>& grads) { return std::vector<Tensor>{sum(grads[0])}; };
  EXPECT_NE(testing::error_of([&] { optimizer_step(g, cfg, {w}, {w}); }).find("combiner changed gradient 0"),
            std::string::npos);
}

// The table is the only list of rules: names are unique, every HD row adapts a rule of the table
// that has a direction and a horizon tangent, and the public lists derive from it.
TEST(Optimizers, TableRowsAreConsistent) {
  std::vector<std::string> names;
  for (const RuleRow& r : optimizer_rules()) {
    EXPECT_EQ(std::count(names.begin(), names.end(), r.name), 0) << r.name;
    names.push_back(r.name);
    EXPECT_EQ(is_hypergradient(r.name), !r.hd_of.empty()) << r.name;
    if (r.hd_of.empty()) {
      EXPECT_TRUE(r.direction) << r.name;
      for (size_t k = 0; k < r.slots.size(); ++k)
        for (size_t j = 0; j < k; ++j) EXPECT_NE(r.slots[k].name, r.slots[j].name) << r.name;
      continue;
    }
    EXPECT_FALSE(r.direction) << r.name << ": an HD row runs its base rule's direction";
    EXPECT_GT(r.hd_default_beta, 0) << r.name;
    const RuleRow* base = find_rule(r.hd_of);
    ASSERT_NE(base, nullptr) << r.name;
    EXPECT_TRUE(base->hd_of.empty()) << r.name;
    EXPECT_TRUE(base->tangent) << r.name << ": its base " << base->name << " needs a tangent for hd.horizon";
  }
  EXPECT_EQ(names, optimizer_names());
  EXPECT_FALSE(is_hypergradient("momentum_hd")) << "not a row";
  EXPECT_EQ(find_rule("adamx"), nullptr);
}

TEST(Optimizers, BadInputAreClearErrors) {
  Graph g;
  Tensor w = parameter(g, "w", {3}, Init::zeros());
  Tensor bad = input(g, "x", {2});
  OptimizerConfig cfg;
  cfg.name = "adamx";
  EXPECT_THROW(optimizer_step(g, cfg, {w}, {w}), Error);
  EXPECT_NE(testing::error_of([&] { optimizer_step(g, cfg, {w}, {w}); }).find("unknown optimizer 'adamx' (expected one of: sgd,"),
            std::string::npos);
  cfg.name = "sgd";
  EXPECT_THROW(optimizer_step(g, cfg, {w}, {bad}), Error);
  EXPECT_THROW(optimizer_step(g, cfg, {w}, {}), Error);
  cfg.name = "sgd_hd";
  cfg.hd.guard = 8;
  EXPECT_NE(testing::error_of([&] { optimizer_step(g, cfg, {w}, {w}); }).find("hd_guard needs the step's loss"), std::string::npos);
}

}  // namespace
}  // namespace metagrad
