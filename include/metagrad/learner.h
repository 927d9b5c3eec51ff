// The inner loop shared by every gradient-based meta-learner: what is adapted, the loss it is
// adapted on, and what the adapted state predicts. MAML, Meta-SGD, ANIL, Reptile and Proto-MAML
// differ only in how they fill a Learner, on the sinusoid MLP and on the conv network alike.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "metagrad/builder.h"
#include "metagrad/optimizers.h"

namespace metagrad {

struct Learner {
  std::vector<Tensor> initial;                                      // the state the inner loop starts from
  std::function<Tensor(const std::vector<Tensor>&)> support_loss;   // adapted on
  std::function<Tensor(const std::vector<Tensor>&)> predict;        // query predictions of a state
  std::vector<Tensor> rates;  // Meta-SGD: a learned step size per element of each state tensor; empty: the scalar lr
};

// One SGD step w - lr * grad (or w - rates ⊙ grad). `first_order` cuts the step's gradient out of
// any outer derivative (first-order MAML, Reptile, evaluation).
std::vector<Tensor> inner_step(const Learner& l, const std::vector<Tensor>& w, double lr, bool first_order);
// `steps` inner steps. With `as_loop` they are one scan node whose body is one inner step (the
// learner's closures are outlined into it), so kernels and compile time stay flat in `steps`.
std::vector<Tensor> adapt(const Learner& l, int64_t steps, double lr, bool first_order, bool as_loop = false);

// Meta-SGD's learned step sizes, one tensor per parameter with its shape, named "metasgd.<param>".
std::vector<Tensor> metasgd_rates(Graph& g, const std::vector<Tensor>& params, const Init& init);

// Reptile's outer direction for one task: parameters minus adapted weights, summed to the
// parameters' shapes (per-task copies [T, ...] are summed over tasks) and divided by `tasks`.
std::vector<Tensor> reptile_direction(const std::vector<Tensor>& params, const std::vector<Tensor>& adapted,
                                      int64_t tasks);

// The outer update every meta-learner here closes its step with: Adam at `meta_lr` on `params`,
// state prefixed "adam".
void add_meta_update(Graph& g, const std::vector<Tensor>& params, const std::vector<Tensor>& grads, double meta_lr,
                     const GradientCombiner& combine = {});

// Exposes meta-gradients as outputs "grad:<param name>", for checks against finite differences.
void add_gradient_outputs(Graph& g, const std::vector<Tensor>& params, const std::vector<Tensor>& grads);

}  // namespace metagrad
