#include "metrics/socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>

namespace metrics {

void Fd::reset(int fd) {
  if (fd_ >= 0) {
    // close() is never retried on EINTR on Linux: the descriptor is released
    // either way, and retrying could close a descriptor another thread just got.
    ::close(fd_);
  }
  fd_ = fd;
}

std::string errno_message(std::string_view what, int err) {
  std::string message(what);
  message += ": ";
  message += std::strerror(err);
  return message;
}

void throw_errno(std::string_view what) {
  int err = errno;
  throw SystemError(errno_message(what, err), err);
}

std::string format_address(const sockaddr* addr, socklen_t len) {
  char host[INET6_ADDRSTRLEN] = {};
  if (addr->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (addr->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "(unknown address family " + std::to_string(addr->sa_family) + ")";
}

std::string format_host_port(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::string local_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    throw_errno("getsockname");
  }
  return format_address(reinterpret_cast<sockaddr*>(&ss), len);
}

uint16_t local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    throw_errno("getsockname");
  }
  if (ss.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

namespace {

struct AddrinfoDeleter {
  void operator()(addrinfo* ai) const { ::freeaddrinfo(ai); }
};
using AddrinfoPtr = std::unique_ptr<addrinfo, AddrinfoDeleter>;

AddrinfoPtr resolve(const std::string& host, uint16_t port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* result = nullptr;
  std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &result);
  if (rc != 0) {
    std::string message = "resolve " + host + ": ";
    if (rc == EAI_SYSTEM) {
      message += std::strerror(errno);
    } else {
      message += ::gai_strerror(rc);
    }
    throw SystemError(message, 0);
  }
  return AddrinfoPtr(result);
}

using Clock = std::chrono::steady_clock;

// Waits until `fd` is ready for `events` or the timeout passes; no timeout
// waits for as long as it takes. Returns 1 when ready, 0 on timeout, -1 on
// error (errno set). Retries on EINTR with the remaining time.
int wait_ready(int fd, short events, Timeout timeout) {
  // poll() takes an int of milliseconds: a longer timeout is clamped to that,
  // which also keeps the deadline arithmetic from overflowing.
  constexpr std::chrono::milliseconds::rep kMaxMs = std::numeric_limits<int>::max();
  auto limit = std::chrono::milliseconds(std::clamp<std::chrono::milliseconds::rep>(
      timeout.value_or(std::chrono::milliseconds(0)).count(), 0, kMaxMs));
  auto deadline = Clock::now() + limit;
  for (;;) {
    int left_ms = -1;  // poll()'s "no limit"
    if (timeout) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      left_ms =
          static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(left.count(), 0, kMaxMs));
    }
    pollfd pfd{fd, events, 0};
    int rc = ::poll(&pfd, 1, left_ms);
    if (rc >= 0) return rc;
    if (errno != EINTR) return -1;
  }
}

// One connect attempt to one resolved address, bounded by `timeout`.
// Returns the connected socket, or an invalid Fd with errno set.
Fd connect_one(const addrinfo* ai, Timeout timeout) {
  Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                 ai->ai_protocol));
  if (!fd) return Fd();
  int rc = ::connect(fd.get(), ai->ai_addr, ai->ai_addrlen);
  if (rc != 0 && errno != EINPROGRESS && errno != EINTR) return Fd();
  if (rc != 0) {
    // A non-blocking connect in progress: wait for writability, then read the
    // outcome from SO_ERROR. With no timeout this waits as long as the kernel
    // keeps retrying the SYN (tcp_syn_retries); it then reports ETIMEDOUT.
    int ready = wait_ready(fd.get(), POLLOUT, timeout);
    if (ready < 0) return Fd();
    if (ready == 0) {
      errno = ETIMEDOUT;
      return Fd();
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) return Fd();
    if (err != 0) {
      errno = err;
      return Fd();
    }
  }
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) return Fd();
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

}  // namespace

Fd listen_tcp(const std::string& host, uint16_t port, int backlog) {
  AddrinfoPtr addrs = resolve(host, port, /*passive=*/true);
  int last_errno = 0;
  std::string last_what = "listen " + format_host_port(host, port);
  for (const addrinfo* ai = addrs.get(); ai != nullptr; ai = ai->ai_next) {
    Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                   ai->ai_protocol));
    if (!fd) {
      last_errno = errno;
      last_what = "socket";
      continue;
    }
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      last_errno = errno;
      last_what = "bind " + format_address(ai->ai_addr, ai->ai_addrlen);
      continue;
    }
    if (::listen(fd.get(), backlog) != 0) {
      last_errno = errno;
      last_what = "listen " + format_address(ai->ai_addr, ai->ai_addrlen);
      continue;
    }
    return fd;
  }
  throw SystemError(errno_message(last_what, last_errno), last_errno);
}

Fd connect_tcp(const std::string& host, uint16_t port, Timeout timeout) {
  AddrinfoPtr addrs = resolve(host, port, /*passive=*/false);
  int last_errno = 0;
  for (const addrinfo* ai = addrs.get(); ai != nullptr; ai = ai->ai_next) {
    Fd fd = connect_one(ai, timeout);
    if (fd) return fd;
    last_errno = errno;
  }
  std::string what = "connect " + format_host_port(host, port);
  if (last_errno == ETIMEDOUT) {
    throw SystemError(what + ": timed out", ETIMEDOUT);
  }
  throw SystemError(errno_message(what, last_errno), last_errno);
}

void set_socket_timeouts(int fd, double seconds) {
  // 2^31 - 1 seconds fits every time_t and is far past any useful limit.
  constexpr double kMaxSeconds = std::numeric_limits<int32_t>::max();
  timeval tv{};
  if (seconds > 0) {
    const double clamped = std::min(seconds, kMaxSeconds);
    tv.tv_sec = static_cast<time_t>(clamped);
    tv.tv_usec = static_cast<suseconds_t>((clamped - static_cast<double>(tv.tv_sec)) * 1e6);
    if (tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1;
  }
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

bool send_all(int fd, std::string_view data, Timeout timeout) {
  while (!data.empty()) {
    if (timeout) {
      int ready = wait_ready(fd, POLLOUT, *timeout);
      if (ready < 0) return false;
      if (ready == 0) {
        errno = ETIMEDOUT;
        return false;
      }
    }
    ssize_t n = ::send(fd, data.data(), data.size(),
                       MSG_NOSIGNAL | (timeout ? MSG_DONTWAIT : 0));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (timeout && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

long recv_some(int fd, char* buf, std::size_t len, Timeout timeout) {
  for (;;) {
    if (timeout) {
      int ready = wait_ready(fd, POLLIN, *timeout);
      if (ready < 0) return -1;
      if (ready == 0) {
        errno = ETIMEDOUT;
        return -1;
      }
    }
    ssize_t n = ::recv(fd, buf, len, timeout ? MSG_DONTWAIT : 0);
    if (n >= 0) return static_cast<long>(n);
    if (errno == EINTR) continue;
    if (timeout && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    return -1;
  }
}

}  // namespace metrics
