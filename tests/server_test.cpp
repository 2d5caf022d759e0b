// End-to-end tests of the server: a real Server (in-process TestServer, or the
// metrics-server binary) on a loopback port chosen by the kernel, spoken to
// with raw bytes. Answers are compared byte for byte with docs/protocol.md.
#include "server.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "log_format.hpp"
#include "metrics/client.hpp"
#include "procfs.hpp"
#include "metrics/protocol.hpp"
#include "service.hpp"
#include "storage.hpp"
#include "wal.hpp"
#include "test_util.hpp"

using metrics::ServerOptions;
using namespace metrics::test;

namespace {

constexpr const char* kWrongCommand = "error\nwrong command\n\n";

// Sends one request and returns its one answer.
std::string ask(RawConnection& c, const std::string& request) {
  c.send(request);
  return c.read_answers();
}

}  // namespace

// docs/protocol.md, "Example (from the course text)".
TEST_CASE("the course's telnet session is answered byte for byte", "[server][e2e]") {
  struct Step {
    const char* request;
    const char* answer;
  };
  const Step session[] = {
      {"get test_key\n", "ok\n\n"},
      {"got test_key\n", "error\nwrong command\n\n"},
      {"put test_key 12.0 1503319740\n", "ok\n\n"},
      {"put test_key 13.0 1503319739\n", "ok\n\n"},
      {"get test_key\n", "ok\ntest_key 13.0 1503319739\ntest_key 12.0 1503319740\n\n"},
      {"put another_key 10 1503319739\n", "ok\n\n"},
      {"get *\n",
       "ok\ntest_key 13.0 1503319739\ntest_key 12.0 1503319740\nanother_key 10.0 1503319739\n\n"},
  };
  TestServer server;
  RawConnection c(server.port());
  for (const Step& step : session) {
    CAPTURE(step.request);
    CHECK(ask(c, step.request) == step.answer);
  }
}

TEST_CASE("each session runs in a thread named session, which ends with its connection",
          "[server][e2e]") {
  TestServer server;
  auto sessions = [] {
    return metrics::proc_threads_named(::getpid(), metrics::kSessionThreadName);
  };
  // The sessions of earlier tests have all been joined, but a thread just
  // joined can still be listed for a moment while the kernel finishes its
  // exit: counting them once, as a baseline, could count one too many.
  // No other server runs in this process, so the count to wait for is none.
  REQUIRE(wait_until([&] { return sessions() == 0; }));
  {
    RawConnection a(server.port());
    RawConnection b(server.port());
    CHECK(ask(a, "put a 1 1\n") == "ok\n\n");
    CHECK(ask(b, "put b 1 1\n") == "ok\n\n");
    CHECK(wait_until([&] { return sessions() == 2; }));
  }
  CHECK(wait_until([&] { return sessions() == 0; }));
}

// docs/protocol.md, "Requests": an empty line gets no answer, so the course's
// "get wrong command test\n\n" gets exactly one.
TEST_CASE("a request followed by a blank line is answered exactly once", "[server][e2e]") {
  TestServer server;
  RawConnection c(server.port());
  c.send("get wrong command test\n\n");
  // Had the blank line been answered, the second answer would be an error
  // instead of the answer to "get x".
  c.send("get x\n");
  CHECK(c.read_answers(2) == std::string(kWrongCommand) + "ok\n\n");
  // Lines of only spaces and tabs are blank too.
  c.send(" \t \n\t\r\n\r\nget x\n");
  CHECK(c.read_answers() == "ok\n\n");
}

// The course's checking scenario: two sessions, errors, repeated misses and
// interleaved puts, then both sessions read the same data.
TEST_CASE("the course's checking scenario with two clients gives exact answers", "[server][e2e]") {
  TestServer server;
  RawConnection a(server.port());
  RawConnection b(server.port());

  CHECK(ask(a, "get wrong command test\n\n") == kWrongCommand);
  CHECK(ask(b, "get missing_key\n") == "ok\n\n");
  CHECK(ask(b, "get missing_key\n") == "ok\n\n");

  // Each put is answered before the next is sent, so the order in which the
  // server processes them is the order written here.
  CHECK(ask(a, "put k1 0.25 1\n") == "ok\n\n");
  CHECK(ask(b, "put k1 2.156 2\n") == "ok\n\n");
  CHECK(ask(a, "put k1 0.35 3\n") == "ok\n\n");
  CHECK(ask(b, "put k2 30 4\n") == "ok\n\n");
  CHECK(ask(a, "put k2 40 5\n") == "ok\n\n");
  // docs/protocol.md, "Responses": the same (key, timestamp) again replaces the value.
  CHECK(ask(b, "put k2 41 5\n") == "ok\n\n");

  const std::string all = "ok\nk1 0.25 1\nk1 2.156 2\nk1 0.35 3\nk2 30.0 4\nk2 41.0 5\n\n";
  const std::string k2 = "ok\nk2 30.0 4\nk2 41.0 5\n\n";
  for (RawConnection* c : {&a, &b}) {
    CHECK(ask(*c, "get *\n") == all);
    CHECK(ask(*c, "get k2\n") == k2);
  }
}

// docs/protocol.md, "Transport and session": several lines in one packet, every
// complete line answered once, in order.
TEST_CASE("ten thousand pipelined requests in one write are answered in order", "[server][e2e]") {
  TestServer server;
  RawConnection c(server.port());

  std::string requests;
  std::string expected;
  std::size_t answers = 0;
  for (int i = 0; i < 5000; ++i) {
    std::string key = "m" + std::to_string(i);
    std::string ts = std::to_string(1000000 + i);
    requests += "put " + key + " " + std::to_string(i) + ".25 " + ts + "\n";
    expected += "ok\n\n";
    requests += "get " + key + "\n";
    expected += "ok\n" + key + " " + std::to_string(i) + ".25 " + ts + "\n\n";
    answers += 2;
    if (i % 100 == 0) {
      // A wrong command, a blank line and a miss, mixed in.
      requests += "got " + key + "\n\nget nothing." + key + "\n";
      expected += std::string(kWrongCommand) + "ok\n\n";
      answers += 2;
    }
  }
  REQUIRE(answers > 10000);

  // The answers are read while the requests are still being written: the
  // server answers as it goes, and neither side may wait on the other.
  std::exception_ptr send_error;
  std::thread writer([&] {
    try {
      c.send(requests);
    } catch (...) {
      send_error = std::current_exception();
    }
  });
  std::string got = c.read_answers(answers);
  writer.join();
  REQUIRE_FALSE(send_error);
  CHECK(got.size() == expected.size());
  CHECK(got == expected);
  CHECK(server.storage().sample_count() == 5000);
}

TEST_CASE("a long run of pipelined puts is applied in order: the last of a key and second wins",
          "[server][e2e]") {
  // A session applies the puts of a read together, a group at a time (and
  // looks keys up ahead): the outcome must still be the puts one by one.
  TestServer server;
  RawConnection c(server.port());
  constexpr int kPuts = 1000;
  std::string requests;
  std::map<int, std::map<int, int>> last;  // key -> second -> value
  for (int i = 0; i < kPuts; ++i) {
    requests += "put k" + std::to_string(i % 3) + " " + std::to_string(i) + " " +
                std::to_string(9 - i % 10) + "\n";
    last[i % 3][9 - i % 10] = i;
  }
  requests += "get *\n";
  std::string expected;
  for (int i = 0; i < kPuts; ++i) expected += "ok\n\n";
  expected += "ok\n";
  for (const auto& [key, samples] : last) {
    for (const auto& [second, value] : samples) {
      expected += "k" + std::to_string(key) + " " + std::to_string(value) + ".0 " +
                  std::to_string(second) + "\n";
    }
  }
  expected += "\n";
  c.send(requests);
  CHECK(c.read_answers(kPuts + 1) == expected);
}

// docs/protocol.md, "Transport and session": one line split across many packets.
TEST_CASE("a request written one byte at a time is answered once", "[server][e2e]") {
  TestServer server;
  RawConnection c(server.port());
  // TCP_NODELAY (set by connect_tcp, checked here) sends each byte at once
  // as its own segment instead of coalescing them.
  int nodelay = 0;
  socklen_t len = sizeof nodelay;
  REQUIRE(::getsockopt(c.fd(), IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) == 0);
  REQUIRE(nodelay != 0);

  for (char byte : std::string("put split.key 12.5 1503319740\n")) c.send(std::string(1, byte));
  CHECK(c.read_answers() == "ok\n\n");
  for (char byte : std::string("get split.key\r\n")) c.send(std::string(1, byte));
  CHECK(c.read_answers() == "ok\nsplit.key 12.5 1503319740\n\n");
}

// docs/protocol.md, "Transport and session" and "Fine print": one '\r' right
// before the '\n' is ignored; anywhere else it is an ordinary byte.
TEST_CASE("a carriage return before the newline is ignored and elsewhere is an error",
          "[server][e2e]") {
  TestServer server;
  RawConnection c(server.port());
  CHECK(ask(c, "put crlf 1.5 10\r\n") == "ok\n\n");
  CHECK(ask(c, "get crlf\r\n") == "ok\ncrlf 1.5 10\n\n");
  CHECK(ask(c, "get crlf\r\r\n") == kWrongCommand);
  // A '\r' inside a token makes it invalid, in a key as in a number.
  CHECK(ask(c, "put cr\rkey 1 1\n") == kWrongCommand);
  CHECK(ask(c, "get cr\rkey\n") == kWrongCommand);
  CHECK(ask(c, "put crlf 2\r 11\n") == kWrongCommand);
  CHECK(ask(c, "\rput crlf 2 11\n") == kWrongCommand);
  CHECK(ask(c, "get crlf\n") == "ok\ncrlf 1.5 10\n\n");
}

// docs/protocol.md, "Limits and bad peers": a client that disconnects mid-line
// ends only its own session and its partial line has no effect.
TEST_CASE("a client that disconnects mid-line leaves no trace and others are served",
          "[server][e2e]") {
  TestServer server;
  RawConnection other(server.port());
  CHECK(ask(other, "put other 1 1\n") == "ok\n\n");

  bool reset = GENERATE(false, true);
  CAPTURE(reset);
  {
    RawConnection quitter(server.port());
    CHECK(ask(quitter, "put quitter 1 1\n") == "ok\n\n");
    REQUIRE(server.server().session_count() == 2);
    quitter.send("put partial 2 2");
    if (reset) quitter.reset();  // otherwise closed normally by the destructor
  }
  REQUIRE(wait_until([&] { return server.server().session_count() == 1; }));
  CHECK(ask(other, "get partial\n") == "ok\n\n");
  CHECK(ask(other, "get *\n") == "ok\nother 1.0 1\nquitter 1.0 1\n\n");
}

// docs/protocol.md, "Limits and bad peers": a client that disconnects in the
// middle of a large answer ends only its own session.
TEST_CASE("a client that disconnects mid-answer leaves the server serving others",
          "[server][e2e]") {
  TestServer server;
  {
    std::string puts;
    for (int i = 0; i < 2000; ++i)
      puts += "put big " + std::to_string(i) + " " + std::to_string(i) + "\n";
    RawConnection loader(server.port());
    loader.send(puts);
    loader.read_answers(2000);
  }
  // The loader's session ends on its own time; wait, so the counts below
  // are exact.
  REQUIRE(wait_until([&] { return server.server().session_count() == 0; }));
  RawConnection other(server.port());
  CHECK(ask(other, "put other 1 1\n") == "ok\n\n");
  {
    RawConnection quitter(server.port());
    // 200 answers of 30 kB each, far more than the socket buffers hold: once
    // the first answer is in, the server is still sending when the
    // connection is reset.
    std::string gets;
    for (int i = 0; i < 200; ++i) gets += "get *\n";
    quitter.send(gets);
    CHECK(quitter.read_answers(1).size() > 25000);
    REQUIRE(server.server().session_count() == 2);
    quitter.reset();
  }
  REQUIRE(wait_until([&] { return server.server().session_count() == 1; }));
  CHECK(ask(other, "get other\n") == "ok\nother 1.0 1\n\n");
}

// docs/protocol.md, "Fine print": after the client shuts its write side, every
// complete line is answered, the unterminated tail is dropped, and the
// server closes.
TEST_CASE("half-close gets every answer then the server closes and drops the tail",
          "[server][e2e]") {
  TestServer server;
  {
    RawConnection c(server.port());
    c.send("put a 1 1\nget a\nget missing\nput tail 2 2");
    c.shutdown_write();
    CHECK(c.read_until_close() == "ok\n\nok\na 1.0 1\n\nok\n\n");
  }
  RawConnection fresh(server.port());
  CHECK(ask(fresh, "get *\n") == "ok\na 1.0 1\n\n");
}

// docs/protocol.md, "Transport and session": many clients at once, nothing lost.
TEST_CASE("fifty clients putting at once all have their puts stored", "[server][e2e]") {
  TestServer server;
  constexpr int kClients = 50;
  constexpr int kPuts = 20;
  // Distinct values that print back exactly as written.
  auto value = [](int t, int i) { return std::to_string(t * 1000 + i) + ".5"; };
  std::vector<std::string> answers(kClients);
  std::vector<std::string> errors(kClients);
  std::vector<std::thread> threads;
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      try {
        RawConnection c(server.port());
        std::string requests;
        for (int i = 0; i < kPuts; ++i) {
          requests +=
              "put client" + std::to_string(t) + " " + value(t, i) + " " + std::to_string(i) + "\n";
        }
        c.send(requests);
        answers[t] = c.read_answers(kPuts);
      } catch (const std::exception& e) {
        errors[t] = e.what();
      }
    });
  }
  for (std::thread& t : threads) t.join();

  std::string all_ok;
  for (int i = 0; i < kPuts; ++i) all_ok += "ok\n\n";
  for (int t = 0; t < kClients; ++t) {
    CAPTURE(t);
    CHECK(errors[t].empty());
    CHECK(answers[t] == all_ok);
  }
  CHECK(server.storage().key_count() == kClients);
  CHECK(server.storage().sample_count() == kClients * kPuts);

  RawConnection fresh(server.port());
  for (int t = 0; t < kClients; ++t) {
    std::string key = "client" + std::to_string(t);
    std::string expected = "ok\n";
    for (int i = 0; i < kPuts; ++i) {
      expected += key + " " + value(t, i) + " " + std::to_string(i) + "\n";
    }
    expected += "\n";
    CHECK(ask(fresh, "get " + key + "\n") == expected);
  }
}

// docs/protocol.md, "Transport and session": what one client put is visible to
// every other client's next get.
TEST_CASE("what one client puts is visible to another client's next get", "[server][e2e]") {
  TestServer server;
  RawConnection writer(server.port());
  RawConnection reader(server.port());
  CHECK(ask(reader, "get shared\n") == "ok\n\n");
  CHECK(ask(writer, "put shared 3.5 100\n") == "ok\n\n");
  CHECK(ask(reader, "get shared\n") == "ok\nshared 3.5 100\n\n");
  CHECK(ask(writer, "put shared 4.5 100\n") == "ok\n\n");
  CHECK(ask(reader, "get shared\n") == "ok\nshared 4.5 100\n\n");
}

// docs/protocol.md, "Responses" (order of a get answer) and "Fine print" (a key's
// place is fixed by its first stored put).
TEST_CASE("get lists keys in first-put order and samples by ascending timestamp", "[server][e2e]") {
  TestServer server;
  RawConnection c(server.port());
  CHECK(ask(c, "put b 1 5\n") == "ok\n\n");
  CHECK(ask(c, "put a 1 3\n") == "ok\n\n");
  CHECK(ask(c, "put b 2 1\n") == "ok\n\n");
  CHECK(ask(c, "put a 3 9\n") == "ok\n\n");
  CHECK(ask(c, "put b 3 -2\n") == "ok\n\n");
  // Neither a rejected put nor a get of a missing key gives `z` its place.
  CHECK(ask(c, "put z nan 1\n") == kWrongCommand);
  CHECK(ask(c, "put z 1 1.5\n") == kWrongCommand);
  CHECK(ask(c, "put z 1\n") == kWrongCommand);
  CHECK(ask(c, "get z\n") == "ok\n\n");
  CHECK(ask(c, "put c 1 1\n") == "ok\n\n");
  CHECK(ask(c, "put z 1 2\n") == "ok\n\n");
  CHECK(ask(c, "get b\n") == "ok\nb 3.0 -2\nb 2.0 1\nb 1.0 5\n\n");
  CHECK(ask(c, "get *\n") ==
        "ok\nb 3.0 -2\nb 2.0 1\nb 1.0 5\na 1.0 3\na 3.0 9\nc 1.0 1\nz 1.0 2\n\n");
}

// docs/protocol.md, "Limits and bad peers" and "Fine print": a line over the limit
// gets one error, in order, when its '\n' arrives; the session continues.
TEST_CASE("an over-long line gets one error in order and the session continues", "[server][e2e]") {
  metrics::ServerOptions options;
  options.max_line_bytes = 64;
  TestServer server(options);
  RawConnection c(server.port());

  // The limit counts the bytes before '\n': 64 pass, 65 do not.
  const std::string key60(60, 'k');
  CHECK(ask(c, "get " + key60 + "\n") == "ok\n\n");
  CHECK(ask(c, "get " + key60 + "x\n") == kWrongCommand);
  // A trailing '\r' counts.
  CHECK(ask(c, "get " + key60 + "\r\n") == kWrongCommand);

  // In one write: a put, a long line, a get.
  c.send("put a 1 1\n" + std::string(100, 'x') + "\nget a\n");
  CHECK(c.read_answers(3) == "ok\n\n" + std::string(kWrongCommand) + "ok\na 1.0 1\n\n");

  // A long line arriving in pieces is discarded as it comes and answered
  // once, when its '\n' arrives; a huge one too.
  c.send("put a 2 2 " + std::string(40, '1'));
  c.send(std::string(40, '2'));
  c.send(std::string(200000, '3'));
  c.send("\nget a\n");
  CHECK(c.read_answers(2) == std::string(kWrongCommand) + "ok\na 1.0 1\n\n");
}

// docs/protocol.md, "Limits and bad peers": a too-long line still unterminated at
// EOF gets no answer.
TEST_CASE("an over-long line unterminated at close gets no answer", "[server][e2e]") {
  metrics::ServerOptions options;
  options.max_line_bytes = 64;
  TestServer server(options);
  RawConnection c(server.port());
  c.send("get a\n" + std::string(1000, 'x'));
  c.shutdown_write();
  CHECK(c.read_until_close() == "ok\n\n");
}

TEST_CASE("a server on the IPv6 loopback serves the protocol", "[server][e2e][ipv6]") {
  metrics::Storage storage;
  metrics::MetricsService service(storage);
  metrics::ServerOptions options;
  options.host = "::1";
  options.port = 0;
  options.log = [](std::string_view) {};
  metrics::Server server(options, service);
  try {
    server.listen();
  } catch (const metrics::SystemError& e) {
    WARN("skipped: cannot listen on ::1 (" << e.what() << ")");
    return;
  }
  std::thread runner([&] { server.run(); });
  try {
    CHECK(server.address() == "[::1]:" + std::to_string(server.port()));
    RawConnection c("::1", server.port());
    CHECK(ask(c, "put v6 1.5 1\n") == "ok\n\n");
    CHECK(ask(c, "get *\n") == "ok\nv6 1.5 1\n\n");
    metrics::Client client("::1", server.port(), 5.0);
    CHECK(client.get("v6").at("v6") == std::vector<metrics::Sample>{{1, 1.5}});
  } catch (...) {
    server.stop();
    runner.join();
    throw;
  }
  server.stop();
  runner.join();
}

TEST_CASE("with a connection limit of 1 strictly sequential clients are all served",
          "[server][e2e][limits]") {
  // A client that has read its answer and closed has ended its session, so the
  // next connection must find its slot free, however late the accept loop
  // gets round to joining the old session's thread.
  ServerOptions options;
  options.max_connections = 1;
  TestServer server(options);
  constexpr int kRounds = 2000;
  int refused = 0;
  std::string first_refusal;
  for (int i = 0; i < kRounds; ++i) {
    RawConnection c(server.port());
    c.send("put seq 1 " + std::to_string(i) + "\n");
    std::string answer = c.read_answers();
    if (answer != "ok\n\n") {
      if (refused == 0) first_refusal = "round " + std::to_string(i) + ": " + answer;
      ++refused;
    }
  }
  INFO(first_refusal);
  CHECK(refused == 0);
  CHECK(server.server().refused_count() == 0);
  // Every acknowledged put is stored: "ok\n", one line per sample, "\n".
  RawConnection check(server.port());
  std::string all = ask(check, "get seq\n");
  CHECK(std::count(all.begin(), all.end(), '\n') == kRounds - refused + 2);
}

TEST_CASE("with a connection limit of 1 a second concurrent connection is refused",
          "[server][e2e][limits]") {
  ServerOptions options;
  options.max_connections = GENERATE(1, 2);
  CAPTURE(options.max_connections);
  TestServer server(options);
  // Connections held open, each with one answered request: exactly the limit
  // are served, and every one past it is refused, however many there are.
  std::vector<std::unique_ptr<RawConnection>> open;
  for (std::size_t i = 0; i < options.max_connections; ++i) {
    open.push_back(std::make_unique<RawConnection>(server.port()));
    CHECK(ask(*open.back(), "put held 1 " + std::to_string(i) + "\n") == "ok\n\n");
  }
  for (int i = 0; i < 3; ++i) {
    RawConnection extra(server.port());
    extra.send("put extra 1 1\n");
    CHECK(extra.read_until_close() == "error\ntoo many connections\n\n");
  }
  CHECK(server.server().refused_count() == 3);
  CHECK(server.server().session_count() == options.max_connections);
  for (auto& c : open) CHECK(ask(*c, "get held\n").rfind("ok\nheld 1.0 0\n", 0) == 0);

  // Closing one frees exactly one slot.
  open.pop_back();
  REQUIRE(wait_until(
      [&] { return server.server().session_count() == options.max_connections - 1; }));
  RawConnection next(server.port());
  CHECK(ask(next, "put next 1 1\n") == "ok\n\n");
  RawConnection over(server.port());
  CHECK(over.read_until_close() == "error\ntoo many connections\n\n");
}

TEST_CASE("at the connection limit a connection waits for a slot and takes it in arrival order",
          "[server][e2e][limits]") {
  ServerOptions options;
  options.max_connections = 1;
  TestServer server(options);
  auto holder = std::make_unique<RawConnection>(server.port());
  CHECK(ask(*holder, "put held 1 1\n") == "ok\n\n");
  // Two connections arrive while the slot is taken; neither is answered yet.
  RawConnection first(server.port());
  first.send("put first 1 1\n");
  RawConnection second(server.port());
  second.send("put second 1 1\n");
  // The holder leaves: the first waiting connection gets the slot, and the
  // second, still waiting behind it, is refused when its wait is over.
  holder.reset();
  CHECK(first.read_answers() == "ok\n\n");
  CHECK(second.read_until_close() == "error\ntoo many connections\n\n");
  CHECK(server.server().refused_count() == 1);
}

TEST_CASE("at the connection limit at most 64 connections wait; the next is refused at once",
          "[server][e2e][limits]") {
  ServerOptions options;
  options.max_connections = 1;
  TestServer server(options);
  RawConnection holder(server.port());
  CHECK(ask(holder, "put held 1 1\n") == "ok\n\n");
  std::vector<std::unique_ptr<RawConnection>> waiting;
  for (int i = 0; i < 64; ++i) waiting.push_back(std::make_unique<RawConnection>(server.port()));
  // The 65th finds the queue full: refused as it is accepted, while every
  // one of the 64 is still waiting for its answer (they wait up to 1 s).
  RawConnection over(server.port());
  CHECK(over.read_until_close() == "error\ntoo many connections\n\n");
  std::vector<pollfd> fds;
  for (const auto& c : waiting) fds.push_back(pollfd{c->fd(), POLLIN, 0});
  CHECK(::poll(fds.data(), fds.size(), 0) == 0);
  // Then their wait ends and each is refused.
  for (auto& c : waiting) CHECK(c->read_until_close() == "error\ntoo many connections\n\n");
  CHECK(server.server().refused_count() == 65);
}

// ---------------------------------------------------------------------------
// run_until_stop_signal in a program that does not block the stop signals

namespace {

// Waits (at most kDeadline) for the child `pid` to end and returns its
// waitpid status; kills it by PID and fails if it does not end in time.
int wait_child(pid_t pid) {
  int status = 0;
  bool ended = wait_until([&] { return ::waitpid(pid, &status, WNOHANG) == pid; });
  if (!ended) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    FAIL("the child process did not end within the deadline");
  }
  return status;
}

}  // namespace

TEST_CASE("run_until_stop_signal ended by stop() sends no signal to an embedding process",
          "[server][signals]") {
  // A program that embeds the server without block_stop_signals() keeps
  // SIGTERM's default action in its main thread: any SIGTERM to the process
  // kills it. run_until_stop_signal must release its signal thread without
  // one. Run in a child, so that such a signal kills the child, not the
  // test run.
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 0;
    try {
      ::signal(SIGTERM, SIG_DFL);  // Catch2 installs a handler for it
      ::signal(SIGINT, SIG_DFL);
      sigset_t stop_signals;
      sigemptyset(&stop_signals);
      sigaddset(&stop_signals, SIGTERM);
      sigaddset(&stop_signals, SIGINT);
      ::pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
      metrics::Storage storage;
      metrics::MetricsService service(storage);
      ServerOptions options;
      options.port = 0;
      options.quiet = true;
      metrics::Server server(options, service);
      server.listen();
      // Stops the server once it has served a request, so run() is running.
      std::thread stopper([&] {
        try {
          RawConnection c(server.port());
          if (ask(c, "put embedded 1 1\n") != "ok\n\n") code = 3;
        } catch (...) {
          code = 4;
        }
        server.stop();
      });
      metrics::run_until_stop_signal(server);
      stopper.join();
    } catch (...) {
      code = 5;
    }
    ::_exit(code);
  }
  int status = wait_child(pid);
  INFO("child status " << status << (WIFSIGNALED(status) ? " (killed by a signal)" : ""));
  CHECK(WIFEXITED(status));
  CHECK((WIFSIGNALED(status) ? WTERMSIG(status) : 0) == 0);
  CHECK((WIFEXITED(status) ? WEXITSTATUS(status) : -1) == 0);
}

// ---------------------------------------------------------------------------
// The metrics-server program

namespace {

// Stops `server` with SIGTERM and checks that it exited with status 0.
void check_sigterm_exits_0(ServerProcess& server) {
  ProcessResult result = server.process.stop(SIGTERM);
  CHECK(result.signal == 0);
  CHECK(result.exit_code == 0);
}

}  // namespace

TEST_CASE("metrics-server prints its real address and serves on it", "[server][binary]") {
  ServerProcess server({"127.0.0.1", "0"});
  REQUIRE(server.port != 0);
  CHECK(server.listening_line == "listening on 127.0.0.1:" + std::to_string(server.port));
  {
    RawConnection c(server.port);
    CHECK(ask(c, "put palm.cpu 10.5 1501864247\n") == "ok\n\n");
    CHECK(ask(c, "get *\n") == "ok\npalm.cpu 10.5 1501864247\n\n");
  }
  check_sigterm_exits_0(server);
}

TEST_CASE("metrics-server takes options alongside the positional host and port",
          "[server][binary]") {
  ServerProcess server({"--max-line-bytes", "16", "--quiet", "127.0.0.1", "0"});
  RawConnection c(server.port);
  CHECK(ask(c, "get 0123456789ab\n") == "ok\n\n");  // 16 bytes
  CHECK(ask(c, "get 0123456789abc\n") == kWrongCommand);
  ProcessResult result = server.process.stop(SIGTERM);
  CHECK(result.exit_code == 0);
}

TEST_CASE("metrics-server --help and --version exit 0", "[server][binary]") {
  ProcessResult help = run_process({server_binary(), "--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("metrics-server") != std::string::npos);
  CHECK(help.out.find("--max-line-bytes") != std::string::npos);

  ProcessResult version = run_process({server_binary(), "--version"});
  CHECK(version.exit_code == 0);
  CHECK(version.out.find("metrics-server ") == 0);
}

TEST_CASE("metrics-server rejects a bad option with a non-zero exit", "[server][binary]") {
  ProcessResult result = run_process({server_binary(), "127.0.0.1", "notaport"});
  CHECK(result.exit_code != 0);
  CHECK_FALSE(result.err.empty());
}

TEST_CASE("metrics-server refuses an out-of-range or malformed option value with exit 2",
          "[server][binary][options]") {
  const std::string max_line = std::to_string(metrics::kMaxLogKeyBytes);
  // Each: the arguments after the host and port, and what the one-line
  // message must name.
  struct Case {
    std::vector<std::string> args;
    std::string names;
  };
  const std::vector<Case> cases = {
      {{"--max-line-bytes", "-5"}, "--max-line-bytes"},
      {{"--max-line-bytes", "0"}, "--max-line-bytes"},
      {{"--max-line-bytes", std::to_string(metrics::kMaxLogKeyBytes + 1ull)}, max_line},
      {{"--max-line-bytes", "1100000000"}, max_line},
      {{"--max-line-bytes", "18446744073709551617"}, "--max-line-bytes"},
      {{"--max-line-bytes", "1.5"}, "--max-line-bytes"},
      {{"--max-line-bytes", "inf"}, "--max-line-bytes"},
      {{"--max-line-bytes", "abc"}, "--max-line-bytes"},
      {{"--max-connections", "-1"}, "--max-connections"},
      {{"--max-connections", "0"}, "--max-connections"},
      {{"--max-connections", "1000001"}, "1000000"},
      {{"--max-connections", "18446744073709551616"}, "--max-connections"},
      {{"--max-connections", "nan"}, "--max-connections"},
      {{"--max-connections", "0x10"}, "--max-connections"},
      {{"--idle-timeout", "-1"}, "--idle-timeout"},
      {{"--idle-timeout", "-0.5"}, "--idle-timeout"},
      {{"--idle-timeout", "0.0001"}, "0.001"},
      {{"--idle-timeout", "1000000.5"}, "1000000"},
      {{"--idle-timeout", "1e10"}, "--idle-timeout"},
      {{"--idle-timeout", "1e400"}, "--idle-timeout"},
      {{"--idle-timeout", "inf"}, "--idle-timeout"},
      {{"--idle-timeout", "-inf"}, "--idle-timeout"},
      {{"--idle-timeout", "nan"}, "--idle-timeout"},
      {{"--idle-timeout", "abc"}, "--idle-timeout"},
      {{"--idle-timeout"}, "--idle-timeout"},
      {{"--compact-min-bytes", "-5"}, "--compact-min-bytes"},
      {{"--compact-min-bytes", "1099511627777"}, "1099511627776"},
      {{"--compact-min-bytes", "18446744073709551616"}, "--compact-min-bytes"},
      {{"--compact-min-bytes", "1e3"}, "--compact-min-bytes"},
      {{"--compact-min-bytes", "abc"}, "--compact-min-bytes"},
      {{"--fsync", "sometimes"}, "--fsync"},
      {{"--data-file", ""}, "--data-file"},
      {{"--bogus"}, "--bogus"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {server_binary(), "127.0.0.1", "0"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    CAPTURE(c.args);
    ProcessResult result = run_process(argv);
    CAPTURE(result.err);
    CHECK(result.exit_code == 2);
    CHECK(result.err.find(c.names) != std::string::npos);
    // One line, without CLI11's 300-digit DBL_MAX.
    CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
    CHECK(result.err.find("179769") == std::string::npos);
    CHECK(result.err.find("listening") == std::string::npos);
  }
}

TEST_CASE("metrics-server refuses a port or host it cannot take with exit 2",
          "[server][binary][options]") {
  const std::vector<std::vector<std::string>> cases = {
      {"127.0.0.1", "-1"},    {"127.0.0.1", "65536"}, {"127.0.0.1", "70000"},
      {"127.0.0.1", "1e3"},   {"127.0.0.1", "abc"},   {"127.0.0.1", "18446744073709551616"},
      {"127.0.0.1", "0x50"},  {"", "0"},
  };
  for (const auto& args : cases) {
    std::vector<std::string> argv = {server_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    CAPTURE(args);
    ProcessResult result = run_process(argv);
    CAPTURE(result.err);
    CHECK(result.exit_code == 2);
    CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
    CHECK(result.err.find("listening") == std::string::npos);
  }
}

TEST_CASE("metrics-server accepts every option at both ends of its range",
          "[server][binary][options]") {
  TempDir dir;
  SECTION("the largest values") {
    ServerProcess server({"127.0.0.1", "0", "--max-line-bytes",
                          std::to_string(metrics::kMaxLogKeyBytes), "--max-connections", "1000000",
                          "--idle-timeout", "1000000", "--compact-min-bytes", "1099511627776",
                          "--data-file", dir.file("data.log"), "--fsync", "always"});
    RawConnection c(server.port);
    // The longest idle timeout does not close a session early.
    CHECK(ask(c, "put big 1 1\n") == "ok\n\n");
    CHECK(ask(c, "get big\n") == "ok\nbig 1.0 1\n\n");
    CHECK(server.process.stop(SIGTERM).exit_code == 0);
  }
  SECTION("the smallest values") {
    ServerProcess server({"127.0.0.1", "0", "--max-line-bytes", "1", "--max-connections", "1",
                          "--idle-timeout", "0", "--compact-min-bytes", "0", "--data-file",
                          dir.file("data.log"), "--fsync", "no"});
    RawConnection c(server.port);
    CHECK(ask(c, "get *\n") == kWrongCommand);
    CHECK(server.process.stop(SIGTERM).exit_code == 0);
  }
  SECTION("the shortest idle timeout") {
    ServerProcess server({"127.0.0.1", "0", "--idle-timeout", "0.001"});
    CHECK(server.process.stop(SIGTERM).exit_code == 0);
  }
  SECTION("numbers with leading zeros, which are decimal") {
    ServerProcess server({"127.0.0.1", "00", "--max-line-bytes", "0016", "--quiet"});
    RawConnection c(server.port);
    // 15 bytes: within a limit of 16, over one of 14 (0016 read as octal).
    CHECK(ask(c, "get 0123456789a\n") == "ok\n\n");
    CHECK(server.process.stop(SIGTERM).exit_code == 0);
  }
}

TEST_CASE("metrics-server --help gives each option's range", "[server][binary][options]") {
  ProcessResult help = run_process({server_binary(), "--help"});
  CHECK(help.exit_code == 0);
  for (const char* range : {"0 to 65535", "1 to 1073741824", "1 to 1000000", "0.001 to 1000000",
                            "0 to 1099511627776"}) {
    CAPTURE(range);
    CHECK(help.out.find(range) != std::string::npos);
  }
}

TEST_CASE("metrics-server exits 0 on SIGTERM or SIGINT with an idle client connected",
          "[server][binary]") {
  int sig = GENERATE(SIGTERM, SIGINT);
  CAPTURE(sig);
  ServerProcess server({"127.0.0.1", "0"});
  RawConnection idle(server.port);
  // One round trip: the session thread exists and sits in recv.
  CHECK(ask(idle, "get k\n") == "ok\n\n");
  ProcessResult result = server.process.stop(sig);
  CHECK(result.signal == 0);
  CHECK(result.exit_code == 0);
  // The server ended the session on its way out.
  CHECK(idle.read_until_close().empty());
}

TEST_CASE("metrics-server keeps serving through SIGHUP and the user signals and exits 0 on SIGTERM",
          "[server][binary][signals]") {
  ServerProcess server({"127.0.0.1", "0"});
  RawConnection before(server.port);
  CHECK(ask(before, "put hup 1 1\n") == "ok\n\n");
  for (int sig : {SIGHUP, SIGUSR1, SIGUSR2}) REQUIRE(::kill(server.process.pid(), sig) == 0);
  // A fresh connection after the signals: the server is still serving, and
  // the session opened before them is untouched.
  RawConnection after(server.port);
  CHECK(ask(after, "put hup 2 2\n") == "ok\n\n");
  CHECK(ask(before, "get hup\n") == "ok\nhup 1.0 1\nhup 2.0 2\n\n");
  check_sigterm_exits_0(server);
}
