// Learning-rate schedules against their closed forms, reduce-on-plateau over a metric sequence,
// parameter groups, and the spec parser's errors.
#include "metagrad/schedules.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/ops.h"
#include "metagrad/optimizers.h"
#include "metagrad/reference.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

// The schedule factor at step t, evaluated by the f64 reference interpreter with t as state.
double factor_at(const ScheduleSpec& s, double t) {
  Graph g;
  Tensor f = schedule_factor(g, s, step_counter(g, "opt"), "sched");
  RefValues params{{"opt.t", RefTensor{{}, {t}}}};
  return reference_eval(g, {f.value()}, {}, params)[0].data[0];
}

TEST(Schedules, MatchClosedForms) {
  const ScheduleSpec step = parse_schedule("step:every=10,gamma=0.5");
  const ScheduleSpec cont = parse_schedule("exp:rate=0.1,steps=100");
  const ScheduleSpec stair = parse_schedule("exp:rate=0.1,steps=100,staircase");
  const ScheduleSpec cosine = parse_schedule("cosine:total=50,floor=0.1");
  const ScheduleSpec warm = parse_schedule("cosine:total=50,warmup=5");
  for (double t : {0.0, 1.0, 9.0, 10.0, 25.0, 49.0, 50.0, 120.0, 250.0}) {
    EXPECT_DOUBLE_EQ(factor_at(ScheduleSpec{}, t), 1.0);
    EXPECT_NEAR(factor_at(step, t), std::pow(0.5, std::floor(t / 10)), 1e-12) << t;
    EXPECT_NEAR(factor_at(cont, t), std::pow(0.1, t / 100), 1e-12) << t;
    EXPECT_NEAR(factor_at(stair, t), std::pow(0.1, std::floor(t / 100)), 1e-12) << t;
    const double c = 0.5 * (1 + std::cos(std::numbers::pi * std::min(t, 50.0) / 50));
    EXPECT_NEAR(factor_at(cosine, t), 0.1 + 0.9 * c, 1e-12) << t;
    EXPECT_NEAR(factor_at(warm, t), c * std::min(1.0, (t + 1) / 5), 1e-12) << t;
  }
}

TEST(Schedules, ExponentialIsDifferentiableInItsRate) {
  // lr0 * rate^(t/steps) with the rate as an input: d/drate against finite differences.
  Graph g;
  Tensor rate = input(g, "rate", {});
  Tensor t = input(g, "t", {});
  Tensor f = pow(rate, t / 7.0);
  Tensor d = grad(f, {rate})[0];
  RefValues feeds{{"rate", RefTensor{{}, {0.8}}}, {"t", RefTensor{{}, {5.0}}}};
  EXPECT_NEAR(reference_eval(g, {d.value()}, feeds)[0].data[0], testing::finite_diff(g, f.value(), feeds, "rate")[0], 1e-7);
}

TEST(Schedules, PlateauShrinksAfterPatienceWithoutImprovement) {
  const ScheduleSpec s = parse_schedule("plateau:factor=0.5,patience=1");
  Graph g = plateau_update(s, "sched");
  RefValues params;
  std::vector<double> scales;
  // Improves twice, then stalls: the second stalled epoch exceeds patience 1 and halves the rate;
  // the counter restarts, so two more stalls halve it again.
  for (double metric : {1.0, 0.8, 0.9, 0.85, 0.8, 0.81, 0.5}) {
    params = reference_step(g, {{"metric", RefTensor{{}, {metric}}}}, params);
    scales.push_back(params.at("sched.scale").data[0]);
  }
  EXPECT_EQ(scales, (std::vector<double>{1, 1, 1, 0.5, 0.5, 0.25, 0.25}));
}

TEST(Schedules, GroupsAndLearnedScalesCompose) {
  Graph g;
  Tensor a = parameter(g, "a", {2}, Init::ones()), b = parameter(g, "b", {3}, Init::ones()),
         c = parameter(g, "c", {1}, Init::ones());
  LrPlan plan;
  plan.groups = {{"head", {1}, 0.1}};
  plan.learned_scales = true;
  std::vector<Tensor> scales = lr_scales(g, plan, {a, b, c});
  ASSERT_EQ(scales.size(), 3u);
  EXPECT_GE(g.find("lr.b.lr_scale"), 0);
  RefValues params{{"lr.a.lr_scale", RefTensor{{}, {2.0}}}, {"lr.b.lr_scale", RefTensor{{}, {3.0}}}};
  auto r = reference_eval(g, {scales[0].value(), scales[1].value(), scales[2].value()}, {}, params);
  EXPECT_DOUBLE_EQ(r[0].data[0], 2.0);
  EXPECT_NEAR(r[1].data[0], 0.3, 1e-12);
  EXPECT_DOUBLE_EQ(r[2].data[0], 1.0);  // initialised to one
  // The composed rates drive an SGD step: p' = p - lr * scale * g.
  Graph h;
  Tensor w = parameter(h, "w", {2}, Init::ones()), v = parameter(h, "v", {2}, Init::ones());
  LrPlan groups;
  groups.groups = {{"frozen", {0}, 0.0}, {"fast", {1}, 10.0}};
  Hyper hy;
  hy.lr_scale = lr_scales(h, groups, {w, v});
  OptimizerConfig sgd;
  sgd.name = "sgd";
  sgd.lr = 0.01;
  Tensor loss = sum(square(w)) + sum(square(v));
  add_updates(h, {w, v}, optimizer_step(h, sgd, {w, v}, grad(loss, {w, v}), hy));
  RefValues after = reference_step(h, {}, {});
  EXPECT_EQ(after.at("w").data, (std::vector<double>{1.0, 1.0}));           // multiplier 0 freezes
  EXPECT_NEAR(after.at("v").data[0], 1.0 - 0.01 * 10.0 * 2.0, 1e-12);       // 10x faster
  LrPlan overlap;
  overlap.groups = {{"x", {0}, 1.0}, {"y", {0}, 2.0}};
  EXPECT_NE(testing::error_of([&] { lr_scales(h, overlap, {w, v}); }).find("groups 'x' and 'y'"), std::string::npos);
}

TEST(Schedules, ParserErrorsNameTheProblem) {
  EXPECT_NE(testing::error_of([] { parse_schedule("linear"); }).find("unknown kind 'linear'"), std::string::npos);
  EXPECT_NE(testing::error_of([] { parse_schedule("exp:rate=abc"); }).find("rate expects a number"), std::string::npos);
  EXPECT_NE(testing::error_of([] { parse_schedule("exp:speed=2"); }).find("unknown key 'speed'"), std::string::npos);
  EXPECT_NE(testing::error_of([] { parse_schedule("step:every=0"); }).find("must be > 0"), std::string::npos);
  EXPECT_EQ(schedule_str(parse_schedule("exp:rate=0.5,steps=10,staircase,warmup=3")),
            "exp:rate=0.5,steps=10,staircase,warmup=3");
}

// Every kind of the table prints what parses back to it, with its defaults and with values set;
// a key belongs to its kind, and each bound is checked.
TEST(Schedules, EveryKindRoundTripsAndOwnsItsKeys) {
  const std::vector<std::string> kinds = schedule_kinds();
  ASSERT_EQ(kinds.size(), 5u);
  EXPECT_EQ(kinds[3], "cosine: total=10000, floor=0, warmup=0");
  EXPECT_EQ(kinds[2], "exp: rate=0.96, steps=1000, [staircase], warmup=0");
  for (const std::string& line : kinds) {
    const std::string kind = line.substr(0, line.find(':'));
    const ScheduleSpec d = parse_schedule(kind);
    EXPECT_EQ(schedule_str(parse_schedule(schedule_str(d))), schedule_str(d)) << kind;
    EXPECT_DOUBLE_EQ(factor_at(parse_schedule(kind + ":warmup=4"), 1.0), factor_at(d, 1.0) * 0.5) << kind;
  }
  const ScheduleSpec set = parse_schedule("plateau:threshold=0.01,patience=0,factor=1");
  EXPECT_EQ(schedule_str(set), "plateau:factor=1,patience=0,threshold=0.01");
  EXPECT_EQ(set.every, ScheduleSpec{}.every) << "other kinds keep their defaults";
  EXPECT_NE(testing::error_of([] { parse_schedule("exp:every=3"); }).find("unknown key 'every' for exp (it takes rate, steps, staircase or warmup)"),
            std::string::npos);
  EXPECT_NE(testing::error_of([] { parse_schedule("step:staircase"); }).find("unknown key 'staircase'"), std::string::npos);
  EXPECT_NE(testing::error_of([] { parse_schedule("cosine:total"); }).find("expected total=value"), std::string::npos);
  EXPECT_NE(testing::error_of([] { parse_schedule("plateau:factor=1.5"); }).find("factor must be in (0, 1]"), std::string::npos);
  EXPECT_NE(testing::error_of([] { parse_schedule("constant:warmup=-1"); }).find("warmup must be >= 0"), std::string::npos);
  EXPECT_NE(testing::error_of([] { parse_schedule("linear"); }).find("(expected constant, step, exp, cosine or plateau)"),
            std::string::npos);
}

TEST(Schedules, HypergradientOptimizersRefuseAnExternalRate) {
  Graph g;
  Tensor w = parameter(g, "w", {2}, Init::ones());
  OptimizerConfig cfg;
  cfg.name = "adam_hd";
  Hyper h;
  h.lr = scalar(g, 0.1);
  EXPECT_NE(testing::error_of([&] { optimizer_step(g, cfg, {w}, {w}, h); }).find("keeps its learning rate"), std::string::npos);
}

}  // namespace
}  // namespace metagrad
