// `metagrad bench fashion-mnist` and `metagrad bench optimizer-table`: supervised training on
// Fashion-MNIST with the graph optimizers and schedules.
#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "bench/drivers/learned_schedule.h"
#include "bench/drivers/schedule_search.h"
#include "meta/train/supervised.h"
#include "metagrad/error.h"
#include "tools/cli/cli.h"

namespace metagrad {
namespace {

// Whether a run's output reports how often the HD guard cut the rate.
bool reports_guard_cuts(const OptimizerConfig& opt) { return is_hypergradient(opt.name) && opt.hd.guard > 0; }

struct TrainFlags {
  SupervisedConfig cfg;
  std::string data = kFashionMnistDir, schedule = "constant";
  double lr = -1;
  int64_t max_train = 0;
  CommonFlags common;
};

void add_train_flags(const Cli& cli, CLI::App* c, TrainFlags& f) {
  c->add_option("--model", f.cfg.model.model, "lenet5 or mlp")->check(CLI::IsMember(classifier_models()))->capture_default_str();
  c->add_option("--schedule", f.schedule,
                "learning-rate schedule KIND[:key=value,...]: constant, step:every=N,gamma=G, exp:rate=R,steps=N[,staircase], "
                "cosine:total=N[,floor=F], plateau:factor=F,patience=P; any takes warmup=N (steps)")
      ->capture_default_str();
  c->add_option("--epochs", f.cfg.epochs, "passes over the training set")->check(kPositive)->capture_default_str();
  c->add_option("--batch", f.cfg.batch, "minibatch size")->check(kPositive)->capture_default_str();
  c->add_option("--data", f.data, "folder with the Fashion-MNIST IDX files")->capture_default_str();
  c->add_option("--max-train", f.max_train, "use only the first N training images (0: all)")->check(kNonNegative);
  c->add_option("--weight-decay", f.cfg.opt.weight_decay, "L2 weight decay (decoupled for adamw)")->check(kNonNegative);
  c->add_option("--hyper-lr", f.cfg.opt.hd.hyper_lr,
                "HD optimizers: hypergradient step beta (default: additive 1e-3 SGD family, 1e-5 Adam; multiplicative 0.02)")
      ->check(kNonNegative);
  c->add_option("--hd-horizon", f.cfg.opt.hd.horizon,
                "HD optimizers: discount mu of the hypergradient's horizon (0: the last step, as Baydin et al.; 1: every "
                "past step, through Hessian-vector products)")
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--hd-guard", f.cfg.opt.hd.guard,
                "HD optimizers: on a step whose loss lies more than this many mean absolute deviations above its "
                "running mean, undo the previous step and cut the rate to a quarter (0: off)")
      ->check(kNonNegative);
  c->add_option("--hd-max-rise", f.cfg.opt.hd.max_rise,
                "HD optimizers: the rate rises by at most this fraction per step (0: no limit)")
      ->check(kNonNegative);
  c->add_flag("--hd-multiplicative", f.cfg.opt.hd.multiplicative,
              "HD optimizers: lr *= exp(beta*cos(g, previous direction)) rather than lr += beta*g.(previous direction)");
  add_opt_level_flag(c, f.cfg.opt_level);
  add_common_flags(cli, c, f.common, &f.cfg.seed, "seed of initialisation and data order");
}

struct Data {
  ImageSet train, test;
};

Data load_data(const TrainFlags& f) {
  return {first_images(load_fashion_mnist(f.data, true), f.max_train), load_fashion_mnist(f.data, false)};
}

void standardise_inputs(ClassifierConfig& model, const ImageSet& train) {
  std::tie(model.input_mean, model.input_std) = pixel_mean_std(train);
}

nlohmann::json config_json(const SupervisedConfig& cfg) {
  return {{"model", cfg.model.model}, {"optimizer", cfg.opt.name}, {"lr", cfg.opt.lr}, {"schedule", schedule_str(cfg.schedule)},
          {"batch", cfg.batch},       {"epochs", cfg.epochs},      {"seed", cfg.seed}};
}

nlohmann::json timing_json(const SupervisedResult& r) {
  return {{"iters", r.iters},
          {"ms_per_iter", r.ms_per_iter},
          {"ms_per_run", r.ms_per_run},
          {"cpu_ms_per_iter", r.cpu_ms_per_iter},
          {"train_seconds", r.train_seconds},
          {"seconds_per_epoch", r.epochs.empty() ? 0.0 : r.train_seconds / double(r.epochs.size())}};
}

nlohmann::json result_json(const SupervisedResult& r) {
  nlohmann::json epochs = nlohmann::json::array();
  for (size_t i = 0; i < r.epochs.size(); ++i) {
    const EpochRecord& e = r.epochs[i];
    epochs.push_back({{"epoch", i + 1}, {"train_loss", e.train_loss}, {"test_loss", e.test_loss},
                      {"test_accuracy", e.test_accuracy}, {"seconds", e.seconds}, {"lr", e.lr}});
  }
  return {{"parameters", r.parameters},
          {"best_test_accuracy", r.best_accuracy},
          {"epochs_to_85", r.epochs_to_85},
          {"epochs", epochs},
          {"hd_guard_cuts", r.hd_guard_cuts},
          {"loss_curve", r.loss_curve},
          {"curve_window", r.curve_window}};
}

int run_fashion(TrainFlags& f) {
  std::ostream* progress = f.common.progress();
  f.cfg.compile = f.common.compile_options();
  f.common.distribute(f.cfg.driver);
  f.cfg.schedule = parse_schedule(f.schedule);
  f.cfg.opt.lr = f.lr > 0 ? f.lr : tuned_lr(f.cfg.opt.name);
  Data d = load_data(f);
  standardise_inputs(f.cfg.model, d.train);
  std::cout << fmt::format("Fashion-MNIST: {} training / {} test images; {} with {} lr={} schedule={} batch={} epochs={}\n",
                           d.train.count, d.test.count, f.cfg.model.model, f.cfg.opt.name, f.cfg.opt.lr,
                           schedule_str(f.cfg.schedule), f.cfg.batch, f.cfg.epochs);
  SupervisedResult r = train_classifier(f.cfg, d.train, d.test, progress);
  for (size_t i = 0; i < r.epochs.size(); ++i)
    std::cout << fmt::format("epoch {}: train loss {:.4f}, test loss {:.4f}, test accuracy {:.4f}, {:.1f} s, lr {:.3g}\n",
                             i + 1, r.epochs[i].train_loss, r.epochs[i].test_loss, r.epochs[i].test_accuracy,
                             r.epochs[i].seconds, r.epochs[i].lr);
  std::cout << fmt::format("best test accuracy {:.4f}; {:.2f} s per epoch; {} parameters\n", r.best_accuracy,
                           r.train_seconds / double(std::max<size_t>(r.epochs.size(), 1)), r.parameters);
  if (reports_guard_cuts(f.cfg.opt))
    std::cout << fmt::format("the HD guard cut the rate on {} steps\n", r.hd_guard_cuts);
  write_summary(f.common, bench_summary("bench fashion-mnist", config_json(f.cfg), timing_json(r), result_json(r), r.compile));
  return 0;
}

struct TableFlags {
  TrainFlags train;
  std::string out = "optimizer-table.md", plot = "optimizer-table.svg";
  std::vector<std::string> optimizers = optimizer_names();
  bool hd_sweep = true;
};

struct Row {
  std::string name;
  SupervisedConfig cfg;
  SupervisedResult res;
  std::string error;
};

void write_plot(const std::string& path, const std::vector<Row>& rows) {
  const int64_t every = rows.front().res.curve_window;
  const std::string dat = path + ".dat", gp = path + ".gp";
  {
    std::ofstream d(dat);
    for (const Row& r : rows) {
      d << "\"" << r.name << "\"\n";
      for (size_t i = 0; i < r.res.loss_curve.size(); ++i) d << (i + 1) * every << " " << r.res.loss_curve[i] << "\n";
      d << "\n\n";
    }
    if (!d.flush()) throw Error(fmt::format("cannot write {}", dat));
  }
  const bool svg = path.size() > 4 && path.substr(path.size() - 4) == ".svg";
  std::ofstream s(gp);
  s << (svg ? "set terminal svg size 1000,640 dynamic\n" : "set terminal pngcairo size 1000,640\n");
  s << "set output '" << path << "'\nset xlabel 'training step'\nset ylabel 'training loss (mean over " << every
    << " steps)'\nset logscale y\nset key outside right\nset grid\n";
  s << "plot for [i=0:" << rows.size() - 1 << "] '" << dat << "' index i using 1:2 with lines title columnheader(1)\n";
  if (!s.flush()) throw Error(fmt::format("cannot write {}", gp));
  const std::string cmd = fmt::format("gnuplot '{}'", gp);
  if (std::system(cmd.c_str()) != 0)
    throw Error(fmt::format("gnuplot failed on {} (is gnuplot installed? tools/install-deps.sh installs it)", gp));
}

int run_table(TableFlags& t) {
  TrainFlags& f = t.train;
  std::ostream* progress = f.common.progress();
  f.cfg.compile = f.common.compile_options();
  f.common.distribute(f.cfg.driver);  // before the rows copy f.cfg
  f.cfg.schedule = parse_schedule(f.schedule);
  for (const std::string& o : t.optimizers)
    if (std::find(optimizer_names().begin(), optimizer_names().end(), o) == optimizer_names().end())
      throw Error(fmt::format("--optimizers: unknown optimizer '{}'", o));
  Data d = load_data(f);
  standardise_inputs(f.cfg.model, d.train);
  std::vector<Row> rows;
  for (const std::string& o : t.optimizers) {
    Row r{o, f.cfg, {}, {}};
    r.cfg.opt.name = o;
    r.cfg.opt.lr = tuned_lr(o);
    if (is_hypergradient(o)) r.cfg.schedule = ScheduleSpec{};
    rows.push_back(r);
    if (t.hd_sweep && is_hypergradient(o))
      for (double scale : {0.1, 10.0}) {
        Row s = r;
        s.name = fmt::format("{} (lr0 x{})", o, scale);
        s.cfg.opt.lr = r.cfg.opt.lr * scale;
        rows.push_back(s);
      }
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    Row& r = rows[i];
    r.cfg.label = fmt::format("[{}/{}] {}", i + 1, rows.size(), r.name);
    try {
      r.res = train_classifier(r.cfg, d.train, d.test, progress);
    } catch (const RuntimeError& e) {  // a diverged run is a row of the table, not the end of it
      r.error = e.what();
      std::cerr << r.name << ": " << r.error << "\n";
    }
  }
  std::string md = fmt::format("# Optimizers on Fashion-MNIST ({}, {} epochs, batch {}, seed {}, {} training images)\n\n",
                               f.cfg.model.model, f.cfg.epochs, f.cfg.batch, f.cfg.seed, d.train.count);
  md += "| optimizer | learning rate | final train loss | best test accuracy | epochs to 85% | seconds | final lr |\n";
  md += "| --- | --- | --- | --- | --- | --- | --- |\n";
  nlohmann::json j = nlohmann::json::array();
  double seconds = 0;
  CompileStats largest;
  for (const Row& r : rows) {
    seconds += r.res.train_seconds;
    if (!r.error.empty()) {
      md += fmt::format("| {} | {:.3g} | diverged | - | - | - | - |\n", r.name, r.cfg.opt.lr);
      j.push_back({{"name", r.name}, {"lr", r.cfg.opt.lr}, {"error", r.error}});
      continue;
    }
    const EpochRecord& last = r.res.epochs.back();
    const std::string cuts = reports_guard_cuts(r.cfg.opt) ? fmt::format(" ({} guard cuts)", r.res.hd_guard_cuts) : "";
    md += fmt::format("| {} | {:.3g} | {:.4f} | {:.4f} | {} | {:.1f} | {:.3g}{} |\n", r.name, r.cfg.opt.lr, last.train_loss,
                      r.res.best_accuracy, r.res.epochs_to_85 > 0 ? std::to_string(r.res.epochs_to_85) : "-",
                      r.res.train_seconds, last.lr, cuts);
    j.push_back({{"name", r.name}, {"config", config_json(r.cfg)}, {"timing", timing_json(r.res)},
                 {"result", with_compile(result_json(r.res), r.res.compile)}});
    largest = larger_step(largest, r.res.compile);
  }
  if (f.common.writes_files()) write_output(t.out, md);
  if (t.out != "-" && !t.out.empty()) std::cout << md;
  if (!t.plot.empty() && t.plot != "none" && f.common.writes_files()) {
    std::vector<Row> ok;
    for (const Row& r : rows)
      if (r.error.empty()) ok.push_back(r);
    if (!ok.empty()) write_plot(t.plot, ok);
    std::cout << "loss curves: " << t.plot << "\n";
  }
  nlohmann::json config = config_json(f.cfg);
  config["optimizers"] = t.optimizers;
  config["hd_sweep"] = t.hd_sweep;
  write_summary(f.common, bench_summary("bench optimizer-table", config, {{"train_seconds", seconds}}, {{"rows", j}}, largest));
  return 0;
}

struct ScheduleFlags {
  LearnedScheduleConfig cfg;
  std::string data = kFashionMnistDir;
  CommonFlags common;
};

int run_learned_schedule(ScheduleFlags& f) {
  f.common.apply(f.cfg.run);
  auto [train, val] = split_tail(load_fashion_mnist(f.data, true), 10000);
  ImageSet test = load_fashion_mnist(f.data, false);
  standardise_inputs(f.cfg.model, train);
  const LearnedScheduleConfig& c = f.cfg;
  std::cout << fmt::format("learning a {}-step SGD schedule for an MLP {}-{}-{}-10 on Fashion-MNIST (batch {}, validation "
                           "batch {}, {} meta-iterations; {} evaluation unrolls per schedule)\n",
                           c.unroll, c.model.image * c.model.image, c.model.hidden, c.model.hidden / 2, c.batch,
                           c.val_batch, c.run.iters, c.eval_unrolls);
  LearnedScheduleResult r = learn_schedule(c, train, val, test);
  std::cout << "constant rates (validation loss after the unroll):";
  for (size_t i = 0; i < c.grid.size(); ++i) std::cout << fmt::format(" {}: {:.4f}", c.grid[i], r.grid_val_loss[i]);
  std::cout << "\n";
  std::string sched;
  for (double v : r.schedule) sched += fmt::format(" {:.3f}", v);
  std::cout << fmt::format("learned schedule:{}\n", sched);
  std::cout << fmt::format("best constant lr {}: validation loss {:.4f} ± {:.4f}, test loss {:.4f}\n", r.best_constant_lr,
                           r.best_constant.val_loss, r.best_constant.val_ci95, r.best_constant.test_loss);
  std::cout << fmt::format("learned schedule:    validation loss {:.4f} ± {:.4f}, test loss {:.4f}  ({:.1f} s)\n",
                           r.learned.val_loss, r.learned.val_ci95, r.learned.test_loss, r.seconds);
  nlohmann::json config{{"unroll", c.unroll}, {"batch", c.batch}, {"val_batch", c.val_batch}, {"meta_iters", c.run.iters},
                        {"meta_lr", c.meta_lr}, {"eval_unrolls", c.eval_unrolls}, {"seed", c.seed}, {"grid", c.grid}};
  nlohmann::json timing = timing_json(r.train, 0.0);
  timing["seconds"] = r.seconds;
  nlohmann::json result{{"grid_val_loss", r.grid_val_loss}, {"best_constant_lr", r.best_constant_lr},
                        {"best_constant_val_loss", r.best_constant.val_loss}, {"best_constant_val_ci95", r.best_constant.val_ci95},
                        {"best_constant_test_loss", r.best_constant.test_loss}, {"learned_schedule", r.schedule},
                        {"learned_val_loss", r.learned.val_loss}, {"learned_val_ci95", r.learned.val_ci95},
                        {"learned_test_loss", r.learned.test_loss}, {"meta_loss_curve", r.meta_loss_curve},
                        {"working_bytes", r.train.working_bytes}};
  write_summary(f.common, bench_summary("bench learned-schedule", config, timing, result, r.train.compile));
  return 0;
}

}  // namespace

void register_fashion_commands(Cli& cli) {
  auto fp = std::make_shared<TrainFlags>();
  CLI::App* b = cli.bench->add_subcommand("fashion-mnist", "train LeNet-5 or an MLP on Fashion-MNIST");
  add_train_flags(cli, b, *fp);
  cli.data_parallel.push_back(b);
  b->add_option("--optimizer", fp->cfg.opt.name, "optimizer")->check(CLI::IsMember(optimizer_names()))->capture_default_str();
  b->add_option("--lr", fp->lr, "learning rate (default: a tuned value per optimizer)")->check(kPositive);
  cli.on_parsed(b, [fp] { return run_fashion(*fp); });

  auto tp = std::make_shared<TableFlags>();
  tp->train.cfg.epochs = 3;
  CLI::App* t = cli.bench->add_subcommand("optimizer-table", "every optimizer with the same model, budget and seed");
  add_train_flags(cli, t, tp->train);
  cli.data_parallel.push_back(t);
  t->add_option("--optimizers", tp->optimizers, "optimizers to run (default: all)")->delimiter(',');
  t->add_option("--no-hd-sweep", [tp](const CLI::results_t&) { tp->hd_sweep = false; return true; },
                "skip the runs of each HD optimizer from 10x too small and 10x too large learning rates")
      ->expected(0);
  t->add_option("-o,--output", tp->out, "Markdown table file ('-': stdout only)")->capture_default_str();
  t->add_option("--plot", tp->plot, "loss-curve plot (.svg or .png, via gnuplot; 'none' to skip)")->capture_default_str();
  cli.on_parsed(t, [tp] { return run_table(*tp); });

  auto sp = std::make_shared<ScheduleFlags>();
  ScheduleFlags& sf = *sp;
  CLI::App* l = cli.bench->add_subcommand(
      "learned-schedule", "learn a per-step SGD learning-rate schedule through unrolled training (second order)");
  l->add_option("--unroll", sf.cfg.unroll, "SGD steps differentiated through")->check(kPositive)->capture_default_str();
  l->add_option_function<std::string>(
       "--inner-loop", [&sf](const std::string& v) { sf.cfg.inner_loop = v == "scan"; },
       "unrolled (default): every SGD step in the graph; scan: the steps as one loop node")
      ->check(CLI::IsMember({"unrolled", "scan"}));
  l->add_option("--batch", sf.cfg.batch, "training minibatch per step")->check(kPositive)->capture_default_str();
  l->add_option("--val-batch", sf.cfg.val_batch, "validation images per unroll")->check(kPositive)->capture_default_str();
  l->add_option("--meta-iters", sf.cfg.run.iters, "meta-training iterations")->check(kNonNegative)->capture_default_str();
  l->add_option("--meta-lr", sf.cfg.meta_lr, "Adam step on the log learning rates")->check(kPositive)->capture_default_str();
  l->add_option("--eval-unrolls", sf.cfg.eval_unrolls, "fresh unrolls scoring each schedule")->check(kPositive)->capture_default_str();
  l->add_option("--hidden", sf.cfg.model.hidden, "MLP width")->check(kPositive)->capture_default_str();
  l->add_option("--data", sf.data, "folder with the Fashion-MNIST IDX files")->capture_default_str();
  add_common_flags(cli, l, sf.common, &sf.cfg.seed, "seed of initialisation and batches");
  cli.on_parsed(l, [sp] {
    sp->cfg.model.seed = sp->cfg.seed;
    return run_learned_schedule(*sp);
  });
}

}  // namespace metagrad
