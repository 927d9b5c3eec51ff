// Shared pieces of the metagrad command line: the command table every command file registers
// into, flag validators, and small helpers for output files and threads.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "meta/learn/fewshot.h"
#include "meta/learn/maml.h"
#include "metagrad/driver.h"

namespace metagrad {

class Comm;
class Collective;

// The top-level commands. A command file adds subcommands to these and records, for each, the
// function that runs it once parsing has succeeded.
struct Cli {
  CLI::App& app;
  CLI::App* bench;  // metagrad bench WORKLOAD ...
  CLI::App* dump;   // metagrad dump WORKLOAD ...
  std::vector<std::pair<CLI::App*, std::function<int()>>> runners;
  Comm* comm;  // this process's group (meta/dist/comm.h): one process unless started by mpirun
  // The commands that split their work over the ranks (those training through the shared driver);
  // under mpirun every other command is refused with one line.
  std::vector<CLI::App*> data_parallel = {};

  void on_parsed(CLI::App* cmd, std::function<int()> run) { runners.emplace_back(cmd, std::move(run)); }
};

// One registration function per command file.
void register_sinusoid_commands(Cli& cli);
void register_inspect_command(Cli& cli);
void register_conv_commands(Cli& cli);
void register_fashion_commands(Cli& cli);
void register_omniglot_commands(Cli& cli);
void register_transfer_commands(Cli& cli);
void register_search_commands(Cli& cli);
void register_multitask_commands(Cli& cli);

// Numeric flag checks with plain messages ("expected a number > 0, got '-1'").
CLI::Validator at_least(double lo, bool strict);
extern const CLI::Validator kPositive, kNonNegative;

// "1000", "64K", "1.5MiB", "1G": bytes, the suffixes K/M/G (powers of 1024, "KiB" alike); throws
// CLI::ValidationError otherwise.
size_t parse_bytes(const std::string& text);
// --memory-budget BYTES, --loop-checkpoint auto|all|every-k|revolve and --loop-slots N into `o`.
void add_memory_flags(CLI::App* cmd, CompileOptions& o);

// The flags every bench command takes, declared once: --threads, --json, --quiet and (given a
// target) --seed; and the process group the command runs in.
struct CommonFlags {
  int threads = 0;
  std::string json_path;
  bool quiet = false;
  bool check_numerics = false;  // --check-numerics: CompileOptions::check_numerics of the driver
  Comm* comm = nullptr;         // Cli::comm, set by add_common_flags
  CompileOptions loops;         // --memory-budget, --loop-checkpoint, --loop-slots (those fields only)
  // Applies --threads; the progress stream (null with --quiet).
  std::ostream* progress() const;
  // The compile options these flags ask for (--check-numerics), for every executable a command builds.
  CompileOptions compile_options() const;
  // Applies --threads, sets the progress stream and compile options of a benchmark's driver
  // configuration, and distribute(d).
  void apply(DriverConfig& d) const;
  // The one place every bench command's training joins the MPI job it was started in (shard,
  // gradient allreduce, parameter broadcast, metric averaging, gathered evaluation:
  // join_data_parallel); nothing in one process.
  void distribute(DriverConfig& d) const;
  int ranks() const;
  bool writes_files() const;  // rank 0 alone writes JSON, tables, plots and checkpoints
};
template <class Seed>
void add_common_flags(const Cli& cli, CLI::App* cmd, CommonFlags& f, Seed* seed, const std::string& seed_help) {
  f.comm = cli.comm;
  cmd->add_option("--threads", f.threads, "oneDNN/OpenMP threads (default: all cores)")->check(at_least(0, true));
  cmd->add_option("--json", f.json_path, "write a JSON summary to this file (command, config, timing, result)");
  cmd->add_flag("--quiet", f.quiet, "no progress output");
  cmd->add_flag("--check-numerics", f.check_numerics,
                "stop at the first kernel that writes a NaN or Inf and name it (slower; for debugging divergence)");
  add_memory_flags(cmd, f.loops);
  if (seed) cmd->add_option("--seed", *seed, seed_help)->capture_default_str();
}
inline void add_common_flags(const Cli& cli, CLI::App* cmd, CommonFlags& f) { add_common_flags<int>(cli, cmd, f, nullptr, ""); }

// The JSON a command writes with --json: {"command", "config", "timing", "result"} (write_summary
// adds "distributed"). Bench commands write it through bench_summary; eval-episodes, which
// compiles no training step, directly.
nlohmann::json summary_json(const std::string& command, nlohmann::json config, nlohmann::json timing, nlohmann::json result);
// `result` with the compiled training step's figures under "compile" (nodes_raw, kernels,
// peak_bytes, planned_peak_bytes, compile_seconds, loops, remat, ...): one key set, in every bench
// command's result and in each run of a table of runs.
nlohmann::json with_compile(nlohmann::json result, const CompileStats& step);
// The JSON every bench command writes: summary_json with_compile(result, step).
nlohmann::json bench_summary(const std::string& command, nlohmann::json config, nlohmann::json timing, nlohmann::json result,
                             const CompileStats& step);
// Of several trainings, the step a bench reports: the one with the larger planned peak (the arena,
// loop regions included), `a` on a tie; a step never compiled (no kernels) loses to any other.
const CompileStats& larger_step(const CompileStats& a, const CompileStats& b);
// The driver's timing ("timing" of summary_json, plus eval seconds).
nlohmann::json timing_json(const TrainResult& t, double eval_seconds);
// Writes summary_json to --json, if given, on rank 0, with "distributed": {"ranks", and in a
// data-parallel run the allreduce calls, bytes and seconds in all and per training step}; in a
// data-parallel run also prints that cost in one line.
void write_summary(const CommonFlags& f, const nlohmann::json& summary);

// MAML flags shared by the sinusoid commands (and any MAML-style workload).
void add_maml_flags(CLI::App* cmd, MamlConfig& m, bool with_seed = true);

// Few-shot flags shared by conv-maml and omniglot: --algo (one of `algos`), --ways, --shots, ...
void add_fewshot_flags(CLI::App* cmd, FewShotConfig& m, const std::vector<std::string>& algos, bool with_seed = true);

// --opt-level 0|1 into `level`: the graph passes a bench compiles its steps with.
void add_opt_level_flag(CLI::App* cmd, int& level);

// Everything a few-shot bench command (conv-maml, omniglot, fewshot) shares: the few-shot flags,
// the common flags with the episode seed, --opt-level into `run`, and running data-parallel.
void add_fewshot_bench_flags(Cli& cli, CLI::App* cmd, FewShotConfig& m, const std::vector<std::string>& algos,
                             CommonFlags& common, DriverConfig& run);

// Sets the oneDNN/OpenMP thread count (n > 0); throws if this build has no OpenMP runtime.
void set_threads(int n);

// Writes `text` to `path`, or to stdout when path is empty or "-".
void write_output(const std::string& path, const std::string& text);

}  // namespace metagrad
