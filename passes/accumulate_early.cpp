// Early accumulation of n-ary sums: running partial sums in making order, via the Rebuilder.
#include "passes/accumulate_early.h"

#include <algorithm>
#include <sstream>
#include <string>

#include "graph/op_def.h"
#include "metagrad/attrs.h"
#include "passes/rebuild.h"

namespace metagrad {

namespace {

// The addends of a fused program that only adds whole values of its output's type, each once, in
// the order they are made; empty when the program does anything else or has fewer than three.
std::vector<Value> pure_sum_addends(const Graph& g, const Node& n) {
  if (n.kind != NodeKind::Op || n.op->name != "fused_elementwise" || n.inputs.size() < 3) return {};
  std::stringstream ops(attr_string(n.attrs, "ops"));
  for (std::string op; std::getline(ops, op, ',');)
    if (op != "add") return {};
  std::vector<int> uses(n.inputs.size(), 0);
  for (int64_t a : attr_ints(n.attrs, "args"))
    if (a >= 0) uses.at(size_t(a)) += 1;
  for (size_t k = 0; k < n.inputs.size(); ++k)
    if (uses[k] != 1 || g.type(n.inputs[k]) != n.type()) return {};
  std::vector<Value> addends = n.inputs;
  std::stable_sort(addends.begin(), addends.end(), [](Value a, Value b) { return a.node < b.node; });
  return addends;
}

}  // namespace

bool accumulate_sums_early(Graph& g) {
  const std::vector<char> live = live_nodes(g);
  std::vector<std::vector<Value>> addends(g.size());
  std::vector<std::vector<std::pair<int, size_t>>> after(g.size());  // per node: (sum, addend index) to add once it is made
  bool any = false;
  for (const Node& n : g.nodes()) {
    if (!live[size_t(n.id)]) continue;
    addends[size_t(n.id)] = pure_sum_addends(g, n);
    const std::vector<Value>& a = addends[size_t(n.id)];
    for (size_t k = 1; k < a.size(); ++k) after[size_t(a[k].node)].push_back({n.id, k});
    any = any || !a.empty();
  }
  if (!any) return false;
  Rebuilder rb(g);
  std::vector<Value> partial(g.size());
  for (const Node& node : g.nodes()) {
    if (addends[size_t(node.id)].empty()) rb.copy(node);
    else rb.set({node.id, 0}, partial[size_t(node.id)]);  // the running sum is complete: its last addend came before
    for (const auto& [sum, k] : after[size_t(node.id)]) {
      const std::vector<Value>& a = addends[size_t(sum)];
      const Value prev = k == 1 ? rb.map(a[0]) : partial[size_t(sum)];
      partial[size_t(sum)] = rb.dst().add_op("add", {prev, rb.map(a[k])});
    }
  }
  g = rb.finish();
  return true;
}

}  // namespace metagrad
