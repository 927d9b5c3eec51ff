// Runs the metagrad command line built next to the tests and captures what it prints.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace metagrad::testing {

struct CliRun {
  int status;
  std::string out, err;
};

inline CliRun run(const std::string& args) {
  auto dir = std::filesystem::temp_directory_path();
  std::string err_path = (dir / ("metagrad_cli_err_" + std::to_string(::getpid()))).string();
  std::string cmd = std::string(METAGRAD_CLI) + " " + args + " 2>" + err_path;
  CliRun r{};
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream e(err_path);
  std::stringstream ss;
  ss << e.rdbuf();
  r.err = ss.str();
  std::filesystem::remove(err_path);
  return r;
}

inline size_t lines(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace metagrad::testing
