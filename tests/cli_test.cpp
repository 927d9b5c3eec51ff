// End-to-end runs of the metagrad command line.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <sys/wait.h>

#include "tests/cli_run.h"

namespace {

using metagrad::testing::CliRun;
using metagrad::testing::lines;
using metagrad::testing::run;

TEST(Cli, HelpEverywhere) {
  for (const char* args : {"--help", "bench --help", "bench sinusoid --help", "dump --help", "dump sinusoid --help"}) {
    CliRun r = run(args);
    EXPECT_EQ(r.status, 0) << args;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << args << ": " << r.out;
  }
  EXPECT_NE(run("--help").out.find("bench"), std::string::npos);
}

TEST(Cli, WrongFlagsAndValuesExitTwoWithOneLine) {
  for (const char* args : {"bench sinusoid --shots-typo 5", "bench sinusoid --algo reptiles", "bench sinusoid --shots -3",
                           "bench sinusoid --iters many", "frobnicate", "dump sinusoid --format png"}) {
    CliRun r = run(args);
    EXPECT_EQ(r.status, 2) << args;
    EXPECT_EQ(lines(r.err), 1u) << args << ": " << r.err;
  }
}

TEST(Cli, BenchSinusoidWritesTheSummary) {
  std::string json = (std::filesystem::temp_directory_path() / "metagrad_cli_bench.json").string();
  CliRun r = run("bench sinusoid --iters 50 --eval-tasks 20 --quiet --json " + json);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("post-adaptation MSE"), std::string::npos);
  std::ifstream in(json);
  auto j = nlohmann::json::parse(in);
  for (const char* k : {"pre_adapt_mse", "post_adapt_mse", "ms_per_meta_iter", "peak_bytes", "iters"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["iters"], 50);
  EXPECT_GT(j["ms_per_meta_iter"].get<double>(), 0.0);
  std::filesystem::remove(json);
}

TEST(Cli, BenchConvMamlSyntheticWritesTheSummaryAndNeedsItsDataSource) {
  std::string json = (std::filesystem::temp_directory_path() / "metagrad_cli_conv.json").string();
  CliRun r = run("bench conv-maml --synthetic --meta-batch 1 --query 2 --iters 2 --eval-tasks 2 --quiet --json " + json);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("ms per meta-iteration"), std::string::npos);
  std::ifstream in(json);
  auto j = nlohmann::json::parse(in);
  for (const char* k : {"pre_adapt_accuracy", "post_adapt_accuracy", "ms_per_meta_iter", "peak_bytes", "naive_bytes",
                        "working_bytes", "kernels", "iters"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_LT(j["peak_bytes"].get<double>(), j["naive_bytes"].get<double>());
  std::filesystem::remove(json);

  CliRun no_data = run("bench conv-maml --iters 1");
  EXPECT_EQ(no_data.status, 1);
  EXPECT_NE(no_data.err.find("--synthetic"), std::string::npos) << no_data.err;
  EXPECT_EQ(run("bench conv-maml --synthetic --ways 1").status, 2);
  CliRun help = run("bench conv-maml --help");
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("--opt-level"), std::string::npos);
}

TEST(Cli, ThreadsFlagRunsAndRejectsZero) {
  CliRun r = run("bench sinusoid --iters 20 --eval-tasks 5 --quiet --threads 1");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(run("bench sinusoid --threads 0").status, 2);
}

TEST(Cli, ProgressGoesToStderr) {
  CliRun r = run("bench sinusoid --iters 30 --eval-tasks 10");
  ASSERT_EQ(r.status, 0);
  EXPECT_NE(r.err.find("meta-train"), std::string::npos);
  EXPECT_EQ(r.out.find("meta-train ["), std::string::npos);
}

TEST(Cli, DumpFormats) {
  CliRun j = run("dump sinusoid --format json");
  ASSERT_EQ(j.status, 0) << j.err;
  auto parsed = nlohmann::json::parse(j.out);
  EXPECT_GT(parsed["nodes"].size(), 100u);
  CliRun d = run("dump sinusoid --format dot --stage optimized");
  ASSERT_EQ(d.status, 0);
  EXPECT_EQ(d.out.rfind("digraph metagrad {", 0), 0u);
  EXPECT_NE(d.out.find("cluster_"), std::string::npos) << "fused kernels are drawn as clusters";
  CliRun t = run("dump sinusoid --format text --algo fomaml");
  ASSERT_EQ(t.status, 0);
  EXPECT_NE(t.out.find("stop_gradient("), std::string::npos);
}

TEST(Cli, InspectReportsPassesFusionMemoryAndProfile) {
  std::string json = (std::filesystem::temp_directory_path() / "metagrad_cli_inspect.json").string();
  CliRun r = run("inspect sinusoid --passes --fusion --memory-plan --profile 3 --json " + json);
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* s : {"passes (", "fused %", "memory plan", "profile over 3 runs"}) EXPECT_NE(r.out.find(s), std::string::npos) << s;
  std::ifstream in(json);
  auto j = nlohmann::json::parse(in);
  for (const char* k : {"nodes_before", "nodes_after", "kernels", "fused_groups", "peak_bytes", "naive_bytes", "per_pass"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_LT(j["nodes_after"].get<int>(), j["nodes_before"].get<int>());
  EXPECT_LT(j["peak_bytes"].get<double>(), j["naive_bytes"].get<double>());
  // The optimized step computes what the -O0 step computes.
  EXPECT_LT(j["max_rel_diff_vs_O0"].get<double>(), 1e-5);
  EXPECT_LT(j["max_rel_diff_vs_O0_grads"].get<double>(), 1e-5);
  std::filesystem::remove(json);
  // A graph file works too, and a missing one is a one-line error naming it.
  CliRun d = run("dump sinusoid --format text -o " + json);
  ASSERT_EQ(d.status, 0);
  EXPECT_EQ(run("inspect " + json + " -O0").status, 0);
  std::filesystem::remove(json);
  CliRun missing = run("inspect /no/such/graph.txt");
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.err.find("/no/such/graph.txt"), std::string::npos);
}

TEST(Cli, UnwritableOutputIsAnErrorNotACrash) {
  CliRun r = run("dump sinusoid -o /nonexistent-dir/graph.txt");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("/nonexistent-dir/graph.txt"), std::string::npos) << r.err;
}

}  // namespace

namespace {

std::string temp_file(const std::string& name) { return (std::filesystem::temp_directory_path() / name).string(); }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

TEST(Cli, BenchFashionMnistTrainsAndReportsEpochs) {
  const std::string json = temp_file("metagrad_cli_fmnist.json");
  CliRun r = run("bench fashion-mnist --model mlp --epochs 2 --max-train 1280 --schedule exp:rate=0.5,steps=20 --quiet --json " + json);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("epoch 2: train loss"), std::string::npos) << r.out;
  auto j = read_json(json);
  ASSERT_EQ(j["epochs"].size(), 2u);
  for (const char* k : {"train_loss", "test_accuracy", "seconds", "lr"}) EXPECT_TRUE(j["epochs"][0].contains(k)) << k;
  EXPECT_GT(j["best_test_accuracy"].get<double>(), 0.5);
  // 20 steps per epoch: after 40 steps the exponential schedule has halved the rate twice.
  EXPECT_NEAR(j["epochs"][1]["lr"].get<double>(), 1e-3 * 0.25 * std::pow(0.5, -1.0 / 20), 1e-7);
  std::filesystem::remove(json);
}

TEST(Cli, FashionMnistInputErrorsAreOneLine) {
  CliRun missing = run("bench fashion-mnist --data /nonexistent/fm --epochs 1");
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.err.find("/nonexistent/fm: no such data folder"), std::string::npos) << missing.err;
  const std::string dir = temp_file("metagrad_cli_bad_fm");
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/train-images-idx3-ubyte") << "not an idx file";
  std::ofstream(dir + "/train-labels-idx1-ubyte") << "nor this";
  CliRun corrupt = run("bench fashion-mnist --data " + dir + " --epochs 1");
  EXPECT_EQ(corrupt.status, 1);
  EXPECT_NE(corrupt.err.find(dir + "/train-images-idx3-ubyte"), std::string::npos) << corrupt.err;
  EXPECT_EQ(lines(corrupt.err), 1u);
  std::filesystem::remove_all(dir);
  CliRun sched = run("bench fashion-mnist --schedule linear --epochs 1");
  EXPECT_EQ(sched.status, 1);
  EXPECT_NE(sched.err.find("unknown kind 'linear'"), std::string::npos) << sched.err;
  EXPECT_EQ(run("bench fashion-mnist --optimizer lion").status, 2);
  EXPECT_EQ(run("bench fashion-mnist --help").status, 0);
}

TEST(Cli, OptimizerTableWritesTableJsonAndPlot) {
  const std::string md = temp_file("metagrad_cli_table.md"), svg = temp_file("metagrad_cli_table.svg"),
                    json = temp_file("metagrad_cli_table.json");
  CliRun r = run("bench optimizer-table --model mlp --epochs 1 --max-train 640 --optimizers sgd,adam_hd --quiet -o " + md +
                 " --plot " + svg + " --json " + json);
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream in(md);
  std::stringstream table;
  table << in.rdbuf();
  EXPECT_NE(table.str().find("| optimizer | learning rate |"), std::string::npos);
  EXPECT_NE(table.str().find("| sgd | 0.1 |"), std::string::npos) << table.str();
  EXPECT_NE(table.str().find("| adam_hd (lr0 x10) | 0.01 |"), std::string::npos) << table.str();
  EXPECT_EQ(read_json(json).size(), 4u);  // sgd, adam_hd and its two sweep runs
  std::ifstream plot(svg);
  std::stringstream p;
  p << plot.rdbuf();
  EXPECT_NE(p.str().find("<svg"), std::string::npos);
  EXPECT_EQ(run("bench optimizer-table --optimizers sgd,lion --max-train 64").status, 1);
  for (const std::string& f : {md, svg, json, svg + ".dat", svg + ".gp"}) std::filesystem::remove(f);
}

TEST(Cli, LearnedScheduleReportsBothSchedules) {
  const std::string json = temp_file("metagrad_cli_sched.json");
  CliRun r = run("bench learned-schedule --unroll 3 --meta-iters 5 --eval-unrolls 2 --val-batch 50 --hidden 8 --quiet --json " + json);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("best constant lr"), std::string::npos);
  auto j = read_json(json);
  EXPECT_EQ(j["learned_schedule"].size(), 3u);
  EXPECT_EQ(j["meta_loss_curve"].size(), 5u);
  EXPECT_TRUE(j.contains("learned_val_loss") && j.contains("best_constant_val_loss"));
  std::filesystem::remove(json);
}

}  // namespace

namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()))).string();
}

const std::string kOmniglot = METAGRAD_SOURCE_DIR "/data/omniglot";

TEST(Cli, OmniglotTrainsSavesAndEvaluatesOneShotRuns) {
  const std::string ckpt = temp_path("omniglot_ckpt"), json = temp_path("omniglot_json"), runs = temp_path("runs"),
                    ejson = temp_path("runs_json");
  CliRun r = run("bench omniglot --algo protonet --filters 16 --iters 60 --eval-episodes 40 --quiet --data " + kOmniglot +
                 " --save " + ckpt + " --json " + json);
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream in(json);
  nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j["iters"], 60);
  EXPECT_EQ(j["eval_episodes"], 40);
  EXPECT_GT(j["accuracy"].get<double>(), 0.4) << "5-way chance is 0.2";
  EXPECT_GT(j["accuracy_ci95"].get<double>(), 0.0);
  EXPECT_TRUE(std::filesystem::exists(ckpt));
  EXPECT_TRUE(std::filesystem::exists(ckpt + ".json"));

  r = run("make-runs --runs 5 --ways 5 --seed 3 --data " + kOmniglot + " --out " + runs);
  ASSERT_EQ(r.status, 0) << r.err;
  r = run("eval-episodes --checkpoint " + ckpt + " --runs " + runs + " --json " + ejson);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("run01: 5 classes, 5 items, error"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mean error over 5 runs"), std::string::npos) << r.out;
  std::ifstream ein(ejson);
  nlohmann::json e = nlohmann::json::parse(ein);
  ASSERT_EQ(e["runs"].size(), 5u);
  EXPECT_LT(e["mean_error"].get<double>(), 0.8);
  double total = 0;
  for (const auto& run : e["runs"]) total += run["error"].get<double>();
  EXPECT_NEAR(e["mean_error"].get<double>(), total / 5, 1e-12);

  // Resuming from the checkpoint with no training evaluates the same model.
  r = run("bench omniglot --algo protonet --filters 16 --iters 0 --eval-episodes 8 --quiet --data " + kOmniglot +
          " --load " + ckpt);
  EXPECT_EQ(r.status, 0) << r.err;
  // A head-based checkpoint refuses runs with another number of classes.
  r = run("bench omniglot --algo maml --ways 3 --filters 4 --iters 1 --eval-episodes 1 --quiet --data " + kOmniglot +
          " --save " + ckpt);
  ASSERT_EQ(r.status, 0) << r.err;
  r = run("eval-episodes --checkpoint " + ckpt + " --runs " + runs);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("trained 3-way"), std::string::npos) << r.err;
  for (const std::string& p : {ckpt, ckpt + ".json", json, ejson}) std::filesystem::remove(p);
  std::filesystem::remove_all(runs);
}

TEST(Cli, OmniglotTrainingResumedFromACheckpointEqualsAnUninterruptedRun) {
  const std::string straight = temp_path("straight"), first = temp_path("first"), resumed = temp_path("resumed");
  const std::string common = "bench omniglot --algo maml --filters 4 --meta-batch 2 --eval-episodes 1 --quiet --threads 1 --data " + kOmniglot;
  ASSERT_EQ(run(common + " --iters 6 --save " + straight).status, 0);
  ASSERT_EQ(run(common + " --iters 3 --save " + first).status, 0);
  CliRun r = run(common + " --iters 3 --load " + first + " --save " + resumed);
  ASSERT_EQ(r.status, 0) << r.err;
  auto bytes = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_FALSE(bytes(straight).empty());
  EXPECT_EQ(bytes(straight), bytes(resumed)) << "3 + 3 resumed iterations should equal 6 straight ones";
  EXPECT_NE(bytes(straight), bytes(first));
  for (const std::string& p : {straight, first, resumed}) std::filesystem::remove(p), std::filesystem::remove(p + ".json");
}

TEST(Cli, OmniglotInputErrorsNameTheFile) {
  CliRun r = run("bench omniglot --iters 1 --data /nonexistent/omniglot");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("/nonexistent/omniglot/images_background_small1.zip"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1u) << r.err;

  const std::string bad = temp_path("bad_ckpt");
  { std::ofstream(bad) << "not a checkpoint"; }
  r = run("eval-episodes --checkpoint " + bad + " --runs /tmp");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find(bad + ".json"), std::string::npos) << r.err;
  { std::ofstream(bad + ".json") << R"({"algo": "protonet", "ways": 5})"; }
  r = run("eval-episodes --checkpoint " + bad + " --runs /tmp");
  EXPECT_NE(r.err.find("not a valid model description"), std::string::npos) << r.err;
  r = run("bench omniglot --algo protonet --iters 0 --eval-episodes 1 --load " + bad);
  EXPECT_EQ(r.status, 1);
  r = run("eval-episodes --checkpoint " + bad + " --runs /nonexistent/runs");
  EXPECT_EQ(r.status, 1);
  std::filesystem::remove(bad);
  std::filesystem::remove(bad + ".json");
  for (const char* args : {"bench omniglot --help", "eval-episodes --help", "make-runs --help"})
    EXPECT_EQ(run(args).status, 0) << args;
  EXPECT_EQ(run("bench omniglot --algo nope").status, 2);
  EXPECT_EQ(run("bench omniglot --sampling sideways").status, 2);
}

}  // namespace

namespace {

TEST(Cli, BenchTransferReportsEveryStrategyAndIsReproducible) {
  const std::string dir = std::filesystem::temp_directory_path().string();
  const std::string args =
      " --seeds 1 --max-source 640 --max-test 200 --source-epochs 1 --target-samples 5 --epochs 2 --batch 5"
      " --search-epochs 1 --search-budget 3 --unlabelled-batch 5 --threads 1 --json ";
  CliRun a = run("bench transfer" + args + dir + "/metagrad_transfer_a.json");
  ASSERT_EQ(a.status, 0) << a.err;
  EXPECT_NE(a.out.find("| finetune |"), std::string::npos) << a.out;
  EXPECT_NE(a.err.find("ga search"), std::string::npos);  // progress on stderr
  CliRun b = run("bench transfer --quiet" + args + dir + "/metagrad_transfer_b.json");
  ASSERT_EQ(b.status, 0) << b.err;
  EXPECT_EQ(b.err, "");
  auto read = [&](const std::string& name) {
    nlohmann::json j = nlohmann::json::parse(std::ifstream(dir + "/" + name));
    for (auto& s : j["strategies"]) s.erase("seconds");  // wall-clock time differs between runs
    j.erase("pretrain_seconds");
    return j;
  };
  nlohmann::json ja = read("metagrad_transfer_a.json");
  EXPECT_EQ(ja, read("metagrad_transfer_b.json"));
  ASSERT_EQ(ja["strategies"].size(), 9u);
  for (const auto& s : ja["strategies"]) {
    const double acc = s["accuracy"][0];
    EXPECT_GE(acc, 0.0);
    EXPECT_LE(acc, 1.0);
  }
  for (const auto& s : ja["strategies"]) {
    if (s["strategy"] == "ga") {
      EXPECT_EQ(s["chosen"].size(), 1u);
    }
  }
}

TEST(Cli, BenchTransferInputErrorsAreOneLine) {
  for (const char* args : {"bench transfer --source fashion-mnist-0-4 --target fashion-mnist-3-9",
                           "bench transfer --source mnist-0-4", "bench transfer --data /nonexistent/fm"}) {
    CliRun r = run(args);
    EXPECT_EQ(r.status, 1) << args;
    EXPECT_EQ(lines(r.err), 1u) << args << ": " << r.err;
  }
  EXPECT_NE(run("bench transfer --data /nonexistent/fm").err.find("/nonexistent/fm"), std::string::npos);
  EXPECT_EQ(run("bench transfer --strategy best").status, 2);
  EXPECT_EQ(run("bench transfer --target-samples 2").status, 2);
  EXPECT_NE(run("bench transfer --help").out.find("--strategy"), std::string::npos);
}

}  // namespace
