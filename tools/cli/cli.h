// Shared pieces of the metagrad command line: the command table every command file registers
// into, flag validators, and small helpers for output files and threads.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "meta/learn/fewshot.h"
#include "meta/learn/maml.h"
#include "metagrad/executable.h"

namespace metagrad {

// The top-level commands. A command file adds subcommands to these and records, for each, the
// function that runs it once parsing has succeeded.
struct Cli {
  CLI::App& app;
  CLI::App* bench;  // metagrad bench WORKLOAD ...
  CLI::App* dump;   // metagrad dump WORKLOAD ...
  std::vector<std::pair<CLI::App*, std::function<int()>>> runners;

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

// --check-numerics: stop at the first kernel that writes a NaN or Inf, naming it.
void add_check_numerics_flag(CLI::App* cmd, CompileOptions& c);

// Sets the oneDNN/OpenMP thread count (n > 0); throws if this build has no OpenMP runtime.
void set_threads(int n);

// Writes `text` to `path`, or to stdout when path is empty or "-".
void write_output(const std::string& path, const std::string& text);

}  // namespace metagrad
