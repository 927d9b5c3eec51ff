#include "bench/drivers/schedule_search.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "meta/dist/batch_score.h"
#include "meta/train/supervised.h"
#include "metagrad/error.h"
#include "metagrad/optimizers.h"
#include "metagrad/schedules.h"

namespace metagrad {

namespace {

bool better(double a, double b) { return std::isfinite(a) && (!std::isfinite(b) || a < b); }

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Rates by optimizer; anything else (rmsprop*, adam, adamw, adam_hd) takes 1e-3.
const std::map<std::string, double>& tuned_rates() {
  static const std::map<std::string, double> rates = {{"sgd", 0.1},       {"sgd_hd", 0.1},  {"momentum", 0.01},
                                                      {"nesterov", 0.01}, {"sgdn_hd", 0.01}, {"adagrad", 0.01},
                                                      {"nadam", 2e-3}};
  return rates;
}

// A schedule over a run of `steps` steps, as parse_schedule text; {steps} and {half} are filled in.
struct ScheduleShape {
  const char* name;
  const char* spec;
};
const std::vector<ScheduleShape>& shapes() {
  static const std::vector<ScheduleShape> table = {
      {"constant", "constant"},
      {"step", "step:every={half},gamma=0.1"},           // a tenth of the rate for the second half
      {"exp", "exp:rate=0.05,steps={steps}"},            // down to 5% at the end
      {"cosine", "cosine:total={steps}"},
      {"warmup-cosine", "cosine:total={steps},warmup={tenth}"},
  };
  return table;
}

struct HdSetting {
  const char* name;
  bool multiplicative;
  double horizon;
};
const std::vector<HdSetting>& hd_table() {
  static const std::vector<HdSetting> table = {
      {"additive", false, 0.0}, {"multiplicative", true, 0.0}, {"horizon-0.9", false, 0.9}};
  return table;
}

template <class Row>
const Row& row(const std::vector<Row>& table, const std::string& name, const char* flag) {
  for (const Row& r : table)
    if (name == r.name) return r;
  std::string names;
  for (const Row& r : table) names += fmt::format("{}{}", names.empty() ? "" : ", ", r.name);
  throw Error(fmt::format("{}: unknown value '{}' (expected one of {})", flag, name, names));
}

// The search dimensions: each takes its values from the configuration, applies to a trial whose
// earlier dimensions are set (or not: then the trial keeps the field empty) and sets its field.
struct Dimension {
  const char* flag;
  std::vector<std::string> (*values)(const ScheduleSearchConfig&);
  bool (*applies)(const Trial&);
  void (*set)(Trial&, const std::string&);
};
bool always(const Trial&) { return true; }
const std::vector<Dimension>& dimensions() {
  static const std::vector<Dimension> table = {
      {"--optimizers", [](const ScheduleSearchConfig& c) { return c.optimizers; }, always,
       [](Trial& t, const std::string& v) { t.optimizer = v; }},
      {"--lr-scales",
       [](const ScheduleSearchConfig& c) {
         std::vector<std::string> v;
         for (double s : c.lr_scales) v.push_back(fmt::format("{}", s));
         return v;
       },
       always, [](Trial& t, const std::string& v) { t.lr_scale = std::stod(v); }},
      {"--schedules", [](const ScheduleSearchConfig& c) { return c.schedules; },
       [](const Trial& t) { return !is_hypergradient(t.optimizer); }, [](Trial& t, const std::string& v) { t.schedule = v; }},
      {"--hd", [](const ScheduleSearchConfig& c) { return c.hd; },
       [](const Trial& t) { return is_hypergradient(t.optimizer); }, [](Trial& t, const std::string& v) { t.hd = v; }},
  };
  return table;
}

void check(const ScheduleSearchConfig& c) {
  for (const std::string& o : c.optimizers)
    if (std::find(optimizer_names().begin(), optimizer_names().end(), o) == optimizer_names().end())
      throw Error(fmt::format("--optimizers: unknown optimizer '{}' (expected one of {})", o, fmt::join(optimizer_names(), ", ")));
  for (const std::string& s : c.schedules) row(shapes(), s, "--schedules");
  for (const std::string& h : c.hd) row(hd_table(), h, "--hd");
  for (double s : c.lr_scales)
    if (!(s > 0 && std::isfinite(s))) throw Error(fmt::format("--lr-scales: every scale must be > 0, got {}", s));
  for (const Dimension& d : dimensions())
    if (d.values(c).empty()) throw Error(fmt::format("{}: needs at least one value", d.flag));
  if (c.batch <= 0) throw Error(fmt::format("--batch must be > 0, got {}", c.batch));
}

// Every distinct trial the dimensions allow, in table order.
std::vector<Trial> all_trials(const ScheduleSearchConfig& c) {
  std::vector<Trial> out{Trial{}};
  for (const Dimension& d : dimensions()) {
    std::vector<Trial> next;
    const std::vector<std::string> values = d.values(c);
    for (const Trial& t : out) {
      if (!d.applies(t)) {
        next.push_back(t);
        continue;
      }
      for (const std::string& v : values) {
        Trial u = t;
        d.set(u, v);
        next.push_back(u);
      }
    }
    out = std::move(next);
  }
  std::set<std::string> seen;  // repeated flag values would repeat trials
  std::vector<Trial> distinct;
  for (const Trial& t : out)
    if (seen.insert(trial_str(t)).second) distinct.push_back(t);
  return distinct;
}

// `n` of them chosen by the seed: each gets a 64-bit key from std::mt19937_64 (the same on every
// standard library, unlike the std distributions) and the smallest keys win.
std::vector<Trial> sample_trials(const ScheduleSearchConfig& c) {
  std::vector<Trial> all = all_trials(c);
  if (c.configs > int64_t(all.size()))
    throw Error(fmt::format("--configs {} is more than the {} distinct configurations the dimensions allow", c.configs,
                            all.size()));
  std::mt19937_64 rng(c.seed);
  std::vector<std::pair<uint64_t, size_t>> keys;
  for (size_t i = 0; i < all.size(); ++i) keys.push_back({rng(), i});
  std::sort(keys.begin(), keys.end());
  std::vector<Trial> out;
  for (int64_t i = 0; i < c.configs; ++i) out.push_back(all[keys[size_t(i)].second]);
  return out;
}

SupervisedConfig training(const ScheduleSearchConfig& c, const ClassifierConfig& model, const Trial& t, int64_t epochs,
                          int64_t train_count) {
  SupervisedConfig s;
  s.model = model;
  s.model.seed = c.seed;
  s.seed = c.seed;
  s.epochs = epochs;
  s.batch = std::min(c.batch, train_count);
  s.eval_every = 0;
  s.compile = c.compile;
  s.opt.name = t.optimizer;
  s.opt.lr = tuned_lr(t.optimizer) * t.lr_scale;
  if (!t.schedule.empty()) {
    const int64_t steps = std::max<int64_t>(1, epochs * (train_count / s.batch));
    s.schedule = parse_schedule(fmt::format(fmt::runtime(row(shapes(), t.schedule, "--schedules").spec),
                                            fmt::arg("steps", steps), fmt::arg("half", std::max<int64_t>(1, steps / 2)),
                                            fmt::arg("tenth", std::max<int64_t>(1, steps / 10))));
  }
  if (!t.hd.empty()) {
    const HdSetting& h = row(hd_table(), t.hd, "--hd");
    s.opt.hd.multiplicative = h.multiplicative;
    s.opt.hd.horizon = h.horizon;
  }
  return s;
}

// Trains trials[ids[i]] for `epochs` on `train` and returns {loss, accuracy} on `eval` for each,
// spread over the ranks; a diverged run scores {inf, 0}. `first_step`, if given, receives the
// compiled step of ids[0]'s run on the rank that trains it.
std::vector<double> train_and_score(const ScheduleSearchConfig& c, const ClassifierConfig& model,
                                    const std::vector<Trial>& trials, const std::vector<size_t>& ids, int64_t epochs,
                                    const ImageSet& train, const ImageSet& eval, CompileStats* first_step = nullptr) {
  return score_across_ranks(c.group, ids.size(), 2, [&](size_t i) {
    try {
      const SupervisedResult r = train_classifier(training(c, model, trials[ids[i]], epochs, train.count), train, eval, nullptr);
      if (i == 0 && first_step) *first_step = r.compile;
      return std::vector<double>{r.epochs.back().test_loss, r.epochs.back().test_accuracy};
    } catch (const RuntimeError&) {
      return std::vector<double>{std::numeric_limits<double>::infinity(), 0.0};
    }
  });
}

}  // namespace

std::vector<Rung> rung_plan(int64_t configs, int64_t eta, int64_t min_epochs, int64_t max_epochs) {
  if (configs < 1) throw Error(fmt::format("--configs must be >= 1, got {}", configs));
  if (eta < 2) throw Error(fmt::format("--eta must be >= 2, got {}", eta));
  if (min_epochs < 1) throw Error(fmt::format("--min-epochs must be >= 1, got {}", min_epochs));
  if (max_epochs < min_epochs)
    throw Error(fmt::format("--max-epochs {} is below --min-epochs {}", max_epochs, min_epochs));
  std::vector<Rung> plan;
  int64_t n = configs;
  for (int64_t e = min_epochs; e < max_epochs; e = e > max_epochs / eta ? max_epochs : e * eta) {
    plan.push_back({e, n});
    n = std::max<int64_t>(1, n / eta);
  }
  plan.push_back({max_epochs, n});
  return plan;
}

std::vector<size_t> promote(const std::vector<size_t>& ids, const std::vector<double>& scores, int64_t keep) {
  if (scores.size() != ids.size()) throw Error(fmt::format("promote: {} scores for {} configurations", scores.size(), ids.size()));
  std::vector<size_t> order(ids.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return better(scores[a], scores[b]); });
  std::vector<size_t> out;
  for (size_t k = 0; k < order.size() && int64_t(k) < keep; ++k) out.push_back(ids[order[k]]);
  return out;
}

std::vector<RungResult> successive_halving(const std::vector<Rung>& plan, const RungScoreFn& score,
                                           const std::function<void(const RungResult&)>& after_rung) {
  if (plan.empty()) throw Error("successive halving: no rungs");
  std::vector<size_t> ids(size_t(plan[0].configs));
  std::iota(ids.begin(), ids.end(), size_t{0});
  std::vector<RungResult> out;
  for (size_t k = 0; k < plan.size(); ++k) {
    if (k > 0) ids = promote(out.back().ids, out.back().scores, plan[k].configs);
    RungResult r{plan[k].epochs, ids, score(ids, plan[k].epochs)};
    if (r.scores.size() != ids.size())
      throw Error(fmt::format("successive halving: rung {} got {} scores for {} configurations", k, r.scores.size(), ids.size()));
    if (after_rung) after_rung(r);
    out.push_back(std::move(r));
  }
  return out;
}

double tuned_lr(const std::string& optimizer) {
  const auto it = tuned_rates().find(optimizer);
  return it == tuned_rates().end() ? 1e-3 : it->second;
}

std::string trial_str(const Trial& t) {
  std::string s = fmt::format("{} lr={:.3g} (x{:g})", t.optimizer, tuned_lr(t.optimizer) * t.lr_scale, t.lr_scale);
  if (!t.schedule.empty()) s += " schedule=" + t.schedule;
  if (!t.hd.empty()) s += " hd=" + t.hd;
  return s;
}

std::vector<std::string> schedule_shapes() {
  std::vector<std::string> v;
  for (const ScheduleShape& s : shapes()) v.push_back(s.name);
  return v;
}

std::vector<std::string> hd_settings() {
  std::vector<std::string> v;
  for (const HdSetting& h : hd_table()) v.push_back(h.name);
  return v;
}

std::pair<ImageSet, ImageSet> split_tail(const ImageSet& s, int64_t n) {
  if (n < 0 || n >= s.count) throw Error(fmt::format("cannot hold out {} of {} images", n, s.count));
  ImageSet head = s, tail = s;
  const int64_t keep = s.count - n, ppi = s.pixels_per_image();
  head.count = keep;
  head.pixels.resize(size_t(keep * ppi));
  head.labels.resize(size_t(keep));
  tail.count = n;
  tail.pixels.assign(s.pixels.begin() + keep * ppi, s.pixels.end());
  tail.labels.assign(s.labels.begin() + keep, s.labels.end());
  return {head, tail};
}

ScheduleSearchResult run_schedule_search(const ScheduleSearchConfig& cfg, std::ostream* progress) {
  check(cfg);
  const std::vector<Rung> plan = rung_plan(cfg.configs, cfg.eta, cfg.min_epochs, cfg.max_epochs);
  ScheduleSearchResult res;
  res.trials = sample_trials(cfg);

  const ImageSet all_train = first_images(load_fashion_mnist(cfg.data, true), cfg.max_train);
  if (cfg.val < 1 || cfg.val >= all_train.count)
    throw Error(fmt::format("--val {} must hold out at least one and fewer than all {} training images", cfg.val, all_train.count));
  const std::pair<ImageSet, ImageSet> split = split_tail(all_train, cfg.val);
  const ImageSet &train = split.first, &val = split.second;
  const ImageSet test = first_images(load_fashion_mnist(cfg.data, false), cfg.max_test);
  res.train_images = train.count;
  res.val_images = val.count;
  res.test_images = test.count;
  ClassifierConfig model;  // LeNet-5
  std::tie(model.input_mean, model.input_std) = pixel_mean_std(train);

  const auto t0 = std::chrono::steady_clock::now();
  auto rung_start = t0;
  std::map<size_t, std::vector<double>> accuracy;  // this rung's, by trial
  res.rungs = successive_halving(
      plan,
      [&](const std::vector<size_t>& ids, int64_t epochs) {
        rung_start = std::chrono::steady_clock::now();
        const std::vector<double> s = train_and_score(cfg, model, res.trials, ids, epochs, train, val);
        std::vector<double> loss, acc;
        for (size_t i = 0; i < ids.size(); ++i) {
          loss.push_back(s[2 * i]);
          acc.push_back(s[2 * i + 1]);
        }
        res.rung_accuracy.push_back(acc);
        return loss;
      },
      [&](const RungResult& r) {
        res.rung_seconds.push_back(seconds_since(rung_start));
        const size_t k = res.rung_seconds.size() - 1, best = promote(r.ids, r.scores, 1)[0];
        if (progress)
          *progress << fmt::format("rung {}/{}: {} configurations x {} epochs in {:.1f} s; best validation loss {:.4f}: {}\n",
                                   k + 1, plan.size(), r.ids.size(), r.epochs, res.rung_seconds.back(),
                                   r.scores[std::find(r.ids.begin(), r.ids.end(), best) - r.ids.begin()],
                                   trial_str(res.trials[best]));
      });
  res.search_seconds = seconds_since(t0);

  // The best trial of each role: from the deepest rung holding one, the best score there.
  auto best_where = [&](const std::function<bool(const Trial&)>& pred, TrialOutcome& out) {
    for (size_t k = res.rungs.size(); k-- > 0;) {
      const RungResult& r = res.rungs[k];
      std::vector<size_t> ids;
      std::vector<double> scores;
      for (size_t i = 0; i < r.ids.size(); ++i)
        if (pred(res.trials[r.ids[i]])) {
          ids.push_back(r.ids[i]);
          scores.push_back(r.scores[i]);
        }
      if (ids.empty()) continue;
      const size_t best = promote(ids, scores, 1)[0];
      const size_t at = size_t(std::find(r.ids.begin(), r.ids.end(), best) - r.ids.begin());
      out = {best, int64_t(k), r.scores[at], res.rung_accuracy[k][at]};
      return true;
    }
    return false;
  };
  struct Role {
    const char* name;
    std::function<bool(const Trial&)> pred;
  };
  const std::vector<Role> roles = {
      {"best", always},
      {"best_constant", [](const Trial& t) { return t.schedule == "constant"; }},
      {"best_hypergradient", [](const Trial& t) { return !t.hd.empty(); }},
  };
  for (const Role& role : roles) {
    FinalReport f{role.name, {}, 0, 0};
    if (best_where(role.pred, f.outcome)) res.report.push_back(f);
  }

  // The test set, once: each reported trial retrained for the full budget, a trial holding several
  // roles once (the same seed would train it to the same weights), the best first.
  const auto t1 = std::chrono::steady_clock::now();
  std::vector<size_t> ids;
  for (const FinalReport& f : res.report)
    if (std::find(ids.begin(), ids.end(), f.outcome.trial) == ids.end()) ids.push_back(f.outcome.trial);
  res.final_trainings = int64_t(ids.size());
  const std::vector<double> s = train_and_score(cfg, model, res.trials, ids, cfg.max_epochs, train, test, &res.best_step);
  for (size_t i = 0; i < res.report.size(); ++i) {
    const size_t at = size_t(std::find(ids.begin(), ids.end(), res.report[i].outcome.trial) - ids.begin());
    res.report[i].test_loss = s[2 * at];
    res.report[i].test_accuracy = s[2 * at + 1];
    if (progress)
      *progress << fmt::format("{}: {}: validation loss {:.4f} (rung {}), test accuracy {:.2f}%\n", res.report[i].role,
                               trial_str(res.trials[res.report[i].outcome.trial]), res.report[i].outcome.val_loss,
                               res.report[i].outcome.rung + 1, 100 * res.report[i].test_accuracy);
  }
  res.final_seconds = seconds_since(t1);
  return res;
}

}  // namespace metagrad
