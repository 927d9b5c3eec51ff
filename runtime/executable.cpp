// Executable: pruning, arena planning, kernel construction and the run loop.
#include "metagrad/executable.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>

#include "graph/op_def.h"
#include "metagrad/error.h"
#include "runtime/arena_plan.h"
#include "runtime/kernel.h"
#include "runtime/memory_budget.h"
#include "ops/scan.h"
#include "ops/scan_schedule.h"

namespace metagrad {

namespace {

// The backward loops among the compiled nodes: a scan that stores its carries (store-all, the
// arena holds them) or one that recomputes them (checkpointed).
std::vector<LoopReport> loop_reports(const Graph& g, const std::vector<int>& nodes) {
  std::vector<LoopReport> out;
  // The forward loop of an every-k loop stores only its segment starts: reported with that loop.
  std::vector<bool> checkpoints(g.size(), false);
  for (const Node& n : g.nodes())
    if (n.body && attr_int(n.attrs, "num_advance") > 0 && attr_int(n.attrs, "checkpoint") == 1)
      checkpoints[size_t(n.inputs[size_t(attr_int(n.attrs, "num_carry"))].node)] = true;
  for (int id : nodes) {
    const Node& n = g.node(id);
    if (!n.body) continue;
    const ScanSig s = scan_sig(n.attrs, n.inputs.size(), *n.body);
    LoopReport r;
    r.node = g.describe(id);
    r.length = s.length;
    if (s.na > 0) {
      r.policy = s.checkpoint == 1 ? "every-k" : "revolve";
      r.slots = scan_stored_carries(s);
      r.recomputed = schedule_advances(scan_schedule(s));
    } else if (s.save && !checkpoints[size_t(id)]) {
      r.policy = "store-all";
      r.slots = s.length;
    } else {
      continue;
    }
    r.recompute_factor = double(s.length + r.recomputed) / double(s.length);
    out.push_back(r);
  }
  return out;
}

}  // namespace

struct Executable::Impl {
  Impl(const Graph& g, ParamStore& store, const std::vector<std::string>& fetches, const CompileOptions& options);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  struct Slot {
    std::string name;
    TensorType type;
    void* ptr;
    bool set = false;
  };
  struct WriteBack {
    float* dst;
    const float* src;
    size_t count;
  };
  void* value_ptr(Value v) const;
  int input_slot(const std::string& name) const;
  int find_input_slot(const std::string& name) const noexcept;
  void copy_input(int slot, DType dtype, const void* data, size_t count);
  void run(const std::vector<Feed>& feeds);
  void run();
  void execute();
  void execute_checked();
  [[noreturn]] void report_non_finite(size_t kernel, size_t output, size_t nan, size_t inf) const;
  std::span<const float> fetch(size_t index) const;
  std::span<const float> fetch(const std::string& name) const;
  std::vector<KernelProfile> profile(int n);

  Graph graph_;
  RematReport remat_;  // what fitting the memory budget recomputed
  ParamStore& store_;
  CompileOptions options_;
  dnnl::engine engine_;
  dnnl::stream stream_;
  // Freed also when construction throws after allocating them.
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> arena_;
  size_t largest_region_ = 0;  // the largest kernel region of the arena (KernelCtx::scratch)
  Workspace own_workspace_;  // scratch shared by all kernels (oneDNN scratchpads, reordered operands)
  Workspace& workspace_;     // own_workspace_, or the enclosing executable's (shared_workspace)
  size_t arena_bytes_ = 0, naive_bytes_ = 0;
  std::vector<std::vector<float>> constants_;  // f32/i32 payloads of constant nodes
  std::vector<std::vector<void*>> ptrs_;        // per node, per output
  std::vector<BufferInfo> buffers_;
  std::vector<Slot> inputs_;
  std::vector<char> fed_scratch_;  // per-input "fed" marks of the checked run(), kept to avoid allocating
  std::vector<std::unique_ptr<Kernel>> kernels_;
  std::vector<int> kernel_nodes_;
  std::vector<WriteBack> writebacks_;
  std::vector<std::string> fetch_names_;
  std::vector<std::pair<const float*, size_t>> fetches_;
};

Executable::Impl::Impl(const Graph& g, ParamStore& store, const std::vector<std::string>& fetches,
                       const CompileOptions& options)
    : graph_(g),
      store_(store),
      options_(options),
      engine_(dnnl::engine::kind::cpu, 0),
      stream_(engine_),
      workspace_(options.shared_workspace ? *options.shared_workspace : own_workspace_) {
  verify(graph_);
  const std::vector<std::string> bound = bound_input_names(options_.bound_inputs);
  for (size_t b = 0; b < bound.size(); ++b) {
    const int id = graph_.find(bound[b]);
    if (id < 0 || graph_.node(id).kind != NodeKind::Input)
      throw RuntimeError(fmt::format("bound input \"{}\": the graph has no input of that name", bound[b]));
    if (!options_.bound_inputs[b].data) throw RuntimeError(fmt::format("bound input \"{}\": null data", bound[b]));
    if (std::find(bound.begin(), bound.begin() + ptrdiff_t(b), bound[b]) != bound.begin() + ptrdiff_t(b))
      throw RuntimeError(fmt::format("bound input \"{}\" is bound twice", bound[b]));
  }
  remat_ = fit_memory_budget(graph_, fetches, options_);
  char* const scratch = static_cast<char*>(options_.scratch_arena);
  const bool separate_fed = scratch && !options_.inputs_in_scratch;
  ArenaPlan ap = plan_arena(graph_, wanted_outputs(graph_, fetches), options_.check_numerics, separate_fed, bound,
                            options_.outputs_over_inputs);
  const std::vector<NamedOutput>& wanted = ap.wanted;
  const std::vector<char>& needed = ap.needed;
  const std::vector<BufferRequest>& requests = ap.requests;
  const std::map<Value, size_t>& request_of = ap.request_of;
  const MemoryPlan& plan = ap.memory;
  store_.ensure(graph_);
  const size_t n = graph_.size();
  for (const auto& [v, i] : request_of)
    buffers_.push_back({v, plan.offsets[i], requests[i].bytes, requests[i].first, requests[i].last,
                        requests[i].inplace_of >= 0 && plan.offsets[i] == plan.offsets[size_t(requests[i].inplace_of)]});
  if (scratch && plan.peak_bytes > options_.scratch_arena_bytes)
    throw RuntimeError(fmt::format("the scratch arena given ({} bytes) is smaller than the plan's {} bytes",
                                   options_.scratch_arena_bytes, plan.peak_bytes));
  arena_bytes_ = scratch ? ap.fed_bytes : plan.peak_bytes;  // inputs in the scratch: fed_bytes is 0
  naive_bytes_ = plan.naive_bytes;
  arena_.reset(static_cast<char*>(std::aligned_alloc(64, std::max<size_t>(64, (arena_bytes_ + 63) / 64 * 64))));
  if (!arena_) throw std::bad_alloc();

  ptrs_.assign(n, {});
  constants_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (!needed[i]) continue;
    const Node& node = graph_.node(int(i));
    if (node.kind == NodeKind::Parameter) {
      ptrs_[i] = {store_.data(node.name).data()};
    } else if (node.kind == NodeKind::Constant) {
      std::vector<float> payload(node.data.size());
      if (node.type().dtype == DType::i32)
        for (size_t j = 0; j < payload.size(); ++j) {
          int32_t v = int32_t(node.data[j]);
          std::memcpy(&payload[j], &v, 4);
        }
      else
        for (size_t j = 0; j < payload.size(); ++j) payload[j] = float(node.data[j]);
      if (payload.empty()) payload.resize(1);
      constants_.push_back(std::move(payload));
      ptrs_[i] = {constants_.back().data()};
    } else if (const auto b = std::find(bound.begin(), bound.end(), node.name);
               node.kind == NodeKind::Input && b != bound.end()) {
      ptrs_[i] = {const_cast<void*>(options_.bound_inputs[size_t(b - bound.begin())].data)};  // read only
    } else if (const auto w = ap.written_into.find(int(i)); w != ap.written_into.end()) {
      const auto at = std::find(bound.begin(), bound.end(), w->second);
      ptrs_[i] = {const_cast<void*>(options_.bound_inputs[size_t(at - bound.begin())].data)};  // outputs_over_inputs
    } else {
      for (size_t k = 0; k < node.outputs.size(); ++k) {
        const size_t r = request_of.at({int(i), int(k)});
        char* base = scratch && !ap.in_fed[r] ? scratch : arena_.get();
        ptrs_[i].push_back(base + plan.offsets[r]);
      }
      if (node.kind == NodeKind::Input) inputs_.push_back({node.name, node.type(), ptrs_[i][0]});
    }
  }

  for (size_t i = 0; i < n; ++i) {
    const Node& node = graph_.node(int(i));
    if (!needed[i] || node.kind != NodeKind::Op) continue;
    KernelCtx ctx{node, {}, {}, ptrs_[i], engine_, workspace_, options_.collective};
    if (const auto r = ap.scratch_of.find(int(i)); r != ap.scratch_of.end()) {
      ctx.scratch = (scratch ? scratch : arena_.get()) + plan.offsets[r->second];
      ctx.scratch_bytes = requests[r->second].bytes;
      largest_region_ = std::max(largest_region_, ctx.scratch_bytes);
    }
    for (Value v : node.inputs) {
      ctx.in_types.push_back(graph_.type(v));
      ctx.in.push_back(value_ptr(v));
    }
    try {
      kernels_.push_back(node.op->kernel(ctx));
    } catch (const dnnl::error& e) {
      throw RuntimeError(fmt::format("{}: oneDNN could not build a kernel: {}", graph_.describe(int(i)), e.what()));
    }
    kernel_nodes_.push_back(int(i));
  }
  if (!options_.shared_workspace) workspace_.allocate();
  for (const auto& u : graph_.updates()) {
    const Node& p = graph_.node(u.param);
    writebacks_.push_back({store_.data(p.name).data(), static_cast<const float*>(value_ptr(u.value)),
                           size_t(p.type().numel())});
  }
  fed_scratch_.assign(inputs_.size(), 0);
  for (const auto& o : wanted) {
    fetch_names_.push_back(o.name);
    fetches_.push_back({static_cast<const float*>(value_ptr(o.value)), size_t(graph_.type(o.value).numel())});
  }
}

Executable::Impl::~Impl() {
  kernels_.clear();  // loop kernels' body executables plan into their regions of arena_
}

void* Executable::Impl::value_ptr(Value v) const { return ptrs_.at(size_t(v.node)).at(size_t(v.index)); }

int Executable::Impl::find_input_slot(const std::string& name) const noexcept {
  for (size_t i = 0; i < inputs_.size(); ++i)
    if (inputs_[i].name == name) return int(i);
  return -1;
}

int Executable::Impl::input_slot(const std::string& name) const {
  if (const int slot = find_input_slot(name); slot >= 0) return slot;
  int id = graph_.find(name);
  for (const auto& b : options_.bound_inputs)
    if (b.name == name) throw RuntimeError(fmt::format("input \"{}\" is bound to caller memory, not fed", name));
  if (id >= 0 && graph_.node(id).kind == NodeKind::Input)
    throw RuntimeError(fmt::format("input \"{}\" is not needed by the compiled fetches", name));
  throw RuntimeError(fmt::format("graph has no input \"{}\"", name));
}

void Executable::Impl::copy_input(int slot, DType dtype, const void* data, size_t count) {
  if (slot < 0 || size_t(slot) >= inputs_.size()) throw RuntimeError(fmt::format("no input slot {}", slot));
  Slot& s = inputs_[size_t(slot)];
  if (s.type.dtype != dtype)
    throw RuntimeError(fmt::format("input \"{}\" is {}, fed {}", s.name, dtype_name(s.type.dtype), dtype_name(dtype)));
  if (int64_t(count) != s.type.numel())
    throw RuntimeError(fmt::format("input \"{}\" of type {} fed {} values", s.name, type_str(s.type), count));
  if (s.ptr != data) std::memcpy(s.ptr, data, count * dtype_size(dtype));  // a loop's carry may already be there
  s.set = true;
}

void Executable::Impl::run(const std::vector<Feed>& feeds) {
  std::vector<char>& fed = fed_scratch_;
  std::fill(fed.begin(), fed.end(), 0);
  for (const Feed& f : feeds) {
    int slot = input_slot(f.name);
    Slot& s = inputs_[size_t(slot)];
    if (fed[size_t(slot)]) throw RuntimeError(fmt::format("input \"{}\" is fed twice", f.name));
    if (f.dtype != s.type.dtype)
      throw RuntimeError(fmt::format("input \"{}\" expects {}, fed {}", f.name, type_str(s.type),
                                     type_str({f.dtype, f.shape})));
    if (f.shape != s.type.shape)
      throw RuntimeError(fmt::format("input \"{}\" expects shape {}, fed {}", f.name, shape_str(s.type.shape),
                                     shape_str(f.shape)));
    if (!f.data) throw RuntimeError(fmt::format("input \"{}\" fed a null pointer", f.name));
    std::memcpy(s.ptr, f.data, s.type.bytes());
    s.set = true;  // a later run() may reuse it without feeding again
    fed[size_t(slot)] = 1;
  }
  for (size_t i = 0; i < inputs_.size(); ++i)
    if (!fed[i]) throw RuntimeError(fmt::format("missing feed for input \"{}\" of type {}", inputs_[i].name, type_str(inputs_[i].type)));
  execute();
}

void Executable::Impl::run() {
  for (const Slot& s : inputs_)
    if (!s.set) throw RuntimeError(fmt::format("input \"{}\" was never set", s.name));
  execute();
}

void Executable::Impl::execute() {
  if (options_.check_numerics) return execute_checked();  // one test per run, none per kernel
  for (auto& k : kernels_) k->run(stream_);
  for (const WriteBack& w : writebacks_)
    if (w.dst != w.src) std::memmove(w.dst, w.src, w.count * sizeof(float));
}

namespace {

struct Range {
  double lo = 0, hi = 0;
  size_t nan = 0, inf = 0, finite = 0;
};

Range range_of(const float* p, size_t n) {
  Range r;
  for (size_t i = 0; i < n; ++i) {
    const float v = p[i];
    if (std::isnan(v)) {
      ++r.nan;
    } else if (std::isinf(v)) {
      ++r.inf;
    } else {
      r.lo = r.finite ? std::min(r.lo, double(v)) : v;
      r.hi = r.finite ? std::max(r.hi, double(v)) : v;
      ++r.finite;
    }
  }
  return r;
}

std::string range_str(const Range& r) {
  std::string s = r.finite ? fmt::format("[{:.6g}, {:.6g}]", r.lo, r.hi) : "no finite values";
  if (r.nan) s += fmt::format(", {} NaN", r.nan);
  if (r.inf) s += fmt::format(", {} Inf", r.inf);
  return s;
}

}  // namespace

// The guarded loop of CompileOptions::check_numerics: a separate copy of execute(), so the
// plain loop keeps no per-kernel test.
void Executable::Impl::execute_checked() {
  for (size_t i = 0; i < kernels_.size(); ++i) {
    kernels_[i]->run(stream_);
    const Node& node = graph_.node(kernel_nodes_[i]);
    for (size_t k = 0; k < node.outputs.size(); ++k) {
      if (node.outputs[k].dtype != DType::f32) continue;
      const Range r = range_of(static_cast<const float*>(ptrs_[size_t(node.id)][k]), size_t(node.outputs[k].numel()));
      if (r.nan || r.inf) report_non_finite(i, k, r.nan, r.inf);
    }
  }
  for (const WriteBack& w : writebacks_)
    if (w.dst != w.src) std::memmove(w.dst, w.src, w.count * sizeof(float));
}

void Executable::Impl::report_non_finite(size_t kernel, size_t output, size_t nan, size_t inf) const {
  const Node& node = graph_.node(kernel_nodes_[kernel]);
  std::string inputs;
  for (size_t j = 0; j < node.inputs.size(); ++j) {
    const Value v = node.inputs[j];
    const TensorType& t = graph_.type(v);
    std::string what = t.dtype == DType::f32
                           ? range_str(range_of(static_cast<const float*>(value_ptr(v)), size_t(t.numel())))
                           : "i32";
    inputs += fmt::format("{}input {} {} {}: {}", j ? "; " : "", j, graph_.describe(v.node), type_str(t), what);
  }
  const size_t n = size_t(node.outputs[output].numel());
  throw RuntimeError(fmt::format("check-numerics: {} wrote {} NaN and {} Inf of {} values to output {} ({}); {}",
                                 graph_.describe(node.id), nan, inf, n, output,
                                 type_str(node.outputs[output]), inputs.empty() ? "no inputs" : inputs));
}

std::span<const float> Executable::Impl::fetch(size_t index) const {
  if (index >= fetches_.size()) throw RuntimeError(fmt::format("fetch index {} out of range", index));
  return {fetches_[index].first, fetches_[index].second};
}

std::span<const float> Executable::Impl::fetch(const std::string& name) const {
  for (size_t i = 0; i < fetch_names_.size(); ++i)
    if (fetch_names_[i] == name) return fetch(i);
  throw RuntimeError(fmt::format("\"{}\" was not compiled as a fetch", name));
}

std::vector<KernelProfile> Executable::Impl::profile(int n) {
  std::vector<KernelProfile> prof(kernels_.size());
  for (size_t i = 0; i < kernels_.size(); ++i) {
    const Node& node = graph_.node(kernel_nodes_[i]);
    prof[i] = {node.op->name, graph_.describe(node.id), kernels_[i]->impl(), 0.0};
  }
  for (int r = 0; r < n; ++r) {
    for (size_t i = 0; i < kernels_.size(); ++i) {
      auto t0 = std::chrono::steady_clock::now();
      kernels_[i]->run(stream_);
      prof[i].seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    for (const WriteBack& w : writebacks_)
      if (w.dst != w.src) std::memmove(w.dst, w.src, w.count * sizeof(float));
  }
  return prof;
}

Executable::Executable(const Graph& g, ParamStore& store, const std::vector<std::string>& fetches,
                       const CompileOptions& options)
    : impl_(std::make_unique<Impl>(g, store, fetches, options)) {}
Executable::~Executable() = default;
int Executable::input_slot(const std::string& name) const { return impl_->input_slot(name); }
int Executable::find_input_slot(const std::string& name) const noexcept { return impl_->find_input_slot(name); }
void Executable::set_input(int slot, std::span<const float> v) { impl_->copy_input(slot, DType::f32, v.data(), v.size()); }
void Executable::set_input(int slot, std::span<const int32_t> v) { impl_->copy_input(slot, DType::i32, v.data(), v.size()); }
void Executable::run() { impl_->run(); }
void Executable::run(const std::vector<Feed>& feeds) { impl_->run(feeds); }
std::span<const float> Executable::fetch(const std::string& name) const { return impl_->fetch(name); }
std::span<const float> Executable::fetch(size_t index) const { return impl_->fetch(index); }
const std::vector<std::string>& Executable::fetch_names() const { return impl_->fetch_names_; }
size_t Executable::arena_bytes() const { return impl_->arena_bytes_; }
size_t Executable::workspace_bytes() const { return impl_->workspace_.bytes(); }
size_t Executable::naive_bytes() const { return impl_->naive_bytes_; }
size_t Executable::kernel_count() const { return impl_->kernels_.size(); }
size_t Executable::loop_storage_bytes() const {
  return impl_->largest_region_;
}
size_t Executable::peak_bytes() const { return arena_bytes(); }
std::vector<LoopReport> Executable::loops() const { return loop_reports(impl_->graph_, impl_->kernel_nodes_); }
const RematReport& Executable::remat() const { return impl_->remat_; }
const std::vector<BufferInfo>& Executable::buffers() const { return impl_->buffers_; }
const Graph& Executable::graph() const { return impl_->graph_; }
std::vector<KernelProfile> Executable::profile(int n) { return impl_->profile(n); }

}  // namespace metagrad
