#include "metagrad/learner.h"

#include "metagrad/autodiff.h"
#include "metagrad/ops.h"
#include "metagrad/optimizers.h"
#include "metagrad/scan.h"

namespace metagrad {

std::vector<Tensor> inner_step(const Learner& l, const std::vector<Tensor>& w, double lr, bool first_order) {
  std::vector<Tensor> g = grad(l.support_loss(w), w);
  std::vector<Tensor> next;
  for (size_t i = 0; i < w.size(); ++i) {
    Tensor gi = first_order ? stop_gradient(g[i]) : g[i];
    next.push_back(w[i] - (l.rates.empty() ? lr * gi : l.rates[i] * gi));
  }
  return next;
}

std::vector<Tensor> adapt(const Learner& l, int64_t steps, double lr, bool first_order, bool as_loop) {
  if (as_loop && steps > 0)
    return scan_closure(steps, l.initial, {}, [&](const std::vector<Tensor>& w, const std::vector<Tensor>&) {
             return ScanStep{inner_step(l, w, lr, first_order), {}};
           }).carries;
  std::vector<Tensor> w = l.initial;
  for (int64_t s = 0; s < steps; ++s) w = inner_step(l, w, lr, first_order);
  return w;
}

std::vector<Tensor> metasgd_rates(Graph& g, const std::vector<Tensor>& params, const Init& init) {
  std::vector<Tensor> rates;
  for (size_t i = 0; i < params.size(); ++i) {
    Init per_tensor = init;
    // Random initialisers get a seed per tensor so the rates of different tensors differ.
    if (auto it = per_tensor.attrs.find("seed"); it != per_tensor.attrs.end())
      it->second = std::get<int64_t>(it->second) + int64_t(i);
    rates.push_back(parameter(g, "metasgd." + params[i].node().name, params[i].shape(), per_tensor));
  }
  return rates;
}

std::vector<Tensor> reptile_direction(const std::vector<Tensor>& params, const std::vector<Tensor>& adapted,
                                      int64_t tasks) {
  std::vector<Tensor> d;
  for (size_t i = 0; i < params.size(); ++i)
    d.push_back(sum_to_shape(stop_gradient(params[i] - adapted[i]), params[i].shape()) * (1.0 / double(tasks)));
  return d;
}

void add_meta_update(Graph& g, const std::vector<Tensor>& params, const std::vector<Tensor>& grads, double meta_lr,
                     const GradientCombiner& combine) {
  OptimizerConfig adam;
  adam.name = "adam";
  adam.lr = meta_lr;
  adam.combine_gradients = combine;
  add_updates(g, params, optimizer_step(g, adam, params, grads, {}, "adam"));
}

void add_gradient_outputs(Graph& g, const std::vector<Tensor>& params, const std::vector<Tensor>& grads) {
  for (size_t i = 0; i < params.size(); ++i) g.add_output("grad:" + params[i].node().name, grads[i].value());
}

}  // namespace metagrad
