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

ArenaPlan plan_arena(const Graph& g, const std::vector<NamedOutput>& wanted, bool check_numerics, bool separate_fed,
                     const std::vector<std::string>& bound) {
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
    if (node.kind == NodeKind::Input && std::find(bound.begin(), bound.end(), node.name) != bound.end()) continue;
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
  ap.in_fed.assign(requests.size(), 0);
  if (!separate_fed) {
    ap.memory = plan_memory(requests);
    return ap;
  }
  // Fed inputs live through the whole run and no in-place partner names one, so they can be laid
  // out one after another and the others planned alone.
  for (const auto& [v, i] : request_of)
    if (g.node(v.node).kind == NodeKind::Input) ap.in_fed[i] = 1;
  std::vector<BufferRequest> rest;
  std::vector<int> rest_index(requests.size(), -1);
  for (size_t i = 0; i < requests.size(); ++i)
    if (!ap.in_fed[i]) rest_index[i] = int(rest.size()), rest.push_back(requests[i]);
  for (BufferRequest& r : rest)
    if (r.inplace_of >= 0) r.inplace_of = rest_index[size_t(r.inplace_of)];
  const MemoryPlan planned = plan_memory(rest);
  ap.memory.offsets.assign(requests.size(), 0);
  ap.memory.peak_bytes = planned.peak_bytes;
  ap.memory.naive_bytes = planned.naive_bytes;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (ap.in_fed[i]) {
      ap.memory.offsets[i] = ap.fed_bytes;
      ap.fed_bytes += (requests[i].bytes + 63) / 64 * 64;
      ap.memory.naive_bytes += requests[i].bytes;
    } else {
      ap.memory.offsets[i] = planned.offsets[size_t(rest_index[i])];
    }
  }
  return ap;
}

namespace {

size_t loop_bytes(const Graph& g, const ArenaPlan& ap) {
  size_t own = 0, scratch = 0;
  for (const Node& n : g.nodes())
    if (ap.needed[size_t(n.id)] && n.kind == NodeKind::Op && n.body) {
      const LoopBytes b = scan_kernel_bytes(n);
      own += b.own, scratch = std::max(scratch, b.scratch);
    }
  return own + loop_scratch_bytes(scratch);
}

}  // namespace

size_t planned_peak_bytes(const Graph& g, const std::vector<std::string>& fetches, bool check_numerics,
                          const std::vector<std::string>& bound) {
  ArenaPlan ap = plan_arena(g, wanted_outputs(g, fetches), check_numerics, false, bound);
  return ap.memory.peak_bytes + loop_bytes(g, ap);
}

PeakParts planned_peak_parts(const Graph& g, const std::vector<std::string>& fetches, bool check_numerics,
                             const std::vector<std::string>& bound) {
  ArenaPlan ap = plan_arena(g, wanted_outputs(g, fetches), check_numerics, true, bound);
  return {ap.fed_bytes, ap.memory.peak_bytes, loop_bytes(g, ap)};
}

size_t loop_scratch_bytes(size_t largest) { return largest == 0 ? 0 : (largest + 63) / 64 * 64; }

std::vector<std::string> bound_input_names(const std::vector<CompileOptions::BoundInput>& bound) {
  std::vector<std::string> names;
  for (const auto& b : bound) names.push_back(b.name);
  return names;
}

}  // namespace metagrad
