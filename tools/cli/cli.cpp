#include "tools/cli/cli.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <iostream>

#include "meta/dist/comm.h"
#include "meta/dist/data_parallel.h"
#include "metagrad/error.h"

namespace metagrad {

// libgomp reads OMP_NUM_THREADS once, when it loads, so setting the variable from main is too
// late; the runtime call is looked up dynamically because only libdnnl links libgomp.
void set_threads(int n) {
  using SetThreads = void (*)(int);
  if (auto f = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"))) f(n);
  else throw Error("--threads: this build's oneDNN has no OpenMP runtime to configure");
}

// CLI11's PositiveNumber/NonNegativeNumber report "not in range 0 to 1.79e308"; say it plainly.
CLI::Validator at_least(double lo, bool strict) {
  std::string want = strict ? fmt::format("a number > {}", lo) : fmt::format("a number >= {}", lo);
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(s, v) || (strict ? !(v > lo) : !(v >= lo)))
          return fmt::format("expected {}, got '{}'", want, s);
        return {};
      },
      lo != 0 ? fmt::format("{}-{}", strict ? "ABOVE" : "AT-LEAST", lo) : strict ? "POSITIVE" : "NON-NEGATIVE");
}
const CLI::Validator kPositive = at_least(0, true), kNonNegative = at_least(0, false);

CompileOptions CommonFlags::compile_options() const {
  CompileOptions c;
  c.check_numerics = check_numerics;
  c.memory_budget = loops.memory_budget;
  c.loop_checkpoint = loops.loop_checkpoint;
  c.loop_slots = loops.loop_slots;
  return c;
}

void CommonFlags::apply(DriverConfig& d) const {
  d.progress = progress();
  d.compile = compile_options();
  distribute(d);
}

void CommonFlags::distribute(DriverConfig& d) const {
  if (comm && comm->distributed()) join_data_parallel(*comm, d);
}

int CommonFlags::ranks() const { return comm ? comm->size() : 1; }

bool CommonFlags::writes_files() const { return !comm || comm->rank() == 0; }

size_t parse_bytes(const std::string& text) {
  static const std::vector<std::pair<std::string, double>> units = {
      {"", 1}, {"b", 1}, {"k", 1024.0}, {"kib", 1024.0}, {"m", 1048576.0}, {"mib", 1048576.0},
      {"g", 1073741824.0}, {"gib", 1073741824.0}};
  size_t end = 0;
  double v = -1;
  try {
    v = std::stod(text, &end);
  } catch (const std::exception&) {
    end = 0;
  }
  std::string unit = text.substr(std::min(end, text.size()));
  std::transform(unit.begin(), unit.end(), unit.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  for (const auto& [name, scale] : units)
    if (end > 0 && unit == name && v >= 0 && std::isfinite(v)) return size_t(std::llround(v * scale));
  throw CLI::ValidationError(fmt::format("expected bytes such as 1000, 64K, 512MiB or 1G, got '{}'", text));
}

void add_memory_flags(CLI::App* cmd, CompileOptions& o) {
  cmd->add_option_function<std::string>(
         "--memory-budget", [&o](const std::string& v) { o.memory_budget = parse_bytes(v); },
         "BYTES (K/M/G suffixes): the compiled plan's peak must fit; backward loops are checkpointed and values "
         "recomputed to fit, or compilation fails naming the smallest budget that would work")
      ->check(CLI::Validator(
          [](std::string& v) {
            try {
              parse_bytes(v);
            } catch (const CLI::ValidationError& e) {
              return std::string(e.what());
            }
            return std::string();
          },
          "BYTES"));
  using LC = CompileOptions::LoopCheckpoint;
  static const std::map<std::string, LC> policies = {
      {"auto", LC::automatic}, {"all", LC::store_all}, {"every-k", LC::every_k}, {"revolve", LC::revolve}};
  cmd->add_option_function<std::string>(
         "--loop-checkpoint", [&o](const std::string& v) { o.loop_checkpoint = policies.at(v); },
         "how backward loops get their forward carries: auto (every carry unless --memory-budget needs less), "
         "all, every-k (k = --loop-slots, default sqrt(length)), revolve (--loop-slots slots, default 2 sqrt(length))")
      ->check(CLI::IsMember({"auto", "all", "every-k", "revolve"}));
  cmd->add_option("--loop-slots", o.loop_slots, "every-k: the segment length; revolve: the slots (0: the default)")
      ->check(kNonNegative);
}

std::ostream* CommonFlags::progress() const {
  if (threads > 0) set_threads(threads);
  return quiet ? nullptr : &std::cerr;
}

nlohmann::json summary_json(const std::string& command, nlohmann::json config, nlohmann::json timing, nlohmann::json result) {
  return {{"command", command}, {"config", std::move(config)}, {"timing", std::move(timing)}, {"result", std::move(result)}};
}

nlohmann::json timing_json(const TrainResult& t, double eval_seconds) {
  return {{"iters", t.iters},           {"ms_per_iter", t.ms_per_iter}, {"ms_per_run", t.ms_per_run}, {"cpu_ms_per_iter", t.cpu_ms_per_iter},
          {"train_seconds", t.seconds}, {"run_seconds", t.run_seconds}, {"eval_seconds", eval_seconds},
          {"pass_seconds", t.compile.pass_seconds}};
}

namespace {
size_t planned_peak(const CompileStats& c) { return c.arena_bytes; }

nlohmann::json compile_json(const CompileStats& c) {
  nlohmann::json loops = nlohmann::json::array();
  for (const LoopReport& r : c.loops)
    loops.push_back({{"length", r.length}, {"policy", r.policy}, {"slots", r.slots}, {"recompute_factor", r.recompute_factor}});
  return {{"nodes_raw", c.nodes_raw},     {"nodes_optimized", c.nodes_optimized}, {"kernels", c.kernels},
          {"peak_bytes", c.arena_bytes},  {"naive_bytes", c.naive_bytes},         {"workspace_bytes", c.workspace_bytes},
          {"loop_storage_bytes", c.loop_storage_bytes}, {"planned_peak_bytes", planned_peak(c)},
          {"compile_seconds", c.compile_seconds}, {"loops", loops},
          {"remat", {{"values", c.remat.values}, {"nodes", c.remat.nodes}, {"extra_flops", c.remat.extra_flops}}}};
}
}  // namespace

nlohmann::json with_compile(nlohmann::json result, const CompileStats& step) {
  result["compile"] = compile_json(step);
  return result;
}

nlohmann::json bench_summary(const std::string& command, nlohmann::json config, nlohmann::json timing, nlohmann::json result,
                             const CompileStats& step) {
  return summary_json(command, std::move(config), std::move(timing), with_compile(std::move(result), step));
}

const CompileStats& larger_step(const CompileStats& a, const CompileStats& b) {
  if (a.kernels == 0) return b;
  return b.kernels > 0 && planned_peak(b) > planned_peak(a) ? b : a;
}

void write_summary(const CommonFlags& f, const nlohmann::json& summary) {
  nlohmann::json j = summary;
  j["distributed"] = {{"ranks", f.ranks()}};
  if (f.comm && f.comm->distributed()) {
    // This rank's counters; every rank makes the same calls. Per step only for one training run.
    const CommStats& s = f.comm->stats();
    nlohmann::json& d = j["distributed"];
    d["allreduce_calls"] = s.calls;
    d["allreduce_bytes"] = s.bytes;
    d["allreduce_seconds"] = s.seconds;
    const nlohmann::json* t = j.contains("timing") ? &j["timing"] : nullptr;
    const int64_t iters = t && t->contains("iters") ? (*t)["iters"].get<int64_t>() : 0;
    if (iters > 0) {
      const double ms = 1e3 * s.seconds / double(iters), step = (*t).value("ms_per_iter", 0.0);
      d["allreduce_calls_per_step"] = double(s.calls) / double(iters);
      d["allreduce_bytes_per_step"] = double(s.bytes) / double(iters);
      d["allreduce_ms_per_step"] = ms;
      std::cout << fmt::format("data-parallel: {} ranks; per step {:g} allreduce calls of {:.1f} KiB in all, {:.3f} ms "
                               "in them ({:.1f}% of the step, waiting for the slowest rank included)\n",
                               f.ranks(), double(s.calls) / double(iters), double(s.bytes) / double(iters) / 1024.0, ms,
                               step > 0 ? 100 * ms / step : 0.0);
    } else {
      std::cout << fmt::format("data-parallel: {} ranks; {} allreduce calls of {:.1f} KiB in all, {:.3f} s in them\n",
                               f.ranks(), s.calls, double(s.bytes) / 1024.0, s.seconds);
    }
  }
  if (!f.json_path.empty() && f.writes_files()) write_output(f.json_path, j.dump(2) + "\n");
}

void add_maml_flags(CLI::App* cmd, MamlConfig& m, bool with_seed) {
  cmd->add_option("--algo", m.algo, fmt::format("{}", fmt::join(sinusoid_algorithms(), ", ")))
      ->check(CLI::IsMember(sinusoid_algorithms()))
      ->capture_default_str();
  cmd->add_option("--shots", m.shots, "support points per task (K)")->check(kPositive)->capture_default_str();
  cmd->add_option("--query", m.query, "query points per task")->check(kPositive)->capture_default_str();
  cmd->add_option("--inner-steps", m.inner_steps, "SGD steps in the inner loop")->check(kNonNegative)->capture_default_str();
  cmd->add_option("--inner-lr", m.inner_lr, "inner SGD step size")->check(kPositive)->capture_default_str();
  cmd->add_option("--meta-batch", m.meta_batch, "tasks per meta-step")->check(kPositive)->capture_default_str();
  cmd->add_option("--meta-lr", m.meta_lr, "Adam learning rate of the meta-update")->check(kPositive)->capture_default_str();
  if (with_seed) cmd->add_option("--seed", m.seed, "seed of initialisation and task sampling")->capture_default_str();
  cmd->add_option_function<std::string>(
         "--inner-loop", [&m](const std::string& v) { m.inner_loop = v == "scan"; },
         "unrolled (default): every inner step in the graph; scan: the inner steps as one loop node")
      ->check(CLI::IsMember({"unrolled", "scan"}));
}

void add_fewshot_flags(CLI::App* cmd, FewShotConfig& m, const std::vector<std::string>& algos, bool with_seed) {
  cmd->add_option("--algo", m.algo, fmt::format("{}", fmt::join(algos, ", ")))
      ->check(CLI::IsMember(algos))
      ->capture_default_str();
  cmd->add_option("--ways", m.ways, "classes per task (N)")->check(CLI::Range(int64_t(2), int64_t(1000)))->capture_default_str();
  cmd->add_option("--shots", m.shots, "support images per class (K)")->check(kPositive)->capture_default_str();
  cmd->add_option("--query", m.query, "query images per class")->check(kPositive)->capture_default_str();
  cmd->add_option("--inner-steps", m.inner_steps, "SGD steps in the inner loop")->check(kNonNegative)->capture_default_str();
  cmd->add_option("--inner-lr", m.inner_lr, "inner SGD step size (Meta-SGD: initial learned rates)")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--meta-batch", m.meta_batch, "tasks per meta-step")->check(kPositive)->capture_default_str();
  cmd->add_option("--meta-lr", m.meta_lr, "Adam learning rate of the meta-update")->check(kPositive)->capture_default_str();
  cmd->add_option("--filters", m.net.filters, "convolution filters per block")->check(kPositive)->capture_default_str();
  if (with_seed) cmd->add_option("--seed", m.net.seed, "seed of initialisation and episode sampling")->capture_default_str();
  cmd->add_option_function<std::string>(
         "--inner-loop", [&m](const std::string& v) { m.inner_loop = v == "scan"; },
         "unrolled (default): every inner step in the graph; scan: the inner steps as one loop node")
      ->check(CLI::IsMember({"unrolled", "scan"}));
}

void add_opt_level_flag(CLI::App* cmd, int& level) {
  cmd->add_option("--opt-level", level, "0: no graph passes, 1: default pipeline")->check(CLI::Range(0, 1))->capture_default_str();
}

void add_fewshot_bench_flags(Cli& cli, CLI::App* cmd, FewShotConfig& m, const std::vector<std::string>& algos,
                             CommonFlags& common, DriverConfig& run) {
  add_fewshot_flags(cmd, m, algos, false);
  add_common_flags(cli, cmd, common, &m.net.seed, "seed of initialisation and episode sampling");
  add_opt_level_flag(cmd, run.opt_level);
  cli.data_parallel.push_back(cmd);
}

void write_output(const std::string& path, const std::string& text) {
  if (path.empty() || path == "-") {
    std::cout << text;
    return;
  }
  std::ofstream out(path);
  if (!out) throw Error(fmt::format("cannot write {}", path));
  out << text;
  if (!out.flush()) throw Error(fmt::format("error writing {}", path));
}

}  // namespace metagrad
