// Tests of the socket helpers (include/metrics/socket.hpp) that need no peer.
#include "metrics/socket.hpp"

#include <sys/socket.h>
#include <sys/time.h>

#include <catch2/catch.hpp>
#include <utility>

namespace {

// The SO_RCVTIMEO and SO_SNDTIMEO of `fd`, in microseconds.
std::pair<long long, long long> timeouts_us(int fd) {
  auto get = [fd](int option) {
    timeval tv{};
    socklen_t len = sizeof tv;
    REQUIRE(::getsockopt(fd, SOL_SOCKET, option, &tv, &len) == 0);
    return static_cast<long long>(tv.tv_sec) * 1000000 + tv.tv_usec;
  };
  return {get(SO_RCVTIMEO), get(SO_SNDTIMEO)};
}

}  // namespace

TEST_CASE("set_socket_timeouts sets both directions and never a zero timeval for a positive value",
          "[socket]") {
  metrics::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd.valid());
  metrics::set_socket_timeouts(fd.get(), 2.5);
  CHECK(timeouts_us(fd.get()) == std::pair<long long, long long>{2500000, 2500000});
  // A zero timeval would mean no timeout at all; the kernel rounds 1 µs up
  // to its clock tick, so only "not zero" is checked.
  metrics::set_socket_timeouts(fd.get(), 1e-9);
  CHECK(timeouts_us(fd.get()).first > 0);
  CHECK(timeouts_us(fd.get()).second > 0);
  metrics::set_socket_timeouts(fd.get(), 0);
  CHECK(timeouts_us(fd.get()) == std::pair<long long, long long>{0, 0});
  // Far past what time_t holds in a double's range: clamped, not undefined.
  metrics::set_socket_timeouts(fd.get(), 1e300);
  CHECK(timeouts_us(fd.get()).first > 0);
}
