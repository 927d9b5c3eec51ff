// End-to-end runs of the metagrad command line.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <sys/wait.h>

#include "meta/data/image_folders.h"
#include "tests/cli_run.h"

namespace {

using metagrad::testing::CliRun;
using metagrad::testing::lines;
using metagrad::testing::run;

// The JSON every command writes: {"command", "config", "timing", "result"} (and "distributed";
// Cli.EveryBenchCommandWritesOneJsonShape checks the whole shape of every bench command's).
void expect_header(const nlohmann::json& j, const std::string& command) {
  EXPECT_EQ(j.value("command", ""), command);
  for (const char* k : {"config", "timing", "result"}) EXPECT_TRUE(j.contains(k) && j[k].is_object()) << command << ": " << k;
}

// The driver's two times: a whole step (data included) and run() alone.
void expect_two_times(const nlohmann::json& timing) {
  ASSERT_TRUE(timing.contains("ms_per_iter") && timing.contains("ms_per_run")) << timing.dump();
  EXPECT_GT(timing["ms_per_run"].get<double>(), 0.0);
  EXPECT_GE(timing["ms_per_iter"].get<double>(), timing["ms_per_run"].get<double>());
}

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
  expect_header(j, "bench sinusoid");
  for (const char* k : {"pre_adapt_mse", "post_adapt_mse", "mse_by_step"}) EXPECT_TRUE(j["result"].contains(k)) << k;
  EXPECT_GT(j["result"]["compile"]["peak_bytes"].get<double>(), 0.0);
  EXPECT_EQ(j["config"]["iters"], 50);
  EXPECT_EQ(j["timing"]["iters"], 50);
  expect_two_times(j["timing"]);
  std::filesystem::remove(json);
}

TEST(Cli, BenchConvMamlSyntheticWritesTheSummaryAndNeedsItsDataSource) {
  std::string json = (std::filesystem::temp_directory_path() / "metagrad_cli_conv.json").string();
  CliRun r = run("bench conv-maml --synthetic --meta-batch 1 --query 2 --iters 2 --eval-tasks 2 --quiet --json " + json);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("ms per meta-iteration"), std::string::npos);
  std::ifstream in(json);
  auto j = nlohmann::json::parse(in);
  expect_header(j, "bench conv-maml");
  for (const char* k : {"pre_adapt_accuracy", "post_adapt_accuracy", "working_bytes"}) EXPECT_TRUE(j["result"].contains(k)) << k;
  for (const char* k : {"peak_bytes", "naive_bytes", "kernels"}) EXPECT_TRUE(j["result"]["compile"].contains(k)) << k;
  expect_two_times(j["timing"]);
  EXPECT_LT(j["result"]["compile"]["peak_bytes"].get<double>(), j["result"]["compile"]["naive_bytes"].get<double>());
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

// Per process, so that test runs side by side (two engineers, two builds) do not share files.
std::string temp_file(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (std::to_string(::getpid()) + "_" + name)).string();
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

TEST(Cli, BenchFashionMnistTrainsAndReportsEpochs) {
  const std::string json = temp_file("metagrad_cli_fmnist.json");
  CliRun r = run("bench fashion-mnist --model mlp --epochs 2 --max-train 1280 --schedule exp:rate=0.5,steps=20 --quiet --json " + json);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("epoch 2: train loss"), std::string::npos) << r.out;
  const auto all = read_json(json);
  expect_header(all, "bench fashion-mnist");
  expect_two_times(all["timing"]);
  const auto& j = all["result"];
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
  const auto tj = read_json(json);
  expect_header(tj, "bench optimizer-table");
  ASSERT_EQ(tj["result"]["rows"].size(), 4u);  // sgd, adam_hd and its two sweep runs
  expect_header(tj["result"]["rows"][0], "");  // each row: config, timing, result (and its name)
  EXPECT_EQ(tj["result"]["rows"][0]["name"], "sgd");
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
  const auto all = read_json(json);
  expect_header(all, "bench learned-schedule");
  expect_two_times(all["timing"]);
  const auto& j = all["result"];
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
  nlohmann::json all = nlohmann::json::parse(in);
  expect_header(all, "bench omniglot");
  expect_two_times(all["timing"]);
  EXPECT_EQ(all["config"]["iters"], 60);
  EXPECT_EQ(all["config"]["eval_episodes"], 40);
  const nlohmann::json& j = all["result"];
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
  nlohmann::json eall = nlohmann::json::parse(ein);
  expect_header(eall, "eval-episodes");
  const nlohmann::json& e = eall["result"];
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
  // Per-process names: other checkouts' suites may run at the same time on this machine.
  const std::string dir = temp_path("metagrad_transfer");
  std::filesystem::create_directories(dir);
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
    expect_header(j, "bench transfer");
    j.erase("timing");  // wall-clock time differs between runs
    j["result"]["compile"].erase("compile_seconds");
    return j["result"];
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
  std::filesystem::remove_all(dir);
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

namespace {

const char* const kCommands[] = {"bench sinusoid",   "bench conv-maml", "bench fashion-mnist", "bench optimizer-table",
                                 "bench learned-schedule", "bench omniglot", "bench fewshot", "bench multitask",
                                 "bench transfer",   "bench schedule-search", "dump sinusoid", "dump conv-maml", "inspect",
                                 "eval-episodes",    "make-runs"};

TEST(Cli, EveryCommandHasHelpAndABadFlagExitsTwoWithOneLine) {
  for (const char* cmd : kCommands) {
    CliRun help = run(std::string(cmd) + " --help");
    EXPECT_EQ(help.status, 0) << cmd;
    EXPECT_NE(help.out.find("Usage"), std::string::npos) << cmd;
    CliRun bad = run(std::string(cmd) + " --no-such-flag 1");
    EXPECT_EQ(bad.status, 2) << cmd;
    EXPECT_EQ(lines(bad.err), 1u) << cmd << ": " << bad.err;
  }
}

TEST(Cli, TheCommonFlagsAreOnEveryBenchCommand) {
  for (const char* cmd : kCommands) {
    if (std::string(cmd).rfind("bench ", 0) != 0) continue;
    const std::string help = run(std::string(cmd) + " --help").out;
    for (const char* flag : {"--threads", "--json", "--quiet", "--seed"})
      EXPECT_NE(help.find(flag), std::string::npos) << cmd << " " << flag;
    EXPECT_EQ(run(std::string(cmd) + " --threads 0").status, 2) << cmd;
  }
}

// `classes` class folders of `images` random PNGs each (RGB and grey mixed, sizes differing).
std::string image_folders(const std::string& name, int classes, int images) {
  const auto dir = std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(0, 1);
  for (int c = 0; c < classes; ++c) {
    std::filesystem::create_directories(dir / ("class" + std::to_string(c)));
    for (int i = 0; i < images; ++i) {
      const int channels = (c + i) % 2 ? 3 : 1, side = 20 + 3 * i;
      std::vector<float> px(size_t(side * side * channels));
      for (float& v : px) v = u(rng) < 0.1f * float(c + 1) ? 1.f : 0.f;
      metagrad::write_png((dir / ("class" + std::to_string(c)) / (std::to_string(i) + ".png")).string(), px, side, side,
                          channels);
    }
  }
  return dir.string();
}

TEST(Cli, FewShotOnImageFoldersOfYourOwn) {
  const std::string dir = image_folders("metagrad_cli_folders", 6, 4), json = temp_path("folders_json");
  const std::string episode = " --ways 2 --shots 1 --eval-query 2 --meta-batch 1 --filters 4"
                              " --iters 3 --eval-episodes 4 --held-out 0.4 --quiet --threads 1";
  CliRun r = run("bench fewshot --algo protonet --query 1 --data " + dir + episode + " --json " + json);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("held-out: 4 episodes"), std::string::npos) << r.out;
  nlohmann::json j = nlohmann::json::parse(std::ifstream(json));
  expect_header(j, "bench fewshot");
  EXPECT_EQ(j["result"]["train_classes"].get<int>() + j["result"]["eval_classes"].get<int>(), 6);
  EXPECT_EQ(j["result"]["eval_classes"], 2) << "0.4 of 6 classes held out";
  const double acc = j["result"]["accuracy"];
  EXPECT_GE(acc, 0.0);
  EXPECT_LE(acc, 1.0);
  // The same through bench omniglot, for every algorithm family (head, metric, adaptation).
  for (const char* algo : {"maml", "protomaml-metric"}) {
    r = run("bench omniglot --format folders --query 1 --data " + dir + episode + " --algo " + algo + " --eval-inner-steps 1");
    EXPECT_EQ(r.status, 0) << algo << ": " << r.err;
  }
  // Errors name the folder at fault.
  r = run("bench fewshot --data " + dir + "/missing" + episode);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find(dir + "/missing: no such folder"), std::string::npos) << r.err;
  r = run("bench fewshot --data " + dir + episode + " --query 4");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find(dir + "/class"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("an episode needs 5 per class"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1u);
  EXPECT_EQ(run("bench fewshot --iters 1").status, 2) << "--data is required";
  std::filesystem::remove_all(dir);
  std::filesystem::remove(json);
}

TEST(Cli, SaveEveryWritesACheckpointThatLoads) {
  const std::string ckpt = temp_path("every_ckpt");
  const std::string common = "bench omniglot --algo protonet --filters 4 --meta-batch 1 --eval-episodes 1 --quiet --threads 1 --data " + kOmniglot;
  CliRun r = run(common + " --iters 3 --save " + ckpt + " --save-every 2");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(ckpt) && std::filesystem::exists(ckpt + ".json"));
  EXPECT_EQ(run(common + " --iters 0 --load " + ckpt).status, 0);
  EXPECT_EQ(run(common + " --iters 3 --save-every 2").status, 2) << "--save-every needs --save";
  std::filesystem::remove(ckpt);
  std::filesystem::remove(ckpt + ".json");
}

// The subcommands `metagrad bench --help` lists.
std::set<std::string> bench_commands() {
  const std::string help = run("bench --help").out;
  std::set<std::string> names;
  std::istringstream in(help.substr(help.find("Subcommands:")));
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line) && line.rfind("  ", 0) == 0) {
    std::istringstream words(line);
    std::string name;
    words >> name;
    names.insert(name);
  }
  return names;
}

std::set<std::string> keys_of(const nlohmann::json& j) {
  std::set<std::string> keys;
  for (const auto& item : j.items()) keys.insert(item.key());
  return keys;
}

// Every bench command writes one JSON shape: the same top-level keys, and its compiled training
// step's figures in `result.compile` with one key set (so scripts read `result.compile.remat` of
// any bench). The table must name every command `bench --help` lists: a new bench is checked too.
TEST(Cli, EveryBenchCommandWritesOneJsonShape) {
  const std::string folders = image_folders("metagrad_cli_shape", 4, 4), json = temp_path("shape_json");
  const std::vector<std::pair<std::string, std::string>> tiny = {
      {"sinusoid", "--iters 2 --eval-tasks 1 --meta-batch 2"},
      {"conv-maml", "--synthetic --iters 1 --eval-tasks 1 --meta-batch 1 --query 1 --filters 4"},
      {"fashion-mnist", "--model mlp --max-train 256 --epochs 1"},
      {"optimizer-table", "--model mlp --max-train 256 --epochs 1 --optimizers sgd --no-hd-sweep -o - --plot none"},
      {"learned-schedule", "--unroll 2 --meta-iters 1 --eval-unrolls 1 --val-batch 20 --hidden 8"},
      {"omniglot", "--algo protonet --filters 4 --iters 1 --meta-batch 1 --eval-episodes 1 --data " + kOmniglot},
      {"fewshot", "--algo protonet --ways 2 --shots 1 --query 1 --eval-query 2 --filters 4 --meta-batch 1 --iters 1 "
                  "--eval-episodes 1 --held-out 0.5 --data " + folders},
      {"multitask", "--modes single --seeds 1 --epochs 1 --max-train 256 --max-test 100"},
      {"transfer", "--strategy scratch --seeds 1 --max-source 256 --max-test 100 --source-epochs 1 --target-samples 5 "
                   "--epochs 1 --batch 5"},
      {"schedule-search", "--optimizers sgd --lr-scales 1 --schedules constant --configs 1 --min-epochs 1 --max-epochs 1 "
                          "--max-train 300 --val 100 --max-test 100"},
  };
  std::set<std::string> listed;
  for (const auto& cmd : tiny) listed.insert(cmd.first);
  EXPECT_EQ(listed, bench_commands()) << "every bench command needs a tiny run here";

  const std::set<std::string> top = {"command", "config", "timing", "result", "distributed"};
  std::set<std::string> compile_keys;
  for (const auto& cmd : tiny) {
    const std::string name = cmd.first;
    CliRun r = run("bench " + name + " " + cmd.second + " --threads 1 --quiet --json " + json);
    ASSERT_EQ(r.status, 0) << name << ": " << r.err;
    const nlohmann::json j = read_json(json);
    EXPECT_EQ(keys_of(j), top) << name;
    expect_header(j, "bench " + name);
    ASSERT_TRUE(j["result"].contains("compile") && j["result"]["compile"].is_object()) << name;
    const nlohmann::json& c = j["result"]["compile"];
    if (compile_keys.empty()) compile_keys = keys_of(c);
    EXPECT_EQ(keys_of(c), compile_keys) << name;
    EXPECT_GT(c.value("kernels", size_t(0)), 0u) << name << ": the figures of a step that was compiled";
    EXPECT_GE(c.value("planned_peak_bytes", size_t(0)), c.value("peak_bytes", size_t(1))) << name;
    EXPECT_TRUE(c["remat"].is_object() && c["loops"].is_array()) << name;
    for (const char* k : {"nodes_raw", "peak_bytes", "loop_storage_bytes", "compile_seconds"})
      EXPECT_FALSE(j["result"].contains(k)) << name << ": " << k << " belongs in result.compile";
    if (name == "optimizer-table") {
      for (const auto& row : j["result"]["rows"]) EXPECT_EQ(keys_of(row["result"]["compile"]), compile_keys) << "a row";
    }
  }
  EXPECT_TRUE(compile_keys.count("remat") && compile_keys.count("planned_peak_bytes"));
  std::filesystem::remove(json);
  std::filesystem::remove_all(folders);
}

}  // namespace
