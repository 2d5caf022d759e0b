// The lock of one stored key: taken once per put, almost never contended.
#ifndef METRICS_KEY_LOCK_HPP_
#define METRICS_KEY_LOCK_HPP_

#include <atomic>
#include <cstdint>

namespace metrics {

// A lock whose unlock is a plain store. std::mutex's unlock is an atomic
// read-modify-write (it must learn whether to wake a sleeper), and on a put
// of a pipelined batch the two atomics of lock and unlock cost about a
// tenth of the put. Here a thread that finds the lock taken spins briefly,
// then sleeps in short timed waits (50 µs) until it is free: unlock wakes
// nobody. Meant for critical sections of a few hundred nanoseconds that
// rarely meet (a key's lock: two sessions putting the same key at the same
// instant, or a put meeting a get that copies the key's samples); a waiter
// may sleep up to 50 µs past the unlock. Meets the standard Lockable
// requirements (std::lock_guard, std::unique_lock). Not recursive.
class KeyLock {
 public:
  void lock() {
    if (state_.exchange(1, std::memory_order_acquire) != 0) lock_contended();
  }
  bool try_lock() {
    return state_.load(std::memory_order_relaxed) == 0 &&
           state_.exchange(1, std::memory_order_acquire) == 0;
  }
  void unlock() { state_.store(0, std::memory_order_release); }

 private:
  void lock_contended();

  std::atomic<uint32_t> state_{0};  // 1 while held; a futex word
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) &&
                    std::atomic<uint32_t>::is_always_lock_free,
                "the futex word must be a plain 32-bit integer");
};

}  // namespace metrics

#endif  // METRICS_KEY_LOCK_HPP_
