// Tests of metrics-cli run as a process (docs/protocol.md, "The command-line
// tool"), against an in-process TestServer or a scripted FakeServer.
#include <catch2/catch.hpp>
#include <chrono>
#include <ctime>
#include <string>
#include <vector>

#include "test_util.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using namespace metrics::test;

namespace {

// Blanks that hide METRICS_HOST/METRICS_PORT of the environment the tests
// run in (the CLI treats an empty variable as unset).
const std::vector<std::string> kNoEnvironment = {"METRICS_HOST=", "METRICS_PORT="};

// Runs metrics-cli with `args` and the environment `env`.
ProcessResult cli(std::vector<std::string> args,
                  const std::vector<std::string>& env = kNoEnvironment) {
  args.insert(args.begin(), cli_binary());
  return run_process(args, env);
}

// Runs `metrics-cli --port PORT args...`.
ProcessResult cli_at(uint16_t port, std::vector<std::string> args) {
  args.insert(args.begin(), {"--port", std::to_string(port)});
  return cli(std::move(args));
}

// A successful run prints nothing on stderr.
void check_success(const ProcessResult& r) {
  CHECK(r.signal == 0);
  CHECK(r.exit_code == 0);
  CHECK(r.err == "");
}

// Checks that `r` succeeded and returns its stdout.
std::string output_of_success(const ProcessResult& r) {
  check_success(r);
  return r.out;
}

// A failure prints nothing on stdout and exactly one line, prefixed
// "metrics-cli: ", on stderr.
void check_failure(const ProcessResult& r, int exit_code) {
  CAPTURE(r.err);
  CHECK(r.signal == 0);
  CHECK(r.exit_code == exit_code);
  CHECK(r.out == "");
  CHECK_THAT(r.err, StartsWith("metrics-cli: "));
  CHECK(r.err.find('\n') == r.err.size() - 1);
}

// Checks that `r` failed with `exit_code` and returns its stderr.
std::string error_of_failure(const ProcessResult& r, int exit_code) {
  check_failure(r, exit_code);
  return r.err;
}

}  // namespace

TEST_CASE("metrics-cli put then get round-trips a sample", "[cli]") {
  TestServer server;
  CHECK(output_of_success(cli_at(server.port(), {"put", "palm.cpu", "10.5", "1501864247"})) == "");
  CHECK(output_of_success(cli_at(server.port(), {"get", "palm.cpu"})) ==
        "palm.cpu 10.5 1501864247\n");
}

TEST_CASE("metrics-cli put without a timestamp stores the current time", "[cli]") {
  TestServer server;
  std::time_t before = std::time(nullptr);
  check_success(cli_at(server.port(), {"put", "palm.cpu", "10"}));
  std::time_t after = std::time(nullptr);
  std::vector<metrics::Sample> samples;
  REQUIRE(server.storage().copy_series("palm.cpu", &samples));
  REQUIRE(samples.size() == 1);
  CHECK(samples[0].value == 10.0);
  CHECK(samples[0].timestamp >= before);
  CHECK(samples[0].timestamp <= after);

  CHECK(output_of_success(cli_at(server.port(), {"get", "palm.cpu"})) ==
        "palm.cpu 10.0 " + std::to_string(samples[0].timestamp) + "\n");
}

// docs/protocol.md, "The command-line tool": lines exactly as the server sent
// them, keys in the server's order, nothing for no match.
TEST_CASE("metrics-cli get prints KEY VALUE TIMESTAMP lines in the server's order", "[cli]") {
  TestServer server;
  server.storage().put("zeta", 20, 2.0);
  server.storage().put("alpha", 5, 0.0001);
  server.storage().put("zeta", 10, 1e16);
  server.storage().put("alpha", 1, -0.0);

  CHECK(output_of_success(cli_at(server.port(), {"get", "*"})) ==
        "zeta 1e+16 10\nzeta 2.0 20\nalpha -0.0 1\nalpha 0.0001 5\n");

  CHECK(output_of_success(cli_at(server.port(), {"get", "missing"})) == "");
}

TEST_CASE("metrics-cli takes negative numbers without --", "[cli]") {
  TestServer server;
  check_success(cli_at(server.port(), {"put", "k", "-5", "-10"}));
  check_success(cli_at(server.port(), {"put", "k", "-1.5e-3", "-9"}));
  CHECK(output_of_success(cli_at(server.port(), {"get", "k"})) == "k -5.0 -10\nk -0.0015 -9\n");
}

TEST_CASE("metrics-cli takes options before or after the subcommand", "[cli]") {
  TestServer server;
  const std::string port = std::to_string(server.port());
  check_success(
      cli({"--host", "127.0.0.1", "--port", port, "--timeout", "5", "put", "a", "1", "1"}));
  check_success(cli({"put", "b", "2", "2", "--port", port}));
  check_success(
      cli({"--host", "127.0.0.1", "put", "c", "3", "3", "--timeout", "2.5", "--port", port}));
  CHECK(output_of_success(cli({"get", "*", "--port", port, "--host", "127.0.0.1"})) ==
        "a 1.0 1\nb 2.0 2\nc 3.0 3\n");
}

// docs/protocol.md, "The command-line tool": the design's own lines work
// verbatim once METRICS_HOST/METRICS_PORT name the server.
TEST_CASE("metrics-cli defaults to METRICS_HOST and METRICS_PORT", "[cli]") {
  TestServer server;
  const std::vector<std::string> env = {"METRICS_HOST=127.0.0.1",
                                        "METRICS_PORT=" + std::to_string(server.port())};
  check_success(cli({"put", "palm.cpu", "10.5", "1501864247"}, env));
  CHECK(output_of_success(cli({"get", "*"}, env)) == "palm.cpu 10.5 1501864247\n");
}

TEST_CASE("metrics-cli --port and --host override the environment", "[cli]") {
  TestServer server;
  RefusedPort refused;
  const std::vector<std::string> env = {"METRICS_HOST=127.0.0.1",
                                        "METRICS_PORT=" + std::to_string(refused.port())};
  // The environment alone points at a port where nothing listens...
  CHECK_THAT(error_of_failure(cli({"get", "*"}, env), kExitFailure),
             Contains("connect 127.0.0.1:" + std::to_string(refused.port())));
  // ...and the options win over it.
  check_success(cli({"put", "k", "1", "1", "--port", std::to_string(server.port())}, env));
  const std::vector<std::string> bad_host = {"METRICS_HOST=127.0.0.2",
                                             "METRICS_PORT=" + std::to_string(server.port())};
  CHECK(output_of_success(cli({"--host", "127.0.0.1", "get", "k"}, bad_host)) == "k 1.0 1\n");
}

// docs/protocol.md, "The command-line tool": a host name is tried on every
// address it resolves to (localhost may give ::1 first; the server is on
// 127.0.0.1 only).
TEST_CASE("metrics-cli reaches a server by host name", "[cli]") {
  TestServer server;
  check_success(cli_at(server.port(), {"--host", "localhost", "put", "k", "1", "1"}));
  CHECK(server.storage().sample_count() == 1);
}

TEST_CASE("metrics-cli --timeout ends a wait for a server that never answers", "[cli]") {
  FakeServer silent;
  CHECK_THAT(
      error_of_failure(cli_at(silent.port(), {"--timeout", "0.2", "get", "k"}), kExitFailure),
      Contains("timed out"));
}

// A handshake across a real network takes a round trip that a loopback one
// does not; the slow listener makes it take a SYN retransmit (about 1 s).
TEST_CASE("metrics-cli waits for a handshake that takes a SYN retransmit", "[cli]") {
  std::vector<std::string> args = GENERATE(as<std::vector<std::string>>(),
                                           std::vector<std::string>{},  // the default
                                           std::vector<std::string>{"--timeout", "0"},
                                           std::vector<std::string>{"--timeout", "5"});
  CAPTURE(args);
  args.insert(args.end(), {"put", "k", "1", "1"});
  SlowHandshakeListener::Outcome outcome =
      after_a_slow_handshake([&](uint16_t port) { check_success(cli_at(port, args)); });
  CHECK(outcome.syn_dropped);
  CHECK(outcome.request == "put k 1.0 1\n");
}

TEST_CASE("metrics-cli --timeout bounds a connect that gets no handshake", "[cli]") {
  SlowHandshakeListener listener;  // its accept queue stays full
  auto start = std::chrono::steady_clock::now();
  CHECK(error_of_failure(cli_at(listener.port(), {"--timeout", "0.3", "put", "k", "1"}),
                         kExitFailure) ==
        "metrics-cli: connect 127.0.0.1:" + std::to_string(listener.port()) +
            ": timed out after 0.3s\n");
  // Not before the timeout ran out (an upper bound would depend on the load).
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(250));
}

// A tool for cron jobs must not hang on a port where something else
// listens and never answers: with no --timeout it waits 10 s per step.
TEST_CASE("metrics-cli without --timeout gives up on a server that never answers", "[cli]") {
  FakeServer silent;
  ProcessResult r =
      run_process({cli_binary(), "--port", std::to_string(silent.port()), "put", "a", "1"},
                  kNoEnvironment, std::chrono::seconds(30));
  check_failure(r, kExitFailure);
  CHECK(r.err == "metrics-cli: receive from 127.0.0.1:" + std::to_string(silent.port()) +
                     ": timed out after 10s\n");
}

TEST_CASE("metrics-cli --timeout 0 means no limit", "[cli]") {
  TestServer server;
  check_success(cli_at(server.port(), {"--timeout", "0", "put", "k", "1", "1"}));
  CHECK(output_of_success(cli_at(server.port(), {"get", "k", "--timeout", "0"})) == "k 1.0 1\n");
}

TEST_CASE("metrics-cli accepts a huge --timeout", "[cli]") {
  TestServer server;
  check_success(cli_at(server.port(), {"--timeout", "1e300", "put", "k", "1", "1"}));
  CHECK(output_of_success(cli_at(server.port(), {"get", "k", "--timeout", "4294968"})) ==
        "k 1.0 1\n");
}

TEST_CASE("metrics-cli reports a server error with its reason and exit 1", "[cli]") {
  FakeServer fake({reply("error\nstorage failure\n\n"), reply("error\nstorage failure\n\n")});
  CHECK(error_of_failure(cli_at(fake.port(), {"--timeout", "5", "get", "k"}), kExitFailure) ==
        "metrics-cli: server error: storage failure\n");
  CHECK(error_of_failure(cli_at(fake.port(), {"--timeout", "5", "put", "k", "1", "1"}),
                         kExitFailure) == "metrics-cli: server error: storage failure\n");
}

// A reason is one line in the protocol, but a peer may send more; the CLI
// promises one line on stderr, so line breaks, other control bytes and the
// backslash that starts an escape come out escaped.
TEST_CASE("metrics-cli prints a multi-line server reason on one line, escaped", "[cli]") {
  FakeServer fake({reply("error\nline one\nline two\n\n"), reply("error\nline one\nline two\n\n"),
                   reply("error\nbell\a tab\t cr\r back\\slash esc\x1b[31m del\x7f\n\n")});
  CHECK(error_of_failure(cli_at(fake.port(), {"--timeout", "5", "get", "k"}), kExitFailure) ==
        "metrics-cli: server error: line one\\nline two\n");
  CHECK(error_of_failure(cli_at(fake.port(), {"--timeout", "5", "put", "k", "1", "1"}),
                         kExitFailure) == "metrics-cli: server error: line one\\nline two\n");
  CHECK(error_of_failure(cli_at(fake.port(), {"--timeout", "5", "get", "k"}), kExitFailure) ==
        "metrics-cli: server error: bell\\x07 tab\\t cr\\r back\\\\slash esc\\x1b[31m "
        "del\\x7f\n");
}

TEST_CASE("metrics-cli prints a malformed answer's control bytes escaped", "[cli]") {
  FakeServer fake({reply("ok\r\n\n")});
  CHECK_THAT(error_of_failure(cli_at(fake.port(), {"--timeout", "5", "get", "k"}), kExitFailure),
             Contains("malformed answer") && Contains("unknown status 'ok\\r'"));
}

TEST_CASE("metrics-cli reports a malformed answer with exit 1 and prints no partial output",
          "[cli]") {
  std::string answer = GENERATE(as<std::string>(), "ok\nk 1.0\n\n", "ok\nk 1.0 1\nk bad 2\n\n",
                                "ok\nk 1.0 1\nk 2.0 2 extra\n\n", "hello\n\n");
  CAPTURE(answer);
  FakeServer fake({reply(answer)});
  CHECK_THAT(error_of_failure(cli_at(fake.port(), {"--timeout", "5", "get", "k"}), kExitFailure),
             Contains("malformed answer"));
}

TEST_CASE("metrics-cli reports a connection closed mid-answer with exit 1", "[cli]") {
  FakeServer fake({reply("ok\nk 1.0 1\n", /*close=*/true)});
  CHECK_THAT(error_of_failure(cli_at(fake.port(), {"--timeout", "5", "get", "k"}), kExitFailure),
             Contains("connection closed"));
}

TEST_CASE("metrics-cli reports a refused connection with exit 1", "[cli]") {
  RefusedPort refused;
  std::vector<std::string> args =
      GENERATE(as<std::vector<std::string>>(), std::vector<std::string>{"get", "k"},
               std::vector<std::string>{"put", "k", "1"});
  CHECK(error_of_failure(cli_at(refused.port(), args), kExitFailure) ==
        "metrics-cli: connect 127.0.0.1:" + std::to_string(refused.port()) +
            ": Connection refused\n");
}

// docs/protocol.md, "The command-line tool": exit 2 on a usage error, and then
// nothing is sent.
TEST_CASE("metrics-cli exits 2 on a usage error and stores nothing", "[cli]") {
  TestServer server;
  std::vector<std::string> args =
      GENERATE(as<std::vector<std::string>>(), std::vector<std::string>{},  // no subcommand
               std::vector<std::string>{"put", "k"},                        // missing value
               std::vector<std::string>{"put"},                             // missing key
               std::vector<std::string>{"get"},                             // missing key
               std::vector<std::string>{"put", "k", "abc"},                 // value not a number
               std::vector<std::string>{"put", "k", "nan"},                 // value not finite
               std::vector<std::string>{"put", "k", "inf"},                 // value not finite
               std::vector<std::string>{"put", "k", "1e999"},               // value overflows
               std::vector<std::string>{"put", "k", "0x10"},                // hex float
               std::vector<std::string>{"put", "k", "1", "1.5"},  // timestamp not an integer
               std::vector<std::string>{"put", "k", "1", "1e9"},  // timestamp not an integer
               std::vector<std::string>{"put", "k", "1", "99999999999999999999"},  // out of range
               std::vector<std::string>{"put", "a b", "1"},              // key with a space
               std::vector<std::string>{"put", "a\tb", "1"},             // key with a tab
               std::vector<std::string>{"get", "a b"},                   // key with a space
               std::vector<std::string>{"put", "*", "1"},                // '*' is for get only
               std::vector<std::string>{"put", "", "1"},                 // empty key
               std::vector<std::string>{"get", ""},                      // empty key
               std::vector<std::string>{"fetch", "k"},                   // unknown subcommand
               std::vector<std::string>{"put", "k", "1", "2", "3"},      // extra argument
               std::vector<std::string>{"put", "k", "1", ""},            // empty timestamp
               std::vector<std::string>{"--timeout", "-1", "get", "k"},  // timeout negative
               std::vector<std::string>{"--timeout", "-0.5", "get", "k"},  // timeout negative
               std::vector<std::string>{"--timeout", "", "get", "k"},    // timeout empty
               std::vector<std::string>{"--timeout", "abc", "get", "k"}  // timeout not a number
      );
  std::string shown;
  for (const std::string& a : args) shown += "'" + a + "' ";
  CAPTURE(shown);
  ProcessResult r = cli_at(server.port(), args);
  check_failure(r, kExitUsage);
  CHECK(server.storage().key_count() == 0);
}

// One line on stderr even when the argument at fault holds a line break.
TEST_CASE("metrics-cli prints a usage error about an argument with a newline on one line",
          "[cli]") {
  std::vector<std::string> args =
      GENERATE(as<std::vector<std::string>>(), std::vector<std::string>{"put", "a\nb", "1"},
               std::vector<std::string>{"get", "a\nb"},
               std::vector<std::string>{"put", "k", "1\n2"},
               std::vector<std::string>{"put", "k", "1", "1\n2"},
               std::vector<std::string>{"--timeout", "1\n2", "get", "k"},
               std::vector<std::string>{"--port", "1\n2", "get", "k"},
               std::vector<std::string>{"put", "k", "1", "2", "3\n4"});  // CLI11's message
  CAPTURE(args);
  CHECK_THAT(error_of_failure(cli(args), kExitUsage), Contains("\\n"));
}

TEST_CASE("metrics-cli prints a bad METRICS_PORT with a newline on one line", "[cli]") {
  CHECK(error_of_failure(cli({"get", "k"}, {"METRICS_HOST=", "METRICS_PORT=1\n2"}), kExitUsage) ==
        "metrics-cli: METRICS_PORT '1\\n2' is not a port number (1-65535)\n");
}

TEST_CASE("metrics-cli exits 2 on a port that is not a port", "[cli]") {
  std::string port = GENERATE(as<std::string>(), "0", "65536", "abc", "-1");
  CAPTURE(port);
  check_failure(cli({"--port", port, "get", "k"}), kExitUsage);
  check_failure(cli({"get", "k"}, {"METRICS_HOST=", "METRICS_PORT=" + port}), kExitUsage);
}

TEST_CASE("metrics-cli --port makes a bad METRICS_PORT harmless", "[cli]") {
  TestServer server;
  const std::vector<std::string> env = {"METRICS_HOST=127.0.0.1", "METRICS_PORT=abc"};
  check_success(cli({"--port", std::to_string(server.port()), "put", "k", "1", "1"}, env));
  CHECK(server.storage().sample_count() == 1);
}

// Proves "nothing is sent" on the wire: a usage error opens no connection.
TEST_CASE("metrics-cli opens no connection on a usage error", "[cli]") {
  FakeServer fake({reply("ok\n\n")});
  check_failure(cli_at(fake.port(), {"put", "k", "abc"}), kExitUsage);
  check_failure(cli_at(fake.port(), {"put", "a b", "1"}), kExitUsage);
  check_failure(cli_at(fake.port(), {"get", ""}), kExitUsage);
  check_failure(cli_at(fake.port(), {"put", "k", "1", ""}), kExitUsage);
  // The fake server accepts connections in the order they were made, so
  // once it has answered this one, any earlier one would have been counted.
  ProcessResult marker = cli_at(fake.port(), {"--timeout", "5", "get", "marker"});
  check_success(marker);
  CHECK(fake.accepted() == 1);
  CHECK(fake.received() == "get marker\n");
}

TEST_CASE("metrics-cli --help and --version exit 0", "[cli]") {
  ProcessResult help = cli({"--help"});
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.out, Contains("put") && Contains("get") && Contains("--timeout"));
  // The default timeout and the way to lift it are in the help.
  CHECK_THAT(help.out, Contains("=10") && Contains("0 for no limit"));
  ProcessResult version = cli({"--version"});
  CHECK(version.exit_code == 0);
  CHECK_THAT(version.out, StartsWith("metrics-cli "));
}
