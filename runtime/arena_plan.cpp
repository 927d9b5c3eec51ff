// The arena plan of a graph (what Executable allocates) and its planned peak, without building
// kernels, so that a memory budget can try several forms of a graph cheaply.
#include "runtime/arena_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

#include "graph/op_def.h"
#include "metagrad/error.h"

namespace metagrad {

namespace {

// Per node: runs (or is read) for the fetches and updates.
std::vector<char> needed_nodes(const Graph& g, const std::vector<NamedOutput>& wanted) {
  std::vector<char> needed(g.size(), 0);
  for (const auto& o : wanted) needed[size_t(o.value.node)] = 1;
  for (const auto& u : g.updates()) needed[size_t(u.value.node)] = 1;
  for (size_t i = g.size(); i-- > 0;)
    if (needed[i])
      for (Value v : g.node(int(i)).inputs) needed[size_t(v.node)] = 1;
  return needed;
}

bool is_bound(const Node& node, const std::vector<std::string>& bound) {
  return node.kind == NodeKind::Input && std::find(bound.begin(), bound.end(), node.name) != bound.end();
}

// Whether op `node` may write its one output over operand `v`, should v die at it: an in-place
// kernel over a value an op made, of the output's type (never over a fed input, which the caller
// may not re-feed before the next run; not when `check_numerics`, which keeps a faulty kernel's
// operands intact).
bool may_take_over(const Graph& g, const Node& node, Value v, bool check_numerics) {
  return node.kind == NodeKind::Op && node.op->inplace && node.outputs.size() == 1 && !check_numerics &&
         g.node(v.node).kind == NodeKind::Op && g.type(v) == node.type();
}

}  // namespace

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

namespace {

// Per input node, the op node whose one output is written over it (-1: none), for the pairs of
// `over` the schedule allows: the output is fetched once and is not an update, and every read of
// the input is at an earlier step than the op's, or at it when the op reads it through an
// in-place kernel.
std::vector<int> writes_over(const Graph& g, const std::vector<NamedOutput>& wanted, const OutputsOverInputs& over,
                             const std::vector<int>& step_of, const std::vector<int>& last_use, bool check_numerics) {
  std::vector<int> maker(g.size(), -1);
  std::vector<char> taken(g.size(), 0);
  for (const auto& [output, input] : over) {
    const int in = g.find(input);
    std::vector<Value> made;
    for (const auto& o : wanted)
      if (o.name == output) made.push_back(o.value);
    if (in < 0 || g.node(in).kind != NodeKind::Input || step_of[size_t(in)] < 0 || made.size() != 1) continue;
    const Value v = made[0];
    const Node& op = g.node(v.node);
    if (op.kind != NodeKind::Op || op.outputs.size() != 1 || g.type(v) != g.node(in).type() || taken[size_t(v.node)]) continue;
    size_t fetched = 0;
    for (const auto& o : wanted) fetched += o.value == v;
    const bool updated = std::any_of(g.updates().begin(), g.updates().end(), [v](const auto& u) { return u.value == v; });
    const int at = step_of[size_t(v.node)], read = last_use[size_t(in)];
    const bool reads_it = std::find(op.inputs.begin(), op.inputs.end(), Value{in, 0}) != op.inputs.end();
    const bool safe = read < at || (read == at && reads_it && op.op->inplace && !check_numerics);
    if (fetched != 1 || updated || !safe || maker[size_t(in)] >= 0) continue;
    maker[size_t(in)] = v.node;
    taken[size_t(v.node)] = 1;
  }
  return maker;
}

}  // namespace

ArenaPlan plan_arena(const Graph& g, const std::vector<NamedOutput>& wanted, bool check_numerics, bool separate_fed,
                     const std::vector<std::string>& bound, const OutputsOverInputs& over) {
  ArenaPlan ap;
  ap.wanted = wanted;
  const size_t n = g.size();
  ap.needed = needed_nodes(g, wanted);
  const std::vector<char>& needed = ap.needed;

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
  std::vector<int> over_input(n, -1);  // per op node: the input whose place its output takes
  std::vector<int> overwritten_at(n, -1);  // per input node: the step that writes over it
  const std::vector<int> maker = writes_over(g, wanted, over, step_of, last_use, check_numerics);
  for (size_t i = 0; i < n; ++i) {
    if (maker[i] < 0) continue;
    if (is_bound(g.node(int(i)), bound)) ap.written_into[maker[i]] = g.node(int(i)).name;  // caller memory
    else if (!separate_fed) over_input[size_t(maker[i])] = int(i), overwritten_at[i] = step_of[size_t(maker[i])];
  }
  for (size_t i = 0; i < n; ++i) {
    const Node& node = g.node(int(i));
    if (!needed[i] || node.kind == NodeKind::Parameter || node.kind == NodeKind::Constant) continue;
    if (is_bound(node, bound)) continue;
    // Inputs are written before the first step and stay intact through the whole run, so a
    // caller may run again without feeding again.
    const bool fed = node.kind == NodeKind::Input;
    const int first = fed ? -1 : step_of[i];
    int last = fed ? steps : std::max(last_use[i], step_of[i]);
    if (overwritten_at[i] >= 0) last = overwritten_at[i];  // up to the step that writes over it
    if (!ap.written_into.count(int(i))) {
      for (size_t k = 0; k < node.outputs.size(); ++k) {
        request_of[{int(i), int(k)}] = requests.size();
        requests.push_back({node.outputs[k].bytes(), first, last});
      }
      for (Value v : node.inputs)
        if (may_take_over(g, node, v, check_numerics) && last_use[size_t(v.node)] == step_of[i]) {
          requests.back().inplace_of = int(request_of.at(v));
          break;
        }
      if (over_input[i] >= 0) requests.back().inplace_of = int(request_of.at({over_input[i], 0}));
    }
    // The kernel's own region, live at its step only: a loop kernel's carries, slots and body
    // plans overlap whatever is dead while it runs.
    if (node.kind == NodeKind::Op && node.op->kernel_scratch)
      if (const size_t bytes = node.op->kernel_scratch(node); bytes > 0) {
        ap.scratch_of[int(i)] = requests.size();
        requests.push_back({bytes, step_of[i], step_of[i]});
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

// The planner overlaps no two buffers live at one step but an in-place output and the operand it
// takes over, so a step holds at least its op's operands that ops made, its outputs and its
// kernel's region (fed operands are in the fed block already; parameters, constants and bound
// inputs take no arena), the in-place pair counted once whether or not that operand dies there.
FormFloor form_floor(const Graph& g, const std::vector<std::string>& fetches, bool check_numerics,
                     const std::vector<std::string>& bound) {
  const std::vector<char> needed = needed_nodes(g, wanted_outputs(g, fetches));
  FormFloor f;
  for (const Node& node : g.nodes()) {
    if (!needed[size_t(node.id)]) continue;
    if (node.kind == NodeKind::Input && !is_bound(node, bound))
      for (const TensorType& t : node.outputs) f.fed += t.bytes();
    if (node.kind != NodeKind::Op) continue;
    size_t live = node.op->kernel_scratch ? node.op->kernel_scratch(node) : 0;
    for (const TensorType& t : node.outputs) live += t.bytes();
    std::vector<Value> seen;
    bool shared = false;
    for (Value v : node.inputs) {
      if (g.node(v.node).kind != NodeKind::Op || std::find(seen.begin(), seen.end(), v) != seen.end()) continue;
      seen.push_back(v);
      live += g.type(v).bytes();
      shared = shared || may_take_over(g, node, v, check_numerics);
    }
    if (shared) live -= node.type().bytes();
    if (live > f.step) f.step = live, f.node = node.id;
  }
  return f;
}

size_t planned_peak_bytes(const Graph& g, const std::vector<std::string>& fetches, bool check_numerics,
                          const std::vector<std::string>& bound, const OutputsOverInputs& over) {
  return plan_arena(g, wanted_outputs(g, fetches), check_numerics, false, bound, over).memory.peak_bytes;
}

PeakParts planned_peak_parts(const Graph& g, const std::vector<std::string>& fetches, bool check_numerics,
                             const std::vector<std::string>& bound) {
  ArenaPlan ap = plan_arena(g, wanted_outputs(g, fetches), check_numerics, true, bound);
  return {ap.fed_bytes, ap.memory.peak_bytes};
}

std::vector<std::string> bound_input_names(const std::vector<CompileOptions::BoundInput>& bound) {
  std::vector<std::string> names;
  for (const auto& b : bound) names.push_back(b.name);
  return names;
}

}  // namespace metagrad
