#include "metagrad/schedules.h"

#include <fmt/format.h>

#include <cmath>
#include <numbers>
#include <sstream>

#include "metagrad/error.h"
#include "metagrad/ops.h"

namespace metagrad {

namespace {

double number(const std::string& key, const std::string& v, const std::string& text) {
  try {
    size_t used = 0;
    double x = std::stod(v, &used);
    if (used == v.size() && std::isfinite(x)) return x;
  } catch (const std::exception&) {
  }
  throw Error(fmt::format("schedule '{}': {} expects a number, got '{}'", text, key, v));
}

}  // namespace

ScheduleSpec parse_schedule(const std::string& text) {
  ScheduleSpec s;
  const size_t colon = text.find(':');
  s.kind = text.substr(0, colon);
  if (s.kind != "constant" && s.kind != "step" && s.kind != "exp" && s.kind != "cosine" && s.kind != "plateau")
    throw Error(fmt::format("schedule '{}': unknown kind '{}' (expected constant, step, exp, cosine or plateau)", text, s.kind));
  if (colon == std::string::npos) return s;
  std::stringstream rest(text.substr(colon + 1));
  std::string item;
  while (std::getline(rest, item, ',')) {
    if (item == "staircase") {
      s.staircase = true;
      continue;
    }
    const size_t eq = item.find('=');
    if (eq == std::string::npos) throw Error(fmt::format("schedule '{}': expected key=value, got '{}'", text, item));
    const std::string key = item.substr(0, eq);
    const double v = number(key, item.substr(eq + 1), text);
    double* slot = key == "every" ? &s.every : key == "gamma" ? &s.gamma : key == "rate" ? &s.rate
                 : key == "steps" ? &s.steps : key == "total" ? &s.total : key == "floor" ? &s.floor
                 : key == "warmup" ? &s.warmup : key == "factor" ? &s.factor : key == "patience" ? &s.patience
                 : key == "threshold" ? &s.threshold : nullptr;
    if (!slot) throw Error(fmt::format("schedule '{}': unknown key '{}'", text, key));
    *slot = v;
  }
  if (s.every <= 0 || s.steps <= 0 || s.total <= 0 || s.warmup < 0 || s.rate <= 0 || s.gamma <= 0 || s.factor <= 0 ||
      s.factor > 1 || s.patience < 0)
    throw Error(fmt::format("schedule '{}': every, steps, total, rate, gamma must be > 0, factor in (0, 1], warmup and "
                            "patience >= 0",
                            text));
  return s;
}

std::string schedule_str(const ScheduleSpec& s) {
  std::string out = s.kind;
  if (s.kind == "step") out += fmt::format(":every={},gamma={}", s.every, s.gamma);
  if (s.kind == "exp") out += fmt::format(":rate={},steps={}{}", s.rate, s.steps, s.staircase ? ",staircase" : "");
  if (s.kind == "cosine") out += fmt::format(":total={},floor={}", s.total, s.floor);
  if (s.kind == "plateau") out += fmt::format(":factor={},patience={},threshold={}", s.factor, s.patience, s.threshold);
  if (s.warmup > 0) out += fmt::format("{}warmup={}", out.find(':') == std::string::npos ? ":" : ",", s.warmup);
  return out;
}

Tensor schedule_factor(Graph& g, const ScheduleSpec& s, const Tensor& t, const std::string& prefix) {
  Tensor f;
  if (s.kind == "constant") {
    f = scalar(g, 1.0);
  } else if (s.kind == "step") {
    f = pow(scalar(g, s.gamma), floor(t / s.every));
  } else if (s.kind == "exp") {
    Tensor e = t / s.steps;
    f = pow(scalar(g, s.rate), s.staircase ? floor(e) : e);
  } else if (s.kind == "cosine") {
    Tensor progress = minimum(t / s.total, scalar(g, 1.0));
    f = s.floor + (1.0 - s.floor) * 0.5 * (1.0 + cos(progress * std::numbers::pi));
  } else if (s.kind == "plateau") {
    f = parameter(g, prefix + ".scale", {}, Init::ones(), /*trainable=*/false);
  } else {
    throw GraphError(fmt::format("unknown schedule kind '{}'", s.kind));
  }
  // Warm-up ramps (t + 1) / warmup up to 1, so the first step already moves.
  if (s.warmup > 0) f = f * minimum((t + 1.0) / s.warmup, scalar(g, 1.0));
  return f;
}

Graph plateau_update(const ScheduleSpec& s, const std::string& prefix) {
  Graph g;
  Tensor metric = input(g, "metric", {});
  Tensor scale = parameter(g, prefix + ".scale", {}, Init::ones(), false);
  Tensor best = parameter(g, prefix + ".best", {}, Init::constant(3.0e38), false);
  Tensor wait = parameter(g, prefix + ".wait", {}, Init::zeros(), false);
  Tensor improved = less(metric, best * (1.0 - s.threshold));
  Tensor best1 = where(improved, metric, best);
  Tensor wait1 = where(improved, scalar(g, 0.0), wait + 1.0);
  Tensor reduce = greater(wait1, scalar(g, s.patience));
  Tensor scale1 = where(reduce, scale * s.factor, scale);
  g.add_update(scale.value().node, scale1.value());
  g.add_update(best.value().node, best1.value());
  g.add_update(wait.value().node, where(reduce, scalar(g, 0.0), wait1).value());
  g.add_output("scale", scale1.value());
  return g;
}

std::vector<Tensor> lr_scales(Graph& g, const LrPlan& plan, const std::vector<Tensor>& params, const std::string& prefix) {
  std::vector<Tensor> out(params.size());
  std::vector<double> mult(params.size(), 1.0);
  std::vector<int> owner(params.size(), -1);
  for (size_t gi = 0; gi < plan.groups.size(); ++gi)
    for (size_t i : plan.groups[gi].params) {
      if (i >= params.size())
        throw GraphError(fmt::format("parameter group '{}' names parameter {} of {}", plan.groups[gi].name, i, params.size()));
      if (owner[i] >= 0)
        throw GraphError(fmt::format("parameter {} is in groups '{}' and '{}'", i, plan.groups[size_t(owner[i])].name,
                                     plan.groups[gi].name));
      owner[i] = int(gi);
      mult[i] = plan.groups[gi].multiplier;
    }
  for (size_t i = 0; i < params.size(); ++i) {
    if (plan.learned_scales) {
      std::string pname = g.node(params[i].value().node).name;
      if (pname.empty()) pname = fmt::format("v{}", params[i].value().node);
      Tensor s = parameter(g, fmt::format("{}.{}.lr_scale", prefix, pname), {}, Init::ones());
      out[i] = mult[i] == 1.0 ? s : s * mult[i];
    } else if (mult[i] != 1.0) {
      out[i] = scalar(g, mult[i]);
    }
  }
  return out;
}

}  // namespace metagrad
