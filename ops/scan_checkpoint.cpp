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

// Every-k with k <= 2 uses no slot; the kernel still allocates one (a buffer is never empty).
size_t scan_slot_count(const ScanSig& s) {
  if (s.checkpoint == 1) return size_t(std::max<int64_t>(1, every_k_slots(s.length, s.slots)));
  return size_t(std::min(s.slots, s.length));
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

}  // namespace

// A plain loop: one body executable. A checkpointed one: the reverse step and the advance, which
// never run at once, so the larger of their plans is the scratch they share; each keeps its fed
// inputs in a block of its own. At least 64 bytes of scratch, so that every loop kernel is given
// a region and plans its bodies the same way.
LoopBytes scan_kernel_bytes(const Node& n) {
  const Graph& body = *n.body;
  const ScanSig s = scan_sig(n.attrs, n.inputs.size(), body);
  const std::vector<std::string> bound = scan_invariant_names(body, s);
  LoopBytes b;
  if (s.na == 0) {
    const PeakParts p = planned_peak_parts(body, {}, false, bound);
    b.own = p.fed + p.loops + scan_staging_bytes(body, s, false);
    b.scratch = p.scratch;
  } else {
    const PeakParts step = planned_peak_parts(body, scan_step_fetches(body, s), false, bound);
    const PeakParts adv = planned_peak_parts(body, scan_advance_fetches(body, s), false, bound);
    b.own = step.fed + step.loops + adv.fed + adv.loops + scan_staging_bytes(body, s, true) +
            (scan_slot_count(s) + 1) * state_bytes(body, s);
    b.scratch = std::max(step.scratch, adv.scratch);
  }
  b.scratch = std::max<size_t>(64, b.scratch);
  return b;
}

namespace {

// Two executables of one body: the reverse step (the body's own outputs) and the advance (the
// forward step of the carries it reads), both planned into the loop scratch and reading the
// invariants in place. A run feeds the initial carries, then follows the schedule over `cur_` (the recomputed forward carry) and the
// slots; the reverse step's carries are copied out after each of its runs (an advance may run
// before the next reverse step and overwrite the scratch) and fed back from there.
class CheckpointedScanKernel final : public Kernel {
 public:
  explicit CheckpointedScanKernel(const KernelCtx& ctx)
      : sig_(scan_sig(ctx.node.attrs, ctx.in.size(), *ctx.node.body)),
        step_(std::make_unique<Executable>(*ctx.node.body, store_, scan_step_fetches(*ctx.node.body, sig_),
                                           loop_body_options(ctx, sig_))),
        adv_(std::make_unique<Executable>(*ctx.node.body, store_, scan_advance_fetches(*ctx.node.body, sig_),
                                          loop_body_options(ctx, sig_))),
        carry_(ctx, sig_, *step_, true),
        adv_feeds_(ctx, sig_, *adv_) {
    const Graph& body = *ctx.node.body;
    for (size_t k = 0; k < sig_.na; ++k) {
      state_.push_back(state_bytes_);
      state_bytes_ += body.node(sig_.body_inputs[sig_.nc + k]).type().bytes();
      advance_.push_back(adv_->fetch(k).data());
    }
    schedule_ = scan_schedule(sig_);
    if (size_t(schedule_slots(schedule_)) > scan_slot_count(sig_))
      throw RuntimeError(fmt::format("scan: the checkpoint schedule uses {} slots, more than {}", schedule_slots(schedule_),
                                     scan_slot_count(sig_)));
    slots_.resize(std::max<size_t>(1, scan_slot_count(sig_) * state_bytes_));
    cur_.resize(std::max<size_t>(1, state_bytes_));
  }

  void run(dnnl::stream&) override {
    const size_t nc = sig_.nc, na = sig_.na;
    BodyFeeds& step_feeds = carry_.feeds();
    step_feeds.feed_fixed();
    adv_feeds_.feed_fixed();
    for (size_t k = 0; k < na; ++k) std::memcpy(cur_.data() + state_[k], step_feeds.src(nc + k), step_feeds.bytes(nc + k));
    int64_t q = 0;  // reverse steps taken
    for (const LoopAction& a : schedule_) {
      const size_t t = size_t(sig_.reverse ? a.step : sig_.length - 1 - a.step);  // the forward step's index
      switch (a.kind) {
        case LoopAction::store: std::memcpy(slots_.data() + size_t(a.slot) * state_bytes_, cur_.data(), state_bytes_); break;
        case LoopAction::restore: std::memcpy(cur_.data(), slots_.data() + size_t(a.slot) * state_bytes_, state_bytes_); break;
        case LoopAction::load: {
          const size_t row = size_t(scan_checkpoint_row(sig_, a.slot));
          for (size_t k = 0; k < na; ++k)
            std::memcpy(cur_.data() + state_[k], step_feeds.src(nc + k) + row * step_feeds.bytes(nc + k), step_feeds.bytes(nc + k));
          break;
        }
        case LoopAction::advance:
          for (size_t k = 0; k < na; ++k) adv_feeds_.feed(nc + k, cur_.data() + state_[k]);
          adv_feeds_.feed_slices(nc + na, t);
          adv_->run();
          for (size_t k = 0; k < na; ++k) std::memcpy(cur_.data() + state_[k], advance_[k], adv_feeds_.bytes(nc + k));
          break;
        case LoopAction::backward:
          for (size_t k = 0; k < na; ++k) step_feeds.feed(nc + k, cur_.data() + state_[k]);
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
  size_t own_bytes() const override {
    return step_->peak_bytes() + adv_->peak_bytes() + carry_.staging_bytes() + slots_.size() + cur_.size();
  }

 private:
  ScanSig sig_;
  ParamStore store_;
  std::unique_ptr<Executable> step_, adv_;
  LoopCarry carry_;     // the reverse step's inputs and carries
  BodyFeeds adv_feeds_;  // the advance's inputs
  std::vector<size_t> state_;  // per recomputed carry: its offset in cur_ and in each slot
  std::vector<const float*> advance_;
  std::vector<char> slots_, cur_;
  std::vector<LoopAction> schedule_;
  size_t state_bytes_ = 0;
};

}  // namespace

std::unique_ptr<Kernel> make_checkpointed_scan_kernel(const KernelCtx& ctx) {
  return std::make_unique<CheckpointedScanKernel>(ctx);
}

}  // namespace metagrad
