// Checkpointing of backward loops (see passes/checkpoint_loops.h). The backward loop becomes a
// scan with `num_advance` (ops/scan.h) whose body gains the forward step from the carries it
// reads. Every-k: the forward loop stores only every k-th carry (`save_every`), which the backward
// reads in place of all of them; revolve: the forward stores none and the backward reads its
// initial carries.
#include "passes/checkpoint_loops.h"

#include <fmt/format.h>

#include <algorithm>

#include "metagrad/builder.h"
#include "ops/scan.h"

namespace metagrad {

namespace {

bool is_plain_scan(const Node& n) {
  return n.kind == NodeKind::Op && n.body && attr_int(n.attrs, "num_advance") == 0;
}

}  // namespace

std::vector<LoopPair> checkpointable_loops(const Graph& g) {
  // Every reader of every value: a forward loop's stored carries must have exactly one.
  std::vector<int> readers(g.size(), 0);
  std::vector<int> reader(g.size(), -1);
  for (const Node& n : g.nodes())
    for (Value v : n.inputs) {
      const Node& src = g.node(v.node);
      if (!src.body) continue;
      const ScanSig s = scan_sig(src.attrs, src.inputs.size(), *src.body);
      if (s.save && size_t(v.index) >= s.nc + s.ny) {
        if (reader[size_t(v.node)] != n.id) ++readers[size_t(v.node)];
        reader[size_t(v.node)] = n.id;
      }
    }
  for (const auto& o : g.outputs()) readers[size_t(o.value.node)] += 2;  // an output of the graph stays stored
  for (const auto& u : g.updates()) readers[size_t(u.value.node)] += 2;
  std::vector<LoopPair> pairs;
  for (const Node& q : g.nodes()) {
    if (!is_plain_scan(q)) continue;
    const ScanSig sq = scan_sig(q.attrs, q.inputs.size(), *q.body);
    if (sq.nx == 0) continue;
    const Value first = q.inputs[sq.nc];
    const Node& p = g.node(first.node);
    if (!is_plain_scan(p) || readers[size_t(p.id)] != 1 || reader[size_t(p.id)] != q.id) continue;
    const ScanSig sp = scan_sig(p.attrs, p.inputs.size(), *p.body);
    if (!sp.save || sp.save_every != 1 || sp.length != sq.length || sp.reverse == sq.reverse || sp.length < 2) continue;
    if (sq.nx < sp.nc + sp.nx || sq.nk != sp.nk) continue;
    bool match = true;
    for (size_t i = 0; i < sp.nc && match; ++i) match = q.inputs[sq.nc + i] == Value{p.id, int(sp.nc + sp.ny + i)};
    for (size_t i = 0; i < sp.nx && match; ++i) match = q.inputs[sq.nc + sp.nc + i] == p.inputs[sp.nc + i];
    for (size_t j = 0; j < sp.nk && match; ++j) match = q.inputs[sq.nc + sq.nx + j] == p.inputs[sp.nc + sp.nx + j];
    for (size_t i = 0; i < sp.nc && match; ++i) match = p.type(int(i)).dtype == DType::f32;
    if (match) pairs.push_back({p.id, q.id, sp.length});
  }
  return pairs;
}

bool checkpoint_loops(Graph& g, int64_t policy, const std::function<int64_t(int64_t length)>& slots) {
  const std::vector<LoopPair> pairs = checkpointable_loops(g);
  for (const LoopPair& pair : pairs) {
    Node& p = g.node(pair.forward);
    const ScanSig sp = scan_sig(p.attrs, p.inputs.size(), *p.body);
    Node& q = g.node(pair.backward);
    const ScanSig sq = scan_sig(q.attrs, q.inputs.size(), *q.body);

    // The backward body and, beside it, the forward step from the carries it reads.
    auto body = std::make_shared<Graph>(*q.body);
    std::vector<Tensor> ins;
    for (size_t i = 0; i < sp.nc + sp.nx; ++i) ins.emplace_back(body.get(), Value{sq.body_inputs[sq.nc + i], 0});
    for (size_t j = 0; j < sp.nk; ++j) ins.emplace_back(body.get(), Value{sq.body_inputs[sq.nc + sq.nx + j], 0});
    std::vector<Tensor> next = inline_body(*p.body, *body, ins);
    for (size_t i = 0; i < sp.nc; ++i) body->add_output(fmt::format("__advance{}", i), next[i].value());

    const int64_t s = std::clamp<int64_t>(slots(pair.length), 1, pair.length);
    q.attrs["checkpoint"] = policy;
    q.attrs["slots"] = s;
    q.attrs["num_advance"] = int64_t(sp.nc);
    q.body = std::move(body);

    if (policy == 1) {  // the backward keeps reading the saved carries, now the segment starts
      p.attrs["save_every"] = s;
      for (size_t i = 0; i < sp.nc; ++i) p.outputs[sp.nc + sp.ny + i].shape[0] = scan_saved_rows(sp.length, s);
    } else {
      for (size_t i = 0; i < sp.nc; ++i) q.inputs[sq.nc + i] = p.inputs[i];
      p.attrs["save_carries"] = int64_t(0);
      p.outputs.resize(sp.nc + sp.ny);
    }
  }
  return !pairs.empty();
}

}  // namespace metagrad
