// The metrics protocol's session (MetricsSession) and its parts, without a
// server: how provisional answers are settled before they are sent.
#include "service.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <string_view>

#include "line_service.hpp"
#include "metrics/protocol.hpp"
#include "metrics/socket.hpp"
#include "test_util.hpp"

namespace {

// Settles its provisional answers as a session whose log failed after a
// fixed ticket: every ticket up to that one succeeds.
class SettlesUpTo : public metrics::LineHandler {
 public:
  explicit SettlesUpTo(uint64_t last) : last_(last) {}
  void handle_line(std::string_view, metrics::Output&) override {}
  void before_send(std::string& buffer) override {
    if (provisional.empty()) return;
    asked_ = provisional.last_ticket();
    provisional.settle(buffer, std::min(asked_, last_));
  }
  uint64_t asked() const { return asked_; }

  metrics::ProvisionalAnswers provisional;

 private:
  uint64_t last_;
  uint64_t asked_ = 0;
};

}  // namespace

TEST_CASE("a provisional answer whose ticket fails is sent as the failure answer, in its place",
          "[service]") {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  metrics::Fd ours(fds[0]), theirs(fds[1]);
  SettlesUpTo handler(2);
  metrics::Output out(ours.get(), &handler);
  metrics::ProvisionalAnswers& provisional = handler.provisional;
  out.buffer().append("A");
  provisional.append(out.buffer(), metrics::kOkAnswer, metrics::kStorageFailureAnswer, 1);
  provisional.append(out.buffer(), metrics::kOkAnswer, metrics::kStorageFailureAnswer, 2);
  out.buffer().append("B");
  provisional.append(out.buffer(), metrics::kOkAnswer, metrics::kStorageFailureAnswer, 3);
  out.buffer().append("C");
  REQUIRE(out.flush());
  CHECK(handler.asked() == 3);  // one settle for the whole batch, with its last ticket
  std::string expected = "Aok\n\nok\n\nBerror\nstorage failure\n\nC";
  std::string got;
  while (got.size() < expected.size()) {
    char chunk[256];
    long n = metrics::recv_some(theirs.get(), chunk, sizeof chunk, metrics::test::kDeadline);
    REQUIRE(n > 0);
    got.append(chunk, static_cast<std::size_t>(n));
  }
  CHECK(got == expected);
}
