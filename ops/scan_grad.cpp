// The derivative of a loop: a loop running the other way over the derivative of the body.
//
// The forward loop is recomputed as its twin with `save_carries` (CSE merges the two, so the
// loop runs once and stores the carry each iteration started from). The backward body takes one
// saved carry, recomputes that iteration's body and applies the body's vjp: it carries the
// carries' cotangents and the invariants' accumulated cotangents, and emits the slices'
// cotangents as its stacked outputs. It is ordinary graph, so the backward loop is differentiated
// again by this same rule (second and higher order through loops).
#include <fmt/format.h>

#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/ops.h"
#include "ops/scan.h"

namespace metagrad {

std::vector<Tensor> inline_body(const Graph& body, Graph& b, const std::vector<Tensor>& ins) {
  std::vector<std::vector<Value>> map(body.size());
  size_t next_input = 0;
  for (const Node& n : body.nodes()) {
    if (n.kind == NodeKind::Input) {
      map[size_t(n.id)] = {ins.at(next_input++).value()};
      continue;
    }
    Node c = n;
    if (c.kind != NodeKind::Op) c.name.clear();  // only inputs carry names the graph must keep unique
    for (Value& v : c.inputs) v = map[size_t(v.node)][size_t(v.index)];
    int id = b.append(std::move(c));
    for (size_t k = 0; k < n.outputs.size(); ++k) map[size_t(n.id)].push_back({id, int(k)});
  }
  std::vector<Tensor> outs;
  for (const auto& o : body.outputs()) outs.emplace_back(&b, map[size_t(o.value.node)][size_t(o.value.index)]);
  return outs;
}

std::vector<Tensor> scan_grad(const GradCtx& ctx) {
  const Node& n = ctx.node;
  const Graph& body = *n.body;
  const ScanSig s = scan_sig(n.attrs, ctx.inputs.size(), body);
  if (s.na > 0 || s.save_every > 1)
    throw GraphError("scan: a checkpointed loop (or a loop saving every k-th carry for one) is made when compiling and is not "
                     "differentiated again; differentiate the graph before compiling it");
  Graph& g = ctx.outputs.at(0).graph();
  auto needs = [&](size_t i) {
    return ctx.inputs[i].dtype() == DType::f32 && (ctx.needs.empty() || ctx.needs[i]);
  };
  auto body_type = [&](size_t i) { return body.node(s.body_inputs[i]).type(); };

  // The carries each iteration started from.
  std::vector<Tensor> started;
  if (s.save) {
    for (size_t i = 0; i < s.nc; ++i) started.push_back(ctx.outputs[s.nc + s.ny + i]);
  } else {
    Attrs a = n.attrs;
    a["save_carries"] = int64_t(1);
    std::vector<Value> ins;
    for (const Tensor& t : ctx.inputs) ins.push_back(t.value());
    std::vector<Value> outs = g.add_op_multi("scan", ins, a, "", n.body);
    for (size_t i = 0; i < s.nc; ++i) started.emplace_back(&g, outs[s.nc + s.ny + i]);
  }

  std::vector<size_t> dc, dx, dk, ydef, sdef;  // differentiated carries, slices, invariants; given cotangents
  for (size_t i = 0; i < s.nc; ++i)
    if (ctx.inputs[i].dtype() == DType::f32) dc.push_back(i);
  for (size_t i = 0; i < s.nx; ++i)
    if (needs(s.nc + i)) dx.push_back(i);
  for (size_t j = 0; j < s.nk; ++j)
    if (needs(s.nc + s.nx + j)) dk.push_back(j);
  for (size_t k = 0; k < s.ny; ++k)
    if (ctx.cotangents[s.nc + k].defined()) ydef.push_back(k);
  if (s.save)
    for (size_t i : dc)
      if (ctx.cotangents[s.nc + s.ny + i].defined()) sdef.push_back(i);

  // The backward body: carries [carry cotangents, invariant cotangents so far], slices [started
  // carries, forward slices, output cotangents, saved-carry cotangents], invariants [forward's].
  auto b = std::make_shared<Graph>();
  std::vector<Tensor> ct, ka, c, x, yt, st, k;
  for (size_t i : dc) ct.push_back(input(*b, fmt::format("ct{}", i), body_type(i).shape));
  for (size_t j : dk) ka.push_back(input(*b, fmt::format("ka{}", j), body_type(s.nc + s.nx + j).shape));
  for (size_t i = 0; i < s.nc; ++i) c.push_back(input(*b, fmt::format("c{}", i), body_type(i).shape, body_type(i).dtype));
  for (size_t i = 0; i < s.nx; ++i)
    x.push_back(input(*b, fmt::format("x{}", i), body_type(s.nc + i).shape, body_type(s.nc + i).dtype));
  for (size_t q : ydef) {
    Shape sh = ctx.outputs[s.nc + q].shape();
    yt.push_back(input(*b, fmt::format("yt{}", q), Shape(sh.begin() + 1, sh.end())));
  }
  for (size_t i : sdef) st.push_back(input(*b, fmt::format("st{}", i), body_type(i).shape));
  for (size_t j = 0; j < s.nk; ++j)
    k.push_back(input(*b, fmt::format("k{}", j), body_type(s.nc + s.nx + j).shape, body_type(s.nc + s.nx + j).dtype));

  std::vector<Tensor> fwd_in = c;
  fwd_in.insert(fwd_in.end(), x.begin(), x.end());
  fwd_in.insert(fwd_in.end(), k.begin(), k.end());
  std::vector<Tensor> fwd_out = inline_body(body, *b, fwd_in);
  std::vector<Tensor> ys, cots, wrt;
  for (size_t m = 0; m < dc.size(); ++m) ys.push_back(fwd_out[dc[m]]), cots.push_back(ct[m]);
  for (size_t m = 0; m < ydef.size(); ++m) ys.push_back(fwd_out[s.nc + ydef[m]]), cots.push_back(yt[m]);
  for (size_t i : dc) wrt.push_back(c[i]);
  for (size_t i : dx) wrt.push_back(x[i]);
  for (size_t j : dk) wrt.push_back(k[j]);
  std::vector<Tensor> d = ys.empty() || wrt.empty() ? std::vector<Tensor>{} : vjp(ys, cots, wrt);
  if (d.size() != wrt.size()) {  // no cotangent reaches the body: every derivative is zero
    d.clear();
    for (const Tensor& w : wrt) d.push_back(full(*b, w.shape(), 0.0));
  }
  size_t at = 0;
  for (size_t m = 0; m < dc.size(); ++m, ++at) {
    Tensor next = d[at];
    for (size_t q = 0; q < sdef.size(); ++q)
      if (sdef[q] == dc[m]) next = next + st[q];
    b->add_output(fmt::format("ct{}'", dc[m]), next.value());
  }
  std::vector<Tensor> dxs(d.begin() + ptrdiff_t(at), d.begin() + ptrdiff_t(at + dx.size()));
  at += dx.size();
  for (size_t m = 0; m < dk.size(); ++m, ++at) b->add_output(fmt::format("ka{}'", dk[m]), (ka[m] + d[at]).value());
  for (size_t m = 0; m < dx.size(); ++m) b->add_output(fmt::format("dx{}", dx[m]), dxs[m].value());

  // The backward loop, over the iterations in the other order.
  std::vector<Value> ins;
  for (size_t i : dc)
    ins.push_back(ctx.cotangents[i].defined() ? ctx.cotangents[i].value() : full(g, body_type(i).shape, 0.0).value());
  for (size_t j : dk) ins.push_back(full(g, body_type(s.nc + s.nx + j).shape, 0.0).value());
  for (const Tensor& t : started) ins.push_back(t.value());
  for (size_t i = 0; i < s.nx; ++i) ins.push_back(ctx.inputs[s.nc + i].value());
  for (size_t q : ydef) ins.push_back(ctx.cotangents[s.nc + q].value());
  for (size_t i : sdef) ins.push_back(ctx.cotangents[s.nc + s.ny + i].value());
  for (size_t j = 0; j < s.nk; ++j) ins.push_back(ctx.inputs[s.nc + s.nx + j].value());
  Attrs a{{"length", s.length},
          {"num_carry", int64_t(dc.size() + dk.size())},
          {"num_xs", int64_t(s.nc + s.nx + ydef.size() + sdef.size())},
          {"reverse", int64_t(!s.reverse)}};
  std::vector<Value> outs = g.add_op_multi("scan", std::move(ins), std::move(a), "", std::move(b));

  std::vector<Tensor> gin(ctx.inputs.size());
  at = 0;
  for (size_t i : dc) gin[i] = Tensor(&g, outs[at++]);
  for (size_t j : dk) gin[s.nc + s.nx + j] = Tensor(&g, outs[at++]);
  for (size_t i : dx) gin[s.nc + i] = Tensor(&g, outs[at++]);
  return gin;
}

}  // namespace metagrad
