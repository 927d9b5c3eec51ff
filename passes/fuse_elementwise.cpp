// Elementwise fusion: grow groups backwards from each unfused elementwise root.
#include "passes/fuse_elementwise.h"

#include <algorithm>
#include <map>

#include "graph/op_def.h"
#include "ops/op_helpers.h"
#include "passes/rebuild.h"

namespace metagrad {

namespace {

constexpr size_t kMaxInstructions = 48, kMaxExternal = 12;

bool fusable(const Node& n) {
  return n.kind == NodeKind::Op && n.op->eltwise_f32 != nullptr && n.outputs.size() == 1 &&
         n.type().dtype == DType::f32 && n.op->num_inputs >= 1 && n.op->num_inputs <= 3;
}

bool sum_or_mean(const Node& n) { return n.kind == NodeKind::Op && (n.op->name == "sum" || n.op->name == "mean"); }

}  // namespace

bool fuse_elementwise(Graph& g) {
  const size_t n = g.size();
  std::vector<int> uses(n, 0);
  for (const Node& node : g.nodes())
    for (Value v : node.inputs) ++uses[size_t(v.node)];
  for (const auto& o : g.outputs()) uses[size_t(o.value.node)] += 2;  // outputs must stay materialized
  for (const auto& u : g.updates()) uses[size_t(u.value.node)] += 2;
  std::vector<char> live = live_nodes(g);

  std::vector<int> group_of(n, -1);  // root id of the group a node belongs to
  std::map<int, std::vector<int>> groups;  // root -> members in ascending id order
  for (int id = int(n) - 1; id >= 0; --id) {
    const Node& root = g.node(id);
    if (!live[size_t(id)] || group_of[size_t(id)] >= 0) continue;
    // A sum or mean whose input is an elementwise value read by nothing else roots a group too:
    // the values are reduced as they are made and never stored.
    const bool reduces = sum_or_mean(root) && fusable(g.node(root.inputs[0].node)) &&
                         uses[size_t(root.inputs[0].node)] == 1 && group_of[size_t(root.inputs[0].node)] < 0;
    if (!fusable(root) && !reduces) continue;
    const Shape& group_shape = reduces ? g.type(root.inputs[0]).shape : root.type().shape;
    std::vector<int> members{id}, stack{id};
    std::vector<Value> external;
    group_of[size_t(id)] = id;
    while (!stack.empty() && members.size() < kMaxInstructions) {
      const Node& m = g.node(stack.back());
      stack.pop_back();
      for (Value v : m.inputs) {
        const Node& p = g.node(v.node);
        bool absorb = fusable(p) && uses[size_t(p.id)] == 1 && group_of[size_t(p.id)] < 0 &&
                      p.type().shape == group_shape && members.size() < kMaxInstructions;
        if (absorb) {
          group_of[size_t(p.id)] = id;
          members.push_back(p.id);
          stack.push_back(p.id);
        }
      }
    }
    // Count distinct external values; give up on groups that would need too many.
    for (int mid : members)
      for (Value v : g.node(mid).inputs)
        if (group_of[size_t(v.node)] != id && std::find(external.begin(), external.end(), v) == external.end())
          external.push_back(v);
    if (members.size() < 2 || external.size() > kMaxExternal) {  // (a reduction root counts as a member)
      for (int mid : members) group_of[size_t(mid)] = -1;
      group_of[size_t(id)] = -2;  // a root that stays unfused
      continue;
    }
    std::sort(members.begin(), members.end());
    groups[id] = std::move(members);
  }
  if (groups.empty()) return false;

  Rebuilder rb(g);
  for (const Node& node : g.nodes()) {
    int gid = group_of[size_t(node.id)];
    if (gid < 0) {
      rb.copy(node);
      continue;
    }
    if (gid != node.id) continue;  // interior member: emitted with its root
    const auto& members = groups.at(gid);
    std::vector<Value> external;
    std::map<int, int64_t> instr_of;
    std::string ops;
    std::vector<int64_t> args;
    std::vector<double> params;
    const bool reduces = sum_or_mean(node);  // the root, last of its members, is not an instruction
    const size_t n_instructions = members.size() - (reduces ? 1 : 0);
    for (size_t j = 0; j < n_instructions; ++j) {
      const Node& m = g.node(members[j]);
      instr_of[m.id] = int64_t(j);
      ops += (j ? "," : "") + m.op->name;
      params.push_back(m.op->eltwise_param.empty() ? 0.0 : attr_float(m.attrs, m.op->eltwise_param));
      for (Value v : m.inputs) {
        auto it = instr_of.find(v.node);
        if (it != instr_of.end() && group_of[size_t(v.node)] == gid) {
          args.push_back(-it->second - 1);
          continue;
        }
        auto pos = std::find(external.begin(), external.end(), v);
        if (pos == external.end()) pos = external.insert(external.end(), v);
        args.push_back(int64_t(pos - external.begin()));
      }
    }
    std::vector<Value> ins;
    for (Value v : external) ins.push_back(rb.map(v));
    Attrs attrs{{"ops", ops}, {"args", args}, {"params", params}, {"shape", g.node(members[n_instructions - 1]).type().shape}};
    if (reduces) {
      attrs["axes"] = canonical_axes(attr_ints(node.attrs, "axes"), g.type(node.inputs[0]).shape.size());
      attrs["keepdims"] = attr_int(node.attrs, "keepdims");
      attrs["mean"] = int64_t(node.op->name == "mean");
    }
    Value fused = rb.dst().add_op(reduces ? "fused_reduce" : "fused_elementwise", ins, attrs, node.name);
    rb.set({node.id, 0}, fused);
  }
  g = rb.finish();
  return true;
}

}  // namespace metagrad
