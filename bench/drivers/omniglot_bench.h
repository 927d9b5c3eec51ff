// The Omniglot few-shot benchmark: meta-train any algorithm of the family on the classes of
// images_background_small1, evaluate on episodes of the held-out classes of images_background_small2.
// The same benchmark runs on a folder of class-per-folder images of your own (meta/data/image_folders.h).
#pragma once
#include <ostream>
#include <string>

#include "bench/drivers/conv_bench.h"

namespace metagrad {

// Where the Omniglot archives are looked for unless --data says otherwise: the repository's data/omniglot
// beside the source tree.
std::string default_omniglot_dir();

struct OmniglotBenchConfig {
  ConvBenchConfig run;            // run.run.iters < 0 and run.eval_steps < 0 take the algorithm's defaults
  bool within_alphabet = false;   // draw each episode's classes from one alphabet
  std::string data_dir;           // zip: holds images_background_small1.zip and _small2.zip; folders: the images
  std::string format = "zip";     // zip (the Omniglot archives) or folders (load_image_folders)
  // folders: held-out classes from this folder; empty: `held_out` of data_dir's classes (alphabets) are held out.
  std::string eval_dir;
  double held_out = 0.3;
  bool invert = false;            // folders: dark strokes on white (as Omniglot's scans) become ink on 0
};

// Default budgets, chosen so that each default run finishes within 30 minutes on two cores, and the
// inner steps taken at evaluation; both read the algorithm's row of fewshot_algorithm_table().
int64_t default_iters(const FewShotConfig& cfg);
int64_t default_eval_steps(const FewShotConfig& cfg);

struct OmniglotBenchResult {
  ConvBenchResult run;
  int64_t iters = 0, train_classes = 0, eval_classes = 0;
  double load_seconds = 0;
};

// Loads the data (a missing or corrupt archive, folder or image is a RuntimeError naming it), trains
// (unless the budget is 0) and evaluates. The learned state stays in `store`, which may hold a
// checkpoint to continue from. Progress goes to cfg.run.run.progress.
OmniglotBenchResult run_omniglot_bench(const OmniglotBenchConfig& cfg, ParamStore& store);

}  // namespace metagrad
