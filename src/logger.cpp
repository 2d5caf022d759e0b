// One log line at a time, to a callback or to stderr (logger.hpp).
#include "logger.hpp"

#include <cstdio>
#include <string>
#include <utility>

namespace metrics {

Logger::Logger(std::function<void(std::string_view)> to, bool quiet)
    : to_(std::move(to)), quiet_(quiet) {}

void Logger::line(std::string_view text, bool info) const {
  if (info && quiet_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (to_) {
    to_(text);
    return;
  }
  std::string with_newline(text);
  with_newline.push_back('\n');
  std::fwrite(with_newline.data(), 1, with_newline.size(), stderr);
  std::fflush(stderr);
}

}  // namespace metrics
