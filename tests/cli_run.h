// Runs the metagrad command line built next to the tests and captures what it prints.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace metagrad::testing {

struct CliRun {
  int status = -1;
  std::string out, err;
  double seconds = 0;  // wall time of the whole command
};

// Runs `command` in the shell with its standard error captured apart from its output. The command
// may start with environment assignments and a launcher (timeout, mpirun).
inline CliRun run_shell(const std::string& command) {
  auto dir = std::filesystem::temp_directory_path();
  std::string err_path = (dir / ("metagrad_cli_err_" + std::to_string(::getpid()))).string();
  std::string cmd = command + " 2>" + err_path;
  CliRun r;
  const auto t0 = std::chrono::steady_clock::now();
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
  int st = pclose(p);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream e(err_path);
  std::stringstream ss;
  ss << e.rdbuf();
  r.err = ss.str();
  std::filesystem::remove(err_path);
  return r;
}

// The metagrad command line with `args`.
inline CliRun run(const std::string& args) { return run_shell(std::string(METAGRAD_CLI) + " " + args); }

inline size_t lines(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace metagrad::testing
