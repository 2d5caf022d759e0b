// A mutex for very short critical sections that many threads share.
#ifndef METRICS_ADAPTIVE_MUTEX_HPP_
#define METRICS_ADAPTIVE_MUTEX_HPP_

#include <pthread.h>

namespace metrics {

// glibc's adaptive mutex: a thread that finds it locked spins for a while
// (the holder is likely running on another core and about to release it)
// before sleeping in the kernel as std::mutex does at once. Meets the
// standard Lockable requirements: use it with std::lock_guard,
// std::unique_lock and std::condition_variable_any.
class AdaptiveMutex {
 public:
  AdaptiveMutex() {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&mutex_, &attr);
    pthread_mutexattr_destroy(&attr);
  }
  ~AdaptiveMutex() { pthread_mutex_destroy(&mutex_); }
  AdaptiveMutex(const AdaptiveMutex&) = delete;
  AdaptiveMutex& operator=(const AdaptiveMutex&) = delete;

  void lock() { pthread_mutex_lock(&mutex_); }
  bool try_lock() { return pthread_mutex_trylock(&mutex_) == 0; }
  void unlock() { pthread_mutex_unlock(&mutex_); }

 private:
  pthread_mutex_t mutex_;
};

}  // namespace metrics

#endif  // METRICS_ADAPTIVE_MUTEX_HPP_
