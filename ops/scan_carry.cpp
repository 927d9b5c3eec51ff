// The carry staging of the scan kernels (see ops/scan_carry.h).
#include "ops/scan_carry.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <span>

#include "metagrad/error.h"

namespace metagrad {

namespace {

bool staged(const Graph& body, size_t k, bool stage_all) {
  return stage_all || body.node(body.outputs()[k].value.node).kind == NodeKind::Input;
}

}  // namespace

BodyFeeds::BodyFeeds(const KernelCtx& ctx, const ScanSig& s, Executable& exe) : exe_(&exe), nc_(s.nc), nx_(s.nx) {
  const Graph& body = *ctx.node.body;
  for (size_t i = 0; i < ctx.in.size(); ++i) {
    const Node& bi = body.node(s.body_inputs[i]);
    // Slot -1: none of the executable's fetches reads it.
    in_.push_back({exe.find_input_slot(bi.name), bi.type().dtype, size_t(bi.type().numel()),
                   static_cast<const char*>(ctx.in[i])});
  }
}

void BodyFeeds::feed(size_t i, const char* src) {
  const Input& in = in_[i];
  if (in.slot < 0) return;
  if (in.dtype == DType::i32) exe_->set_input(in.slot, std::span(reinterpret_cast<const int32_t*>(src), in.count));
  else exe_->set_input(in.slot, std::span(reinterpret_cast<const float*>(src), in.count));
}

void BodyFeeds::feed_slices(size_t from, size_t t) {
  for (size_t i = from; i < nc_ + nx_; ++i) feed(i, in_[i].src + t * bytes(i));
}

size_t region_piece(size_t bytes) { return (bytes + 63) / 64 * 64; }

char* Region::take(size_t bytes) {
  char* p = rest();
  used_ += region_piece(bytes);
  if (base_ && used_ > bytes_)
    throw RuntimeError(fmt::format("scan: the kernel's region of {} bytes is smaller than the {} it needs", bytes_, used_));
  return p;
}

LoopCarry::LoopCarry(const KernelCtx& ctx, const ScanSig& s, bool stage_all, Region& region)
    : sig_(s), body_(ctx.node.body.get()), stage_all_(stage_all), bound_(scan_carries_bound(*ctx.node.body, s, stage_all)) {
  const Graph& body = *body_;
  size_t at = 0;
  for (size_t k = 0; k < s.nc + s.ny; ++k) {
    Output o{nullptr, body.type(body.outputs()[k].value).bytes(), static_cast<char*>(ctx.out[k]), -1};
    if (k < s.nc && staged(body, k, stage_all)) o.stage = int(at), at += o.bytes;
    out_.push_back(o);
  }
  staging_ = region.take(scan_staging_bytes(body, s, stage_all));
  if (s.save)
    for (size_t i = 0; i < s.nc; ++i) saved_.push_back(static_cast<char*>(ctx.out[s.nc + s.ny + i]));
}

void LoopCarry::bind_carries(CompileOptions& options) const {
  options.outputs_over_inputs = scan_carries_in_place(*body_, sig_, stage_all_);
  if (!bound_) return;
  const std::vector<std::string> names = scan_carry_names(*body_, sig_);
  for (size_t i = 0; i < sig_.nc; ++i) options.bound_inputs.push_back({names[i], staging_ + out_[i].stage});
}

void LoopCarry::attach(const KernelCtx& ctx, Executable& exe) {
  exe_ = &exe;
  feeds_.emplace(ctx, sig_, exe);
  for (size_t k = 0; k < out_.size(); ++k) out_[k].src = exe.fetch(k).data();
}

const char* LoopCarry::carry_src(size_t i) const {
  const Output& o = out_[i];
  return o.stage >= 0 ? staging_ + o.stage : reinterpret_cast<const char*>(o.src);
}

// Without stage_all the staging is written only when the carries are passed, so until then the
// last run's carries are in the body's buffers.
const char* LoopCarry::current(size_t i) const {
  return stage_all_ ? carry_src(i) : reinterpret_cast<const char*>(out_[i].src);
}

void LoopCarry::stage() {
  for (size_t i = 0; i < sig_.nc; ++i)
    if (out_[i].stage >= 0 && staging_ + out_[i].stage != reinterpret_cast<const char*>(out_[i].src))  // not written there
      std::memcpy(staging_ + out_[i].stage, out_[i].src, out_[i].bytes);
}

void LoopCarry::step(size_t t, bool first) {
  const size_t nc = sig_.nc;
  const int64_t row = sig_.save ? scan_saved_row(sig_, int64_t(t)) : -1;  // save_every: not every iteration
  if (row >= 0)
    for (size_t i = 0; i < nc; ++i)
      std::memcpy(saved_[i] + size_t(row) * out_[i].bytes, first ? feeds_->src(i) : current(i), out_[i].bytes);
  // Fed here, not once per loop run: a checkpointed kernel's advance runs before the first
  // reverse step, over the same region.
  if (first && bound_) {
    for (size_t i = 0; i < nc; ++i) std::memcpy(staging_ + out_[i].stage, feeds_->src(i), out_[i].bytes);
  } else if (first) {
    for (size_t i = 0; i < nc; ++i) feeds_->feed(i, feeds_->src(i));
  } else {
    if (!stage_all_) stage();
    for (size_t i = 0; i < nc; ++i) feeds_->feed(i, carry_src(i));  // bound: a no-op, they are read where staged
  }
  exe_->run();
  if (stage_all_) stage();
  for (size_t k = nc; k < out_.size(); ++k) std::memcpy(out_[k].dst + t * out_[k].bytes, out_[k].src, out_[k].bytes);
}

void LoopCarry::finish() {
  for (size_t i = 0; i < sig_.nc; ++i) std::memcpy(out_[i].dst, current(i), out_[i].bytes);
}

CompileOptions loop_body_options(const KernelCtx& ctx, const ScanSig& s, const Region& region) {
  CompileOptions options;
  options.shared_workspace = &ctx.workspace;
  options.scratch_arena = region.rest();
  options.scratch_arena_bytes = region.rest_bytes();
  options.inputs_in_scratch = true;
  const std::vector<std::string> invariants = scan_invariant_names(*ctx.node.body, s);
  for (size_t k = 0; k < invariants.size(); ++k) options.bound_inputs.push_back({invariants[k], ctx.in[s.nc + s.nx + k]});
  return options;
}

bool scan_carries_bound(const Graph& body, const ScanSig& s, bool stage_all) {
  if (!stage_all) return false;
  for (size_t k = 0; k < s.nc; ++k)
    if (body.node(body.outputs()[k].value.node).kind == NodeKind::Input) return false;
  return true;
}

std::vector<std::string> scan_carry_names(const Graph& body, const ScanSig& s) {
  std::vector<std::string> names;
  for (size_t i = 0; i < s.nc; ++i) names.push_back(body.node(s.body_inputs[i]).name);
  return names;
}

OutputsOverInputs scan_carries_in_place(const Graph& body, const ScanSig& s, bool stage_all) {
  OutputsOverInputs over;
  if (stage_all && !scan_carries_bound(body, s, stage_all)) return over;  // read from slots of its own
  const std::vector<std::string> carries = scan_carry_names(body, s);
  for (size_t k = 0; k < s.nc; ++k) over.push_back({body.outputs()[k].name, carries[k]});
  return over;
}

size_t scan_staging_bytes(const Graph& body, const ScanSig& s, bool stage_all) {
  size_t bytes = 0;
  for (size_t k = 0; k < s.nc; ++k)
    if (staged(body, k, stage_all)) bytes += body.type(body.outputs()[k].value).bytes();
  return bytes;
}

}  // namespace metagrad
