// The op registry's table operations. OpRegistry::get(), which fills it from every ops/ family,
// lives in ops/registry.cpp: graph/ declares the registry and never names an op family.
#include <fmt/format.h>

#include "graph/op_def.h"
#include "metagrad/error.h"

namespace metagrad {

const OpDef* OpRegistry::find(const std::string& name) const {
  auto it = ops_.find(name);
  return it == ops_.end() ? nullptr : &it->second;
}

const OpDef& OpRegistry::at(const std::string& name) const {
  if (const OpDef* d = find(name)) return *d;
  throw GraphError(fmt::format("unknown op '{}'", name));
}

void OpRegistry::add(OpDef def) {
  if (def.name.empty()) throw GraphError("op without a name");
  if (ops_.count(def.name)) throw GraphError(fmt::format("op '{}' registered twice", def.name));
  if ((!def.shape && !def.body_shape) || !def.reference || !def.kernel)
    throw GraphError(fmt::format("op '{}' lacks a shape rule, reference or kernel", def.name));
  if (def.grad_kind == GradKind::Rule && !def.grad)
    throw GraphError(fmt::format("op '{}' declares a gradient rule but has none", def.name));
  std::string name = def.name;
  ops_.emplace(name, std::move(def));
}

Attrs normalize_attrs(const OpDef& op, const Attrs& given) {
  Attrs out;
  for (const auto& [name, value] : given) {
    const AttrSpec* spec = nullptr;
    for (const auto& s : op.attrs)
      if (s.name == name) spec = &s;
    if (!spec) throw GraphError(fmt::format("op {} has no attribute '{}'", op.name, name));
    AttrValue v = value;
    // Integers are accepted where floats are expected: `{"alpha", 1}` reads naturally.
    if (spec->kind == AttrKind::Float && attr_kind(v) == AttrKind::Int) v = double(std::get<int64_t>(v));
    if (spec->kind == AttrKind::Floats && attr_kind(v) == AttrKind::Ints) {
      const auto& iv = std::get<std::vector<int64_t>>(v);
      v = std::vector<double>(iv.begin(), iv.end());
    }
    if (attr_kind(v) != spec->kind)
      throw GraphError(fmt::format("op {} attribute '{}' must be {}, got {}", op.name, name,
                                   attr_kind_name(spec->kind), attr_kind_name(attr_kind(v))));
    out[name] = v;
  }
  for (const auto& s : op.attrs) {
    if (out.count(s.name)) continue;
    if (!s.default_value) throw GraphError(fmt::format("op {} requires attribute '{}'", op.name, s.name));
    out[s.name] = *s.default_value;
  }
  return out;
}

}  // namespace metagrad
