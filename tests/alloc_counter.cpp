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
[[maybe_unused]] void* checked(void* p) {
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

#if defined(__SANITIZE_ADDRESS__)
// AddressSanitizer owns the allocation functions; count through its allocation hook instead.
// Declared by hand: GCC on Debian ships the runtime but not <sanitizer/allocator_interface.h>.
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*, size_t),
                                                         void (*free_hook)(const volatile void*));
namespace {
void on_malloc(const volatile void*, size_t) { count_alloc(); }
[[maybe_unused]] const int g_hook_installed = __sanitizer_install_malloc_and_free_hooks(on_malloc, nullptr);
}  // namespace
#else
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
#endif

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
