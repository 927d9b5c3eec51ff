// Compile a graph once into kernels over a pre-planned arena, then run it many times.
#pragma once
#include <dnnl.hpp>

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "graph/graph.h"
#include "runtime/kernel.h"
#include "runtime/param_store.h"

namespace metagrad {

// A caller's tensor handed to run(): the data must hold shape's element count of dtype.
struct Feed {
  std::string name;
  DType dtype;
  Shape shape;
  const void* data;
  static Feed f32(std::string name, Shape shape, std::span<const float> v) {
    return {std::move(name), DType::f32, std::move(shape), v.data()};
  }
  static Feed i32(std::string name, Shape shape, std::span<const int32_t> v) {
    return {std::move(name), DType::i32, std::move(shape), v.data()};
  }
};

// One arena buffer of the memory plan, for inspection.
struct BufferInfo {
  Value value;
  size_t offset = 0, bytes = 0;
  int first = 0, last = 0;  // schedule steps: written, last read (-1: fed before the first step)
  bool inplace = false;     // shares an operand's space by in-place execution
};

struct KernelProfile {
  std::string op, node, impl;
  double seconds = 0;  // total over the profiled runs
};

class Executable {
 public:
  // Verifies `g`, keeps the nodes needed for `fetches` (output names; empty = every output)
  // and the graph's updates, plans the arena and builds every kernel.
  Executable(const Graph& g, ParamStore& store, const std::vector<std::string>& fetches = {});
  ~Executable();
  Executable(const Executable&) = delete;
  Executable& operator=(const Executable&) = delete;

  // Fast path: copy inputs into their arena slots, then run(). No heap allocation.
  int input_slot(const std::string& name) const;  // throws on unknown names
  void set_input(int slot, std::span<const float> v);
  void set_input(int slot, std::span<const int32_t> v);
  void run();  // throws RuntimeError if an input was never set

  // Checked path: every input fed exactly once, with the right dtype and shape.
  void run(const std::vector<Feed>& feeds);

  std::span<const float> fetch(const std::string& name) const;
  std::span<const float> fetch(size_t index) const;
  const std::vector<std::string>& fetch_names() const { return fetch_names_; }

  size_t arena_bytes() const { return arena_bytes_; }
  size_t workspace_bytes() const { return workspace_.bytes(); }
  size_t naive_bytes() const { return naive_bytes_; }
  size_t kernel_count() const { return kernels_.size(); }
  const std::vector<BufferInfo>& buffers() const { return buffers_; }
  const Graph& graph() const { return graph_; }
  // Runs `n` times, timing each kernel.
  std::vector<KernelProfile> profile(int n);

 private:
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
  void copy_input(int slot, DType dtype, const void* data, size_t count);
  void execute();

  Graph graph_;
  ParamStore& store_;
  dnnl::engine engine_;
  dnnl::stream stream_;
  float* arena_ = nullptr;
  Workspace workspace_;  // scratch shared by all kernels (oneDNN scratchpads, reordered operands)
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

}  // namespace metagrad
