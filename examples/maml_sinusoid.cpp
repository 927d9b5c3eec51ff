// Example: second-order MAML on sinusoids; one compiled graph holds every task's inner step,
// the outer gradient through it, and the Adam update.
#include <cstdio>

#include "meta/data/sinusoid.h"
#include "meta/learn/maml.h"
#include "metagrad/executable.h"
#include "metagrad/pipeline.h"

using namespace metagrad;

int main() {
  MamlConfig cfg;  // Finn et al.: K=10, one inner step of 0.01, 25 tasks, Adam 1e-3
  Graph step = build_meta_step(cfg);
  optimize(step);
  ParamStore params;
  Executable exe(step, params, {"loss", "pre_loss"});
  SinusoidSampler tasks(cfg.seed);
  SinusoidBatch b;
  const Shape s{cfg.meta_batch, cfg.shots, 1};
  for (int it = 0; it <= 5000; ++it) {
    tasks.sample(b, cfg.meta_batch, cfg.shots, cfg.query);
    exe.run({Feed::f32("xs", s, b.xs), Feed::f32("ys", s, b.ys), Feed::f32("xq", s, b.xq), Feed::f32("yq", s, b.yq)});
    if (it % 1000 == 0)
      std::printf("iteration %5d  query MSE before adaptation %.3f, after one step %.3f\n", it, exe.fetch("pre_loss")[0],
                  exe.fetch("loss")[0]);
  }
}
