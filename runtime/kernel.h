// The f32 kernel interface: a kernel is built once at compile time over fixed buffer addresses
// and then run many times. Helpers here wrap oneDNN primitives and plain loops.
#pragma once
#include <dnnl.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "metagrad/graph.h"

namespace metagrad {

class Collective;

// Scratch memory shared by every kernel of an executable. Kernels run one at a time, so each may
// use the whole workspace during its run: a kernel asks for bytes while it is built and receives
// the address once the executable has sized and allocated the workspace.
class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace();
  void request(size_t bytes, std::function<void(char*)> bind);
  void allocate();  // once, after every kernel is built
  size_t bytes() const { return bytes_; }

 private:
  size_t bytes_ = 0;
  char* base_ = nullptr;
  std::vector<std::function<void(char*)>> binds_;
};

struct KernelCtx {
  const Node& node;
  std::vector<TensorType> in_types;
  std::vector<void*> in;   // input buffers (row-major, dense)
  std::vector<void*> out;  // output buffers (row-major, dense)
  const dnnl::engine& engine;
  Workspace& workspace;
  Collective* collective = nullptr;  // CompileOptions::collective, for allreduce_sum
  // The kernel's region of the arena (OpDef::kernel_scratch bytes, 64-byte aligned), live during
  // its own run only: it keeps nothing there between runs.
  void* scratch = nullptr;
  size_t scratch_bytes = 0;
  const TensorType& out_type(size_t i = 0) const { return node.outputs.at(i); }
  const float* in_f32(size_t i) const { return static_cast<const float*>(in.at(i)); }
  const int32_t* in_i32(size_t i) const { return static_cast<const int32_t*>(in.at(i)); }
  float* out_f32(size_t i = 0) const { return static_cast<float*>(out.at(i)); }
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual void run(dnnl::stream& stream) = 0;
  virtual std::string impl() const = 0;  // for profiles: "onednn:brg:avx512_core", "loop"
};

// A dense row-major oneDNN memory descriptor of an f32 or i32 tensor; scalars become [1].
dnnl::memory::desc dense_desc(const Shape& shape, DType dtype = DType::f32);
dnnl::memory::dims to_dims(const Shape& shape);

// Runs a fixed sequence of oneDNN primitives (typically reorders around a primitive that wants
// its own memory format) through the C API with prebuilt argument arrays, so the executor adds no
// allocation of its own. Scratchpads and intermediate buffers live in the shared Workspace.
class DnnlKernel final : public Kernel {
 public:
  struct Arg {
    int id;                   // DNNL_ARG_*
    dnnl::memory::desc desc;
    void* ptr;                // null: a workspace buffer, see add_temp
  };
  explicit DnnlKernel(const dnnl::engine& engine) : engine_(engine) {}
  // The common case: one primitive over caller buffers. `pd` must use dnnl_attr() (user scratchpad).
  DnnlKernel(dnnl::primitive prim, const dnnl::primitive_desc_base& pd, const std::vector<Arg>& args,
             const dnnl::engine& engine, Workspace& ws);
  // A temporary buffer of `desc` in the workspace, for use as an Arg pointer via temp(i).
  int add_temp(const dnnl::memory::desc& desc);
  // Appends a primitive; args whose ptr is null name a temporary by index in `temps`.
  void add(dnnl::primitive prim, const dnnl::primitive_desc_base& pd, const std::vector<Arg>& args,
           const std::vector<int>& temps = {});
  // Requests the workspace this kernel needs (scratchpads and temporaries); call once, last.
  void bind(Workspace& ws);
  void run(dnnl::stream& stream) override;
  std::string impl() const override { return impl_; }

 private:
  struct Step {
    dnnl::primitive prim;
    std::vector<dnnl::memory> mems;
    std::vector<dnnl_exec_arg_t> args;
    size_t scratch_bytes = 0;
    int scratch_mem = -1;  // index in mems
  };
  dnnl::engine engine_;
  std::vector<Step> steps_;
  std::vector<dnnl::memory::desc> temps_;
  std::vector<std::pair<int, int>> temp_uses_;  // (step, mem index) bound to temporary i
  std::vector<int> temp_of_use_;
  std::string impl_;
};

// Primitive attributes every kernel uses: user-managed scratchpad (plus optional post-ops).
dnnl::primitive_attr dnnl_attr();

// A kernel that calls a function; for ops oneDNN has no primitive for.
class LoopKernel final : public Kernel {
 public:
  explicit LoopKernel(std::function<void()> fn, std::string name = "loop")
      : fn_(std::move(fn)), name_(std::move(name)) {}
  void run(dnnl::stream&) override { fn_(); }
  std::string impl() const override { return name_; }

 private:
  std::function<void()> fn_;
  std::string name_;
};

// Counts oneDNN's own heap allocations separately from ours: the executor marks the span of
// each primitive call so an allocation-counting test can tell them apart.
int& foreign_alloc_scope();

}  // namespace metagrad
