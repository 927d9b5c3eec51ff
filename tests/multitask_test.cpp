// Multi-task Fashion-MNIST: the in-graph group labels, gradients through a shared trunk (f64 and
// central differences), parameter counts of every mode, short training runs, and the CLI end to end.
#include "meta/models/multitask.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "metagrad/autodiff.h"
#include "metagrad/ops.h"
#include "metagrad/param_store.h"
#include "tests/cli_run.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

using testing::random_ref;

TEST(MultitaskTasks, GroupLabelsFollowTheHandTable) {
  struct Row {
    int32_t label;
    const char* item;
    int32_t group;  // 0 footwear, 1 upper body, 2 other
  };
  const Row table[] = {{0, "T-shirt/top", 1}, {1, "trouser", 2},   {2, "pullover", 1}, {3, "dress", 2},
                       {4, "coat", 1},        {5, "sandal", 0},    {6, "shirt", 1},    {7, "sneaker", 0},
                       {8, "bag", 2},         {9, "ankle boot", 0}};
  Graph g;
  Tensor y = input(g, "y", {10}, DType::i32);
  const TaskSpec& cls = fashion_tasks().at(0);
  const TaskSpec& grp = fashion_tasks().at(1);
  ASSERT_EQ(cls.name, "class");
  ASSERT_EQ(grp.name, "group");
  Tensor tc = task_targets(y, cls), tg = task_targets(y, grp);
  ASSERT_EQ(tc.shape(), (Shape{10, 10}));
  ASSERT_EQ(tg.shape(), (Shape{10, 3}));
  RefTensor labels{{10}, {}};
  for (const Row& r : table) labels.data.push_back(r.label);
  const auto got = reference_eval(g, {tc.value(), tg.value()}, {{"y", labels}});
  for (const Row& r : table)
    for (int32_t k = 0; k < 10; ++k) {
      EXPECT_EQ(got[0].data[size_t(r.label * 10 + k)], k == r.label ? 1.0 : 0.0) << r.item;
      if (k < 3) {
        EXPECT_EQ(got[1].data[size_t(r.label * 3 + k)], k == r.group ? 1.0 : 0.0) << r.item << " group " << k;
      }
    }
  TaskSpec bad{"bad", 2, {0, 2}};
  EXPECT_NE(testing::error_of([&] { task_targets(y, bad); }).find("maps label 1 to 2"), std::string::npos);
}

TEST(MultitaskTasks, TargetLossAndAccuracyMatchTheLabelForms) {
  Graph g;
  Tensor logits = input(g, "logits", {4, 3});
  Tensor labels = input(g, "labels", {4}, DType::i32);
  Tensor target = one_hot(labels, 3);
  RefValues feeds{{"logits", random_ref({4, 3}, 7)}, {"labels", {{4}, {2, 0, 1, 1}}}};
  const auto v = reference_eval(g,
                                {target_cross_entropy(logits, target).value(), cross_entropy(logits, labels).value(),
                                 target_accuracy(logits, target).value()},
                                feeds);
  EXPECT_NEAR(v[0].data[0], v[1].data[0], 1e-14);
  double hits = 0;
  for (int r = 0; r < 4; ++r) {
    const double* row = &feeds["logits"].data[size_t(3 * r)];
    hits += std::max_element(row, row + 3) - row == int(feeds["labels"].data[size_t(r)]);
  }
  EXPECT_EQ(v[2].data[0], hits / 4);
}

// The mode's classifier weights re-declared as inputs of g (same names and shapes) with random values in
// `vals`, so finite differences can perturb them.
MultitaskWeights weights_as_inputs(Graph& g, const MultitaskConfig& cfg, RefValues& vals, uint64_t seed) {
  Graph scratch;
  const MultitaskWeights p = multitask_weights(scratch, cfg);
  auto convert = [&](const std::vector<std::vector<Tensor>>& groups) {
    std::vector<std::vector<Tensor>> out;
    for (const auto& group : groups) {
      out.emplace_back();
      for (const Tensor& t : group) {
        const std::string& name = t.node().name;
        out.back().push_back(input(g, name, t.shape()));
        vals[name] = random_ref(t.shape(), seed++, -0.5, 0.5);
      }
    }
    return out;
  };
  return {convert(p.trunks), convert(p.heads)};
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// Hard sharing on a tiny config: the trunk's gradient is the sum of the two task losses' gradients, both
// tasks really reach it, each head hears only its own task, and the total gradient matches central
// differences in f64 for the trunk tensors `fd_names` (all of them when empty).
void check_hard_sharing_gradients(const ClassifierConfig& model, int64_t n, const std::vector<std::string>& fd_names) {
  MultitaskConfig cfg;
  cfg.model = model;
  cfg.mode = "hard";
  Graph g;
  RefValues vals;
  const MultitaskWeights w = weights_as_inputs(g, cfg, vals, 100);
  ASSERT_EQ(w.trunks.size(), 1u);
  Tensor x = input(g, "x", {n, 1, model.image, model.image});
  Tensor y = input(g, "y", {n}, DType::i32);
  vals["x"] = random_ref({n, 1, model.image, model.image}, 1, 0.0, 1.0);
  vals["y"] = {{n}, {}};
  for (int64_t i = 0; i < n; ++i) vals["y"].data.push_back(double((i * 3 + 5) % 10));
  const MultitaskModel m = multitask_model(g, x, y, w, cfg);
  const std::vector<Tensor>& trunk = w.trunks[0];
  const size_t k = trunk.size();
  std::vector<Tensor> fetch = grad(m.loss, trunk);
  for (const Tensor& loss : m.losses)
    for (const Tensor& d : grad(loss, trunk)) fetch.push_back(d);
  for (const Tensor& d : grad(m.losses[1], w.heads[0])) fetch.push_back(d);
  std::vector<Value> values;
  for (const Tensor& t : fetch) values.push_back(t.value());
  const std::vector<RefTensor> got = reference_eval(g, values, vals);
  for (size_t i = 0; i < k; ++i) {
    const std::string& name = trunk[i].node().name;
    const auto &total = got[i].data, &d0 = got[k + i].data, &d1 = got[2 * k + i].data;
    ASSERT_EQ(total.size(), d0.size());
    for (size_t e = 0; e < total.size(); ++e)
      EXPECT_NEAR(total[e], d0[e] + d1[e], 1e-12 * (1 + std::abs(total[e]))) << name << "[" << e << "]";
    EXPECT_GT(max_abs(d0), 1e-6) << name << ": the class task does not reach the trunk";
    EXPECT_GT(max_abs(d1), 1e-6) << name << ": the group task does not reach the trunk";
    if (!fd_names.empty() && std::find(fd_names.begin(), fd_names.end(), name) == fd_names.end()) continue;
    const std::vector<double> fd = testing::finite_diff(g, m.loss.value(), vals, name);
    for (size_t e = 0; e < fd.size(); ++e)
      EXPECT_NEAR(total[e], fd[e], 1e-6 * (1 + std::abs(fd[e]))) << "finite differences, " << name << "[" << e << "]";
  }
  for (size_t i = 3 * k; i < got.size(); ++i)
    EXPECT_EQ(max_abs(got[i].data), 0.0) << "the group loss reaches the class head";
}

TEST(MultitaskHard, SharedTrunkGradientIsTheSumOfTaskGradientsMlp) {
  ClassifierConfig model;
  model.model = "mlp";
  model.image = 4;
  model.hidden = 6;
  model.input_mean = 0.4;
  model.input_std = 0.3;
  check_hard_sharing_gradients(model, 6, {});
}

TEST(MultitaskHard, SharedTrunkGradientIsTheSumOfTaskGradientsLenet) {
  ClassifierConfig model;
  model.image = 16;
  check_hard_sharing_gradients(model, 3, {"net.trunk.conv1.b", "net.trunk.fc2.b"});
}

int64_t tower_parameters(const ClassifierConfig& model) {
  Graph g;
  classifier_params(g, model);
  ParamStore s;
  s.ensure(g);
  return count_parameters(s, "net.");
}

TEST(MultitaskParams, CountsFollowTheSharing) {
  MultitaskConfig cfg;
  auto count = [&](const std::string& mode) {
    cfg.mode = mode;
    return multitask_parameter_count(cfg);
  };
  const int64_t class_tower = tower_parameters(task_model(cfg, 0)), group_tower = tower_parameters(task_model(cfg, 1));
  EXPECT_EQ(class_tower, 61706);  // LeNet-5 on 28x28, 10 classes
  EXPECT_EQ(group_tower, 61706 - 7 * 85);
  const int64_t single = count("single");
  EXPECT_EQ(single, class_tower + group_tower);
  EXPECT_EQ(count("soft"), class_tower + group_tower);
  EXPECT_LT(count("hard"), single);
  EXPECT_EQ(count("hard"), class_tower + 84 * 3 + 3);  // one trunk, a second head
  EXPECT_EQ(count("hard-uncertainty"), count("hard") + 2);
  EXPECT_EQ(count("cross-stitch"), single + 4 * 2 * 2);  // a [T, T] unit after each of the 4 trunk layers
  EXPECT_EQ(count("moe"), 156 + 2416 + 4 * (400 * 84 + 84) + 400 * 4 + 850 + 255);
  cfg.mode = "gradnorm";
  EXPECT_NE(testing::error_of([&] { multitask_parameter_count(cfg); }).find("unknown multi-task mode 'gradnorm'"),
            std::string::npos);
  cfg.mode = "moe";
  cfg.model.model = "mlp";
  EXPECT_NE(testing::error_of([&] { multitask_parameter_count(cfg); }).find("needs a convolutional trunk"),
            std::string::npos);
}

TEST(MultitaskParams, HardTrunkStartsAsTheSingleClassTower) {
  MultitaskConfig cfg;
  ParamStore single, hard;
  for (auto [mode, store] : {std::pair{"single", &single}, std::pair{"hard", &hard}}) {
    cfg.mode = mode;
    Graph g;
    multitask_weights(g, cfg);
    store->ensure(g);
  }
  for (const std::string layer : {"conv1", "conv2", "fc1", "fc2"})
    for (const char* part : {".w", ".b"}) {
      const auto a = single.data("net.class." + layer + part), b = hard.data("net.trunk." + layer + part);
      EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << layer << part;
    }
  const auto a = single.data("net.class.conv1.w"), b = single.data("net.group.conv1.w");
  EXPECT_FALSE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << "towers should start apart";
}

TEST(MultitaskTraining, ShortRunLowersEveryTaskLossInEveryMode) {
  const ImageSet train = first_images(load_fashion_mnist(kFashionMnistDir, false), 384);
  for (const std::string& mode : multitask_modes()) {
    MultitaskConfig cfg;
    cfg.mode = mode;
    cfg.epochs = 3;
    cfg.batch = 32;
    std::tie(cfg.model.input_mean, cfg.model.input_std) = pixel_mean_std(train);
    ParamStore store;
    const TaskMetrics before = evaluate_multitask(cfg, store, train);
    const MultitaskResult r = train_multitask(cfg, train, train, nullptr, &store);
    ASSERT_EQ(r.epoch_test.size(), 3u) << mode;
    EXPECT_EQ(r.parameters, multitask_parameter_count(cfg)) << mode;
    if (mode == "hard-uncertainty") {
      // Learned weights exp(-s_t): moved from their start at 1, and read from the store.
      ASSERT_EQ(r.task_weights.size(), cfg.tasks.size());
      for (size_t t = 0; t < cfg.tasks.size(); ++t) {
        EXPECT_NE(r.task_weights[t], 1.0);
        EXPECT_DOUBLE_EQ(r.task_weights[t], std::exp(-double(store.data(fmt::format("net.mtl.log_var.{}", t))[0])));
      }
    } else {
      EXPECT_TRUE(r.task_weights.empty()) << mode;
    }
    for (size_t t = 0; t < cfg.tasks.size(); ++t) {
      EXPECT_LT(r.test.loss[t], 0.8 * before.loss[t]) << mode << " " << cfg.tasks[t].name;
      EXPECT_GE(r.test.accuracy[t], 0.0);
      EXPECT_LE(r.test.accuracy[t], 1.0);
    }
  }
}

TEST(MultitaskTraining, LabelOutsideTheTaskMapsIsAnError) {
  ImageSet set = first_images(load_fashion_mnist(kFashionMnistDir, false), 64);
  set.labels[3] = 12;
  MultitaskConfig cfg;
  testing::expect_runtime_error([&] { train_multitask(cfg, set, set, nullptr); },
                                {"training label 12", "task 'class'"});
}

// ---------------------------------------------------------------- command line

// Drops every "seconds" member (and the compile time): wall-clock time is the only thing allowed
// to differ between runs.
void drop_timings(nlohmann::json& j) {
  if (j.is_object()) j.erase("seconds"), j.erase("timing"), j.erase("compile_seconds");
  if (j.is_object() || j.is_array())
    for (auto& v : j) drop_timings(v);
}

TEST(MultitaskCli, TableAndJsonForEveryModeAndReproducible) {
  const auto dir = std::filesystem::temp_directory_path();
  const std::string table = (dir / "metagrad_multitask.md").string();
  std::vector<nlohmann::json> runs;
  for (int i = 0; i < 2; ++i) {
    const std::string json = (dir / ("metagrad_multitask_" + std::to_string(i) + ".json")).string();
    const testing::CliRun r =
        testing::run("bench multitask --max-train 256 --max-test 300 --epochs 1 --seeds 2 --threads 1 --quiet --json " +
                     json + " --table " + table);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("| cross-stitch |"), std::string::npos) << r.out;
    runs.push_back(nlohmann::json::parse(std::ifstream(json)));
    std::filesystem::remove(json);
  }
  EXPECT_EQ(runs[0]["command"], "bench multitask");
  EXPECT_TRUE(runs[0]["timing"].contains("train_seconds"));
  const nlohmann::json& j = runs[0]["result"];
  ASSERT_EQ(j["modes"].size(), multitask_modes().size());
  for (size_t m = 0; m < multitask_modes().size(); ++m) {
    const nlohmann::json& mode = j["modes"][m];
    EXPECT_EQ(mode["mode"], multitask_modes()[m]);
    EXPECT_GT(mode["parameters"].get<int64_t>(), 0);
    for (const char* task : {"class", "group"}) {
      const nlohmann::json& t = mode["tasks"][task];
      ASSERT_EQ(t["accuracy"].size(), 2u) << mode["mode"] << " " << task;
      for (double a : t["accuracy"].get<std::vector<double>>()) {
        EXPECT_GE(a, 0.0);
        EXPECT_LE(a, 1.0);
      }
      EXPECT_GE(t["accuracy_ci95"].get<double>(), 0.0);
    }
  }
  for (nlohmann::json& r : runs) drop_timings(r);
  EXPECT_EQ(runs[0], runs[1]) << "same seeds gave different results";
  std::stringstream md;
  md << std::ifstream(table).rdbuf();
  for (const std::string& mode : multitask_modes())
    EXPECT_NE(md.str().find("| " + mode + " |"), std::string::npos) << mode;
  std::filesystem::remove(table);
}

TEST(MultitaskCli, BadFlagsAndMissingDataAreClearErrors) {
  const testing::CliRun missing = testing::run("bench multitask --data /nonexistent/fm --epochs 1");
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.err.find("/nonexistent/fm: no such data folder"), std::string::npos) << missing.err;
  EXPECT_EQ(testing::lines(missing.err), 1u) << missing.err;
  const testing::CliRun mode = testing::run("bench multitask --modes hard,gradnorm");
  EXPECT_EQ(mode.status, 2);
  EXPECT_NE(mode.err.find("gradnorm"), std::string::npos) << mode.err;
  EXPECT_EQ(testing::lines(mode.err), 1u) << mode.err;
  const testing::CliRun topk = testing::run("bench multitask --experts 2 --top-k 3 --max-train 64");
  EXPECT_EQ(topk.status, 1);
  EXPECT_NE(topk.err.find("--top-k 3 exceeds --experts 2"), std::string::npos) << topk.err;
  const testing::CliRun help = testing::run("bench multitask --help");
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("--tie-strength"), std::string::npos) << help.out;
}

}  // namespace
}  // namespace metagrad
