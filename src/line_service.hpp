// What a Server serves, and how a session answers: the Service makes one
// LineHandler per session, which answers each request line by appending to
// the session's Output. Internal to the library: metrics-server's
// MetricsService (metrics/service.hpp) and the no-op benchmark server
// implement it.
#ifndef METRICS_LINE_SERVICE_HPP_
#define METRICS_LINE_SERVICE_HPP_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "metrics/protocol.hpp"

namespace metrics {

class LineHandler;

// The answers of one session, buffered and sent by the session loop in one
// write per batch of requests. A plain send buffer: what the bytes mean is
// the handler's business, which sees them once more before each send
// (LineHandler::before_send). Not thread-safe: belongs to one session.
class Output {
 public:
  // `handler`, if not null, is given the buffer before each send; it must
  // outlive the Output.
  explicit Output(int fd, LineHandler* handler = nullptr) : fd_(fd), handler_(handler) {}

  // The bytes still to be sent; handlers append their answers here.
  std::string& buffer() { return buffer_; }

  // A buffer grown past this many bytes is sent by flush_if_large().
  static constexpr std::size_t kStreamBytes = 64 * 1024;

  // Sends the buffer now if it holds more than kStreamBytes, so that a very
  // large answer streams out instead of being built whole in memory. The
  // buffer keeps its capacity for the rest of that answer.
  void flush_if_large() {
    if (buffer_.size() > kStreamBytes) flush(/*keep_capacity=*/true);
  }

  // Lets the handler finish the buffer (LineHandler::before_send), then
  // sends everything buffered and empties the buffer. Returns false once any
  // send has failed (the peer is gone or too slow); later data is then
  // dropped unsent, and the handler no longer sees it. Unless
  // `keep_capacity`, a large buffer's memory is returned to the allocator, so
  // an idle session does not keep the memory of its largest answer.
  bool flush(bool keep_capacity = false);

  bool failed() const { return failed_; }

 private:
  int fd_;
  LineHandler* handler_;
  std::string buffer_;
  bool failed_ = false;
};

// What one session does with each of its request lines. Belongs to one
// session: called from that session's thread only.
class LineHandler {
 public:
  virtual ~LineHandler() = default;

  // Answers one complete request line (the bytes before its '\n'; a trailing
  // '\r' is still there) by appending to `out`.
  virtual void handle_line(std::string_view line, Output& out) = 0;

  // Answers a line longer than the server's line limit. By default:
  // "error\nwrong command\n\n" (docs/protocol.md).
  virtual void handle_too_long(Output& out) { out.buffer().append(kWrongCommandAnswer); }

  // Called with the session's Output buffer (every byte appended since the
  // last send) just before it is sent, unless an earlier send has failed: the
  // last moment to make answers final, e.g. to wait until a put's log record
  // is written and replace its "ok" if that failed. Bytes may be rewritten;
  // whatever the buffer holds on return is sent. By default, nothing changes.
  virtual void before_send(std::string& /*buffer*/) {}
};

// What a server serves: makes each session's LineHandler. Thread-safe.
class Service {
 public:
  virtual ~Service() = default;
  virtual std::unique_ptr<LineHandler> open_session() = 0;
};

}  // namespace metrics

#endif  // METRICS_LINE_SERVICE_HPP_
