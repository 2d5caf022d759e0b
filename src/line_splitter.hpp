// Splitting a session's byte stream into bounded request lines: the one
// piece of the protocol that only a server needs, kept out of the installed
// protocol.hpp because it leans on the library's buffer helpers.
#ifndef METRICS_LINE_SPLITTER_HPP_
#define METRICS_LINE_SPLITTER_HPP_

#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

#include "buffer.hpp"
#include "metrics/protocol.hpp"

namespace metrics {

// Splits a byte stream into request lines with a cap on a line's length.
// Complete lines are handed out as views straight into the fed chunk when
// possible; only the unfinished tail of a chunk is copied, and never more
// than the cap: a longer line is discarded as it streams in and reported once,
// when its '\n' arrives. Not thread-safe: one per session.
class LineSplitter {
 public:
  explicit LineSplitter(std::size_t max_line_bytes = kDefaultMaxLineBytes)
      : max_line_bytes_(max_line_bytes) {}

  // Feeds the next bytes of the stream. Calls on_line(std::string_view) for
  // each complete line of at most max_line_bytes (the view excludes the '\n'
  // and is valid only during the call), and on_too_long() for each longer
  // one, in stream order.
  template <typename OnLine, typename OnTooLong>
  void feed(std::string_view chunk, OnLine&& on_line, OnTooLong&& on_too_long);

  // Bytes of an unfinished line held for the next feed (a discarded
  // over-long line holds none).
  std::size_t pending_bytes() const { return partial_.size(); }
  // True while the unfinished line is over the cap and being discarded.
  bool discarding() const { return discarding_; }

 private:
  void drop_partial() {
    // Return a large buffer's memory rather than keep it per idle session.
    clear_and_trim(partial_, 4096);
  }

  std::size_t max_line_bytes_;
  std::string partial_;
  bool discarding_ = false;
};

template <typename OnLine, typename OnTooLong>
void LineSplitter::feed(std::string_view chunk, OnLine&& on_line,
                        OnTooLong&& on_too_long) {
  while (!chunk.empty()) {
    const void* nl = std::memchr(chunk.data(), '\n', chunk.size());
    if (nl == nullptr) {
      if (!discarding_) {
        if (partial_.size() + chunk.size() > max_line_bytes_) {
          discarding_ = true;
          drop_partial();
        } else {
          partial_.append(chunk);
        }
      }
      return;
    }
    std::size_t len = static_cast<std::size_t>(static_cast<const char*>(nl) - chunk.data());
    std::string_view piece = chunk.substr(0, len);
    chunk.remove_prefix(len + 1);
    if (discarding_) {
      discarding_ = false;
      on_too_long();
    } else if (partial_.empty()) {
      if (len > max_line_bytes_) {
        on_too_long();
      } else {
        on_line(piece);
      }
    } else if (partial_.size() + len > max_line_bytes_) {
      drop_partial();
      on_too_long();
    } else {
      partial_.append(piece);
      on_line(std::string_view(partial_));
      drop_partial();
    }
  }
}

}  // namespace metrics

#endif  // METRICS_LINE_SPLITTER_HPP_
