// Persistent tensors (weights, optimizer state, step counters) shared by every executable
// compiled against the store.
#pragma once
#include <map>
#include <span>
#include <string>
#include <vector>

#include "metagrad/graph.h"

namespace metagrad {

class ParamStore {
 public:
  // Adds every parameter of `g` not yet present, running its initializer; checks the type of
  // those already present and throws RuntimeError on a mismatch.
  void ensure(const Graph& g);
  bool has(const std::string& name) const { return entries_.count(name) > 0; }
  const TensorType& type(const std::string& name) const;
  std::span<float> data(const std::string& name);
  std::span<const float> data(const std::string& name) const;
  void set(const std::string& name, std::span<const float> values);  // checks the size
  std::vector<std::string> names() const;

 private:
  struct Entry {
    TensorType type;
    std::vector<float> values;  // never resized after creation: executables hold its address
  };
  const Entry& entry(const std::string& name) const;
  std::map<std::string, Entry> entries_;
};

}  // namespace metagrad
