// scan_closure: a loop whose step is written in the enclosing graph. The step is built once over
// stand-ins for the carries and slices; the nodes that depend on a stand-in move into the body,
// constants are copied into it, and every other value the step reads becomes a loop invariant
// (so closures over weights and data work, and work that does not depend on the carry is hoisted
// out of the loop: it stays where it was built, in the enclosing graph, and runs once).
#include <fmt/format.h>

#include <map>

#include "metagrad/error.h"
#include "metagrad/ops.h"
#include "metagrad/scan.h"

namespace metagrad {

namespace {

// A fresh value of type t, distinct from every other, standing for a body input while the step
// is built. Its nodes are dead once the loop is outlined and DCE drops them.
Tensor stand_in(Graph& g, const TensorType& t) {
  if (t.dtype == DType::f32) return full(g, t.shape, 0.0);
  return Tensor(&g, g.add_constant(t, std::vector<double>(size_t(t.numel()), 0.0)));
}

}  // namespace

ScanResult scan_closure(int64_t length, const std::vector<Tensor>& init, const std::vector<Tensor>& xs,
                        const ScanClosure& step, bool reverse) {
  Graph* gp = nullptr;
  for (const auto* list : {&init, &xs})
    for (const Tensor& t : *list) {
      if (gp && &t.graph() != gp) throw GraphError("scan: the loop's inputs come from different graphs");
      gp = &t.graph();
    }
  if (!gp) throw GraphError("scan_closure: a loop needs at least one carry or stacked input");
  Graph& g = *gp;
  for (const Tensor& x : xs)
    if (x.rank() == 0 || x.dim(0) != length)
      throw ShapeError(fmt::format("scan: stacked input of shape {} must have the length {} as its leading dimension",
                                   shape_str(x.shape()), length));
  const int first = int(g.size());
  std::vector<Tensor> cs, ss;
  for (const Tensor& c : init) cs.push_back(stand_in(g, c.type()));
  for (const Tensor& x : xs) {
    TensorType t = x.type();
    t.shape.erase(t.shape.begin());
    ss.push_back(stand_in(g, t));
  }
  ScanStep out = step(cs, ss);
  if (out.carries.size() != init.size())
    throw ShapeError(fmt::format("scan: the step returned {} carries for {}", out.carries.size(), init.size()));

  auto body = std::make_shared<Graph>();
  const int end = int(g.size());
  std::vector<std::vector<Value>> map(size_t(end - first));
  std::vector<char> inside(size_t(end - first), 0);
  auto local = [&](int id) { return size_t(id - first); };
  for (size_t i = 0; i < cs.size(); ++i) {
    map[local(cs[i].value().node)] = {body->add_input(fmt::format("c{}", i), init[i].type())};
    inside[local(cs[i].value().node)] = 1;
  }
  for (size_t i = 0; i < ss.size(); ++i) {
    map[local(ss[i].value().node)] = {body->add_input(fmt::format("x{}", i), ss[i].type())};
    inside[local(ss[i].value().node)] = 1;
  }
  std::vector<Value> invariants;
  std::map<Value, Value> invariant_of, constant_of;
  // The body value for an enclosing value `v` read by the step.
  auto read = [&](Value v) -> Value {
    if (v.node >= first && inside[local(v.node)]) return map[local(v.node)][size_t(v.index)];
    const Node& src = g.node(v.node);
    if (src.kind == NodeKind::Constant) {
      auto it = constant_of.find(v);
      if (it == constant_of.end()) it = constant_of.emplace(v, body->add_constant(src.type(), src.data)).first;
      return it->second;
    }
    auto it = invariant_of.find(v);
    if (it == invariant_of.end()) {
      it = invariant_of.emplace(v, body->add_input(fmt::format("k{}", invariants.size()), g.type(v))).first;
      invariants.push_back(v);
    }
    return it->second;
  };
  for (int id = first; id < end; ++id) {
    const Node& n = g.node(id);
    if (n.kind != NodeKind::Op || inside[local(id)]) continue;
    bool dep = false;
    for (Value v : n.inputs) dep |= v.node >= first && inside[local(v.node)];
    if (!dep) continue;
    Node c = n;
    for (Value& v : c.inputs) v = read(v);
    int nid = body->append(std::move(c));
    inside[local(id)] = 1;
    for (size_t k = 0; k < n.outputs.size(); ++k) map[local(id)].push_back({nid, int(k)});
  }
  auto emit = [&](const std::string& name, const Tensor& t) {
    if (!t.defined() || &t.graph() != &g) throw GraphError(fmt::format("scan: step output \"{}\" is not a value of the loop's graph", name));
    body->add_output(name, read(t.value()));
  };
  for (size_t i = 0; i < out.carries.size(); ++i) emit(fmt::format("c{}'", i), out.carries[i]);
  for (size_t i = 0; i < out.ys.size(); ++i) emit(fmt::format("y{}", i), out.ys[i]);

  std::vector<Value> ins;
  for (const Tensor& t : init) ins.push_back(t.value());
  for (const Tensor& t : xs) ins.push_back(t.value());
  ins.insert(ins.end(), invariants.begin(), invariants.end());
  Attrs a{{"length", length}, {"num_carry", int64_t(init.size())}, {"num_xs", int64_t(xs.size())},
          {"reverse", int64_t(reverse)}};
  std::vector<Value> outs = g.add_op_multi("scan", std::move(ins), std::move(a), "", std::move(body));
  ScanResult r;
  for (size_t i = 0; i < init.size(); ++i) r.carries.emplace_back(&g, outs[i]);
  for (size_t i = init.size(); i < outs.size(); ++i) r.ys.emplace_back(&g, outs[i]);
  return r;
}

}  // namespace metagrad
