// Node attributes: a small sorted map of typed values, and the schema an op declares for them.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace metagrad {

using AttrValue = std::variant<int64_t, double, std::vector<int64_t>, std::vector<double>, std::string>;
enum class AttrKind : uint8_t { Int, Float, Ints, Floats, String };

// std::map keeps attributes in name order, so printing is deterministic.
using Attrs = std::map<std::string, AttrValue>;

AttrKind attr_kind(const AttrValue& v);
const char* attr_kind_name(AttrKind k);
std::string attr_str(const AttrValue& v);  // 3, 0.5, [1,2], [0.5,1.5], "text"

struct AttrSpec {
  std::string name;
  AttrKind kind;
  std::optional<AttrValue> default_value;  // nullopt: required
};

// Typed reads; throw a clear error naming the attribute when absent or of another kind.
int64_t attr_int(const Attrs& a, const std::string& name);
double attr_float(const Attrs& a, const std::string& name);
const std::vector<int64_t>& attr_ints(const Attrs& a, const std::string& name);
const std::vector<double>& attr_floats(const Attrs& a, const std::string& name);
const std::string& attr_string(const Attrs& a, const std::string& name);

}  // namespace metagrad
