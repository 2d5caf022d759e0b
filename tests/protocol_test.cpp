#include <catch2/catch.hpp>

#include "metrics/protocol.hpp"

TEST_CASE("values print exactly like Python's repr(float)", "[protocol][format]") {
  CHECK(metrics::format_value(10.0) == "10.0");
  CHECK(metrics::format_value(10.5) == "10.5");
}
