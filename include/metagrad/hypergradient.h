// The options of hypergradient descent (the optimizers sgd_hd, sgdn_hd, adam_hd), which keep their
// learning rate as state and move it along the hypergradient (Baydin et al. 2018).
#pragma once

namespace metagrad {

struct HypergradientOptions {
  // beta of the rate update; < 0 takes the rule's default: additive 1e-3 for the SGD family (as
  // Baydin et al.) and 1e-5 for Adam (their 1e-7 barely moves the rate in a few epochs here);
  // multiplicative 0.02.
  double hyper_lr = -1;
  // lr *= exp(beta * cos(g_t, u_{t-1})) instead of lr += beta * g_t . u_{t-1}.
  bool multiplicative = false;
  // Discount mu of the hypergradient's horizon. 0 (Baydin et al.): u is the last direction.
  // mu > 0: -u is the mu-discounted derivative of the parameters w.r.t. the rate over all past
  // steps (MARTHE), at one Hessian-vector product per step.
  double horizon = 0.0;
  // A safeguard the hypergradient cannot give. When this step's loss lies more than `guard` mean
  // absolute deviations above its running mean, the previous step is undone (parameters back to
  // before it, the rule's state unchanged but a velocity zeroed), the rate is cut to a quarter
  // instead of following the hypergradient, and the horizon's tangent restarts. Needs
  // Hyper::loss. 0 = off.
  double guard = 0.0;
  // The rate rises by at most this fraction per step; falls are not limited. 0 = off.
  double max_rise = 0.0;
};

}  // namespace metagrad
