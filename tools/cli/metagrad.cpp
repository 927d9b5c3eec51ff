// The metagrad command line: benchmarks, inspection and graph dumps of the built-in workloads.
// Each command lives in its own file and registers itself into the shared command table.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>

#include "tools/cli/cli.h"

int main(int argc, char** argv) {
  using namespace metagrad;
  CLI::App app{"metagrad: a graph autodiff engine for bilevel meta-learning"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "show help for every command");
  CLI::App* bench = app.add_subcommand("bench", "train and evaluate a built-in workload");
  bench->require_subcommand(1);
  CLI::App* dump = app.add_subcommand("dump", "write the step graph of a built-in workload");
  dump->require_subcommand(1);

  Cli cli{app, bench, dump, {}};
  register_sinusoid_commands(cli);
  register_conv_commands(cli);
  register_fashion_commands(cli);
  register_omniglot_commands(cli);
  register_multitask_commands(cli);
  register_transfer_commands(cli);
  register_inspect_command(cli);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    std::fprintf(stderr, "metagrad: %s (see --help)\n", msg.c_str());
    return 2;
  }
  try {
    for (auto& [cmd, run] : cli.runners)
      if (cmd->parsed()) return run();
  } catch (const std::exception& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    std::fprintf(stderr, "metagrad: error: %s\n", msg.c_str());
    return 1;
  }
  return 0;
}
