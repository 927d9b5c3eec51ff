// Reverse-mode autodiff: walks the nodes between wrt and y backwards, calling each op's gradient
// rule, summing fan-out, and reducing broadcast cotangents back to their input's shape.
#include "metagrad/autodiff.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "graph/op_def.h"
#include "metagrad/error.h"
#include "metagrad/ops.h"

namespace metagrad {

namespace {

// Sums a cotangent into an accumulator; empty Tensors are symbolic zeros.
Tensor accumulate(const Tensor& acc, const Tensor& c) {
  if (!c.defined()) return acc;
  if (!acc.defined()) return c;
  return acc + c;
}

}  // namespace

std::vector<Tensor> vjp(const Tensor& y, const Tensor& cotangent, const std::vector<Tensor>& wrt) {
  return vjp(std::vector<Tensor>{y}, std::vector<Tensor>{cotangent}, wrt);
}

std::vector<Tensor> vjp(const std::vector<Tensor>& ys, const std::vector<Tensor>& cotangents,
                        const std::vector<Tensor>& wrt) {
  if (ys.empty() || ys.size() != cotangents.size()) throw GraphError("vjp: need one cotangent per output, and an output");
  Graph& g = ys[0].graph();
  int ny = 0;
  for (size_t i = 0; i < ys.size(); ++i) {
    if (&ys[i].graph() != &g || &cotangents[i].graph() != &g) throw GraphError("vjp: outputs from another graph");
    if (cotangents[i].shape() != ys[i].shape())
      throw ShapeError(fmt::format("vjp: cotangent shape {} differs from output shape {}",
                                   shape_str(cotangents[i].shape()), shape_str(ys[i].shape())));
    ny = std::max(ny, ys[i].value().node);
  }
  // Nodes that depend on some wrt value (forward reachability).
  std::vector<char> depends(size_t(ny) + 1, 0);
  std::map<Value, size_t> wrt_index;
  for (size_t i = 0; i < wrt.size(); ++i) {
    if (&wrt[i].graph() != &g) throw GraphError("grad: wrt value from another graph");
    if (wrt[i].dtype() != DType::f32)
      throw GraphError(fmt::format("grad: cannot differentiate with respect to integer value {}",
                                   g.describe(wrt[i].value().node)));
    if (wrt[i].value().node <= ny) depends[size_t(wrt[i].value().node)] = 1;
    wrt_index.emplace(wrt[i].value(), i);
  }
  for (int id = 0; id <= ny; ++id) {
    const Node& n = g.node(id);
    if (n.kind != NodeKind::Op || depends[size_t(id)]) continue;
    if (n.op->grad_kind == GradKind::StopGradient || n.op->grad_kind == GradKind::Zero) continue;
    for (Value v : n.inputs)
      if (depends[size_t(v.node)]) depends[size_t(id)] = 1;
  }

  std::map<Value, Tensor> cot;
  for (size_t i = 0; i < ys.size(); ++i) cot[ys[i].value()] = accumulate(cot[ys[i].value()], cotangents[i]);
  // Nodes are appended in topological order, so a reverse scan over ids is a valid order. The
  // scan stops at the original y: nodes the rules append have larger ids and are never visited.
  for (int id = ny; id >= 0; --id) {
    if (!depends[size_t(id)]) continue;
    const Node& n = g.node(id);
    if (n.kind != NodeKind::Op) continue;
    std::vector<Tensor> outs, cots;
    bool any = false;
    for (size_t k = 0; k < n.outputs.size(); ++k) {
      Value v{id, int(k)};
      outs.emplace_back(&g, v);
      auto it = cot.find(v);
      // A wrt value that is itself an intermediate keeps its cotangent for the result and
      // also propagates it further (it may reach other wrt values).
      cots.push_back(it == cot.end() ? Tensor() : it->second);
      any |= cots.back().defined();
    }
    if (!any) continue;
    const OpDef& op = *n.op;
    if (op.grad_kind == GradKind::Undefined)
      throw GraphError(fmt::format("grad: op {} at {} has no derivative", op.name, g.describe(id)));
    if (op.grad_kind != GradKind::Rule) continue;
    std::vector<Tensor> ins;
    for (Value v : n.inputs) ins.emplace_back(&g, v);
    // Copy what the rule needs: appending nodes may reallocate the node vector.
    Node snapshot = n;
    std::vector<bool> needs;
    for (Value v : n.inputs) needs.push_back(depends[size_t(v.node)] != 0);
    GradCtx ctx{snapshot, ins, outs, cots, snapshot.attrs, std::move(needs)};
    std::vector<Tensor> gin = op.grad(ctx);
    if (gin.size() != ins.size())
      throw GraphError(fmt::format("grad rule of {} returned {} cotangents for {} inputs", op.name, gin.size(), ins.size()));
    for (size_t i = 0; i < ins.size(); ++i) {
      if (!gin[i].defined() || !depends[size_t(ins[i].value().node)]) continue;
      Tensor c = gin[i];
      if (c.shape() != ins[i].shape()) c = sum_to_shape(c, ins[i].shape());
      cot[ins[i].value()] = accumulate(cot[ins[i].value()], c);
    }
  }
  std::vector<Tensor> result;
  for (const Tensor& w : wrt) {
    auto it = cot.find(w.value());
    if (it != cot.end() && it->second.defined()) result.push_back(it->second);
    else result.push_back(full(g, w.shape(), 0.0));
  }
  return result;
}

std::vector<Tensor> grad(const Tensor& y, const std::vector<Tensor>& wrt) {
  if (y.numel() != 1)
    throw ShapeError(fmt::format("grad: output {} has shape {}, expected a single element (use vjp)",
                                 y.graph().describe(y.value().node), shape_str(y.shape())));
  return vjp(y, full(y.graph(), y.shape(), 1.0), wrt);
}

std::vector<Tensor> hvp(const Tensor& y, const std::vector<Tensor>& wrt, const std::vector<Tensor>& v) {
  if (v.size() != wrt.size()) throw GraphError("hvp: need one direction tensor per wrt value");
  std::vector<Tensor> g = grad(y, wrt);
  Tensor dot;
  for (size_t i = 0; i < g.size(); ++i) {
    if (v[i].shape() != wrt[i].shape())
      throw ShapeError(fmt::format("hvp: direction {} has shape {}, expected {}", i, shape_str(v[i].shape()),
                                   shape_str(wrt[i].shape())));
    Tensor term = sum(g[i] * v[i]);
    dot = dot.defined() ? dot + term : term;
  }
  return grad(dot, wrt);
}

}  // namespace metagrad
