// The kernel of a checkpointed backward loop: it runs the reverse body over forward carries that
// it recomputes from a few stored ones by a schedule (every-k or revolve, ops/scan_schedule.h),
// instead of reading every carry from a stacked input. Also the storage count of scan kernels,
// for the planned peak.
#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/param_store.h"
#include "ops/scan.h"
#include "ops/scan_schedule.h"
#include "runtime/arena_plan.h"

namespace metagrad {

std::vector<LoopAction> scan_schedule(const ScanSig& s) {
  if (s.checkpoint == 1) return every_k_schedule(s.length, s.slots);
  return revolve_schedule(s.length, s.slots);
}

size_t scan_slot_count(const ScanSig& s) {
  if (s.checkpoint == 1) return size_t(every_k_slots(s.length, s.slots));
  return size_t(std::min(s.slots, s.length));
}

std::vector<std::string> scan_step_fetches(const Graph& body, const ScanSig& s) {
  std::vector<std::string> f;
  for (size_t k = 0; k < s.nc + s.ny; ++k) f.push_back(body.outputs()[k].name);
  return f;
}

std::vector<std::string> scan_advance_fetches(const Graph& body, const ScanSig& s) {
  std::vector<std::string> f;
  for (size_t k = 0; k < s.na; ++k) f.push_back(body.outputs()[s.nc + s.ny + k].name);
  return f;
}

size_t scan_staging_bytes(const Graph& body, const ScanSig& s) {
  size_t bytes = 0;
  for (size_t k = 0; k < s.nc; ++k) {
    Value v = body.outputs()[k].value;
    if (body.node(v.node).kind == NodeKind::Input) bytes += body.type(v).bytes();
  }
  return std::max<size_t>(1, bytes);
}

namespace {

size_t state_bytes(const Graph& body, const ScanSig& s) {
  size_t b = 0;
  for (size_t k = 0; k < s.na; ++k) b += body.node(s.body_inputs[s.nc + k]).type().bytes();
  return b;
}

}  // namespace

size_t scan_kernel_bytes(const Node& n) {
  const Graph& body = *n.body;
  const ScanSig s = scan_sig(n.attrs, n.inputs.size(), body);
  const size_t staging = scan_staging_bytes(body, s);
  if (s.na == 0) return planned_peak_bytes(body, {}, false) + staging;
  const size_t slots = scan_slot_count(s);
  return planned_peak_bytes(body, scan_step_fetches(body, s), false) +
         planned_peak_bytes(body, scan_advance_fetches(body, s), false) + staging + (slots + 1) * state_bytes(body, s);
}

namespace {

// Two executables of one body: the reverse step (the body's own outputs) and the advance (the
// forward step of the carries it reads). A run feeds the invariants once, then follows the
// schedule over `cur_` (the recomputed forward carry) and the slots; the reverse step's carries
// pass from its outputs to its inputs as in the plain loop.
class CheckpointedScanKernel final : public Kernel {
 public:
  explicit CheckpointedScanKernel(const KernelCtx& ctx) : sig_(scan_sig(ctx.node.attrs, ctx.in.size(), *ctx.node.body)) {
    const Graph& body = *ctx.node.body;
    step_ = std::make_unique<Executable>(body, store_, scan_step_fetches(body, sig_));
    adv_ = std::make_unique<Executable>(body, store_, scan_advance_fetches(body, sig_));
    size_t at = 0;
    for (size_t i = 0; i < ctx.in.size(); ++i) {
      const Node& bi = body.node(sig_.body_inputs[i]);
      Input in{slot_of(*step_, bi.name), slot_of(*adv_, bi.name), bi.type().dtype, size_t(bi.type().numel()),
               static_cast<const char*>(ctx.in[i]), 0};
      if (i >= sig_.nc && i < sig_.nc + sig_.na) in.state = at, at += bi.type().bytes();
      inputs_.push_back(in);
    }
    state_bytes_ = at;
    for (size_t k = 0; k < sig_.nc + sig_.ny; ++k) {
      Value v = body.outputs()[k].value;
      Output o{step_->fetch(k).data(), body.type(v).bytes(), static_cast<char*>(ctx.out[k]), -1};
      if (k < sig_.nc && body.node(v.node).kind == NodeKind::Input) o.stage = int(staged), staged += o.bytes;
      outputs_.push_back(o);
    }
    for (size_t k = 0; k < sig_.na; ++k) advance_.push_back(adv_->fetch(k).data());
    staging_.resize(scan_staging_bytes(body, sig_));
    if (sig_.save)
      for (size_t i = 0; i < sig_.nc; ++i) saved_.push_back(static_cast<char*>(ctx.out[sig_.nc + sig_.ny + i]));
    schedule_ = scan_schedule(sig_);
    if (size_t(schedule_slots(schedule_)) > scan_slot_count(sig_))
      throw RuntimeError(fmt::format("scan: the checkpoint schedule uses {} slots, more than {}", schedule_slots(schedule_),
                                     scan_slot_count(sig_)));
    slots_.resize(std::max<size_t>(1, scan_slot_count(sig_) * state_bytes_));
    cur_.resize(std::max<size_t>(1, state_bytes_));
  }

  void run(dnnl::stream&) override {
    const size_t nc = sig_.nc, na = sig_.na, nx = sig_.nx;
    for (size_t i = 0; i < inputs_.size(); ++i)
      if (i < nc || i >= nc + nx) feed(*step_, inputs_[i].step_slot, i, inputs_[i].src), feed(*adv_, inputs_[i].adv_slot, i, inputs_[i].src);
    for (size_t k = 0; k < na; ++k) std::memcpy(cur_.data() + inputs_[nc + k].state, inputs_[nc + k].src, bytes(nc + k));
    int64_t q = 0;  // reverse steps taken
    for (const LoopAction& a : schedule_) {
      char* slot = slots_.data() + size_t(std::max(0, a.slot)) * state_bytes_;
      const size_t t = size_t(sig_.reverse ? a.step : sig_.length - 1 - a.step);  // the forward step's index
      switch (a.kind) {
        case LoopAction::store: std::memcpy(slot, cur_.data(), state_bytes_); break;
        case LoopAction::restore: std::memcpy(cur_.data(), slot, state_bytes_); break;
        case LoopAction::advance:
          for (size_t k = 0; k < na; ++k) feed(*adv_, inputs_[nc + k].adv_slot, nc + k, cur_.data() + inputs_[nc + k].state);
          for (size_t i = nc + na; i < nc + nx; ++i) feed(*adv_, inputs_[i].adv_slot, i, inputs_[i].src + t * bytes(i));
          adv_->run();
          for (size_t k = 0; k < na; ++k) std::memcpy(cur_.data() + inputs_[nc + k].state, advance_[k], bytes(nc + k));
          break;
        case LoopAction::backward:
          for (size_t k = 0; k < na; ++k) feed(*step_, inputs_[nc + k].step_slot, nc + k, cur_.data() + inputs_[nc + k].state);
          for (size_t i = nc + na; i < nc + nx; ++i) feed(*step_, inputs_[i].step_slot, i, inputs_[i].src + t * bytes(i));
          if (sig_.save)
            for (size_t i = 0; i < nc; ++i)
              std::memcpy(saved_[i] + t * outputs_[i].bytes, q == 0 ? inputs_[i].src : carry_src(i), outputs_[i].bytes);
          if (q > 0) pass_carry();
          step_->run();
          for (size_t k = nc; k < outputs_.size(); ++k)
            std::memcpy(outputs_[k].dst + t * outputs_[k].bytes, outputs_[k].src, outputs_[k].bytes);
          ++q;
          break;
      }
    }
    for (size_t i = 0; i < nc; ++i) std::memcpy(outputs_[i].dst, outputs_[i].src, outputs_[i].bytes);
  }
  std::string impl() const override {
    return fmt::format("scan:{}x{}:{}{}", sig_.length, step_->kernel_count(), sig_.checkpoint == 1 ? "every-" : "revolve-",
                       sig_.slots);
  }
  size_t own_bytes() const override {
    return step_->peak_bytes() + adv_->peak_bytes() + staging_.size() + slots_.size() + cur_.size();
  }

 private:
  struct Input {
    int step_slot, adv_slot;  // -1: that executable does not read it
    DType dtype;
    size_t count;
    const char* src;
    size_t state;  // the recomputed carries: offset in cur_ and in each slot
  };
  struct Output {
    const float* src;
    size_t bytes;
    char* dst;
    int stage;
  };
  static int slot_of(const Executable& e, const std::string& name) {
    try {
      return e.input_slot(name);
    } catch (const RuntimeError&) {
      return -1;
    }
  }
  size_t bytes(size_t i) const { return inputs_[i].count * 4; }
  void feed(Executable& e, int slot, size_t i, const char* src) {
    if (slot < 0) return;
    if (inputs_[i].dtype == DType::i32) e.set_input(slot, std::span(reinterpret_cast<const int32_t*>(src), inputs_[i].count));
    else e.set_input(slot, std::span(reinterpret_cast<const float*>(src), inputs_[i].count));
  }
  const char* carry_src(size_t i) const {
    const Output& o = outputs_[i];
    return o.stage >= 0 ? staging_.data() + o.stage : reinterpret_cast<const char*>(o.src);
  }
  void pass_carry() {
    for (size_t i = 0; i < sig_.nc; ++i)
      if (outputs_[i].stage >= 0) std::memcpy(staging_.data() + outputs_[i].stage, outputs_[i].src, outputs_[i].bytes);
    for (size_t i = 0; i < sig_.nc; ++i) feed(*step_, inputs_[i].step_slot, i, carry_src(i));
  }

  ScanSig sig_;
  ParamStore store_;
  std::unique_ptr<Executable> step_, adv_;
  std::vector<Input> inputs_;
  std::vector<Output> outputs_;
  std::vector<const float*> advance_;
  std::vector<char*> saved_;
  std::vector<char> staging_, slots_, cur_;
  std::vector<LoopAction> schedule_;
  size_t state_bytes_ = 0, staged = 0;
};

}  // namespace

std::unique_ptr<Kernel> make_checkpointed_scan_kernel(const KernelCtx& ctx) {
  return std::make_unique<CheckpointedScanKernel>(ctx);
}

}  // namespace metagrad
