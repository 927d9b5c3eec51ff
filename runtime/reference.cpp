// Reference interpreter over the op registry's f64 implementations.
#include "metagrad/reference.h"

#include <fmt/format.h>

#include "graph/op_def.h"
#include "metagrad/error.h"
#include "runtime/initializers.h"

namespace metagrad {

namespace {

RefTensor leaf_value(const Graph& g, const Node& n, const RefValues& feeds, const RefValues& params) {
  const RefValues& src = n.kind == NodeKind::Input ? feeds : params;
  auto it = src.find(n.name);
  if (it == src.end()) {
    if (n.kind == NodeKind::Input) throw RuntimeError(fmt::format("missing feed for input \"{}\" of type {}", n.name, type_str(n.type())));
    return RefTensor{n.type().shape, initial_values(n)};
  }
  if (it->second.shape != n.type().shape || it->second.data.size() != size_t(n.type().numel()))
    throw RuntimeError(fmt::format("{} \"{}\" expects shape {}, given {}", n.kind == NodeKind::Input ? "input" : "parameter",
                                   n.name, shape_str(n.type().shape), shape_str(it->second.shape)));
  (void)g;
  return it->second;
}

std::vector<std::vector<RefTensor>> eval_all(const Graph& g, const std::vector<Value>& fetches, const RefValues& feeds,
                                             const RefValues& params) {
  std::vector<char> needed(g.size(), 0);
  for (Value v : fetches) needed.at(size_t(v.node)) = 1;
  for (size_t i = g.size(); i-- > 0;) {
    if (!needed[i]) continue;
    for (Value v : g.node(int(i)).inputs) needed[size_t(v.node)] = 1;
  }
  std::vector<std::vector<RefTensor>> vals(g.size());
  for (const Node& n : g.nodes()) {
    if (!needed[size_t(n.id)]) continue;
    if (n.kind == NodeKind::Constant) {
      vals[size_t(n.id)] = {RefTensor{n.type().shape, n.data}};
    } else if (n.kind != NodeKind::Op) {
      vals[size_t(n.id)] = {leaf_value(g, n, feeds, params)};
    } else {
      std::vector<const RefTensor*> in;
      for (Value v : n.inputs) in.push_back(&vals[size_t(v.node)].at(size_t(v.index)));
      std::vector<RefTensor> out(n.outputs.size());
      for (size_t k = 0; k < out.size(); ++k) {
        out[k].shape = n.outputs[k].shape;
        out[k].data.assign(size_t(n.outputs[k].numel()), 0.0);
      }
      n.op->reference(n, in, out);
      vals[size_t(n.id)] = std::move(out);
    }
  }
  return vals;
}

}  // namespace

std::vector<RefTensor> reference_eval(const Graph& g, const std::vector<Value>& fetches, const RefValues& feeds,
                                      const RefValues& params) {
  auto vals = eval_all(g, fetches, feeds, params);
  std::vector<RefTensor> out;
  for (Value v : fetches) out.push_back(vals[size_t(v.node)].at(size_t(v.index)));
  return out;
}

RefValues reference_step(const Graph& g, const RefValues& feeds, const RefValues& params) {
  std::vector<Value> fetches;
  for (const Update& u : g.updates()) fetches.push_back(u.value);
  auto vals = reference_eval(g, fetches, feeds, params);
  RefValues next = params;
  for (const Node& n : g.nodes())
    if (n.kind == NodeKind::Parameter && !next.count(n.name)) next[n.name] = RefTensor{n.type().shape, initial_values(n)};
  for (size_t i = 0; i < g.updates().size(); ++i) next[g.node(g.updates()[i].param).name] = vals[i];
  return next;
}

}  // namespace metagrad
