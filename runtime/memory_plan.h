// The memory planner: a plain function from buffer lifetimes to offsets in one arena.
#pragma once
#include <cstddef>
#include <vector>

namespace metagrad {

struct BufferRequest {
  size_t bytes;
  int first;  // schedule step that writes it
  int last;   // last schedule step that reads it (inclusive)
  int inplace_of = -1;  // a request whose space this one may take over if that one dies at `first`
};

struct MemoryPlan {
  std::vector<size_t> offsets;  // one per request
  size_t peak_bytes = 0;        // arena size
  size_t naive_bytes = 0;       // every buffer kept alive
};

// Placement: a buffer may reuse the space of buffers whose last read is at a step strictly
// before its first write, or, when it names an in-place partner that dies exactly at its first
// write, that partner's space. Two placements are made, first fit in schedule order and greedy
// by size (largest first), and the smaller arena is kept. Offsets are 64-byte aligned.
MemoryPlan plan_memory(const std::vector<BufferRequest>& requests);

}  // namespace metagrad
