// Counts heap allocations made while a function runs, split into ours and oneDNN's own.
#pragma once
#include <functional>

namespace metagrad::testing {

struct AllocCount {
  long ours = 0;     // made outside any oneDNN primitive call
  long foreign = 0;  // made inside oneDNN (see foreign_alloc_scope in runtime/kernel.h)
};
AllocCount count_allocations(const std::function<void()>& f);

}  // namespace metagrad::testing
