#include "line_service.hpp"

#include "buffer.hpp"
#include "metrics/socket.hpp"

namespace metrics {

namespace {

// After a send, a buffer larger than this is returned to the allocator so
// an idle session does not keep the memory of its largest answer.
constexpr std::size_t kKeepBufferBytes = 16 * 1024;

}  // namespace

bool Output::flush(bool keep_capacity) {
  if (!failed_) {
    // The handler finishes its answers before any byte of them is sent.
    if (handler_ != nullptr) handler_->before_send(buffer_);
    if (!buffer_.empty()) failed_ = !send_all(fd_, buffer_);
  }
  // Freeing the buffer between the chunks of one large answer would cost an
  // mmap, page faults and a munmap with a TLB shootdown per 64 KiB chunk.
  if (keep_capacity) {
    buffer_.clear();
  } else {
    clear_and_trim(buffer_, kKeepBufferBytes);
  }
  return !failed_;
}

}  // namespace metrics
