// Replaces the global allocation functions of the test binary so tests can count allocations.
#include "tests/alloc_counter.h"

#include <atomic>
#include <cstdlib>
#include <new>

#include "runtime/kernel.h"

// GCC cannot see that these replacements pair malloc with free consistently.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_ours{0}, g_foreign{0};
void count_alloc() {
  if (!g_counting.load(std::memory_order_relaxed)) return;
  if (metagrad::foreign_alloc_scope() > 0) ++g_foreign;
  else ++g_ours;
}
void* checked(void* p) {
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

// Under AddressSanitizer these replacements stay in force; run with
// ASAN_OPTIONS=alloc_dealloc_mismatch=0, since they pair new with free on purpose.
void* operator new(std::size_t n) {
  count_alloc();
  return checked(std::malloc(n ? n : 1));
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, std::align_val_t a) {
  count_alloc();
  size_t al = size_t(a);
  return checked(std::aligned_alloc(al, (n + al - 1) / al * al));
}
void* operator new[](std::size_t n, std::align_val_t a) { return operator new(n, a); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace metagrad::testing {

AllocCount count_allocations(const std::function<void()>& f) {
  g_ours = 0;
  g_foreign = 0;
  g_counting = true;
  f();
  g_counting = false;
  return {g_ours.load(), g_foreign.load()};
}

}  // namespace metagrad::testing
