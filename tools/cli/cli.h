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
  std::vector<CLI::App*> data_parallel = {};  // the commands that split their work over the ranks

  void on_parsed(CLI::App* cmd, std::function<int()> run) { runners.emplace_back(cmd, std::move(run)); }
};

// One registration function per command file.
void register_sinusoid_commands(Cli& cli);
void register_inspect_command(Cli& cli);
void register_conv_commands(Cli& cli);
void register_fashion_commands(Cli& cli);
void register_omniglot_commands(Cli& cli);
void register_transfer_commands(Cli& cli);
void register_multitask_commands(Cli& cli);

// Numeric flag checks with plain messages ("expected a number > 0, got '-1'").
CLI::Validator at_least(double lo, bool strict);
extern const CLI::Validator kPositive, kNonNegative;

// MAML flags shared by the sinusoid commands (and any MAML-style workload).
void add_maml_flags(CLI::App* cmd, MamlConfig& m);

// Few-shot flags shared by conv-maml and omniglot: --algo (one of `algos`), --ways, --shots, ...
void add_fewshot_flags(CLI::App* cmd, FewShotConfig& m, const std::vector<std::string>& algos);

// Sets the oneDNN/OpenMP thread count (n > 0); throws if this build has no OpenMP runtime.
void set_threads(int n);

// Data-parallel runs (meta/dist/): the group a bench command trains on (null in one process),
// whether this process writes files (rank 0), and the allreduce cost per training step from this
// rank's counters, printed and as JSON.
Collective* data_parallel(Comm* comm);
bool writes_files(const Collective* c);
std::string allreduce_summary(const Comm* comm, int64_t iters, double ms_per_iter);
nlohmann::json dist_json(const Comm* comm, int64_t iters, double allreduce_floats);

// Writes `text` to `path`, or to stdout when path is empty or "-".
void write_output(const std::string& path, const std::string& text);

}  // namespace metagrad
