// Parameter-sharing building blocks for multi-task and conditional models, all plain graph so every
// order of derivative exists: loss weighting for hard sharing (fixed or learned uncertainty), an L2
// tie between towers (soft sharing), cross-stitch units, a top-k mixture of experts with a
// load-balancing loss, and an MLP that reuses one weight across layers.
#pragma once
#include <string>
#include <vector>

#include "metagrad/builder.h"

namespace metagrad {

// ---- hard sharing: one trunk, several task losses ----

// Combines one-element task losses into one scalar [].
//   "fixed":       sum_i w_i L_i, with w = fixed_weights (all 1 when empty).
//   "uncertainty": sum_i exp(-s_i) L_i + s_i (Kendall, Gal & Cipolla 2018) with learned log-variances
//                  s_i, scalar parameters "<prefix>.log_var.<i>" initialised to 0 (so the start is sum L_i).
// Throws GraphError on an unknown mode, a weight count that does not match, or weights with
// "uncertainty"; ShapeError on a loss with more than one element.
Tensor weighted_task_loss(Graph& g, const std::vector<Tensor>& task_losses, const std::string& mode,
                          const std::vector<double>& fixed_weights = {}, const std::string& prefix = "mtl");

// ---- soft sharing: separate towers pulled together ----

// strength * sum over tower pairs (a, b) and positions k of ||a_k - b_k||^2, a scalar []. All towers
// list the same number of tensors and corresponding tensors have the same shape (ShapeError naming
// both otherwise); at least two towers and strength >= 0 (GraphError otherwise).
Tensor l2_tie_penalty(const std::vector<std::vector<Tensor>>& towers, double strength);

// ---- cross-stitch units (Misra et al. 2016) ----

// The initial T x T mixing matrix, row-major: self_weight on the diagonal, (1 - self_weight) / (T - 1)
// elsewhere, so each row sums to 1.
std::vector<double> cross_stitch_init(int64_t tasks, double self_weight);

// output_i = sum_j alpha[i][j] * activation_j with the mixing matrix
//   alpha = cross_stitch_init(T, self_weight) + "<name>.alpha_delta",
// a [T, T] parameter initialised to zeros. The engine's initializers fill a tensor uniformly, so the
// learned matrix is stored as its offset from the non-uniform start; under any optimizer that is
// translation invariant (SGD, momentum, Adam without weight decay) this trains exactly as a directly
// learned alpha. Needs T >= 2 activations of one shape.
std::vector<Tensor> cross_stitch(Graph& g, const std::vector<Tensor>& task_activations, const std::string& name,
                                 double self_weight = 0.9);

// The same mixing with a given [T, T] matrix (a parameter, a constant, or a meta-learned tensor).
std::vector<Tensor> cross_stitch(const std::vector<Tensor>& task_activations, const Tensor& alpha);

// ---- mixture of experts (Shazeer et al. 2017; Fedus et al. 2021's balance loss) ----

struct MoeLayer {
  Tensor output;        // [N, out]: sum_e gates[n, e] * expert_e(x_n)
  Tensor balance_loss;  // []: E * sum_e f_e * P_e, 1 when routing and gate probabilities are uniform
  Tensor gates;         // [N, E]: the softmax renormalised over each row's top_k experts, 0 elsewhere
};

// Experts are linear layers, weights "<name>.expert.w" [E, D, out] and biases "<name>.expert.b"
// [E, 1, out]; the gate is linear, "<name>.gate.w" [D, E] (all U(-1/sqrt(D), 1/sqrt(D)), seeds from
// `seed`). Each row keeps its top_k gate logits (ties go to the lower expert index); the others are
// masked out before the softmax. The mask is built from top_k rounds of max + comparison and carries
// no gradient. In the balance loss f_e is the share of the N * top_k routing slots that expert e gets
// (a constant) and P_e the mean over rows of the full softmax gate probability of e. Every expert is
// evaluated on every row (a static graph cannot dispatch); top_k == E is exactly the dense mixture.
// x is [N, D]; ShapeError/GraphError on another rank or top_k outside [1, E].
MoeLayer mixture_of_experts(Graph& g, const Tensor& x, int64_t experts, int64_t out, int64_t top_k,
                            const std::string& name, uint64_t seed);

// The top-k routing mask of logits [N, E]: 1 at each row's k largest entries, lower index first on ties.
Tensor top_k_mask(const Tensor& logits, int64_t k);

// ---- cross-layer sharing (as in ALBERT / universal transformers) ----

// h <- h @ w + b applied `layers` times with one square w [D, D], ReLU between layers (not after the
// last). One parameter read in many places: autodiff sums its gradient over the uses.
Tensor shared_mlp(const Tensor& x, const Tensor& w, const Tensor& b, int64_t layers);

}  // namespace metagrad
