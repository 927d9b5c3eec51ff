// Tensor types of the IR: element type, static shape and the (node, output) value handle.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace metagrad {

// f32 is what the runtime computes in; i32 carries integer labels and indices.
// The reference interpreter evaluates every f32 value in f64.
enum class DType : uint8_t { f32, i32 };

const char* dtype_name(DType t);
DType parse_dtype(const std::string& s);  // throws on unknown names
inline size_t dtype_size(DType) { return 4; }

using Shape = std::vector<int64_t>;

// Throws GraphError if the product overflows int64 (or a dimension is negative).
int64_t num_elements(const Shape& s);
// The most elements one tensor may have (16 GiB of f32): shapes read from files (graph text,
// checkpoints, model descriptions) are checked against it before anything is allocated.
inline constexpr int64_t kMaxTensorElements = int64_t(1) << 32;
// Whether `s` is a shape a file may declare: rank at most kMaxDeclaredRank, no negative dimension and at
// most kMaxTensorElements elements. Returns "" or the reason, for the reader to put in its error.
inline constexpr size_t kMaxDeclaredRank = 16;
std::string tensor_size_problem(const Shape& s);
std::string shape_str(const Shape& s);  // "[2,3]"; "[]" for scalars

struct TensorType {
  DType dtype = DType::f32;
  Shape shape;
  int64_t numel() const { return num_elements(shape); }
  size_t bytes() const { return size_t(numel()) * dtype_size(dtype); }
  bool operator==(const TensorType&) const = default;
  auto operator<=>(const TensorType&) const = default;
};
std::string type_str(const TensorType& t);  // "f32[2,3]"

// An SSA value: output `index` of node `node`.
struct Value {
  int node = -1;
  int index = 0;
  bool valid() const { return node >= 0; }
  bool operator==(const Value&) const = default;
  auto operator<=>(const Value&) const = default;
};

}  // namespace metagrad
