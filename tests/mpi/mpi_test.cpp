// Runs under mpirun from the test suite: the collectives, the allreduce_sum op, faults that must
// end the job in bounded time, and data-parallel training that must reproduce one process.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/cli_run.h"

namespace metagrad {
namespace {

using MpiRun = testing::CliRun;

// `env` is prepended to the command (VAR=value ...); np 0 runs the program without mpirun.
MpiRun run(const std::string& program, int np, const std::string& args, const std::string& env = "") {
  std::string launcher = np > 0 ? std::string(METAGRAD_MPIRUN) + " --allow-run-as-root --oversubscribe -np " +
                                      std::to_string(np) + " "
                                : "";
  // `timeout` bounds every test even if the code under test hangs.
  // Under the sanitizer build, Open MPI's own allocations that outlive MPI_Finalize are not ours.
  // Most are suppressed by library; those made by its plugins cannot be, because the plugins are
  // unloaded before the leak check runs and their frames have no module name left to match. So
  // the processes started here keep ASan's memory-error checks but skip the leak check; our own
  // code's leaks are checked by the one-process suite, which runs the same drivers.
  const std::string lsan = "LSAN_OPTIONS=suppressions=" + std::string(METAGRAD_SOURCE_DIR) +
                           "/tests/mpi/lsan.supp ASAN_OPTIONS=\"${ASAN_OPTIONS:-}:detect_leaks=0\" ";
  return testing::run_shell(lsan + env + " timeout 120 " + launcher + program + " " + args);
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

TEST(Mpi, SupervisedEvaluationIsSplitAndGivesTheOneProcessAnswer) {
  // 2,500 images in chunks of 1,000: rank 0 takes two full chunks, rank 1 the chunk of 500.
  // One thread each, so that both runs' kernels sum in the same order.
  MpiRun one = probe(0, "classify 2500 1000", "OMP_NUM_THREADS=1");
  MpiRun two = probe(2, "classify 2500 1000", "OMP_NUM_THREADS=1");
  ASSERT_EQ(one.status, 0) << one.err;
  ASSERT_EQ(two.status, 0) << two.err;
  const std::vector<double> l1 = values(one.out, "loss "), l2 = values(two.out, "loss ");
  const std::vector<double> a1 = values(one.out, "accuracy "), a2 = values(two.out, "accuracy ");
  ASSERT_EQ(l1.size(), 1u);
  ASSERT_EQ(a1.size(), 1u);
  EXPECT_EQ(l2, l1) << two.out;
  EXPECT_EQ(a2, a1) << two.out;
  EXPECT_GT(l1[0], 0.0);
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

namespace metagrad {
namespace {

MpiRun cli(int np, const std::string& args) { return run(METAGRAD_CLI, np, args); }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::string temp_json(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("metagrad_mpi_" + name + "_" + std::to_string(::getpid()) + ".json")).string();
}

// Runs `args` in one process and on two ranks; both must succeed. Returns their JSON summaries.
std::pair<nlohmann::json, nlohmann::json> one_and_two(const std::string& name, const std::string& args, MpiRun* two_out = nullptr) {
  const std::string j1 = temp_json(name + "1"), j2 = temp_json(name + "2");
  MpiRun one = cli(0, args + " --json " + j1), two = cli(2, args + " --json " + j2);
  EXPECT_EQ(one.status, 0) << one.err;
  EXPECT_EQ(two.status, 0) << two.err;
  if (one.status != 0 || two.status != 0) return {};
  std::pair<nlohmann::json, nlohmann::json> r{read_json(j1), read_json(j2)};
  std::filesystem::remove(j1);
  std::filesystem::remove(j2);
  if (two_out) *two_out = two;
  return r;
}

// The same per-step loss within 1e-5 relative (only the order of summation differs), and the
// same final metrics `keys` within 1e-5 (relative, or absolute below 1).
void expect_same_answer(const nlohmann::json& a, const nlohmann::json& b, const std::vector<std::string>& keys,
                        size_t steps) {
  ASSERT_FALSE(a.is_null());
  EXPECT_EQ(a["distributed"]["ranks"], 1);
  EXPECT_EQ(b["distributed"]["ranks"], 2);
  EXPECT_GE(b["distributed"]["allreduce_calls"].get<int64_t>(), 1) << "the gradients went through the allreduce";
  const auto& la = a["result"]["loss_curve"];
  const auto& lb = b["result"]["loss_curve"];
  ASSERT_EQ(la.size(), steps);
  ASSERT_EQ(lb.size(), steps);
  for (size_t i = 0; i < steps; ++i) {
    const double l1 = la[i], l2 = lb[i];
    EXPECT_NEAR(l2, l1, 1e-5 * std::abs(l1)) << "step " << i;
  }
  for (const std::string& k : keys) {
    const double x1 = a["result"][k], x2 = b["result"][k];
    EXPECT_NEAR(x2, x1, 1e-5 * std::max(1.0, std::abs(x1))) << k;
  }
}

TEST(MpiCli, ConvMamlOnTwoRanksFollowsTheOneProcessLossCurve) {
  MpiRun two;
  auto [a, b] = one_and_two("conv", "bench conv-maml --synthetic --filters 16 --meta-batch 4 --iters 3 --eval-tasks 10 --threads 1 --quiet", &two);
  expect_same_answer(a, b, {"pre_adapt_loss", "post_adapt_loss", "post_adapt_accuracy"}, 3);
  EXPECT_EQ(b["distributed"]["allreduce_calls_per_step"], 1.0);  // one bucket holds every gradient
  // Rank 0 alone prints.
  EXPECT_EQ(two.out.find("speed:"), two.out.rfind("speed:")) << two.out;
  EXPECT_NE(two.out.find("data-parallel: 2 ranks"), std::string::npos) << two.out;
}

TEST(MpiCli, SinusoidOnTwoRanksGivesTheOneProcessAnswer) {
  // 250 evaluation tasks are three batches of 100: rank 0 takes two, rank 1 the last, shorter one.
  auto [a, b] = one_and_two("sin", "bench sinusoid --iters 30 --meta-batch 8 --eval-tasks 250 --threads 1 --quiet");
  expect_same_answer(a, b, {"final_train_loss", "pre_adapt_mse", "post_adapt_mse", "post_adapt_mse_ci95"}, 30);
}

TEST(MpiCli, OmniglotProtonetOnTwoRanksGivesTheOneProcessAnswer) {
  auto [a, b] = one_and_two("omni", "bench omniglot --algo protonet --filters 16 --meta-batch 4 --iters 4 --eval-episodes 20 --threads 1 --quiet");
  expect_same_answer(a, b, {"accuracy", "loss", "final_train_accuracy"}, 4);
}

TEST(MpiCli, FashionMnistOnTwoRanksGivesTheOneProcessAnswer) {
  // 20 steps of LeNet-5 on batches of 32: every rank copies its 16 images of each shuffled batch.
  auto [a, b] = one_and_two("fashion", "bench fashion-mnist --epochs 1 --max-train 640 --batch 32 --threads 1 --quiet");
  expect_same_answer(a, b, {"best_test_accuracy"}, 5);  // the curve: the mean of every 4 steps
  EXPECT_EQ(b["distributed"]["allreduce_calls_per_step"], 1.0);
}

// Multi-task evaluation is split over the ranks too: 2,500 test images are three chunks of at
// most 1,000, two on rank 0 and one on rank 1, and every task's metrics equal one process's.
TEST(MpiCli, MultitaskOnTwoRanksGivesTheOneProcessAnswer) {
  auto [a, b] = one_and_two("multitask", "bench multitask --modes single,hard --max-train 256 --max-test 2500 --epochs 1 --seeds 1 --threads 1 --quiet");
  ASSERT_FALSE(a.is_null());
  EXPECT_EQ(b["distributed"]["ranks"], 2);
  const auto& ma = a["result"]["modes"];
  const auto& mb = b["result"]["modes"];
  ASSERT_EQ(ma.size(), 2u);
  ASSERT_EQ(mb.size(), ma.size());
  for (size_t m = 0; m < ma.size(); ++m)
    for (const auto& [task, metrics] : ma[m]["tasks"].items())
      for (const char* k : {"accuracy", "loss"}) {
        const double x1 = metrics[k][0], x2 = mb[m]["tasks"][task][k][0];
        EXPECT_NEAR(x2, x1, 1e-5 * std::max(1.0, std::abs(x1))) << ma[m]["mode"] << " " << task << " " << k;
      }
}

TEST(MpiCli, ResumingOnTwoRanksContinuesAOneRankRun) {
  // One rank trains 3 steps and saves; two ranks resume for 3 more, saving every step. The six
  // losses must be those of one uninterrupted one-rank run of 6 steps.
  const std::string base = "bench omniglot --algo protonet --filters 16 --meta-batch 4 --eval-episodes 4 --threads 1 --quiet";
  const std::string ckpt = (std::filesystem::temp_directory_path() / ("metagrad_mpi_resume_" + std::to_string(::getpid()) + ".ckpt")).string();
  const std::string jw = temp_json("whole"), j1 = temp_json("first"), j2 = temp_json("second");
  MpiRun whole = cli(0, base + " --iters 6 --json " + jw);
  MpiRun first = cli(0, base + " --iters 3 --save " + ckpt + " --json " + j1);
  ASSERT_EQ(whole.status, 0) << whole.err;
  ASSERT_EQ(first.status, 0) << first.err;
  MpiRun second = cli(2, base + " --iters 3 --load " + ckpt + " --save " + ckpt + " --save-every 1 --json " + j2);
  ASSERT_EQ(second.status, 0) << second.err;
  const nlohmann::json w = read_json(jw), f = read_json(j1), s = read_json(j2);
  EXPECT_EQ(s["distributed"]["ranks"], 2);
  std::vector<double> resumed = f["result"]["loss_curve"].get<std::vector<double>>();
  for (double l : s["result"]["loss_curve"]) resumed.push_back(l);
  const std::vector<double> straight = w["result"]["loss_curve"].get<std::vector<double>>();
  ASSERT_EQ(resumed.size(), 6u);
  ASSERT_EQ(straight.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_NEAR(resumed[i], straight[i], 1e-5 * std::abs(straight[i])) << "step " << i;
  // The checkpoint the two ranks wrote is the model after 6 steps: it evaluates as the straight run.
  MpiRun eval = cli(0, base + " --iters 0 --load " + ckpt + " --json " + j1);
  ASSERT_EQ(eval.status, 0) << eval.err;
  EXPECT_NEAR(read_json(j1)["result"]["loss"].get<double>(), w["result"]["loss"].get<double>(),
              1e-5 * std::abs(w["result"]["loss"].get<double>()));
  for (const std::string& p : {ckpt, ckpt + ".json", jw, j1, j2}) std::filesystem::remove(p);
}

TEST(MpiCli, ScheduleSearchOnTwoRanksGivesTheOneProcessResult) {
  // Each configuration trains on one rank alone, so every score is the one-process score and the
  // rungs, the winner and its test accuracy are equal, not merely close.
  MpiRun two;
  auto [a, b] = one_and_two("search",
                            "bench schedule-search --optimizers sgd,adam,adam_hd --lr-scales 0.3,1 --schedules constant,cosine "
                            "--configs 4 --eta 2 --min-epochs 1 --max-epochs 2 --batch 50 --max-train 600 --val 100 "
                            "--max-test 200 --threads 1 --quiet",
                            &two);
  ASSERT_FALSE(a.is_null());
  EXPECT_EQ(a["distributed"]["ranks"], 1);
  EXPECT_EQ(b["distributed"]["ranks"], 2);
  EXPECT_EQ(a["result"]["rungs"].size(), 2u);
  EXPECT_EQ(a["result"]["rungs"][0]["configs"].size(), 4u);
  EXPECT_TRUE(a["result"].contains("best"));
  // The best configuration's step: its figures, not the time it took to compile; on two ranks it
  // is compiled by rank 0 as in one process (the search trains a configuration on one rank alone).
  for (nlohmann::json* j : {&a, &b}) (*j)["result"]["compile"].erase("compile_seconds");
  EXPECT_EQ(a["result"], b["result"]);
  EXPECT_EQ(two.out.find("| best |"), two.out.rfind("| best |")) << "rank 0 alone prints";
}

TEST(MpiCli, TransferGeneticSearchOnTwoRanksChoosesAsOneProcess) {
  // The candidates are spread over the ranks, each fine-tuned on one; pre-training and the final
  // fine-tune stay data-parallel, so the scores carry that run's summation-order differences.
  auto [a, b] = one_and_two("transfer",
                            "bench transfer --strategy ga --seeds 1 --source-epochs 1 --max-source 640 --target-samples 5 "
                            "--epochs 2 --batch 10 --search-epochs 2 --search-budget 16 --max-test 200 --threads 1 --quiet");
  ASSERT_FALSE(a.is_null());
  const auto& ra = a["result"]["strategies"][0];
  const auto& rb = b["result"]["strategies"][0];
  EXPECT_EQ(ra["strategy"], "ga");
  EXPECT_EQ(ra["evaluations"], 14);  // 8, then 8 - 2 elites
  EXPECT_EQ(rb["evaluations"], ra["evaluations"]);
  EXPECT_EQ(rb["chosen"], ra["chosen"]);
  const double s1 = ra["search_score"][0], s2 = rb["search_score"][0];
  EXPECT_NEAR(s2, s1, 1e-4 * std::abs(s1));
  const double x1 = ra["accuracy"][0], x2 = rb["accuracy"][0];
  EXPECT_NEAR(x2, x1, 1e-9);
}

TEST(MpiCli, WhatCannotRunDataParallelIsOneClearError) {
  MpiRun odd = cli(2, "bench sinusoid --iters 1 --meta-batch 25 --quiet");
  EXPECT_EQ(odd.status, 1);
  EXPECT_NE(odd.err.find("the meta-batch of 25 does not split evenly over 2 processes"), std::string::npos) << odd.err;
  MpiRun serial = cli(2, "dump sinusoid");
  EXPECT_EQ(serial.status, 1);
  EXPECT_NE(serial.err.find("'sinusoid' does not run data-parallel; start it without mpirun"), std::string::npos)
      << serial.err;
  MpiRun schedule = cli(2, "bench learned-schedule --meta-iters 1 --quiet");
  EXPECT_EQ(schedule.status, 1);
  EXPECT_NE(schedule.err.find("'learned-schedule' does not run data-parallel"), std::string::npos) << schedule.err;
  MpiRun help = cli(2, "--help");
  EXPECT_EQ(help.status, 0);
  EXPECT_EQ(help.out.find("mpirun -np N"), help.out.rfind("mpirun -np N")) << "printed by rank 0 only";
  EXPECT_NE(help.out.find("mpirun -np N"), std::string::npos);
}

}  // namespace
}  // namespace metagrad
