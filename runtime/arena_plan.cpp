// The arena plan of a graph (what Executable allocates) and its planned peak, without building
// kernels, so that a memory budget can try several forms of a graph cheaply.
#include "runtime/arena_plan.h"

#include <fmt/format.h>

#include <algorithm>

#include "graph/op_def.h"
#include "metagrad/error.h"
#include "ops/scan.h"

namespace metagrad {

std::vector<NamedOutput> wanted_outputs(const Graph& g, const std::vector<std::string>& fetches) {
  if (fetches.empty()) return g.outputs();
  std::vector<NamedOutput> wanted;
  for (const auto& f : fetches) {
    bool found = false;
    for (const auto& o : g.outputs())
      if (o.name == f) wanted.push_back(o), found = true;
    if (!found) {
      std::string known;
      for (const auto& o : g.outputs()) known += (known.empty() ? "" : ", ") + o.name;
      throw RuntimeError(fmt::format("unknown fetch \"{}\" (graph outputs: {})", f, known.empty() ? "none" : known));
    }
  }
  return wanted;
}

ArenaPlan plan_arena(const Graph& g, const std::vector<NamedOutput>& wanted, bool check_numerics) {
  ArenaPlan ap;
  ap.wanted = wanted;
  const size_t n = g.size();
  std::vector<char>& needed = ap.needed;
  needed.assign(n, 0);
  for (const auto& o : wanted) needed[size_t(o.value.node)] = 1;
  for (const auto& u : g.updates()) needed[size_t(u.value.node)] = 1;
  for (size_t i = n; i-- > 0;)
    if (needed[i])
      for (Value v : g.node(int(i)).inputs) needed[size_t(v.node)] = 1;

  // Schedule = node order restricted to needed nodes; buffers for inputs and op outputs.
  std::vector<int> step_of(n, -1);
  int steps = 0;
  for (size_t i = 0; i < n; ++i)
    if (needed[i]) step_of[i] = steps++;
  std::vector<BufferRequest>& requests = ap.requests;
  std::map<Value, size_t>& request_of = ap.request_of;
  std::vector<int> last_use(n, -1);
  for (size_t i = 0; i < n; ++i)
    if (needed[i])
      for (Value v : g.node(int(i)).inputs) last_use[size_t(v.node)] = std::max(last_use[size_t(v.node)], step_of[i]);
  for (const auto& o : wanted) last_use[size_t(o.value.node)] = steps;
  for (const auto& u : g.updates()) last_use[size_t(u.value.node)] = steps;
  for (size_t i = 0; i < n; ++i) {
    const Node& node = g.node(int(i));
    if (!needed[i] || node.kind == NodeKind::Parameter || node.kind == NodeKind::Constant) continue;
    // Inputs are written before the first step and stay intact through the whole run, so a
    // caller may run again without feeding again.
    const bool fed = node.kind == NodeKind::Input;
    const int first = fed ? -1 : step_of[i], last = fed ? steps : std::max(last_use[i], step_of[i]);
    for (size_t k = 0; k < node.outputs.size(); ++k) {
      request_of[{int(i), int(k)}] = requests.size();
      requests.push_back({node.outputs[k].bytes(), first, last});
    }
    // An in-place kernel may write over an operand that dies here (never over a fed input,
    // which the caller may not re-feed before the next run).
    if (node.kind == NodeKind::Op && node.op->inplace && node.outputs.size() == 1 && !check_numerics)
      for (Value v : node.inputs) {
        const Node& src = g.node(v.node);
        if (src.kind == NodeKind::Op && g.type(v) == node.type() && last_use[size_t(v.node)] == step_of[i]) {
          requests.back().inplace_of = int(request_of.at(v));
          break;
        }
      }
  }
  ap.memory = plan_memory(requests);
  return ap;
}

size_t planned_peak_bytes(const Graph& g, const std::vector<std::string>& fetches, bool check_numerics) {
  ArenaPlan ap = plan_arena(g, wanted_outputs(g, fetches), check_numerics);
  size_t peak = ap.memory.peak_bytes;
  for (const Node& n : g.nodes())
    if (ap.needed[size_t(n.id)] && n.kind == NodeKind::Op && n.body) peak += scan_kernel_bytes(n);
  return peak;
}

}  // namespace metagrad
