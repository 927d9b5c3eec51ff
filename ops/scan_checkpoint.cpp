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
#include "ops/scan_carry.h"
#include "ops/scan_schedule.h"
#include "runtime/arena_plan.h"

namespace metagrad {

std::vector<LoopAction> scan_schedule(const ScanSig& s) {
  if (s.checkpoint == 1) return every_k_schedule(s.length, s.slots);
  return revolve_schedule(s.length, s.slots);
}

size_t scan_slot_count(const ScanSig& s) {
  if (s.checkpoint == 1) return size_t(every_k_slots(s.length, s.slots));
  return size_t(std::min(s.slots, s.length) - 1);  // the initial carry is the loop's input
}

int64_t scan_stored_carries(const ScanSig& s) {
  if (s.checkpoint == 1) return scan_saved_rows(s.length, s.slots) + every_k_slots(s.length, s.slots);
  return std::min(s.slots, s.length);
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

namespace {

size_t state_bytes(const Graph& body, const ScanSig& s) {
  size_t b = 0;
  for (size_t k = 0; k < s.na; ++k) b += body.node(s.body_inputs[s.nc + k]).type().bytes();
  return b;
}

// Per forward carry, its offset in the working carry and in each slot.
std::vector<size_t> state_offsets(const Graph& body, const ScanSig& s) {
  std::vector<size_t> at;
  size_t b = 0;
  for (size_t k = 0; k < s.na; ++k) at.push_back(b), b += body.node(s.body_inputs[s.nc + k]).type().bytes();
  return at;
}

// Both executables read the forward carries in place, from the kernel's working carry, unless an
// advance output is a body input: copying the advance into the working carry would then read it
// while overwriting it.
bool states_bound(const Graph& body, const ScanSig& s) {
  for (size_t k = 0; k < s.na; ++k)
    if (body.node(body.outputs()[s.nc + s.ny + k].value.node).kind == NodeKind::Input) return false;
  return true;
}

// The inputs each executable reads in place: the invariants, the forward carries (states_bound)
// and, for the reverse step, its carries where the LoopCarry stages them (scan_carries_bound).
std::vector<std::string> bound_names(const Graph& body, const ScanSig& s, bool reverse_step) {
  std::vector<std::string> names = scan_invariant_names(body, s);
  if (states_bound(body, s))
    for (size_t k = 0; k < s.na; ++k) names.push_back(body.node(s.body_inputs[s.nc + k]).name);
  if (reverse_step && scan_carries_bound(body, s, true))
    for (const std::string& c : scan_carry_names(body, s)) names.push_back(c);
  return names;
}

}  // namespace

// A plain loop: the carry staging, then its body's plan. A checkpointed one: the staging, the
// slots and the working carry, then the reverse step's and the advance's plans, which never run at
// once and so share what is left. Each plan holds its fed inputs too: a loop kernel feeds them
// before every run of a body.
size_t scan_kernel_scratch(const Node& n) {
  const Graph& body = *n.body;
  const ScanSig s = scan_sig(n.attrs, n.inputs.size(), body);
  Region r;
  r.take(scan_staging_bytes(body, s, s.na > 0));
  size_t plans = 0;
  if (s.na == 0) {
    plans = planned_peak_bytes(body, {}, false, scan_invariant_names(body, s), scan_carries_in_place(body, s, false));
  } else {
    r.take(scan_slot_count(s) * state_bytes(body, s));
    r.take(state_bytes(body, s));
    plans = std::max(planned_peak_bytes(body, scan_step_fetches(body, s), false, bound_names(body, s, true),
                                        scan_carries_in_place(body, s, true)),
                     planned_peak_bytes(body, scan_advance_fetches(body, s), false, bound_names(body, s, false)));
  }
  return r.used() + region_piece(plans);
}

namespace {

// Two executables of one body: the reverse step (the body's own outputs) and the advance (the
// forward step of the carries it reads), both planned into the rest of the kernel's region and
// reading the invariants and the working carry `cur_` (the recomputed forward carry) in place. A
// run follows the schedule over `cur_` and the slots; the reverse step's carries are staged after
// each of its runs, written there or copied (an advance may run before the next reverse step and
// overwrite its plan), and read from there by the next.
class CheckpointedScanKernel final : public Kernel {
 public:
  explicit CheckpointedScanKernel(const KernelCtx& ctx)
      : sig_(scan_sig(ctx.node.attrs, ctx.in.size(), *ctx.node.body)),
        state_(state_offsets(*ctx.node.body, sig_)),
        state_bytes_(state_bytes(*ctx.node.body, sig_)),
        region_(static_cast<char*>(ctx.scratch), ctx.scratch_bytes),
        carry_(ctx, sig_, true, region_),
        slots_(region_.take(scan_slot_count(sig_) * state_bytes_)),
        cur_(region_.take(state_bytes_)),
        step_(std::make_unique<Executable>(*ctx.node.body, store_, scan_step_fetches(*ctx.node.body, sig_),
                                           body_options(ctx, true))),
        adv_(std::make_unique<Executable>(*ctx.node.body, store_, scan_advance_fetches(*ctx.node.body, sig_),
                                          body_options(ctx, false))),
        adv_feeds_(ctx, sig_, *adv_) {
    carry_.attach(ctx, *step_);
    for (size_t k = 0; k < sig_.na; ++k) advance_.push_back(adv_->fetch(k).data());
    schedule_ = scan_schedule(sig_);
    if (size_t(schedule_slots(schedule_)) > scan_slot_count(sig_))
      throw RuntimeError(fmt::format("scan: the checkpoint schedule uses {} slots, more than {}", schedule_slots(schedule_),
                                     scan_slot_count(sig_)));
  }

  void run(dnnl::stream&) override {
    const size_t nc = sig_.nc, na = sig_.na;
    BodyFeeds& step_feeds = carry_.feeds();
    for (size_t k = 0; k < na; ++k) std::memcpy(cur_ + state_[k], step_feeds.src(nc + k), step_feeds.bytes(nc + k));
    int64_t q = 0;  // reverse steps taken
    for (const LoopAction& a : schedule_) {
      const size_t t = size_t(sig_.reverse ? a.step : sig_.length - 1 - a.step);  // the forward step's index
      switch (a.kind) {
        case LoopAction::store: std::memcpy(slots_ + size_t(a.slot) * state_bytes_, cur_, state_bytes_); break;
        case LoopAction::restore: std::memcpy(cur_, slots_ + size_t(a.slot) * state_bytes_, state_bytes_); break;
        case LoopAction::load: {
          const size_t row = size_t(scan_checkpoint_row(sig_, a.slot));
          for (size_t k = 0; k < na; ++k)
            std::memcpy(cur_ + state_[k], step_feeds.src(nc + k) + row * step_feeds.bytes(nc + k), step_feeds.bytes(nc + k));
          break;
        }
        case LoopAction::advance:
          for (size_t k = 0; k < na; ++k) adv_feeds_.feed(nc + k, cur_ + state_[k]);  // bound: a no-op
          adv_feeds_.feed_slices(nc + na, t);
          adv_->run();
          for (size_t k = 0; k < na; ++k) std::memcpy(cur_ + state_[k], advance_[k], adv_feeds_.bytes(nc + k));
          break;
        case LoopAction::backward:
          for (size_t k = 0; k < na; ++k) step_feeds.feed(nc + k, cur_ + state_[k]);  // bound: a no-op
          step_feeds.feed_slices(nc + na, t);
          carry_.step(t, q == 0);
          ++q;
          break;
      }
    }
    carry_.finish();
  }
  std::string impl() const override {
    return fmt::format("scan:{}x{}:{}{}", sig_.length, step_->kernel_count(), sig_.checkpoint == 1 ? "every-" : "revolve-",
                       sig_.slots);
  }
 private:
  // The options of the reverse step or the advance: loop_body_options, the forward carries bound
  // to cur_ and, for the reverse step, its carries to their staging (bound_names says which).
  CompileOptions body_options(const KernelCtx& ctx, bool reverse_step) {
    const Graph& body = *ctx.node.body;
    CompileOptions options = loop_body_options(ctx, sig_, region_);
    if (states_bound(body, sig_))
      for (size_t k = 0; k < sig_.na; ++k)
        options.bound_inputs.push_back({body.node(sig_.body_inputs[sig_.nc + k]).name, cur_ + state_[k]});
    if (reverse_step) carry_.bind_carries(options);
    return options;
  }

  ScanSig sig_;
  ParamStore store_;
  std::vector<size_t> state_;  // per recomputed carry: its offset in cur_ and in each slot
  size_t state_bytes_;
  // The kernel's region of the arena, in the order scan_kernel_scratch counts it: the staging, the
  // slots, the working carry (all taken before the executables, which read them in place), then
  // the plans of the two executables.
  Region region_;
  LoopCarry carry_;  // the reverse step's carries, staged
  char* slots_;
  char* cur_;
  std::unique_ptr<Executable> step_, adv_;
  BodyFeeds adv_feeds_;  // the advance's inputs
  std::vector<const float*> advance_;
  std::vector<LoopAction> schedule_;
};

}  // namespace

std::unique_ptr<Kernel> make_checkpointed_scan_kernel(const KernelCtx& ctx) {
  return std::make_unique<CheckpointedScanKernel>(ctx);
}

}  // namespace metagrad
