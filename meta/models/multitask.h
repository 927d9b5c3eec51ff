// Multi-task learning on Fashion-MNIST with LeNet-5 towers: two tasks read off the same labels (the
// 10 classes and 3 coarse groups) trained alone or together with hard sharing (one trunk, a head
// per task, fixed or learned-uncertainty loss weights), soft sharing (an L2 tie between towers),
// cross-stitch units, or a mixture-of-experts layer. Every task's target is built inside the graph
// from the fed class labels, so the generic training loop and evaluation of supervised.h serve.
#pragma once
#include <ostream>
#include <string>
#include <vector>

#include "meta/data/idx.h"
#include "meta/models/classifier.h"
#include "meta/train/supervised.h"
#include "metagrad/builder.h"
#include "metagrad/optimizers.h"

namespace metagrad {

class ParamStore;

// A task defined on the dataset's labels: label_map[c] is the task's label of dataset class c.
struct TaskSpec {
  std::string name;
  int64_t classes = 0;
  std::vector<int32_t> label_map;
};

// "class": the 10 Fashion-MNIST classes; "group": footwear (sandal, sneaker, ankle boot) 0, upper
// body (T-shirt, pullover, coat, shirt) 1, other (trouser, dress, bag) 2.
const std::vector<TaskSpec>& fashion_tasks();

// How the towers' trunks are shared: one trunk per task, one trunk for all (hard sharing), or one
// trunk of the convolutions followed by a mixture-of-experts layer in place of the dense layers.
enum class TrunkSharing { per_task, shared, convolutions_then_experts };

// One row per multi-task mode: everything the model builder and the command line derive from a
// mode's name is read from here.
struct MultitaskMode {
  std::string name;
  TrunkSharing trunk = TrunkSharing::per_task;
  bool cross_stitch = false;  // cross-stitch units mix the towers after every trunk layer
  bool tie = false;           // an L2 tie between the towers' trunks (tie_strength)
  bool uncertainty = false;   // learned-uncertainty task weights instead of fixed ones
};

// single hard hard-uncertainty soft cross-stitch moe
const std::vector<MultitaskMode>& multitask_mode_table();
// The row of `name`; GraphError listing the known modes otherwise.
const MultitaskMode& multitask_mode(const std::string& name);
// The names of multitask_mode_table(), in its order.
const std::vector<std::string>& multitask_modes();

// One-hot task targets [N, task.classes] of i32 dataset labels y [N]: one_hot(y) @ the 0/1 label map.
Tensor task_targets(const Tensor& y, const TaskSpec& task);

// -mean over rows of sum(target * log_softmax(logits)): cross-entropy against (one-hot or soft) targets.
Tensor target_cross_entropy(const Tensor& logits, const Tensor& target);

// Share of rows whose largest logit is at the one-hot target's class.
Tensor target_accuracy(const Tensor& logits, const Tensor& target);

struct MultitaskConfig {
  ClassifierConfig model;  // the tower architecture and input standardisation; classes come from the tasks
  std::vector<TaskSpec> tasks = fashion_tasks();
  std::string mode = "hard";
  double tie_strength = 1e-3;       // soft: l2_tie_penalty strength
  double stitch_self_weight = 0.9;  // cross-stitch: diagonal of the initial mixing matrices
  int64_t experts = 4, top_k = 2;   // moe
  double balance_weight = 0.01;     // moe: weight of the load-balancing loss
  OptimizerConfig opt;
  int64_t epochs = 1, batch = 64, eval_batch = 1000;
  uint64_t seed = 1;  // data order (initialisation: model.seed)
  std::string label;  // progress-bar label
  GradientCombiner combine;  // set into opt.combine_gradients when the step is built (DriverConfig::combine_gradients)
  CompileOptions compile;    // of the training step (DriverConfig::compile)
};

// Tower t's classifier: the task's class count, and its own initialisation seed model.seed * T + t
// (so the towers of one run differ and no two runs share a tower).
ClassifierConfig task_model(const MultitaskConfig& cfg, size_t task);

// The classifier weights a mode reads, all named under "net.": the layers before the last ("trunk")
// and the last layer ("head", w and b). Hard sharing has one trunk, "net.trunk.*", initialised as
// task 0's tower; moe one trunk of the convolutions only; the other modes one trunk per task,
// "net.<task>.*". Heads are always per task, "net.<task>.<last layer>.*".
struct MultitaskWeights {
  std::vector<std::vector<Tensor>> trunks;
  std::vector<std::vector<Tensor>> heads;
};

// Creates the mode's classifier parameters in g (only those the mode reads).
MultitaskWeights multitask_weights(Graph& g, const MultitaskConfig& cfg);

struct MultitaskModel {
  std::vector<Tensor> logits, losses, accuracies;  // per task
  Tensor loss;  // the training objective: weighted task losses plus the tie penalty or balance loss
};

// The mode's forward pass on images x [N, 1, H, W] with dataset labels y [N] i32. `w` may hold
// parameters or any other tensors of g (inputs, for gradient checks). The sharing blocks add their own
// parameters: "net.mtl.log_var.<t>" (hard-uncertainty), "net.stitch<k>.alpha_delta" after trunk
// layer k (cross-stitch), "net.moe.*" (moe, whose experts replace the fully connected trunk layers).
MultitaskModel multitask_model(Graph& g, const Tensor& x, const Tensor& y, const MultitaskWeights& w,
                               const MultitaskConfig& cfg);

// Trainable elements under "net." of a mode's model (building it in a scratch store).
int64_t multitask_parameter_count(const MultitaskConfig& cfg);

struct TaskMetrics {
  std::vector<double> loss, accuracy;  // per task
};

// Mean task losses and accuracies over `set` of the weights in `store` (initialised there if absent).
TaskMetrics evaluate_multitask(const MultitaskConfig& cfg, ParamStore& store, const ImageSet& set);

struct MultitaskResult {
  TaskMetrics test;                     // after the last epoch
  std::vector<TaskMetrics> epoch_test;  // after each epoch
  SupervisedResult training;            // loss curve, timing; test_accuracy of its epochs is task 0's
  int64_t parameters = 0;
  std::vector<double> task_weights;     // hard-uncertainty: each task loss's learned weight exp(-s_t) at the end
};

// Trains the mode with cfg.opt on `train` (evaluating on `test` after each epoch) in a fresh store,
// or in `store` when given, which keeps the weights. RuntimeError on a label outside the tasks' maps.
MultitaskResult train_multitask(const MultitaskConfig& cfg, const ImageSet& train, const ImageSet& test,
                                std::ostream* progress, ParamStore* store = nullptr);

}  // namespace metagrad
