// Tests of metrics::Client: against a scripted FakeServer, which sends
// exactly the bytes a case needs (split, malformed, or none at all), and
// against a real TestServer.
#include "metrics/client.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "test_util.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::Equals;
using Catch::Matchers::StartsWith;
using metrics::Client;
using metrics::ClientError;
using metrics::Sample;
using namespace metrics::test;

namespace {

using Metrics = std::map<std::string, std::vector<Sample>>;

// Every call of these tests is bounded by this timeout, so a client bug that
// waits for bytes that never come fails the test instead of hanging it.
constexpr double kTimeout = 10.0;

}  // namespace

// ---------------------------------------------------------------------------
// Against a scripted fake server

// docs/protocol.md, "Client library contract": the client reads until the "\n\n"
// however the bytes are split.
TEST_CASE("the client reads answers that arrive one byte per packet", "[client]") {
  FakeServer fake({reply_bytewise("ok\n\n"),
                   reply_bytewise("ok\npalm.cpu 10.5 1501864247\npalm.cpu 2.0 1501864248\n"
                                  "eardrum.cpu 15.3 1501864259\n\n"),
                   reply_bytewise("ok\n\n")});
  Client client("127.0.0.1", fake.port(), kTimeout);
  client.put("palm.cpu", 10.5, 1501864247);
  Metrics expected{{"palm.cpu", {{1501864247, 10.5}, {1501864248, 2.0}}},
                   {"eardrum.cpu", {{1501864259, 15.3}}}};
  CHECK(client.get("*") == expected);
  CHECK(client.get("nothing").empty());
}

// docs/protocol.md, "Client library contract": every malformed answer is a
// ClientError naming the problem.
TEST_CASE("every malformed answer to get is a ClientError that names the problem", "[client]") {
  struct Case {
    const char* answer;
    bool close;  // the server closes the connection after the bytes
    const char* problem;
  };
  Case c = GENERATE(values<Case>({
      {"okay\n\n", false, "unknown status"},
      {"OK\n\n", false, "unknown status"},
      {"\n\n", false, "unknown status"},
      {"ok\nk 1.0\n\n", false, "exactly three fields"},
      {"ok\nk 1.0 1 2\n\n", false, "exactly three fields"},
      {"ok\nk abc 1\n\n", false, "bad value"},
      {"ok\nk nan 1\n\n", false, "bad value"},
      {"ok\nk 1.0 1.5\n\n", false, "bad timestamp"},
      {"ok\nk 1.0 99999999999999999999\n\n", false, "bad timestamp"},
      {"error\n\n", false, "without a reason"},
      {"ok\nk 1.0 1\n", true, "connection closed before the answer was complete"},
      {"ok", true, "connection closed before the answer was complete"},
      {"", true, "connection closed before the answer was complete"},
  }));
  CAPTURE(c.answer);
  FakeServer fake({reply(c.answer, c.close)});
  Client client("127.0.0.1", fake.port(), kTimeout);
  CHECK_THROWS_WITH(client.get("k"), Contains(c.problem));
}

TEST_CASE("a malformed answer to get names the server in its message", "[client]") {
  FakeServer fake({reply("ok\nk 1.0\n\n")});
  Client client("127.0.0.1", fake.port(), kTimeout);
  std::string prefix = "malformed answer from 127.0.0.1:" + std::to_string(fake.port()) + ": ";
  CHECK_THROWS_WITH(client.get("k"), StartsWith(prefix));
}

TEST_CASE("an answer to put other than ok is a ClientError", "[client]") {
  struct Case {
    const char* answer;
    const char* problem;
  };
  Case c = GENERATE(values<Case>({
      {"ok\nk 1.0 1\n\n", "malformed answer"},
      {"yes\n\n", "unknown status"},
      {"error\nstorage failure\n\n", "server error: storage failure"},
  }));
  CAPTURE(c.answer);
  FakeServer fake({reply(c.answer)});
  Client client("127.0.0.1", fake.port(), kTimeout);
  CHECK_THROWS_WITH(client.put("k", 1.0, 1), Contains(c.problem));
}

// docs/protocol.md, "Limits and bad peers": clients treat every error status as a
// failure and show its reason. The session is still in step, so it is kept.
TEST_CASE("a server error is a ClientError with its reason and keeps the connection", "[client]") {
  FakeServer fake({reply("error\nwrong command\n\n"), reply("error\nwrong command\n\n"),
                   reply("ok\n\n"), reply("ok\nk 1.5 2\n\n")});
  Client client("127.0.0.1", fake.port(), kTimeout);
  CHECK_THROWS_MATCHES(client.put("k", 1.5, 1), ClientError,
                       Catch::Matchers::Message("server error: wrong command"));
  CHECK_THROWS_MATCHES(client.get("k"), ClientError,
                       Catch::Matchers::Message("server error: wrong command"));
  CHECK_NOTHROW(client.put("k", 1.5, 2));
  CHECK(client.get("k") == Metrics{{"k", {{2, 1.5}}}});
  CHECK(fake.accepted() == 1);
}

TEST_CASE("a server that never answers makes the client time out", "[client]") {
  FakeServer fake;  // reads requests, answers nothing
  Client client("127.0.0.1", fake.port(), 0.2);
  CHECK_THROWS_WITH(client.get("k"), Contains("receive from") && Contains("timed out"));
  CHECK_THROWS_WITH(client.put("k", 1, 1), Contains("timed out"));
}

// A handshake across a real network takes a round trip that a loopback one
// does not; the slow listener makes it take a SYN retransmit. With no
// timeout the connect must wait for it, as long as the kernel does.
TEST_CASE("a client without a timeout waits for a handshake that takes a SYN retransmit",
          "[client]") {
  SlowHandshakeListener::Outcome outcome = after_a_slow_handshake([](uint16_t port) {
    std::optional<Client> client;
    REQUIRE_NOTHROW(client.emplace("127.0.0.1", port));
    CHECK_NOTHROW(client->put("k", 1.5, 1));
  });
  CHECK(outcome.syn_dropped);
  CHECK(outcome.request == "put k 1.5 1\n");
}

TEST_CASE("a client's timeout bounds a connect that gets no handshake", "[client]") {
  SlowHandshakeListener listener;  // its accept queue stays full
  auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_MATCHES(
      Client("127.0.0.1", listener.port(), 0.3), ClientError,
      Catch::Matchers::Message("connect 127.0.0.1:" + std::to_string(listener.port()) +
                               ": timed out after 0.3s"));
  // Not before the timeout ran out (an upper bound would depend on the load).
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(250));
}

TEST_CASE("a refused connection is a ClientError naming connect", "[client]") {
  RefusedPort refused;
  CHECK_THROWS_MATCHES(
      Client("127.0.0.1", refused.port(), kTimeout), ClientError,
      Catch::Matchers::Message("connect 127.0.0.1:" + std::to_string(refused.port()) +
                               ": Connection refused"));
  // Without a timeout too.
  CHECK_THROWS_WITH(Client("127.0.0.1", refused.port()), StartsWith("connect "));
}

TEST_CASE("a timeout that is not positive is rejected", "[client]") {
  FakeServer fake;
  double timeout = GENERATE(0.0, -1.0, std::nan(""), std::numeric_limits<double>::infinity());
  CAPTURE(timeout);
  CHECK_THROWS_AS(Client("127.0.0.1", fake.port(), timeout), ClientError);
}

TEST_CASE("a huge timeout is accepted and waits as long as it can", "[client]") {
  TestServer server;
  double timeout = GENERATE(4294968.0, 1e300, std::numeric_limits<double>::max());
  CAPTURE(timeout);
  Client client("127.0.0.1", server.port(), timeout);
  client.put("k", 1.5, 1);
  CHECK(client.get("k") == Metrics{{"k", {{1, 1.5}}}});
}

// docs/protocol.md, "Client library contract": the client never reads past the
// "\n\n" that ends one answer.
TEST_CASE("two answers in one packet serve two calls", "[client]") {
  // Both answers go out in one send, as a reply to the first request.
  FakeServer fake({reply("ok\n\nok\nk 1.0 1\nk 2.0 2\n\n")});
  Client client("127.0.0.1", fake.port(), kTimeout);
  client.put("k", 2.0, 2);
  CHECK(client.get("k") == Metrics{{"k", {{1, 1.0}, {2, 2.0}}}});
}

// docs/protocol.md, "Client library contract": bad arguments are refused before
// anything is sent.
TEST_CASE("invalid puts and gets throw before anything is sent", "[client]") {
  FakeServer fake;
  {
    Client client("127.0.0.1", fake.port(), kTimeout);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double inf = std::numeric_limits<double>::infinity();
    for (std::string key :
         {std::string(), std::string("*"), std::string("a b"), std::string("a\tb"),
          std::string("a\nb"), std::string("a\rb"), std::string(" k"), std::string("k\n")}) {
      CAPTURE(key);
      CHECK_THROWS_WITH(client.put(key, 1.0, 1), StartsWith("invalid key: "));
    }
    CHECK_THROWS_WITH(client.put("k", nan, 1), Equals("invalid value: not a finite number"));
    CHECK_THROWS_WITH(client.put("k", inf), Equals("invalid value: not a finite number"));
    CHECK_THROWS_WITH(client.put("k", -inf, 1), Equals("invalid value: not a finite number"));
    for (std::string key : {std::string(), std::string("a b"), std::string("a\tb"),
                            std::string("a\nb"), std::string("a\rb")}) {
      CAPTURE(key);
      CHECK_THROWS_WITH(client.get(key), StartsWith("invalid key: "));
      CHECK_THROWS_WITH(client.get_series(key), StartsWith("invalid key: "));
    }
  }
  // The client has closed its connection: the fake server saw all there was.
  CHECK(fake.received_after_closes(1).empty());
}

TEST_CASE("put without a timestamp sends the current time", "[client]") {
  FakeServer fake({reply("ok\n\n")});
  {
    Client client("127.0.0.1", fake.port(), kTimeout);
    std::time_t before = std::time(nullptr);
    client.put("palm.cpu", 0.5);
    std::time_t after = std::time(nullptr);
    std::string sent = fake.received();
    const std::string prefix = "put palm.cpu 0.5 ";
    REQUIRE_THAT(sent, StartsWith(prefix));
    REQUIRE(sent.back() == '\n');
    std::string ts = sent.substr(prefix.size(), sent.size() - prefix.size() - 1);
    CAPTURE(ts);
    REQUIRE(ts.find_first_not_of("0123456789") == std::string::npos);
    long long sent_ts = std::stoll(ts);
    CHECK(sent_ts >= before);
    CHECK(sent_ts <= after);
  }
}

TEST_CASE("the client sends exactly the protocol's request lines", "[client]") {
  FakeServer fake({reply("ok\n\n"), reply("ok\n\n"), reply("ok\n\n")});
  {
    Client client("127.0.0.1", fake.port(), kTimeout);
    client.put("palm.cpu", 10.0, 1501864247);
    client.put("k", -0.0001, -5);
    client.get("*");
  }
  CHECK(fake.received_after_closes(1) == "put palm.cpu 10.0 1501864247\nput k -0.0001 -5\nget *\n");
}

TEST_CASE("after a malformed answer the client reconnects for the next call", "[client]") {
  FakeServer fake({reply("garbage\n\n"), reply("ok\nk 1.0 1\n\n")});
  Client client("127.0.0.1", fake.port(), kTimeout);
  CHECK_THROWS_WITH(client.get("k"), Contains("malformed answer"));
  // The stream was out of step, so the client dropped it...
  CHECK(fake.received_after_closes(1) == "get k\n");
  // ...and the next call uses a new connection.
  CHECK(client.get("k") == Metrics{{"k", {{1, 1.0}}}});
  CHECK(fake.accepted() == 2);
}

TEST_CASE("the client reconnects after the server dropped its connection", "[client]") {
  // The server closes the connection right after answering the put. (A real
  // server's idle timeout would close it too, but would also close the new
  // connection, and the one before the put, whenever the test stalled for a
  // timeout on a loaded machine.)
  FakeServer fake({reply("ok\n\n", /*close=*/true), reply("ok\nk 1.5 1\n\n")});
  Client client("127.0.0.1", fake.port(), kTimeout);
  client.put("k", 1.5, 1);
  REQUIRE(fake.received_after_closes(1) == "put k 1.5 1\n");
  // The first call after that finds the connection closed...
  CHECK_THROWS_AS(client.get("k"), ClientError);
  // ...and the next one connects again.
  CHECK(client.get("k") == Metrics{{"k", {{1, 1.5}}}});
  CHECK(fake.accepted() == 2);
}

// ---------------------------------------------------------------------------
// Against a real server

// The course's own client example, translated (seeds: "palm.cpu" and
// "eardrum.cpu").
TEST_CASE("the course's palm.cpu and eardrum.cpu example gives the expected metrics",
          "[client][e2e]") {
  TestServer server;
  Client client("127.0.0.1", server.port(), 15);
  client.put("palm.cpu", 0.5, 1150864247);
  client.put("palm.cpu", 2.0, 1150864248);
  client.put("palm.cpu", 0.5, 1150864248);
  client.put("eardrum.cpu", 3, 1150864250);
  client.put("eardrum.cpu", 4, 1150864251);
  std::time_t before = std::time(nullptr);
  client.put("eardrum.memory", 4200000);
  std::time_t after = std::time(nullptr);

  CHECK(client.get("palm.cpu") == Metrics{{"palm.cpu", {{1150864247, 0.5}, {1150864248, 0.5}}}});

  Metrics all = client.get("*");
  REQUIRE(all.size() == 3);
  CHECK(all["palm.cpu"] == std::vector<Sample>{{1150864247, 0.5}, {1150864248, 0.5}});
  CHECK(all["eardrum.cpu"] == std::vector<Sample>{{1150864250, 3.0}, {1150864251, 4.0}});
  REQUIRE(all["eardrum.memory"].size() == 1);
  CHECK(all["eardrum.memory"][0].value == 4200000.0);
  CHECK(all["eardrum.memory"][0].timestamp >= before);
  CHECK(all["eardrum.memory"][0].timestamp <= after);

  CHECK(client.get("non_existing_key").empty());
}

TEST_CASE("get returns each key's samples sorted by timestamp", "[client][e2e]") {
  TestServer server;
  Client client("127.0.0.1", server.port(), kTimeout);
  client.put("k", 3.0, 30);
  client.put("k", 1.0, 10);
  client.put("k", -2.5, -20);
  client.put("k", 2.0, 20);
  CHECK(client.get("k") == Metrics{{"k", {{-20, -2.5}, {10, 1.0}, {20, 2.0}, {30, 3.0}}}});
}

TEST_CASE("get_series keeps the server's key order", "[client][e2e]") {
  TestServer server;
  Client client("127.0.0.1", server.port(), kTimeout);
  client.put("zeta", 1, 1);
  client.put("alpha", 2, 2);
  client.put("mid", 3, 3);
  client.put("zeta", 4, 0);
  std::vector<metrics::Series> series = client.get_series("*");
  REQUIRE(series.size() == 3);
  CHECK(series[0].key == "zeta");
  CHECK(series[0].samples == std::vector<Sample>{{0, 4.0}, {1, 1.0}});
  CHECK(series[1].key == "alpha");
  CHECK(series[2].key == "mid");
  CHECK(client.get_series("missing").empty());
}

TEST_CASE("values round-trip through the server exactly", "[client][e2e]") {
  TestServer server;
  Client client("127.0.0.1", server.port(), kTimeout);
  std::vector<double> values = {
      0.1, 1.0 / 3, -0.0, 5e-324, 1.7976931348623157e+308, 1e16, 0.30000000000000004, 4200000.0};
  for (std::size_t i = 0; i < values.size(); ++i) {
    client.put("v", values[i], static_cast<int64_t>(i));
  }
  std::vector<Sample> got = client.get("v").at("v");
  REQUIRE(got.size() == values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i].value == values[i]);
    CHECK(std::signbit(got[i].value) == std::signbit(values[i]));
  }
}

TEST_CASE("one client uses one connection for all its calls", "[client][e2e]") {
  TestServer server;
  Client client("127.0.0.1", server.port(), kTimeout);
  for (int i = 0; i < 20; ++i) client.put("k", i, i);
  CHECK(client.get("k").at("k").size() == 20);
  CHECK(server.server().session_count() == 1);
}

