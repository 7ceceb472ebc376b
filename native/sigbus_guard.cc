// A SIGBUS handler for our mappings only. Accessing a shared mapping beyond
// the end of a file that someone truncated raises SIGBUS, which would kill
// every process of the deployment at its next request. The handler replaces
// the faulting page with an anonymous page filled with 0xff bytes (the access
// then succeeds and reads 2^64-1, which no cached generation matches, so the
// next request takes the slow path) and records the fault, so that TypeScript
// turns caching off. Faults elsewhere go to the previous handler.
#include "sigbus_guard.h"

#include <signal.h>
#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>

namespace token_shadow {

namespace {

constexpr int kSlots = 64;

struct Guarded {
  std::atomic<uintptr_t> base{0};
  std::atomic<size_t> size{0};
  std::atomic<bool> faulted{false};
};

Guarded table[kSlots];
struct sigaction previous;
std::once_flag install_once;
std::mutex table_mutex;  // registration only; the handler reads atomics

void Chain(int sig, siginfo_t* info, void* context) {
  if (previous.sa_flags & SA_SIGINFO) {
    previous.sa_sigaction(sig, info, context);
  } else if (previous.sa_handler == SIG_DFL || previous.sa_handler == SIG_IGN) {
    // Restore the default action; returning re-executes the access, which
    // then terminates the process as it would have without us.
    signal(sig, SIG_DFL);
  } else {
    previous.sa_handler(sig);
  }
}

void Handler(int sig, siginfo_t* info, void* context) {
  uintptr_t address = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Guarded& g : table) {
    uintptr_t base = g.base.load(std::memory_order_acquire);
    size_t size = g.size.load(std::memory_order_acquire);
    if (base == 0 || address < base || address >= base + size) continue;
    // mmap is a plain system call on Linux, safe enough in a handler.
    void* replaced =
        mmap(reinterpret_cast<void*>(base), size, PROT_READ | PROT_WRITE,
             MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (replaced != MAP_FAILED) {
      std::memset(replaced, 0xff, size);
      g.faulted.store(true, std::memory_order_release);
      return;
    }
  }
  Chain(sig, info, context);
}

void Install() {
  struct sigaction action = {};
  action.sa_sigaction = Handler;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&action.sa_mask);
  sigaction(SIGBUS, &action, &previous);
}

}  // namespace

int GuardMapping(void* base, size_t size) {
  std::call_once(install_once, Install);
  std::lock_guard<std::mutex> lock(table_mutex);
  for (int i = 0; i < kSlots; i++) {
    if (table[i].base.load(std::memory_order_relaxed) != 0) continue;
    table[i].faulted.store(false, std::memory_order_relaxed);
    table[i].size.store(size, std::memory_order_relaxed);
    table[i].base.store(reinterpret_cast<uintptr_t>(base),
                        std::memory_order_release);
    return i;
  }
  return -1;
}

void UnguardMapping(int handle) {
  if (handle < 0 || handle >= kSlots) return;
  std::lock_guard<std::mutex> lock(table_mutex);
  table[handle].base.store(0, std::memory_order_release);
}

bool MappingFaulted(int handle) {
  if (handle < 0 || handle >= kSlots) return false;
  return table[handle].faulted.load(std::memory_order_acquire);
}

}  // namespace token_shadow
