// The log's file primitives (log_file.hpp): whole pread/pwrite, directory
// sync, the replay's read-only mapping and the appending tail.
#include "log_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace metrics {

namespace {

std::string directory_of(const std::string& path) {
  std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

bool pwrite_all(int fd, std::string_view data, uint64_t offset) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return true;
}

bool pread_all(int fd, char* buf, std::size_t n, uint64_t offset) {
  while (n > 0) {
    ssize_t got = ::pread(fd, buf, n, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (got == 0) {
      errno = EIO;
      return false;
    }
    buf += got;
    n -= static_cast<std::size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return true;
}

bool sync_directory(const std::string& path) {
  Fd dir(::open(directory_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return false;
  return ::fsync(dir.get()) == 0;
}

Mapping::Mapping(int fd, std::size_t size) : size_(size) {
  if (size == 0) return;
  // MAP_POPULATE maps every page in one call instead of one fault each.
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  if (p == MAP_FAILED) throw_errno("mmap");
  data_ = p;
  ::madvise(data_, size, MADV_SEQUENTIAL);
}

Mapping::~Mapping() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

int LogTail::append(std::string_view bytes) {
  if (int err = reserve(bytes.size()); err != 0) return err;
  uint64_t pos = end_;
  while (!bytes.empty()) {
    if (window_ == nullptr || pos < window_start_ || pos >= window_start_ + kWindowBytes) {
      if (int err = map(pos - pos % kWindowBytes); err != 0) return err;
    }
    const auto n = static_cast<std::size_t>(
        std::min<uint64_t>(bytes.size(), window_start_ + kWindowBytes - pos));
    std::memcpy(window_ + (pos - window_start_), bytes.data(), n);
    bytes.remove_prefix(n);
    pos += n;
  }
  // The mapping's pages are fresh: fetch the cache line a few records
  // ahead now, so that writing it later does not stall (under the Wal's
  // lock).
  if (pos + kPrefetchBytes < window_start_ + kWindowBytes) {
    __builtin_prefetch(window_ + (pos - window_start_) + kPrefetchBytes, 1);
  }
  end_ = pos;
  return 0;
}

int LogTail::reserve(std::size_t n) {
  if (end_ + n <= allocated_) return 0;
  const uint64_t target = end_ + n + std::clamp<uint64_t>(end_ / 16, kMinGrowth, kMaxGrowth);
  int err;
  do {
    err = ::posix_fallocate(file_->get(), static_cast<off_t>(allocated_),
                            static_cast<off_t>(target - allocated_));
  } while (err == EINTR);
  if (err != 0) return err;
  populate(allocated_, target);
  allocated_ = target;
  return 0;
}

int LogTail::truncate() {
  unmap();
  if (::ftruncate(file_->get(), static_cast<off_t>(end_)) != 0) return errno;
  allocated_ = end_;
  return 0;
}

int LogTail::map(uint64_t start) {
  unmap();
  // The window may reach past the end of the file; only allocated bytes
  // are ever touched.
  void* p = ::mmap(nullptr, kWindowBytes, PROT_READ | PROT_WRITE, MAP_SHARED, file_->get(),
                   static_cast<off_t>(start));
  if (p == MAP_FAILED) return errno;
  window_ = static_cast<char*>(p);
  window_start_ = start;
  populate(end_, allocated_);
  return 0;
}

void LogTail::unmap() {
  if (window_ != nullptr) ::munmap(window_, kWindowBytes);
  window_ = nullptr;
}

void LogTail::populate(uint64_t from, uint64_t to) {
  static const auto kPageBytes = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (window_ == nullptr) return;
  from = std::max(from, window_start_);
  from -= from % kPageBytes;
  to = std::min(to, window_start_ + kWindowBytes);
  if (from >= to) return;
#ifdef MADV_POPULATE_WRITE
  ::madvise(window_ + (from - window_start_), to - from, MADV_POPULATE_WRITE);
#endif
}

}  // namespace metrics
