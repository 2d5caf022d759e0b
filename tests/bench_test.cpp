// Tests of metrics-bench run as a process: that it loads a real server with
// the requests it claims, and that a wrong, missing or unreachable answer
// fails the run instead of inflating its numbers.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "test_util.hpp"

using Catch::Matchers::Contains;
using namespace metrics::test;

namespace {

// Runs `metrics-bench --port PORT args...`.
ProcessResult bench(uint16_t port, std::vector<std::string> args) {
  args.insert(args.begin(), {bench_binary(), "--port", std::to_string(port)});
  return run_process(args);
}

// A run in which all `requests` were answered right.
void check_all_right(const ProcessResult& r, int requests) {
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains(std::to_string(requests) + " answered right, 0 failed"));
}

}  // namespace

TEST_CASE("metrics-bench stores one new sample per put it counts", "[bench]") {
  TestServer server;
  ProcessResult r = bench(server.port(), {"-c", "3", "-n", "200", "-P", "8", "--keys", "5"});
  check_all_right(r, 200);
  CHECK(server.storage().sample_count() == 200);
  CHECK(server.storage().key_count() == 5);
}

TEST_CASE("metrics-bench gets preloaded samples and checks each answer", "[bench]") {
  TestServer server;
  ProcessResult r = bench(server.port(), {"--mode", "get", "--keys", "3", "--samples-per-key",
                                          "10", "-c", "2", "-n", "30", "-P", "4"});
  check_all_right(r, 30);
  CHECK(server.storage().key_count() == 3);
  CHECK(server.storage().sample_count() == 30);
}

TEST_CASE("metrics-bench checks 'get *' while background puts leave the data unchanged",
          "[bench]") {
  TestServer server;
  ProcessResult r = bench(server.port(), {"--mode", "get-all", "--keys", "4", "--samples-per-key",
                                          "5", "-c", "1", "-n", "20", "--background", "2"});
  check_all_right(r, 20);
  CHECK(server.storage().sample_count() == 20);
}

TEST_CASE("metrics-bench counts a wrong answer and exits 1", "[bench]") {
  FakeServer fake({reply("ok\n\n"), reply("error\nwrong command\n\n")});
  ProcessResult r = bench(fake.port(), {"-c", "1", "-n", "2", "-P", "1"});
  CHECK(r.exit_code == kExitFailure);
  CHECK_THAT(r.out, Contains("1 answered right, 1 failed"));
  CHECK_THAT(r.err, Contains("wrong answer"));
}

TEST_CASE("metrics-bench counts a missing answer as failed after its timeout", "[bench]") {
  // A server that answers nothing: had it answered a first put, that answer
  // too would have had to come within the short timeout, which a loaded
  // machine does not promise.
  FakeServer fake;
  ProcessResult r = bench(fake.port(), {"-c", "1", "-n", "1", "-P", "1", "--timeout", "0.3"});
  CHECK(r.exit_code == kExitFailure);
  CHECK_THAT(r.out, Contains("0 answered right, 1 failed"));
  CHECK_THAT(r.err, Contains("timed out"));
}

TEST_CASE("metrics-bench refuses a timeout it cannot represent", "[bench]") {
  // 1e300 seconds used to overflow the conversion to milliseconds.
  for (const char* timeout : {"1e300", "0", "-1", "inf"}) {
    CAPTURE(timeout);
    ProcessResult r = bench(1, {"-n", "1", "--timeout", timeout});
    CHECK(r.exit_code != 0);
    CHECK_THAT(r.err, Contains("--timeout"));
  }
}

TEST_CASE("metrics-bench takes Redis-style answers only with --protocol redis", "[bench]") {
  // A metrics server answers the HSET lines "error\nwrong command\n\n".
  TestServer server;
  ProcessResult r = bench(server.port(), {"--protocol", "redis", "-c", "1", "-n", "3"});
  CHECK(r.exit_code == kExitFailure);
  CHECK(server.storage().sample_count() == 0);

  FakeServer fake({reply(":1\r\n"), reply(":0\r\n")});
  ProcessResult redis = bench(fake.port(), {"--protocol", "redis", "-c", "1", "-n", "2"});
  INFO(redis.err);
  CHECK(redis.exit_code == 0);
  CHECK_THAT(fake.received(), Contains("HSET bench:0 1500000000 "));
}

TEST_CASE("metrics-bench gets with HGETALL and checks the whole Redis answer", "[bench]") {
  // Preload: 2 samples of one key as HSETs; then 2 gets, each answered with
  // both fields and values as RESP bulk strings, in timestamp order.
  const std::string hgetall =
      "*4\r\n$10\r\n1500000000\r\n$7\r\n-1000.0\r\n$10\r\n1500000001\r\n$7\r\n-999.75\r\n";
  FakeServer fake({reply(":1\r\n"), reply(":1\r\n"), reply(hgetall), reply(hgetall)});
  ProcessResult r = bench(fake.port(), {"--protocol", "redis", "--mode", "get", "--keys", "1",
                                        "--samples-per-key", "2", "-c", "1", "-n", "2"});
  check_all_right(r, 2);
  CHECK_THAT(fake.received(), Contains("HSET bench:get:0 1500000001 -999.75\r\n"));
  CHECK_THAT(fake.received(), Contains("HGETALL bench:get:0\r\n"));

  // One value off: a wrong answer, exit status 1.
  std::string wrong = hgetall;
  wrong[wrong.size() - 3] = '6';
  FakeServer off({reply(":1\r\n"), reply(":1\r\n"), reply(wrong)});
  ProcessResult bad = bench(off.port(), {"--protocol", "redis", "--mode", "get", "--keys", "1",
                                         "--samples-per-key", "2", "-c", "1", "-n", "1"});
  CHECK(bad.exit_code == kExitFailure);
}

TEST_CASE("metrics-bench reports a server it cannot reach and exits 1", "[bench]") {
  RefusedPort refused;
  ProcessResult r = bench(refused.port(), {"-c", "1", "-n", "1"});
  CHECK(r.exit_code == kExitFailure);
  CHECK_THAT(r.err, Contains("connect 127.0.0.1:" + std::to_string(refused.port())));
}

// The keys it writes stay on the server it was pointed at; the help warns.
TEST_CASE("metrics-bench --help says it leaves its bench keys on the server", "[bench]") {
  ProcessResult r = run_process({bench_binary(), "--help"});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("bench:N") && Contains("leaves them"));
}

TEST_CASE("metrics-bench rejects bad options before connecting", "[bench]") {
  RefusedPort refused;
  CHECK(bench(refused.port(), {"--mode", "delete"}).exit_code == kExitUsage);
  CHECK(bench(refused.port(), {"--protocol", "redis", "--mode", "get-all"}).exit_code ==
        kExitUsage);
  // Redis keeps a hash's insertion order only while it has at most 128 fields.
  CHECK(bench(refused.port(), {"--protocol", "redis", "--mode", "get", "--samples-per-key", "129"})
            .exit_code == kExitUsage);
  CHECK(bench(refused.port(), {"--background", "2"}).exit_code == kExitUsage);
  CHECK(bench(refused.port(), {"-n", "0"}).exit_code == kExitUsage);
}
