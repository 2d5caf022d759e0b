#include <catch2/catch.hpp>

#include "test_util.hpp"

using metrics::test::RawConnection;
using metrics::test::TestServer;

TEST_CASE("the course's telnet session is answered byte for byte", "[server][e2e]") {
  TestServer server;
  RawConnection c(server.port());
  c.send("get test_key\n");
  CHECK(c.read_answers() == "ok\n\n");
  c.send("got test_key\n");
  CHECK(c.read_answers() == "error\nwrong command\n\n");
  c.send("put test_key 12.0 1503319740\n");
  CHECK(c.read_answers() == "ok\n\n");
  c.send("put test_key 13.0 1503319739\n");
  CHECK(c.read_answers() == "ok\n\n");
  c.send("get test_key\n");
  CHECK(c.read_answers() == "ok\ntest_key 13.0 1503319739\ntest_key 12.0 1503319740\n\n");
  c.send("put another_key 10 1503319739\n");
  CHECK(c.read_answers() == "ok\n\n");
  c.send("get *\n");
  CHECK(c.read_answers() ==
        "ok\ntest_key 13.0 1503319739\ntest_key 12.0 1503319740\nanother_key 10.0 1503319739\n\n");
}
