#include "key_lock.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

namespace metrics {

void KeyLock::lock_contended() {
  // The holder is most likely running on another CPU and about to release
  // the lock: spin a little first.
  constexpr int kSpins = 100;
  for (int i = 0; i < kSpins; ++i) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    if (try_lock()) return;
  }
  // The holder is descheduled or in a long critical section: sleep while the
  // word still reads 1, but never for long, since unlock() wakes nobody.
  const timespec nap{0, 50 * 1000};
  for (;;) {
    ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&state_), FUTEX_WAIT_PRIVATE, 1, &nap, nullptr,
              0);
    if (try_lock()) return;
  }
}

}  // namespace metrics
