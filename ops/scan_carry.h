// How a scan kernel moves values between the loop's buffers and a body executable: the loop's
// inputs fed into the body (initial carries once, one slice of each stacked input
// per iteration), the carry passed from the body's outputs back to its inputs, the saved carries
// and the stacked outputs copied out. Shared by the plain loop kernel (ops/scan.cpp) and the
// checkpointed one (ops/scan_checkpoint.cpp).
#pragma once
#include <cstddef>
#include <optional>
#include <vector>

#include "metagrad/executable.h"
#include "runtime/arena_plan.h"
#include "ops/scan.h"
#include "runtime/kernel.h"

namespace metagrad {

// Cuts a loop kernel's region of the arena (KernelCtx::scratch) into pieces, 64-byte aligned, in
// the order the kernel takes them; over a null base it only counts them (scan_kernel_scratch),
// so the kernel and the planner agree on the layout.
class Region {
 public:
  explicit Region(char* base = nullptr, size_t bytes = 0) : base_(base), bytes_(bytes) {}
  char* take(size_t bytes);
  char* rest() const { return base_ ? base_ + used_ : nullptr; }
  size_t rest_bytes() const { return bytes_ > used_ ? bytes_ - used_ : 0; }
  size_t used() const { return used_; }

 private:
  char* base_;
  size_t bytes_, used_ = 0;
};
size_t region_piece(size_t bytes);  // what take(bytes) uses

// The loop's inputs as one body executable reads them (an executable compiled for some of the
// body's outputs may not read every input).
class BodyFeeds {
 public:
  BodyFeeds(const KernelCtx& ctx, const ScanSig& s, Executable& exe);
  // Loop input i (one slice of it, for a stacked input) from `src`.
  void feed(size_t i, const char* src);
  // Slice t of the stacked inputs [from, nc + nx).
  void feed_slices(size_t from, size_t t);
  const char* src(size_t i) const { return in_[i].src; }
  size_t bytes(size_t i) const { return in_[i].count * 4; }  // one slice, for a stacked input

 private:
  struct Input {
    int slot;  // -1: the executable does not read it
    DType dtype;
    size_t count;
    const char* src;  // the loop's input (stacked: slice 0)
  };
  Executable* exe_;
  size_t nc_, nx_;
  std::vector<Input> in_;
};

// The carry of a body executable whose fetches are [next carries, per-iteration outputs]. A
// carry output that is itself a body input (a pass-through) is staged before the carries are
// fed back, so that permuted carries do not overwrite each other; with `stage_all`, every carry
// output is copied out right after its run, so that the body's buffers may be reused by another
// executable before the next iteration. Built in two steps, since the body executable may read
// its carries from the staging (bind_carries) and so is compiled after it: construct, compile
// the body with bind_carries' options, attach.
class LoopCarry {
 public:
  // The staging is taken from `region`.
  LoopCarry(const KernelCtx& ctx, const ScanSig& s, bool stage_all, Region& region);
  // With stage_all and no carry output a body input, the body reads its carries where they are
  // staged instead of from slots of its own: the staging and the body's outputs are the two
  // buffers a carry alternates between, and the fed copy of each carry is gone; where the body's
  // schedule allows, it writes the next carry there too (scan_carries_in_place), and there is no
  // second buffer or copy. Without stage_all, the next carry is written over the body's own input
  // slot where it can be. Adds those bindings to `options`.
  void bind_carries(CompileOptions& options) const;
  void attach(const KernelCtx& ctx, Executable& exe);
  BodyFeeds& feeds() { return *feeds_; }
  // One iteration at loop index t (`first`: the loop's first): saves the carries it starts from
  // (save_carries), feeds the last iteration's carries, runs the body, copies the stacked outputs.
  // The slices (and any other per-iteration input) must be fed before.
  void step(size_t t, bool first);
  // The last iteration's carries into the loop's outputs.
  void finish();

 private:
  struct Output {
    const float* src;  // the body's buffer
    size_t bytes;
    char* dst;         // the loop's output (stacked outputs: iteration 0)
    int stage;         // offset in staging_, or -1
  };
  const char* carry_src(size_t i) const;  // what the next iteration is fed
  const char* current(size_t i) const;    // the last run's carry
  void stage();

  ScanSig sig_;
  const Graph* body_;
  Executable* exe_ = nullptr;
  std::optional<BodyFeeds> feeds_;
  std::vector<Output> out_;
  std::vector<char*> saved_;
  char* staging_;
  bool stage_all_, bound_;
};

// How a loop kernel compiles its body executables: the body's invariants bound to the loop's input
// buffers (ctx.in), which hold through the loop's run, so the body reads the loop's weights and
// data in place; and, since a body runs only inside the loop kernel's own run, planned whole (fed
// inputs too) into what is left of the kernel's region, with the enclosing workspace.
CompileOptions loop_body_options(const KernelCtx& ctx, const ScanSig& s, const Region& region);

// The staging a LoopCarry over `body` takes from its region.
size_t scan_staging_bytes(const Graph& body, const ScanSig& s, bool stage_all);
// Whether a LoopCarry with `stage_all` binds the body's carries to its staging: not when a carry
// output is a body input, which the staging copy would read while overwriting it.
bool scan_carries_bound(const Graph& body, const ScanSig& s, bool stage_all);
// The names of the body's carry inputs [0, nc).
std::vector<std::string> scan_carry_names(const Graph& body, const ScanSig& s);
// A loop's body writes each next carry over the carry it read, where its schedule allows
// (CompileOptions::outputs_over_inputs): the carry is then passed on without a copy. A plain
// loop's over its input slots; with `stage_all`, over the staging, when the carries are read there
// (scan_carries_bound; none otherwise).
OutputsOverInputs scan_carries_in_place(const Graph& body, const ScanSig& s, bool stage_all);

}  // namespace metagrad
