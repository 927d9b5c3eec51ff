// Parameter store.
#include "metagrad/param_store.h"

#include <fmt/format.h>

#include <algorithm>

#include "metagrad/error.h"
#include "runtime/initializers.h"

namespace metagrad {

void ParamStore::ensure(const Graph& g) {
  for (const Node& n : g.nodes()) {
    if (n.kind != NodeKind::Parameter) continue;
    auto it = entries_.find(n.name);
    if (it != entries_.end()) {
      if (it->second.type != n.type())
        throw RuntimeError(fmt::format("parameter \"{}\" is {} in the store but {} in the graph", n.name,
                                       type_str(it->second.type), type_str(n.type())));
      continue;
    }
    auto init = initial_values(n);
    entries_[n.name] = Entry{n.type(), std::vector<float>(init.begin(), init.end())};
  }
}

const ParamStore::Entry& ParamStore::entry(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw RuntimeError(fmt::format("no parameter \"{}\" in the store", name));
  return it->second;
}

const TensorType& ParamStore::type(const std::string& name) const { return entry(name).type; }

std::span<float> ParamStore::data(const std::string& name) {
  return const_cast<Entry&>(entry(name)).values;
}

std::span<const float> ParamStore::data(const std::string& name) const { return entry(name).values; }

void ParamStore::set(const std::string& name, std::span<const float> values) {
  auto dst = data(name);
  if (values.size() != dst.size())
    throw RuntimeError(fmt::format("parameter \"{}\" has {} elements, given {}", name, dst.size(), values.size()));
  std::copy(values.begin(), values.end(), dst.begin());
}

std::vector<std::string> ParamStore::names() const {
  std::vector<std::string> n;
  for (const auto& [k, v] : entries_) n.push_back(k);
  return n;
}

}  // namespace metagrad
