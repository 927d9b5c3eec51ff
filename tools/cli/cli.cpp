#include "tools/cli/cli.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <dlfcn.h>

#include <fstream>
#include <iostream>

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
      strict ? "POSITIVE" : "NON-NEGATIVE");
}
const CLI::Validator kPositive = at_least(0, true), kNonNegative = at_least(0, false);

void add_maml_flags(CLI::App* cmd, MamlConfig& m) {
  cmd->add_option("--algo", m.algo, fmt::format("{}", fmt::join(sinusoid_algorithms(), ", ")))
      ->check(CLI::IsMember(sinusoid_algorithms()))
      ->capture_default_str();
  cmd->add_option("--shots", m.shots, "support points per task (K)")->check(kPositive)->capture_default_str();
  cmd->add_option("--query", m.query, "query points per task")->check(kPositive)->capture_default_str();
  cmd->add_option("--inner-steps", m.inner_steps, "SGD steps in the inner loop")->check(kNonNegative)->capture_default_str();
  cmd->add_option("--inner-lr", m.inner_lr, "inner SGD step size")->check(kPositive)->capture_default_str();
  cmd->add_option("--meta-batch", m.meta_batch, "tasks per meta-step")->check(kPositive)->capture_default_str();
  cmd->add_option("--meta-lr", m.meta_lr, "Adam learning rate of the meta-update")->check(kPositive)->capture_default_str();
  cmd->add_option("--seed", m.seed, "seed of initialisation and task sampling")->capture_default_str();
  cmd->add_option_function<std::string>(
         "--inner-loop", [&m](const std::string& v) { m.inner_loop = v == "scan"; },
         "unrolled (default): every inner step in the graph; scan: the inner steps as one loop node")
      ->check(CLI::IsMember({"unrolled", "scan"}));
}

void add_fewshot_flags(CLI::App* cmd, FewShotConfig& m, const std::vector<std::string>& algos) {
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
  cmd->add_option("--seed", m.net.seed, "seed of initialisation and episode sampling")->capture_default_str();
  cmd->add_option_function<std::string>(
         "--inner-loop", [&m](const std::string& v) { m.inner_loop = v == "scan"; },
         "unrolled (default): every inner step in the graph; scan: the inner steps as one loop node")
      ->check(CLI::IsMember({"unrolled", "scan"}));
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
