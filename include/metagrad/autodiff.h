// Reverse-mode autodiff as a graph pass: appends the nodes that compute a gradient.
#pragma once
#include <vector>

#include "metagrad/builder.h"

namespace metagrad {

// Appends nodes computing d(y)/d(wrt[i]) for a scalar (one-element) y and returns them, one per
// wrt value, shaped like it. `wrt` may be any values of y's graph (parameters, inputs, or
// intermediates such as a broadcast copy of a weight). Gradients are ordinary nodes, so grad can
// be applied again to them. A wrt value that y does not depend on gets a zero tensor.
std::vector<Tensor> grad(const Tensor& y, const std::vector<Tensor>& wrt);

// Vector-Jacobian product for a non-scalar y: sum over y of cotangent * dy/dwrt.
std::vector<Tensor> vjp(const Tensor& y, const Tensor& cotangent, const std::vector<Tensor>& wrt);
// The same for several outputs at once: sum over i of cotangents[i] * d(ys[i])/d(wrt).
std::vector<Tensor> vjp(const std::vector<Tensor>& ys, const std::vector<Tensor>& cotangents,
                        const std::vector<Tensor>& wrt);

// Hessian-vector products (reverse over reverse): H v, where H is the Hessian of scalar y with
// respect to wrt and v has one tensor per wrt value.
std::vector<Tensor> hvp(const Tensor& y, const std::vector<Tensor>& wrt, const std::vector<Tensor>& v);

}  // namespace metagrad
