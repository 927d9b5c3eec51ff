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
  for (int64_t d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ",")); }

std::string type_str(const TensorType& t) { return std::string(dtype_name(t.dtype)) + shape_str(t.shape); }

}  // namespace metagrad
