#include "meta/transfer/transfer.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>

#include "metagrad/error.h"
#include "metagrad/ops.h"
#include "metagrad/param_store.h"

namespace metagrad {

namespace {

std::string param_name(const Tensor& p) {
  const std::string& name = p.node().name;
  if (name.empty()) throw GraphError(fmt::format("value v{} is not a named parameter", p.value().node));
  return name;
}

void check_plan(const std::vector<ParamTransfer>& plan, const std::vector<Tensor>& params) {
  if (plan.size() != params.size())
    throw GraphError(fmt::format("transfer plan has {} entries for {} parameters", plan.size(), params.size()));
}

}  // namespace

std::string anchor_name(const Tensor& param, const std::string& anchor_prefix) {
  return anchor_prefix + "." + param_name(param);
}

std::vector<Tensor> transfer_lr_scales(Graph& g, const std::vector<ParamTransfer>& plan, const std::vector<Tensor>& params,
                                       const Tensor& step, const std::string& mask_prefix) {
  check_plan(plan, params);
  std::vector<Tensor> out(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const ParamTransfer& t = plan[i];
    if (t.lr_multiplier < 0) throw GraphError(fmt::format("{}: negative learning-rate multiplier {}", param_name(params[i]), t.lr_multiplier));
    Tensor s;
    if (t.lr_multiplier != 1.0) s = scalar(g, t.lr_multiplier);
    if (t.unfreeze_step > 0) {
      // A 0/1 gate from the step counter, so one compiled step serves the whole schedule.
      Tensor open = greater_equal(step, scalar(g, double(t.unfreeze_step)));
      s = s.defined() ? s * open : open;
    }
    if (t.element_mask) {
      Tensor mask = parameter(g, mask_prefix + "." + param_name(params[i]), params[i].shape(), Init::ones(), false);
      s = s.defined() ? s * mask : mask;
    }
    out[i] = s;
  }
  return out;
}

std::vector<Tensor> combine_scales(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  if (a.size() != b.size()) throw GraphError(fmt::format("combining {} scales with {}", a.size(), b.size()));
  std::vector<Tensor> out(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].defined()) out[i] = b[i];
    else if (!b[i].defined()) out[i] = a[i];
    else out[i] = a[i] * b[i];
  }
  return out;
}

Tensor l2sp_penalty(Graph& g, const std::vector<Tensor>& params, const std::vector<ParamTransfer>& plan, double alpha,
                    double beta, const std::string& anchor_prefix) {
  check_plan(plan, params);
  if (alpha < 0 || beta < 0) throw GraphError(fmt::format("L2-SP strengths must be >= 0, got alpha {} beta {}", alpha, beta));
  Tensor total = scalar(g, 0.0);
  for (size_t i = 0; i < params.size(); ++i) {
    if (plan[i].pretrained) {
      if (alpha == 0) continue;
      Tensor anchor = parameter(g, anchor_name(params[i], anchor_prefix), params[i].shape(), Init::zeros(), false);
      total = total + sum(square(params[i] - anchor)) * (alpha / 2);
    } else if (beta != 0) {
      total = total + sum(square(params[i])) * (beta / 2);
    }
  }
  return total;
}

Tensor soft_target_loss(const Tensor& student_logits, const Tensor& teacher_logits, double temperature) {
  if (temperature <= 0) throw GraphError(fmt::format("distillation temperature must be > 0, got {}", temperature));
  if (student_logits.shape() != teacher_logits.shape() || student_logits.rank() != 2)
    throw ShapeError(fmt::format("student logits {} and teacher logits {} must be the same [N, C]",
                                 shape_str(student_logits.shape()), shape_str(teacher_logits.shape())));
  const double inv_t = 1.0 / temperature;
  Tensor log_p = stop_gradient(log_softmax(teacher_logits * inv_t));
  Tensor log_q = log_softmax(student_logits * inv_t);
  // KL(p || q) = sum p (log p - log q); the p log p term carries no gradient but keeps the value a true KL.
  Tensor kl = sum(exp(log_p) * (log_p - log_q), {1});
  return mean(kl) * (temperature * temperature);
}

Tensor distillation_loss(const Tensor& student_logits, const Tensor& teacher_logits, const Tensor& labels,
                         double temperature, double alpha) {
  if (alpha < 0 || alpha > 1) throw GraphError(fmt::format("distillation weight must be in [0, 1], got {}", alpha));
  const int64_t labelled = labels.dim(0), rows = student_logits.dim(0);
  if (labelled > rows)
    throw ShapeError(fmt::format("{} labels for {} rows of student logits", labelled, rows));
  Tensor hard = labelled == rows ? student_logits : slice(student_logits, {0, 0}, {labelled, student_logits.dim(1)});
  return cross_entropy(hard, labels) * (1 - alpha) + soft_target_loss(student_logits, teacher_logits, temperature) * alpha;
}

void copy_params(const ParamStore& from, const std::string& from_prefix, ParamStore& to, const std::string& to_prefix,
                 const std::vector<std::string>& suffixes) {
  for (const std::string& s : suffixes) {
    const std::string src = from_prefix + "." + s, dst = to_prefix + "." + s;
    if (!from.has(src)) throw RuntimeError(fmt::format("source model has no parameter '{}'", src));
    if (!to.has(dst)) throw RuntimeError(fmt::format("target model has no parameter '{}'", dst));
    to.set(dst, from.data(src));
  }
}

ImageSet subset(const ImageSet& set, const std::vector<int64_t>& indices) {
  ImageSet out;
  out.rows = set.rows;
  out.cols = set.cols;
  out.count = int64_t(indices.size());
  const int64_t ppi = set.pixels_per_image();
  out.pixels.resize(size_t(out.count * ppi));
  out.labels.resize(size_t(out.count));
  for (size_t k = 0; k < indices.size(); ++k) {
    const int64_t i = indices[k];
    if (i < 0 || i >= set.count) throw RuntimeError(fmt::format("image index {} outside a set of {}", i, set.count));
    std::copy_n(set.pixels.begin() + i * ppi, ppi, out.pixels.begin() + int64_t(k) * ppi);
    out.labels[k] = set.labels[size_t(i)];
  }
  return out;
}

std::pair<ImageSet, ImageSet> sample_per_class(const ImageSet& set, int64_t classes, int64_t per_class, uint64_t seed) {
  if (per_class <= 0) throw RuntimeError(fmt::format("samples per class must be > 0, got {}", per_class));
  std::vector<std::vector<int64_t>> by_class(size_t(std::max<int64_t>(classes, 0)));
  for (int64_t i = 0; i < set.count; ++i) {
    const int32_t y = set.labels[size_t(i)];
    if (y >= 0 && y < classes) by_class[size_t(y)].push_back(i);
  }
  std::mt19937_64 rng(seed);
  std::vector<int64_t> chosen;
  for (int64_t c = 0; c < classes; ++c) {
    std::vector<int64_t>& idx = by_class[size_t(c)];
    if (int64_t(idx.size()) < per_class)
      throw RuntimeError(fmt::format("class {} has {} images, {} asked for", c, idx.size(), per_class));
    // A partial Fisher-Yates shuffle with our own draws, so the sample is the same on every standard library.
    for (int64_t k = 0; k < per_class; ++k) {
      const int64_t j = k + int64_t(rng() % uint64_t(int64_t(idx.size()) - k));
      std::swap(idx[size_t(k)], idx[size_t(j)]);
      chosen.push_back(idx[size_t(k)]);
    }
  }
  // Shuffled, so that minibatches drawn in order mix the classes.
  std::vector<int64_t> order(chosen.size());
  std::iota(order.begin(), order.end(), 0);
  for (size_t k = order.size(); k > 1; --k) std::swap(order[k - 1], order[size_t(rng() % k)]);
  std::vector<int64_t> picked(chosen.size());
  for (size_t k = 0; k < order.size(); ++k) picked[k] = chosen[size_t(order[k])];
  std::vector<char> taken(size_t(set.count), 0);
  for (int64_t i : picked) taken[size_t(i)] = 1;
  std::vector<int64_t> rest;
  for (int64_t i = 0; i < set.count; ++i)
    if (!taken[size_t(i)]) rest.push_back(i);
  return {subset(set, picked), subset(set, rest)};
}

}  // namespace metagrad
