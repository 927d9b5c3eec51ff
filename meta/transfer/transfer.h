// Fine-grained weight transfer as graph: which parameters a fine-tune may change and how fast
// (freezing, per-element masks, gradual unfreezing, per-layer multipliers), L2-SP toward the
// pre-trained weights, and knowledge distillation from a teacher's softened predictions.
#pragma once
#include <string>
#include <vector>

#include "meta/data/idx.h"
#include "metagrad/builder.h"

namespace metagrad {

class ParamStore;

// How one parameter is transferred and trained.
struct ParamTransfer {
  bool pretrained = false;      // its start value comes from a source model (L2-SP anchors it there)
  double lr_multiplier = 1.0;   // discriminative fine-tuning; 0 freezes: the parameter is left out of
                                // the gradient and the optimizer, so it stays bit-identical
  int64_t unfreeze_step = 0;    // gradual unfreezing: its update is multiplied by 0 before this step
  bool element_mask = false;    // its update is multiplied elementwise by the persistent 0/1 tensor
                                // "<mask prefix>.<param>" (initialised to 1; set it in the store)
};

// Hyper::lr_scale entries for `params` (undefined where the scale is the constant 1):
// lr_multiplier * [step >= unfreeze_step] * mask. `step` is the optimizer's step counter before
// the update (0 on the first step). Throws GraphError when the lists differ in length.
std::vector<Tensor> transfer_lr_scales(Graph& g, const std::vector<ParamTransfer>& plan, const std::vector<Tensor>& params,
                                       const Tensor& step, const std::string& mask_prefix = "mask");

// Elementwise product of two lists of optional scales (undefined = 1); either list may be empty.
std::vector<Tensor> combine_scales(const std::vector<Tensor>& a, const std::vector<Tensor>& b);

// L2-SP (Li, Grandvalet & Davoine 2018): alpha/2 * sum ||w - w0||^2 over pre-trained parameters,
// anchored at the non-trainable "<anchor_prefix>.<param>" (which the trainer fills with the start
// weights), plus beta/2 * sum ||w||^2 over the others. A scalar [].
Tensor l2sp_penalty(Graph& g, const std::vector<Tensor>& params, const std::vector<ParamTransfer>& plan, double alpha,
                    double beta, const std::string& anchor_prefix = "sp");
std::string anchor_name(const Tensor& param, const std::string& anchor_prefix = "sp");

// Hinton et al. (2015): T^2 * mean over rows of KL(softmax(teacher/T) || softmax(student/T)); the
// teacher side carries no gradient. The T^2 keeps the soft gradients' scale independent of T.
Tensor soft_target_loss(const Tensor& student_logits, const Tensor& teacher_logits, double temperature);

// (1 - alpha) * cross_entropy(student, labels) + alpha * soft_target_loss. The labels may cover only
// the first rows (labelled images stacked above unlabelled ones): the soft targets use every row.
Tensor distillation_loss(const Tensor& student_logits, const Tensor& teacher_logits, const Tensor& labels,
                         double temperature, double alpha);

// Copies the values of every parameter "<from_prefix>.X" of `from` into "<to_prefix>.X" of `to`
// for the given X (e.g. "conv1.w"); both must exist with the same size (RuntimeError otherwise).
void copy_params(const ParamStore& from, const std::string& from_prefix, ParamStore& to, const std::string& to_prefix,
                 const std::vector<std::string>& suffixes);

// `per_class` images of each label in [0, classes), chosen by `seed` (RuntimeError when a class has
// fewer); the rest of the set is returned as the second element (e.g. an unlabelled pool).
std::pair<ImageSet, ImageSet> sample_per_class(const ImageSet& set, int64_t classes, int64_t per_class, uint64_t seed);

// The images at `indices`, in that order.
ImageSet subset(const ImageSet& set, const std::vector<int64_t>& indices);

}  // namespace metagrad
