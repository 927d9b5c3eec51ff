// Checkpointing schedules (see ops/scan_schedule.h): every-k segments and binomial revolve.
#include "ops/scan_schedule.h"

#include <algorithm>
#include <limits>

#include "metagrad/error.h"

namespace metagrad {

namespace {

// cost[l][s]: least advances reversing l steps with s slots, the first step's carry stored in
// the first slot; split[l][s]: the step the first sweep stops at to store the next slot.
// cost(1, s) = 0; cost(l, 1) = l(l-1)/2 (every carry recomputed from the one slot);
// cost(l, s) = min over 0 < m < l of m + cost(l-m, s-1) + cost(m, s).
struct RevolveTable {
  std::vector<std::vector<int64_t>> cost;
  std::vector<std::vector<int64_t>> split;
  RevolveTable(int64_t n, int64_t slots) {
    cost.assign(size_t(n + 1), std::vector<int64_t>(size_t(slots + 1), 0));
    split.assign(size_t(n + 1), std::vector<int64_t>(size_t(slots + 1), 0));
    for (int64_t l = 2; l <= n; ++l) {
      cost[size_t(l)][1] = l * (l - 1) / 2;
      for (int64_t s = 2; s <= slots; ++s) {
        int64_t best = std::numeric_limits<int64_t>::max(), at = 1;
        for (int64_t m = 1; m < l; ++m) {
          const int64_t c = m + cost[size_t(l - m)][size_t(s - 1)] + cost[size_t(m)][size_t(s)];
          if (c < best) best = c, at = m;
        }
        cost[size_t(l)][size_t(s)] = best;
        split[size_t(l)][size_t(s)] = at;
      }
    }
  }
};

void check(int64_t n, int64_t slots, const char* what) {
  if (n < 1 || slots < 1) throw Error(std::string(what) + ": needs at least one step and one slot");
}

void revolve_into(const RevolveTable& t, int64_t j0, int64_t len, int64_t s, int base, std::vector<LoopAction>& out) {
  if (len == 1) {
    out.push_back({LoopAction::restore, base, j0});
    out.push_back({LoopAction::backward, -1, j0});
    return;
  }
  if (s == 1) {
    for (int64_t i = len - 1; i >= 0; --i) {
      out.push_back({LoopAction::restore, base, j0});
      for (int64_t a = 0; a < i; ++a) out.push_back({LoopAction::advance, -1, j0 + a});
      out.push_back({LoopAction::backward, -1, j0 + i});
    }
    return;
  }
  const int64_t m = t.split[size_t(len)][size_t(s)];
  out.push_back({LoopAction::restore, base, j0});
  for (int64_t a = 0; a < m; ++a) out.push_back({LoopAction::advance, -1, j0 + a});
  out.push_back({LoopAction::store, base + 1, j0 + m});
  revolve_into(t, j0 + m, len - m, s - 1, base + 1, out);
  revolve_into(t, j0, m, s, base, out);
}

}  // namespace

std::vector<LoopAction> every_k_schedule(int64_t n, int64_t k) {
  check(n, k, "every-k checkpointing");
  k = std::min(k, n);
  const int64_t m = (n + k - 1) / k;
  std::vector<LoopAction> out;
  // Within a segment, slot a - 1 holds the carry at step j0 + a (0 < a < len - 1); the segment's
  // last carry is used as advanced, its first is the checkpoint.
  for (int64_t seg = m - 1; seg >= 0; --seg) {
    const int64_t j0 = seg * k, len = std::min(k, n - j0);
    out.push_back({LoopAction::load, int(seg), j0});
    for (int64_t a = 1; a < len; ++a) {
      out.push_back({LoopAction::advance, -1, j0 + a - 1});
      if (a < len - 1) out.push_back({LoopAction::store, int(a - 1), j0 + a});
    }
    out.push_back({LoopAction::backward, -1, j0 + len - 1});
    for (int64_t a = len - 2; a >= 0; --a) {
      out.push_back(a == 0 ? LoopAction{LoopAction::load, int(seg), j0} : LoopAction{LoopAction::restore, int(a - 1), j0 + a});
      out.push_back({LoopAction::backward, -1, j0 + a});
    }
  }
  return out;
}

int64_t every_k_slots(int64_t n, int64_t k) { return std::max<int64_t>(0, std::min(k, n) - 2); }

std::vector<LoopAction> revolve_schedule(int64_t n, int64_t slots) {
  check(n, slots, "revolve");
  slots = std::min(slots, n);
  RevolveTable t(n, slots);
  std::vector<LoopAction> rec{{LoopAction::store, 0, 0}};
  revolve_into(t, 0, n, slots, 0, rec);
  // The recursion's slot 0 only ever holds step 0, the forward's initial carry, which the
  // backward loop has as its input: it is loaded from there (checkpoint 0) instead of stored, and
  // the other slots move down by one.
  std::vector<LoopAction> out;
  for (LoopAction a : rec) {
    if (a.kind == LoopAction::store && a.slot == 0) continue;
    if (a.kind == LoopAction::restore && a.slot == 0) a = {LoopAction::load, 0, a.step};
    else if (a.kind == LoopAction::store || a.kind == LoopAction::restore) --a.slot;
    out.push_back(a);
  }
  return out;
}

int64_t revolve_cost(int64_t n, int64_t slots) {
  check(n, slots, "revolve");
  slots = std::min(slots, n);
  return RevolveTable(n, slots).cost[size_t(n)][size_t(slots)];
}

int64_t schedule_advances(const std::vector<LoopAction>& s) {
  return std::count_if(s.begin(), s.end(), [](const LoopAction& a) { return a.kind == LoopAction::advance; });
}

int schedule_slots(const std::vector<LoopAction>& s) {
  int m = 0;
  for (const LoopAction& a : s)
    if (a.kind != LoopAction::load) m = std::max(m, a.slot + 1);
  return m;
}

}  // namespace metagrad
