// Runs under mpirun from the test suite: the collectives, the allreduce_sum op, faults that must
// end the job in bounded time, and data-parallel training that must reproduce one process.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace metagrad {
namespace {

struct MpiRun {
  int status = -1;
  std::string out, err;
  double seconds = 0;
};

// `env` is prepended to the command (VAR=value ...); np 0 runs the program without mpirun.
MpiRun run(const std::string& program, int np, const std::string& args, const std::string& env = "") {
  auto err_path = std::filesystem::temp_directory_path() / ("metagrad_mpi_err_" + std::to_string(::getpid()));
  std::string launcher = np > 0 ? std::string(METAGRAD_MPIRUN) + " --allow-run-as-root --oversubscribe -np " +
                                      std::to_string(np) + " "
                                : "";
  // `timeout` bounds every test even if the code under test hangs.
  std::string cmd = env + " timeout 120 " + launcher + program + " " + args + " 2>" + err_path.string();
  MpiRun r;
  auto t0 = std::chrono::steady_clock::now();
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

MpiRun probe(int np, const std::string& args, const std::string& env = "") { return run(METAGRAD_DIST_PROBE, np, args, env); }

// The values after `key` on every line that starts with it.
std::vector<double> values(const std::string& out, const std::string& key) {
  std::vector<double> v;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) v.push_back(std::stod(line.substr(line.rfind(' ') + 1)));
  return v;
}

TEST(Mpi, CollectivesSumGatherAndBroadcast) {
  for (int np : {2, 3}) {
    MpiRun r = probe(np, "collectives");
    ASSERT_EQ(r.status, 0) << r.err;
    for (int k = 0; k < np; ++k)
      EXPECT_NE(r.out.find("rank " + std::to_string(k) + " of " + std::to_string(np) + ": collectives ok"),
                std::string::npos)
          << r.out;
  }
}

TEST(Mpi, AllreduceOpAndItsGradientInACompiledGraph) {
  MpiRun r = probe(2, "graph-op");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("rank 0: graph op ok"), std::string::npos);
  EXPECT_NE(r.out.find("rank 1: graph op ok"), std::string::npos);
}

TEST(Mpi, TwoRanksReproduceOneProcessTraining) {
  // 40 Adam steps on a global batch of 16; rank 1 starts from other weights until the broadcast.
  // A bucket of 64 bytes splits the gradients over several allreduces.
  MpiRun one = probe(0, "train 40 16 64");
  MpiRun two = probe(2, "train 40 16 64");
  ASSERT_EQ(one.status, 0) << one.err;
  ASSERT_EQ(two.status, 0) << two.err;
  std::vector<double> l1 = values(one.out, "step "), l2 = values(two.out, "step ");
  ASSERT_EQ(l1.size(), 40u);
  ASSERT_EQ(l2.size(), 40u);
  EXPECT_LT(l1.back(), 0.7 * l1.front()) << "the run must learn for the comparison to mean anything";
  for (size_t i = 0; i < l1.size(); ++i) EXPECT_NEAR(l2[i], l1[i], 1e-5 * std::abs(l1[i])) << "step " << i;
  std::vector<double> p1 = values(one.out, "param "), p2 = values(two.out, "param ");
  ASSERT_EQ(p1.size(), 2u * 16 + 16 + 16 + 1);
  ASSERT_EQ(p2.size(), p1.size());
  for (size_t i = 0; i < p1.size(); ++i) EXPECT_NEAR(p2[i], p1[i], 1e-5 * std::max(1.0, std::abs(p1[i]))) << i;
  // One process compiles no allreduce; two ranks one per bucket, all run every step.
  EXPECT_NE(one.out.find("buckets 0 floats 0"), std::string::npos) << one.out;
  EXPECT_EQ(two.out.find("buckets 1 "), std::string::npos) << two.out;
  EXPECT_NE(two.out.find("floats 65 "), std::string::npos) << two.out;
}

TEST(Mpi, UnevenBatchIsAClearError) {
  MpiRun r = probe(2, "train 1 15");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("batch of 15 does not split evenly over 2 processes"), std::string::npos) << r.err;
}

TEST(Mpi, DifferentModelsOnTheRanksAreRefused) {
  MpiRun r = probe(2, "mismatch");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("rank 0: rank 1 holds other parameters"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rank 1: rank 1 holds other parameters"), std::string::npos) << r.out;
}

TEST(Mpi, ARankThatStopsAnsweringAbortsTheOthersInBoundedTime) {
  // Rank 1 sleeps 30 s; rank 0's allreduce must give up after its 2 s deadline and end the job.
  MpiRun r = probe(2, "hang 1", "METAGRAD_DIST_TIMEOUT=2");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("rank 0 of 2: allreduce of 16 values got no answer within 2 s"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("allreduce returned"), std::string::npos);
  EXPECT_LT(r.seconds, 20.0);
}

TEST(Mpi, ARankThatDiesEndsTheJob) {
  MpiRun r = probe(2, "die 1", "METAGRAD_DIST_TIMEOUT=60");
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(r.out.find("allreduce returned"), std::string::npos) << r.out;
  EXPECT_LT(r.seconds, 30.0) << "mpirun must end the surviving rank, well before its 60 s deadline";
}

}  // namespace
}  // namespace metagrad
