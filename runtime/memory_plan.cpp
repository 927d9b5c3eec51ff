// First-fit arena planner over buffer live ranges.
#include "runtime/memory_plan.h"

#include <algorithm>

namespace metagrad {

MemoryPlan plan_memory(const std::vector<BufferRequest>& requests) {
  constexpr size_t align = 64;
  MemoryPlan plan;
  plan.offsets.assign(requests.size(), 0);
  // Process buffers by first write; the live set holds (offset, end, last step).
  std::vector<size_t> order(requests.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return requests[a].first < requests[b].first; });
  struct Live {
    size_t begin, end;
    int last;
    size_t owner;
  };
  std::vector<Live> live;
  for (size_t idx : order) {
    const BufferRequest& r = requests[idx];
    size_t bytes = (std::max<size_t>(r.bytes, 1) + align - 1) / align * align;
    plan.naive_bytes += bytes;
    live.erase(std::remove_if(live.begin(), live.end(), [&](const Live& l) { return l.last < r.first; }), live.end());
    if (r.inplace_of >= 0) {
      auto partner = std::find_if(live.begin(), live.end(), [&](const Live& l) { return l.owner == size_t(r.inplace_of); });
      const BufferRequest& p = requests[size_t(r.inplace_of)];
      if (partner != live.end() && p.last == r.first && partner->end - partner->begin >= bytes) {
        plan.offsets[idx] = partner->begin;
        partner->owner = idx;
        partner->last = r.last;
        continue;
      }
    }
    std::sort(live.begin(), live.end(), [](const Live& a, const Live& b) { return a.begin < b.begin; });
    size_t at = 0;
    for (const Live& l : live) {
      if (l.begin >= at + bytes) break;
      at = std::max(at, l.end);
    }
    plan.offsets[idx] = at;
    live.push_back({at, at + bytes, r.last, idx});
    plan.peak_bytes = std::max(plan.peak_bytes, at + bytes);
  }
  return plan;
}

}  // namespace metagrad
