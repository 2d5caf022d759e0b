// The file primitives under the log: whole reads and writes at an offset,
// making a directory entry durable, a read-only mapping of a whole file for
// replay, and LogTail, the mapped end of the file where records are appended.
#ifndef METRICS_LOG_FILE_HPP_
#define METRICS_LOG_FILE_HPP_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "metrics/socket.hpp"

namespace metrics {

// Writes all of `data` at `offset`, retrying on EINTR and short writes.
// Returns false with errno set on failure.
bool pwrite_all(int fd, std::string_view data, uint64_t offset);

// Reads exactly `n` bytes at `offset`. Returns false with errno set on
// failure (EIO for an unexpected end of file).
bool pread_all(int fd, char* buf, std::size_t n, uint64_t offset);

// Makes a rename or a file creation in `path`'s directory durable. Returns
// false with errno set on failure.
bool sync_directory(const std::string& path);

// A read-only mapping of a whole file, unmapped on destruction. Not
// thread-safe to construct; bytes() may be read from any thread.
class Mapping {
 public:
  // Maps the first `size` bytes of `fd` (nothing if 0). Throws SystemError
  // if mmap fails.
  Mapping(int fd, std::size_t size);
  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  std::string_view bytes() const {
    return data_ == nullptr ? std::string_view() : std::string_view(static_cast<char*>(data_), size_);
  }

 private:
  void* data_ = nullptr;
  std::size_t size_;
};

// The end of the log file, where records are appended: through a shared
// writable mapping of a window of the file, so a record is in the page cache
// (and survives the process being killed) as soon as it is copied, with no
// system call per record. Space is allocated ahead with posix_fallocate, so a
// full disk or a file-size limit is an error returned here, never a SIGBUS on
// a store to the mapping. Past end() the file holds zeros (scan_log's
// zero_bytes) until the Wal cuts it on closing.
//
// Not thread-safe: the Wal calls it under its mu_.
class LogTail {
 public:
  // Appends to `file` from `end`, which must be its size.
  LogTail(std::shared_ptr<Fd> file, uint64_t end)
      : file_(std::move(file)), end_(end), allocated_(end) {}
  ~LogTail() { unmap(); }
  LogTail(const LogTail&) = delete;
  LogTail& operator=(const LogTail&) = delete;

  const std::shared_ptr<Fd>& file() const { return file_; }
  uint64_t end() const { return end_; }

  // Copies `bytes` to the end of the log. Returns 0, or an errno value; then
  // end() has not moved (a part that was copied is overwritten next time).
  int append(std::string_view bytes);

  // Makes sure `n` more bytes can be appended: allocates, if needed, that
  // much and a sixteenth of the log more (64 KiB to 4 MiB), so a large log
  // grows a few times a second at most and a small one stays small.
  // Returns 0 or an errno value.
  int reserve(std::size_t n);

  // Unmaps and cuts the file at end(), dropping the space allocated ahead.
  // Returns 0 or an errno value.
  int truncate();

 private:
  static constexpr uint64_t kWindowBytes = 4 << 20;  // a multiple of the page size
  static constexpr uint64_t kPrefetchBytes = 512;
  static constexpr uint64_t kMinGrowth = 64 << 10;
  static constexpr uint64_t kMaxGrowth = 4 << 20;

  // Maps the window that starts at `start`. Returns 0 or an errno value.
  int map(uint64_t start);
  void unmap();

  // Maps the pages of [from, to) that the window holds for writing now, in
  // one call: otherwise the first store to each page faults, under the
  // Wal's lock. Best effort (kernels before 5.14 do not have
  // MADV_POPULATE_WRITE).
  void populate(uint64_t from, uint64_t to);

  const std::shared_ptr<Fd> file_;
  uint64_t end_;
  uint64_t allocated_;  // the file's size: end_ plus the zeros allocated ahead
  char* window_ = nullptr;
  uint64_t window_start_ = 0;
};

}  // namespace metrics

#endif  // METRICS_LOG_FILE_HPP_
