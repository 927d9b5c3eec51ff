// Learning-rate schedules: a table of kinds (parameters with defaults, factor) that parsing,
// printing and building read, reduce-on-plateau, and parameter groups.
#include "metagrad/schedules.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <functional>
#include <numbers>
#include <sstream>

#include "metagrad/error.h"
#include "metagrad/ops.h"

namespace metagrad {

namespace {

enum class Bound { Any, Positive, NonNegative, Fraction };  // Fraction: in (0, 1]

struct ScheduleParam {
  std::string key;
  double ScheduleSpec::*field;
  double default_value;
  Bound bound = Bound::Any;
};

struct ScheduleKind {
  std::string name;
  std::vector<ScheduleParam> params;  // key=value parameters, in printing order
  std::string flag;                   // a bare word that sets `flag_field` (exp's staircase)
  bool ScheduleSpec::*flag_field = nullptr;
  // The multiplier of lr0 at step t, before warm-up.
  std::function<Tensor(Graph&, const ScheduleSpec&, const Tensor& t, const std::string& prefix)> factor;
};

// Parameters every kind takes; printed only when not at their default.
const std::vector<ScheduleParam>& common_params() {
  static const std::vector<ScheduleParam> params = {{"warmup", &ScheduleSpec::warmup, 0, Bound::NonNegative}};
  return params;
}

const std::vector<ScheduleKind>& kinds() {
  static const std::vector<ScheduleKind> table = {
      {"constant", {}, "", nullptr, [](Graph& g, const ScheduleSpec&, const Tensor&, const std::string&) { return scalar(g, 1.0); }},
      // gamma^floor(t / every)
      {"step",
       {{"every", &ScheduleSpec::every, 1000, Bound::Positive}, {"gamma", &ScheduleSpec::gamma, 0.1, Bound::Positive}},
       "",
       nullptr,
       [](Graph& g, const ScheduleSpec& s, const Tensor& t, const std::string&) {
         return pow(scalar(g, s.gamma), floor(t / s.every));
       }},
      // rate^(t / steps), or rate^floor(t / steps) with staircase
      {"exp",
       {{"rate", &ScheduleSpec::rate, 0.96, Bound::Positive}, {"steps", &ScheduleSpec::steps, 1000, Bound::Positive}},
       "staircase",
       &ScheduleSpec::staircase,
       [](Graph& g, const ScheduleSpec& s, const Tensor& t, const std::string&) {
         Tensor e = t / s.steps;
         return pow(scalar(g, s.rate), s.staircase ? floor(e) : e);
       }},
      // floor + (1 - floor) (1 + cos(pi min(t / total, 1))) / 2
      {"cosine",
       {{"total", &ScheduleSpec::total, 10000, Bound::Positive}, {"floor", &ScheduleSpec::floor, 0.0}},
       "",
       nullptr,
       [](Graph& g, const ScheduleSpec& s, const Tensor& t, const std::string&) {
         Tensor progress = minimum(t / s.total, scalar(g, 1.0));
         return s.floor + (1.0 - s.floor) * 0.5 * (1.0 + cos(progress * std::numbers::pi));
       }},
      // the persistent scale plateau_update maintains
      {"plateau",
       {{"factor", &ScheduleSpec::factor, 0.5, Bound::Fraction},
        {"patience", &ScheduleSpec::patience, 2, Bound::NonNegative},
        {"threshold", &ScheduleSpec::threshold, 1e-4}},
       "",
       nullptr,
       [](Graph& g, const ScheduleSpec&, const Tensor&, const std::string& prefix) {
         return parameter(g, prefix + ".scale", {}, Init::ones(), /*trainable=*/false);
       }},
  };
  return table;
}

const ScheduleKind* find_kind(const std::string& name) {
  for (const ScheduleKind& k : kinds())
    if (k.name == name) return &k;
  return nullptr;
}

const ScheduleKind& kind_of(const ScheduleSpec& s) {
  const ScheduleKind* k = find_kind(s.kind);
  if (!k) throw GraphError(fmt::format("unknown schedule kind '{}'", s.kind));
  return *k;
}

// "a, b or c", for messages.
std::string listing(const std::vector<std::string>& words) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) out += (i == 0 ? "" : i + 1 == words.size() ? " or " : ", ") + words[i];
  return out;
}

// The keys a kind takes, for messages: "rate, steps, staircase or warmup".
std::string keys_of(const ScheduleKind& k) {
  std::vector<std::string> keys;
  for (const ScheduleParam& p : k.params) keys.push_back(p.key);
  if (!k.flag.empty()) keys.push_back(k.flag);
  for (const ScheduleParam& p : common_params()) keys.push_back(p.key);
  return listing(keys);
}

const ScheduleParam* find_param(const ScheduleKind& k, const std::string& key) {
  for (const auto* list : {&k.params, &common_params()})
    for (const ScheduleParam& p : *list)
      if (p.key == key) return &p;
  return nullptr;
}

double number(const std::string& key, const std::string& v, const std::string& text) {
  try {
    size_t used = 0;
    double x = std::stod(v, &used);
    if (used == v.size() && std::isfinite(x)) return x;
  } catch (const std::exception&) {
  }
  throw Error(fmt::format("schedule '{}': {} expects a number, got '{}'", text, key, v));
}

void check_bound(const ScheduleParam& p, double v, const std::string& text) {
  const bool ok = p.bound == Bound::Positive      ? v > 0
                  : p.bound == Bound::NonNegative ? v >= 0
                  : p.bound == Bound::Fraction    ? v > 0 && v <= 1
                                                  : true;
  if (!ok)
    throw Error(fmt::format("schedule '{}': {} must be {}, got {}", text, p.key,
                            p.bound == Bound::Positive ? "> 0" : p.bound == Bound::NonNegative ? ">= 0" : "in (0, 1]", v));
}

}  // namespace

ScheduleSpec::ScheduleSpec() {
  for (const ScheduleKind& k : kinds())
    for (const ScheduleParam& p : k.params) this->*p.field = p.default_value;
  for (const ScheduleParam& p : common_params()) this->*p.field = p.default_value;
}

std::vector<std::string> schedule_kinds() {
  std::vector<std::string> out;
  for (const ScheduleKind& k : kinds()) {
    std::string line = k.name + ":";
    for (const ScheduleParam& p : k.params) line += fmt::format(" {}={},", p.key, p.default_value);
    if (!k.flag.empty()) line += fmt::format(" [{}],", k.flag);
    for (const ScheduleParam& p : common_params()) line += fmt::format(" {}={}", p.key, p.default_value);
    out.push_back(line);
  }
  return out;
}

ScheduleSpec parse_schedule(const std::string& text) {
  ScheduleSpec s;
  const size_t colon = text.find(':');
  s.kind = text.substr(0, colon);
  const ScheduleKind* kind = find_kind(s.kind);
  if (!kind) {
    std::vector<std::string> names;
    for (const ScheduleKind& k : kinds()) names.push_back(k.name);
    throw Error(fmt::format("schedule '{}': unknown kind '{}' (expected {})", text, s.kind, listing(names)));
  }
  if (colon == std::string::npos) return s;
  std::stringstream rest(text.substr(colon + 1));
  std::string item;
  while (std::getline(rest, item, ',')) {
    if (!kind->flag.empty() && item == kind->flag) {
      s.*kind->flag_field = true;
      continue;
    }
    const size_t eq = item.find('=');
    const std::string key = item.substr(0, eq);
    const ScheduleParam* p = find_param(*kind, key);
    if (!p)
      throw Error(fmt::format("schedule '{}': unknown key '{}' for {} (it takes {})", text, key, kind->name, keys_of(*kind)));
    if (eq == std::string::npos) throw Error(fmt::format("schedule '{}': expected {}=value, got '{}'", text, key, item));
    s.*p->field = number(key, item.substr(eq + 1), text);
    check_bound(*p, s.*p->field, text);
  }
  return s;
}

std::string schedule_str(const ScheduleSpec& s) {
  const ScheduleKind& kind = kind_of(s);
  std::vector<std::string> items;
  for (const ScheduleParam& p : kind.params) items.push_back(fmt::format("{}={}", p.key, s.*p.field));
  if (kind.flag_field && s.*kind.flag_field) items.push_back(kind.flag);
  for (const ScheduleParam& p : common_params())
    if (s.*p.field != p.default_value) items.push_back(fmt::format("{}={}", p.key, s.*p.field));
  return items.empty() ? s.kind : fmt::format("{}:{}", s.kind, fmt::join(items, ","));
}

Tensor schedule_factor(Graph& g, const ScheduleSpec& s, const Tensor& t, const std::string& prefix) {
  Tensor f = kind_of(s).factor(g, s, t, prefix);
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
