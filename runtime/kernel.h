// The f32 kernel interface: a kernel is built once at compile time over fixed buffer addresses
// and then run many times. Helpers here wrap oneDNN primitives and plain loops.
#pragma once
#include <dnnl.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "graph/graph.h"

namespace metagrad {

struct KernelCtx {
  const Node& node;
  std::vector<TensorType> in_types;
  std::vector<void*> in;   // input buffers (row-major, dense)
  std::vector<void*> out;  // output buffers (row-major, dense)
  const dnnl::engine& engine;
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

// Runs one oneDNN primitive through the C API with a prebuilt argument array, so the
// executor adds no allocation of its own; the scratchpad is user-owned.
class DnnlKernel final : public Kernel {
 public:
  struct Arg {
    int id;                   // DNNL_ARG_*
    dnnl::memory::desc desc;
    void* ptr;
  };
  // `pd` must have been created with scratchpad_mode::user (see dnnl_attr()).
  DnnlKernel(dnnl::primitive prim, const dnnl::primitive_desc_base& pd, const std::vector<Arg>& args,
             const dnnl::engine& engine);
  void run(dnnl::stream& stream) override;
  std::string impl() const override { return impl_; }

 private:
  dnnl::primitive prim_;
  std::vector<dnnl::memory> mems_;  // keep the memory objects alive
  std::vector<dnnl_exec_arg_t> args_;
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
