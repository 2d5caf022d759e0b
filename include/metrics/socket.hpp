// Thin, RAII-owning wrappers over the POSIX socket calls the project uses.
//
// Every descriptor in the project is owned by exactly one `Fd`; nothing else
// calls ::close(). The helpers retry on EINTR, never raise SIGPIPE
// (MSG_NOSIGNAL), and report failures as `SystemError` whose message names the
// operation, the peer and the cause ("connect 127.0.0.1:8888: Connection
// refused").
#ifndef METRICS_SOCKET_HPP_
#define METRICS_SOCKET_HPP_

#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace metrics {

// Owns one file descriptor and closes it on destruction. Move-only.
// Not thread-safe: one owner at a time.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  // Gives up ownership without closing.
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  // Closes the owned descriptor (if any) and takes ownership of `fd`.
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// A failed system call. `code()` is the errno value (0 for a timeout or a
// resolver failure, which have no errno).
class SystemError : public std::runtime_error {
 public:
  SystemError(const std::string& message, int code)
      : std::runtime_error(message), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

// "WHAT: strerror(err)", e.g. "connect 127.0.0.1:8888: Connection refused".
std::string errno_message(std::string_view what, int err);

// Throws SystemError(errno_message(what, errno), errno).
[[noreturn]] void throw_errno(std::string_view what);

// "127.0.0.1:8888" or "[::1]:8888" for an AF_INET/AF_INET6 address.
std::string format_address(const sockaddr* addr, socklen_t len);

// "host:port", or "[host]:port" for an IPv6 literal, for messages.
std::string format_host_port(const std::string& host, uint16_t port);

// The local address a socket is bound to, formatted as above.
std::string local_address(int fd);

// The port a socket is bound to (host byte order).
uint16_t local_port(int fd);

// Resolves `host` (name, IPv4 or IPv6 literal) and binds a listening TCP
// socket on the first address that works, with SO_REUSEADDR, SOCK_CLOEXEC and
// O_NONBLOCK. Port 0 picks a free port. Throws SystemError naming the address.
Fd listen_tcp(const std::string& host, uint16_t port, int backlog);

// A per-operation time limit; nullopt means wait forever (a connect: as long
// as the kernel retries the handshake). Limits beyond INT_MAX ms are clamped.
using Timeout = std::optional<std::chrono::milliseconds>;

// Connects to `host:port`, trying every address the name resolves to, each
// bounded by `timeout`; with none, each waits as long as the kernel keeps
// retrying the SYN (net.ipv4.tcp_syn_retries, about two minutes by default).
// Returns a blocking socket with SOCK_CLOEXEC and TCP_NODELAY. Throws
// SystemError: "connect HOST:PORT: <cause>" with the cause of the last
// address tried ("timed out" for a timeout), or "resolve HOST: <cause>".
Fd connect_tcp(const std::string& host, uint16_t port, Timeout timeout);

// Sets both SO_RCVTIMEO and SO_SNDTIMEO of `fd` to `seconds`, so that a
// blocking receive or send that waits that long fails with EAGAIN. A zero
// timeval means "no timeout" to the kernel, so any `seconds` above 0 sets at
// least 1 µs (never zero); 0 or less clears both timeouts. Values past about
// 68 years are clamped. A setsockopt failure (only possible when `fd` is not
// a socket) is ignored.
void set_socket_timeouts(int fd, double seconds);

// Sends all of `data`, retrying on EINTR and short writes, with MSG_NOSIGNAL.
// With a timeout, waits at most that long for each chunk to be accepted.
// Returns false and sets errno (ETIMEDOUT for a timeout) on failure.
bool send_all(int fd, std::string_view data, Timeout timeout = std::nullopt);

// Receives at most `len` bytes, retrying on EINTR. With a timeout, waits at
// most that long for data. Returns the byte count, 0 at end of stream, or -1
// with errno set (ETIMEDOUT for a timeout).
long recv_some(int fd, char* buf, std::size_t len, Timeout timeout = std::nullopt);

}  // namespace metrics

#endif  // METRICS_SOCKET_HPP_
