// The metagrad command line: benchmarks, inspection and graph dumps of the built-in workloads.
// Each command lives in its own file and registers itself into the shared command table.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include "meta/dist/comm.h"
#include "tools/cli/cli.h"

int main(int argc, char** argv) {
  using namespace metagrad;
  // Under `mpirun -np N` every process runs this same command as one rank of a data-parallel
  // run; rank 0 alone prints and writes files, every rank reports its own errors.
  std::unique_ptr<Comm> comm;
  try {
    comm = connect();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "metagrad: error: %s\n", e.what());
    return 1;
  }
  const std::string who = comm->distributed() ? fmt::format("metagrad (rank {} of {})", comm->rank(), comm->size()) : "metagrad";
  if (comm->rank() != 0) {
    if (!std::freopen("/dev/null", "w", stdout)) return 1;
    std::cerr.rdbuf(nullptr);  // progress bars; errors go through stderr itself
  }
  // Every rank parses the same arguments, so a bad flag or --help ends every rank the same way.
  auto finish = [&](int rc) {
    comm->finish();
    return rc;
  };

  CLI::App app{"metagrad: a graph autodiff engine for bilevel meta-learning"};
  app.footer("Data-parallel training: mpirun -np N metagrad bench WORKLOAD ... splits every global batch over N "
             "processes (add --allow-run-as-root as root; --hostfile FILE for several machines; see README). "
             "METAGRAD_DIST_TIMEOUT=S bounds how long a rank waits for the others (default 120 s).");
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "show help for every command");
  CLI::App* bench = app.add_subcommand("bench", "train and evaluate a built-in workload");
  bench->require_subcommand(1);
  CLI::App* dump = app.add_subcommand("dump", "write the step graph of a built-in workload");
  dump->require_subcommand(1);

  Cli cli{app, bench, dump, {}, comm.get()};
  register_sinusoid_commands(cli);
  register_conv_commands(cli);
  register_fashion_commands(cli);
  register_omniglot_commands(cli);
  register_multitask_commands(cli);
  register_transfer_commands(cli);
  register_search_commands(cli);
  register_inspect_command(cli);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return finish(app.exit(e));
  } catch (const CLI::CallForAllHelp& e) {
    return finish(app.exit(e));
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    if (comm->rank() == 0) std::fprintf(stderr, "metagrad: %s (see --help)\n", msg.c_str());
    return finish(2);
  }
  try {
    for (auto& [cmd, run] : cli.runners) {
      if (!cmd->parsed()) continue;
      // N copies of a command that does not split its work would only repeat it N times.
      if (comm->distributed() && std::find(cli.data_parallel.begin(), cli.data_parallel.end(), cmd) == cli.data_parallel.end()) {
        if (comm->rank() == 0)
          std::fprintf(stderr, "metagrad: error: '%s' does not run data-parallel; start it without mpirun\n",
                       cmd->get_name().c_str());
        return finish(1);
      }
      return finish(run());
    }
  } catch (const std::exception& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    std::fprintf(stderr, "%s: error: %s\n", who.c_str(), msg.c_str());
    return 1;  // without finish(): the group aborts the job, so no other rank waits for this one
  }
  return finish(0);
}
