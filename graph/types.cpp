// Names and printing of dtypes, shapes and tensor types.
#include "metagrad/types.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "metagrad/error.h"

namespace metagrad {

const char* dtype_name(DType t) { return t == DType::f32 ? "f32" : "i32"; }

DType parse_dtype(const std::string& s) {
  if (s == "f32") return DType::f32;
  if (s == "i32") return DType::i32;
  throw GraphError(fmt::format("unknown dtype '{}' (expected f32 or i32)", s));
}

int64_t num_elements(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s)
    if (d < 0 || __builtin_mul_overflow(n, d, &n))
      throw GraphError(fmt::format("shape {} has {}", shape_str(s), d < 0 ? "a negative dimension" : "more elements than int64 holds"));
  return n;
}

std::string tensor_size_problem(const Shape& s) {
  if (s.size() > kMaxDeclaredRank) return fmt::format("rank {} is above the limit of {}", s.size(), kMaxDeclaredRank);
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) return fmt::format("dimension {} is negative", d);
    // Checked as n * d > limit without forming the product.
    if (d != 0 && n > kMaxTensorElements / d)
      return fmt::format("more than {} elements, the limit of one tensor", kMaxTensorElements);
    n *= d;
  }
  return "";
}

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ",")); }

std::string type_str(const TensorType& t) { return std::string(dtype_name(t.dtype)) + shape_str(t.shape); }

}  // namespace metagrad
