// Arena planner over buffer live ranges: first fit in schedule order, and greedy by size; the
// smaller arena wins.
#include "runtime/memory_plan.h"

#include <algorithm>

namespace metagrad {

namespace {

constexpr size_t kAlign = 64;

size_t aligned(size_t bytes) { return (std::max<size_t>(bytes, 1) + kAlign - 1) / kAlign * kAlign; }

// A run of requests sharing one place: a request and the in-place successors that take it over.
struct Block {
  size_t bytes;
  int first, last;
  std::vector<size_t> members;
};

// In-place chains: a request joins its partner's block when the partner dies exactly at its
// first write, is the block's current tail, and is at least as large.
std::vector<Block> blocks_of(const std::vector<BufferRequest>& requests, const std::vector<size_t>& order) {
  std::vector<Block> blocks;
  std::vector<long> block_of(requests.size(), -1);
  for (size_t idx : order) {
    const BufferRequest& r = requests[idx];
    if (r.inplace_of >= 0) {
      const size_t p = size_t(r.inplace_of);
      const long b = block_of[p];
      if (b >= 0 && blocks[size_t(b)].members.back() == p && requests[p].last == r.first &&
          blocks[size_t(b)].bytes >= aligned(r.bytes)) {
        blocks[size_t(b)].members.push_back(idx);
        blocks[size_t(b)].last = std::max(blocks[size_t(b)].last, r.last);
        block_of[idx] = b;
        continue;
      }
    }
    block_of[idx] = long(blocks.size());
    blocks.push_back({aligned(r.bytes), r.first, r.last, {idx}});
  }
  return blocks;
}

// Places each block at the lowest offset free over its whole live range, visiting blocks in
// `visit` order; returns the arena size.
size_t place(std::vector<Block>& blocks, const std::vector<size_t>& visit, std::vector<size_t>& offset) {
  struct Placed {
    size_t begin, end;
    int first, last;
  };
  std::vector<Placed> placed, overlapping;
  size_t peak = 0;
  for (size_t bi : visit) {
    const Block& b = blocks[bi];
    overlapping.clear();
    for (const Placed& p : placed)
      if (p.first <= b.last && b.first <= p.last) overlapping.push_back(p);
    std::sort(overlapping.begin(), overlapping.end(), [](const Placed& x, const Placed& y) { return x.begin < y.begin; });
    size_t at = 0;
    for (const Placed& p : overlapping) {
      if (p.begin >= at + b.bytes) break;
      at = std::max(at, p.end);
    }
    offset[bi] = at;
    placed.push_back({at, at + b.bytes, b.first, b.last});
    peak = std::max(peak, at + b.bytes);
  }
  return peak;
}

}  // namespace

MemoryPlan plan_memory(const std::vector<BufferRequest>& requests) {
  MemoryPlan plan;
  plan.offsets.assign(requests.size(), 0);
  std::vector<size_t> order(requests.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return requests[a].first < requests[b].first; });
  for (const BufferRequest& r : requests) plan.naive_bytes += aligned(r.bytes);
  std::vector<Block> blocks = blocks_of(requests, order);

  // First fit in schedule order, and greedy by size (largest first, then longest lived): the
  // first packs short-lived buffers well, the second keeps large long-lived ones from being
  // stranded above gaps that later small buffers fragment.
  std::vector<size_t> by_time(blocks.size()), by_size(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) by_time[i] = by_size[i] = i;
  std::stable_sort(by_size.begin(), by_size.end(), [&](size_t a, size_t b) {
    if (blocks[a].bytes != blocks[b].bytes) return blocks[a].bytes > blocks[b].bytes;
    return blocks[a].last - blocks[a].first > blocks[b].last - blocks[b].first;
  });
  std::vector<size_t> offset_time(blocks.size()), offset_size(blocks.size());
  const size_t peak_time = place(blocks, by_time, offset_time), peak_size = place(blocks, by_size, offset_size);
  const std::vector<size_t>& offset = peak_size < peak_time ? offset_size : offset_time;
  plan.peak_bytes = std::min(peak_time, peak_size);
  for (size_t bi = 0; bi < blocks.size(); ++bi)
    for (size_t idx : blocks[bi].members) plan.offsets[idx] = offset[bi];
  return plan;
}

}  // namespace metagrad
