// Where a component's log lines go: a callback the embedder gives, or
// stderr, one whole line at a time from any thread.
#ifndef METRICS_LOGGER_HPP_
#define METRICS_LOGGER_HPP_

#include <functional>
#include <mutex>
#include <string_view>

namespace metrics {

// The log of a Server or a Wal. Thread-safe: lines from several threads
// never interleave, and the callback is never called twice at once.
class Logger {
 public:
  // `to` receives each line, without its newline; if it is empty, lines go
  // to stderr, each with a newline. With `quiet`, info lines are dropped.
  Logger(std::function<void(std::string_view)> to, bool quiet);
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  // Writes one line, unless it is `info` and the logger is quiet (warnings
  // and errors are never dropped).
  void line(std::string_view text, bool info = false) const;

 private:
  const std::function<void(std::string_view)> to_;
  const bool quiet_;
  mutable std::mutex mu_;  // serialises the lines
};

}  // namespace metrics

#endif  // METRICS_LOGGER_HPP_
