// allreduce_sum: the sum of a tensor over the processes of a data-parallel run, as a graph node,
// so a training step that sums its gradients across processes stays one compiled graph.
#include <cstring>

#include "metagrad/collective.h"
#include "metagrad/ops.h"
#include "ops/families.h"
#include "ops/op_helpers.h"

namespace metagrad {

namespace {

std::vector<TensorType> allreduce_rule(const std::vector<TensorType>& in, const Attrs&) {
  if (in[0].dtype != DType::f32) throw ShapeError("allreduce_sum takes an f32 tensor");
  return {in[0]};
}

// The f64 interpreter runs in one process, where the sum over processes is the value itself.
void allreduce_reference(const Node&, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
  out[0].data = in[0]->data;
}

// Copies into the output (unless the planner placed it over the input) and sums in place. With no
// Collective compiled in, the op is the identity of one process.
std::unique_ptr<Kernel> allreduce_kernel(const KernelCtx& ctx) {
  const float* x = ctx.in_f32(0);
  float* y = ctx.out_f32();
  const size_t n = size_t(ctx.out_type().numel());
  Collective* c = ctx.collective;
  return std::make_unique<LoopKernel>(
      [x, y, n, c] {
        if (x != y) std::memcpy(y, x, n * sizeof(float));
        if (c) c->allreduce_sum(y, n);
      },
      c ? "allreduce" : "allreduce:identity");
}

}  // namespace

Tensor allreduce_sum(const Tensor& x) { return apply("allreduce_sum", {x}); }

void register_collective_ops(OpRegistry& r) {
  OpDef d;
  d.name = "allreduce_sum";
  d.shape = allreduce_rule;
  // y = sum_p x_p on every process p, so dL/dx_p = sum_q dL_q/dy: the adjoint of an allreduce is
  // an allreduce of the cotangent.
  d.grad = [](const GradCtx& c) -> std::vector<Tensor> {
    if (!c.cotangents[0]) return {Tensor()};
    return {allreduce_sum(c.cotangents[0])};
  };
  d.reference = allreduce_reference;
  d.kernel = allreduce_kernel;
  d.inplace = true;
  d.collective = true;
  d.tests = {tcase({{7}}), tcase({{2, 3, 4}})};
  r.add(std::move(d));
}

}  // namespace metagrad
