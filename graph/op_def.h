// An op's single registry entry: attribute schema, shape rule, gradient rule, f64 reference
// implementation, f32 runtime kernel binding, and the cases its tests check.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "metagrad/attrs.h"
#include "metagrad/reference.h"
#include "metagrad/types.h"

namespace metagrad {

class Graph;
class Tensor;
struct Node;
class Kernel;
struct KernelCtx;

// Shape rule: input types and (defaults-filled) attributes -> output types; throws ShapeError
// with a message that names the shapes (the caller prefixes op and node).
using ShapeFn = std::function<std::vector<TensorType>(const std::vector<TensorType>& in, const Attrs& attrs)>;
// The shape rule of an op that holds a body graph (scan): it also checks the body's signature.
using BodyShapeFn = std::function<std::vector<TensorType>(const std::vector<TensorType>& in, const Attrs& attrs,
                                                          const Graph& body)>;

// Gradient rule: builds graph nodes for the cotangent of each input. Cotangents may have a
// broadcast-compatible shape (the autodiff pass sums them down to the input's shape); an empty
// Tensor means zero. Output cotangents that are zero arrive as empty Tensors.
struct GradCtx {
  const Node& node;
  std::vector<Tensor> inputs;
  std::vector<Tensor> outputs;
  std::vector<Tensor> cotangents;
  const Attrs& attrs;
  // Per input: whether the pass will use its cotangent (it depends on a wrt value). Rules may
  // skip the others; ops with a body use it to leave unneeded derivatives out of their loop.
  std::vector<bool> needs;
};
using GradFn = std::function<std::vector<Tensor>(const GradCtx&)>;

// f64 reference evaluation over RefTensor (metagrad/reference.h).
using RefFn = std::function<void(const Node& node, const std::vector<const RefTensor*>& in,
                                 std::vector<RefTensor>& out)>;

// f32 kernel factory, called once at compile time with fixed buffer addresses.
using KernelFactory = std::function<std::unique_ptr<Kernel>(const KernelCtx&)>;

// A case the registry-driven tests run: f32 kernel vs reference, and first/second-order
// finite-difference gradient checks of the differentiable inputs.
struct OpTestCase {
  std::vector<TensorType> inputs;
  Attrs attrs;
  double lo = -2.0, hi = 2.0;          // domain of random f32 inputs
  bool mirror = false;                 // also draw negatives: [-hi, -lo] ∪ [lo, hi] (kinks at 0)
  std::vector<bool> differentiable;    // per input; empty: every f32 input
  std::vector<int64_t> int_range;      // [lo, hi) for i32 inputs; default [0, 2)
  bool second_order = true;
  double tolerance = 1e-6;             // relative, on f64 finite differences
  // The f32 kernel against the f64 reference: within `kernel_ulp` ulps of the reference rounded
  // to f32, element by element, when >= 0 (pointwise kernels: docs/ARCHITECTURE.md, Kernel
  // accuracy); otherwise |f32 - f64| <= kernel_tolerance * max(1, |f64|).
  double kernel_ulp = -1;
  double kernel_tolerance = 1e-5;
  std::string note;
  std::shared_ptr<const Graph> body;   // ops that hold a graph (scan)
};

// f32 math of an elementwise op over `n` contiguous elements whose inputs are already
// broadcast; `param` carries the op's one float attribute (e.g. leaky_relu's alpha). Fused
// elementwise kernels chain these over cache-sized blocks.
using EltwiseFn = void (*)(int64_t n, const float* const* in, float* out, float param);

enum class GradKind : uint8_t {
  Rule,            // `grad` defines the derivative
  Zero,            // piecewise constant in every input (sign, comparisons, one_hot)
  StopGradient,    // identity whose derivative is deliberately cut
  Undefined,       // asking for a derivative is an error
};

struct OpDef {
  std::string name;
  int num_inputs = 1;  // -1: variadic (at least one)
  std::vector<AttrSpec> attrs;
  ShapeFn shape;
  BodyShapeFn body_shape;  // set instead of `shape` by ops that hold a body graph
  GradKind grad_kind = GradKind::Rule;
  GradFn grad;
  RefFn reference;
  KernelFactory kernel;
  // Bytes of the arena its kernel uses during its own run only (KernelCtx::scratch: a loop's
  // carries, slots and body plans), which the planner places beside the values live at its step;
  // null: none.
  std::function<size_t(const Node&)> kernel_scratch;
  bool elementwise = false;  // output element i depends only on input elements at i (after broadcast)
  EltwiseFn eltwise_f32 = nullptr;  // set for elementwise ops that fusion may chain
  std::string eltwise_param;        // the float attribute passed as EltwiseFn's param, if any
  bool inplace = false;  // the kernel stays correct when its output overwrites a same-typed input
  // Communicates with other processes (allreduce_sum): its reference is only the one-process
  // answer, so constant folding must leave it to the kernel.
  bool collective = false;
  std::vector<OpTestCase> tests;
};

class OpRegistry {
 public:
  static const OpRegistry& get();  // built once, on first use, from every ops/ family
  const OpDef* find(const std::string& name) const;
  const OpDef& at(const std::string& name) const;  // throws GraphError("unknown op ...")
  const std::map<std::string, OpDef>& all() const { return ops_; }
  void add(OpDef def);  // throws on duplicates or missing shape/reference/kernel

 private:
  std::map<std::string, OpDef> ops_;
};

// Fills attribute defaults and checks the attributes against the schema; throws GraphError.
Attrs normalize_attrs(const OpDef& op, const Attrs& given);

}  // namespace metagrad
