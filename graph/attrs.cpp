// Attribute kinds, printing and typed access.
#include "metagrad/attrs.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "metagrad/error.h"

namespace metagrad {

AttrKind attr_kind(const AttrValue& v) { return AttrKind(v.index()); }

const char* attr_kind_name(AttrKind k) {
  static const char* names[] = {"int", "float", "ints", "floats", "string"};
  return names[int(k)];
}

namespace {
// Shortest text that reads back to the same double.
std::string float_str(double d) {
  std::string s = fmt::format("{}", d);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // keep floats visibly floats
  return s;
}
}  // namespace

std::string attr_str(const AttrValue& v) {
  switch (attr_kind(v)) {
    case AttrKind::Int: return fmt::format("{}", std::get<int64_t>(v));
    case AttrKind::Float: return float_str(std::get<double>(v));
    case AttrKind::Ints: return fmt::format("[{}]", fmt::join(std::get<std::vector<int64_t>>(v), ","));
    case AttrKind::Floats: {
      std::string s = "[";
      for (double d : std::get<std::vector<double>>(v)) {
        if (s.size() > 1) s += ',';
        s += float_str(d);
      }
      // An empty float list would read back as ints; mark it.
      return std::get<std::vector<double>>(v).empty() ? "[.]" : s + "]";
    }
    case AttrKind::String: return fmt::format("\"{}\"", std::get<std::string>(v));
  }
  return "?";
}

namespace {
template <class T>
const T& get_attr(const Attrs& a, const std::string& name, AttrKind kind) {
  auto it = a.find(name);
  if (it == a.end()) throw GraphError(fmt::format("missing attribute '{}'", name));
  if (attr_kind(it->second) != kind)
    throw GraphError(fmt::format("attribute '{}' is {}, expected {}", name,
                                 attr_kind_name(attr_kind(it->second)), attr_kind_name(kind)));
  return std::get<T>(it->second);
}
}  // namespace

int64_t attr_int(const Attrs& a, const std::string& n) { return get_attr<int64_t>(a, n, AttrKind::Int); }
double attr_float(const Attrs& a, const std::string& n) {
  auto it = a.find(n);
  if (it != a.end() && attr_kind(it->second) == AttrKind::Int) return double(std::get<int64_t>(it->second));
  return get_attr<double>(a, n, AttrKind::Float);
}
const std::vector<int64_t>& attr_ints(const Attrs& a, const std::string& n) {
  return get_attr<std::vector<int64_t>>(a, n, AttrKind::Ints);
}
const std::vector<double>& attr_floats(const Attrs& a, const std::string& n) {
  return get_attr<std::vector<double>>(a, n, AttrKind::Floats);
}
const std::string& attr_string(const Attrs& a, const std::string& n) {
  return get_attr<std::string>(a, n, AttrKind::String);
}

}  // namespace metagrad
