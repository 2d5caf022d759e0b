// Table tests of the pure protocol code against docs/protocol.md, row by row: the
// request parser, number parsing and printing, answer formatting, the line
// splitter and the client's answer parser. No sockets.
#include "line_splitter.hpp"
#include "metrics/protocol.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

using namespace std::string_literals;

using metrics::AnswerKind;
using metrics::RequestKind;

namespace {

// Shows every byte of `bytes` legibly in a failure message: control bytes,
// NUL and bytes past ASCII as escapes, the rest as they are.
std::string printable(std::string_view bytes) {
  std::string out = "\"";
  for (char c : bytes) {
    auto u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

// Doubles compare bitwise so that -0.0 differs from 0.0.
uint64_t bits_of(double d) {
  uint64_t b;
  std::memcpy(&b, &d, sizeof b);
  return b;
}

double double_from_bits(uint64_t b) {
  double d;
  std::memcpy(&d, &b, sizeof d);
  return d;
}

// The enumerators' names, listed in their declaration order in protocol.hpp,
// for failure messages.
const char* kind_name(RequestKind kind) {
  constexpr const char* kNames[] = {"kEmpty", "kPut", "kGet", "kInvalid"};
  const auto i = static_cast<std::size_t>(kind);
  return i < std::size(kNames) ? kNames[i] : "?";
}

const char* kind_name(AnswerKind kind) {
  constexpr const char* kNames[] = {"kOk", "kError", "kMalformed"};
  const auto i = static_cast<std::size_t>(kind);
  return i < std::size(kNames) ? kNames[i] : "?";
}

// Checks that the request `before` + text + `after` is invalid for each text
// of `rows` that stays one token (not empty, no separator or '\r').
void check_puts_invalid(const std::vector<std::string>& rows, const std::string& before,
                        const std::string& after) {
  for (const std::string& text : rows) {
    if (text.empty() || text.find_first_of(" \t\r") != std::string::npos) continue;
    const std::string line = before + text + after;
    INFO("line " << printable(line));
    CHECK(kind_name(metrics::parse_request(line).kind) == std::string("kInvalid"));
  }
}

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();

}  // namespace

// ---------------------------------------------------------------------------
// Requests

TEST_CASE("well-formed put and get requests are accepted with their fields", "[protocol][parse]") {
  // docs/protocol.md "Requests": put has exactly three arguments, get exactly one;
  // tokens are separated by runs of spaces and tabs, leading and trailing ones
  // ignored; "Transport": one '\r' before the '\n' is ignored; "Fine print":
  // every byte but space, tab and '\r' is an ordinary key byte, returned as is.
  struct Row {
    std::string line;
    RequestKind kind;
    std::string key;
    double value;
    int64_t timestamp;
  };
  const std::vector<Row> rows = {
      {"put palm.cpu 10.5 1501864247", RequestKind::kPut, "palm.cpu", 10.5, 1501864247},
      {"put test_key 12.0 1503319740", RequestKind::kPut, "test_key", 12.0, 1503319740},
      {"put k 10 1", RequestKind::kPut, "k", 10.0, 1},
      {"put k -0.5 -5", RequestKind::kPut, "k", -0.5, -5},
      {"get palm.cpu", RequestKind::kGet, "palm.cpu", 0, 0},
      {"get *", RequestKind::kGet, "*", 0, 0},
      // Only the exact key "*" is special.
      {"get **", RequestKind::kGet, "**", 0, 0},
      {"put ** 1 1", RequestKind::kPut, "**", 1, 1},
      {"put a* 1 1", RequestKind::kPut, "a*", 1, 1},
      // Runs of spaces and tabs, leading and trailing ones.
      {"put  k   1   2", RequestKind::kPut, "k", 1, 2},
      {"put\tk\t1\t2", RequestKind::kPut, "k", 1, 2},
      {"  \t put \t k \t 1 \t 2 \t ", RequestKind::kPut, "k", 1, 2},
      {"\tget\tk\t", RequestKind::kGet, "k", 0, 0},
      {"   get *   ", RequestKind::kGet, "*", 0, 0},
      // One trailing '\r' (telnet's "\r\n") is ignored, also after separators.
      {"put k 10 1\r", RequestKind::kPut, "k", 10, 1},
      {"get k\r", RequestKind::kGet, "k", 0, 0},
      {"get *\r", RequestKind::kGet, "*", 0, 0},
      {"get k \t\r", RequestKind::kGet, "k", 0, 0},
      // NUL, control, non-UTF-8 and UTF-8 bytes are key bytes.
      {"get a\0b"s, RequestKind::kGet, "a\0b"s, 0, 0},
      {"put \0 1 2"s, RequestKind::kPut, "\0"s, 1, 2},
      {"get \x01\x1b[0m\x7f", RequestKind::kGet, "\x01\x1b[0m\x7f", 0, 0},
      {"get k\v\f", RequestKind::kGet, "k\v\f", 0, 0},
      {"get \xff\xfe\xc3", RequestKind::kGet, "\xff\xfe\xc3", 0, 0},
      {"put \xff 1 2", RequestKind::kPut, "\xff", 1, 2},
      {"put \xd0\xbf\xd0\xb0\xd0\xbb\xd1\x8c\xd0\xb5\xd1\x86.cpu 1 2", RequestKind::kPut,
       "\xd0\xbf\xd0\xb0\xd0\xbb\xd1\x8c\xd0\xb5\xd1\x86.cpu", 1, 2},
      {"get \xe2\x9c\x93", RequestKind::kGet, "\xe2\x9c\x93", 0, 0},
  };
  for (const Row& row : rows) {
    INFO("line " << printable(row.line));
    metrics::Request request = metrics::parse_request(row.line);
    CHECK(kind_name(request.kind) == std::string(kind_name(row.kind)));
    CHECK(printable(request.key) == printable(row.key));
    if (row.kind == RequestKind::kPut) {
      CHECK(bits_of(request.value) == bits_of(row.value));
      CHECK(request.timestamp == row.timestamp);
    }
  }
}

TEST_CASE("the key of a parsed request points into the line it was parsed from",
          "[protocol][parse]") {
  // Request::key is documented as a view of the line, so the parser must not
  // hand out a copy that dies with it, nor a view of anything else.
  const std::string line = "put some.key 1 2";
  metrics::Request request = metrics::parse_request(line);
  REQUIRE(request.kind == RequestKind::kPut);
  CHECK(request.key.data() == line.data() + 4);
  CHECK(request.key.size() == 8);
}

TEST_CASE("blank and whitespace-only lines are empty requests", "[protocol][parse]") {
  // docs/protocol.md "Requests": an empty line, or one of only spaces and tabs
  // (after the '\r' rule), is skipped and gets no answer.
  const std::vector<std::string> rows = {"", " ", "\t", "  \t \t  ", "\r", " \t\r", "\t\r"};
  for (const std::string& line : rows) {
    INFO("line " << printable(line));
    CHECK(kind_name(metrics::parse_request(line).kind) == std::string("kEmpty"));
  }
}

TEST_CASE("malformed requests are invalid", "[protocol][parse]") {
  // docs/protocol.md "Requests": an unknown command, `PUT`, a missing or extra
  // argument, a bad value or timestamp is answered `wrong command`.
  const std::vector<std::string> rows = {
      // Unknown commands and case-sensitivity.
      "got test_key",
      "PUT k 1 2",
      "Put k 1 2",
      "pUT k 1 2",
      "GET k",
      "Get k",
      "gEt k",
      "getk",
      "get*",
      "delete k",
      "k",
      "*",
      // Arity.
      "put",
      "put k",
      "put k 1",
      "put k 1 2 3",
      "put k 1 2 3 4 5",
      "get",
      "get \r",
      "get a b",
      "get * *",
      "get wrong command test",
      // '*' is reserved for get.
      "put * 1 2",
      // Only space and tab separate tokens: these are one token.
      "get\vk",
      "get\fk",
      "get\0k"s,
      "get\rk",
      "put\xc2\xa0k 1 2",
      // A '\r' anywhere but right before the end is an ordinary token byte,
      // which makes a key or number invalid (docs/protocol.md "Fine print").
      "get k\r\r",
      "get k\rx",
      "get \rk",
      "get *\r\r",
      "\rget k",
      "get\r k",
      "put k\r 1 2",
      "put k 1\r 2",
      "put k 1 2\r\r",
      "put k 1 2\r \r",
      // Bad values and timestamps (the number tables below have every row).
      "put k nan 1",
      "put k inf 1",
      "put k 1e999 1",
      "put k abc 1",
      "put k 1 1.5",
      "put k 1 1e9",
      "put k 1 9223372036854775808",
      "put k 1 -",
  };
  for (const std::string& line : rows) {
    INFO("line " << printable(line));
    metrics::Request request = metrics::parse_request(line);
    CHECK(kind_name(request.kind) == std::string("kInvalid"));
  }
}

// ---------------------------------------------------------------------------
// Numbers

TEST_CASE("the fast path for common puts agrees with the general parser", "[protocol][parse]") {
  // Lines built from pieces near every edge of the fast path (signs, digit
  // counts, exponents, '\r', '*', extra tokens, separators), some with a
  // random byte changed. parse_request takes the fast path when it can; the
  // general path alone must give the same request for every line.
  const std::vector<std::string> commands = {"put", "put", "put", "get", "PUT", "pu", "putx", ""};
  const std::vector<std::string> separators = {" ", " ", "\t", "  ", " \t", ""};
  const std::vector<std::string> keys = {"k",  "palm.cpu", "*",     "a*",  "a\rb",
                                         "\r", "\xd0\xba", "k\x01", "1.5", "-"};
  const std::vector<std::string> values = {"1",
                                           "-0.5",
                                           ".5",
                                           "5.",
                                           "+1.5",
                                           "007.50",
                                           "-0",
                                           "1e3",
                                           "2.5E-4",
                                           "nan",
                                           "inf",
                                           "1e999",
                                           "0x10",
                                           "",
                                           "-",
                                           "+",
                                           ".",
                                           "1.2.3",
                                           "1_0",
                                           "9007199254740992",
                                           "9007199254740993",
                                           "90071992547409921",
                                           "0.1234567890123456789012",
                                           "0.12345678901234567890123",
                                           "12abc",
                                           "--1",
                                           "+-1"};
  const std::vector<std::string> timestamps = {"0",
                                               "-0",
                                               "+5",
                                               "05",
                                               "1503319740",
                                               "123456789012345678",
                                               "999999999999999999",
                                               "1234567890123456789",
                                               "9223372036854775807",
                                               "9223372036854775808",
                                               "-9223372036854775808",
                                               "-9223372036854775809",
                                               "1.5",
                                               "1e9",
                                               "12abc",
                                               "",
                                               "+-5",
                                               "-",
                                               "+"};
  const std::vector<std::string> tails = {"", "", " ", "\t", " x", "\r", "\r\r", " \r", "\rx"};
  std::mt19937_64 rng(20261123);
  // Half the time one of the first `common` pieces (valid ones), so that
  // many lines are puts.
  auto pick = [&](const std::vector<std::string>& from, std::size_t common = 1) {
    const bool usual = std::uniform_int_distribution<int>(0, 1)(rng) == 0;
    return from[std::uniform_int_distribution<std::size_t>(
        0, (usual ? common : from.size()) - 1)(rng)];
  };
  int fast = 0, general_puts = 0;
  for (int i = 0; i < 50000; ++i) {
    std::string line = pick(separators).substr(0, i % 5 == 0 ? 1 : 0) + pick(commands, 3) +
                       pick(separators, 5) + pick(keys, 2) + pick(separators, 5) + pick(values, 9) +
                       pick(separators, 5) + pick(timestamps, 8) + pick(tails, 3);
    if (i % 4 == 0 && !line.empty()) {
      line[std::uniform_int_distribution<std::size_t>(0, line.size() - 1)(rng)] =
          static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng));
    }
    if (line.find('\n') != std::string::npos) continue;
    std::string_view stripped = line;
    if (!stripped.empty() && stripped.back() == '\r') stripped.remove_suffix(1);
    const metrics::Request general = metrics::parse_any_request(stripped);
    const metrics::Request parsed = metrics::parse_request(line);
    metrics::Request quick;
    const bool took_fast = metrics::parse_common_put(stripped, &quick);
    INFO("line " << printable(line));
    REQUIRE(kind_name(parsed.kind) == std::string(kind_name(general.kind)));
    if (general.kind == RequestKind::kPut || general.kind == RequestKind::kGet) {
      REQUIRE(parsed.key == general.key);
      REQUIRE(bits_of(parsed.value) == bits_of(general.value));
      REQUIRE(parsed.timestamp == general.timestamp);
    }
    if (took_fast) {
      ++fast;
      REQUIRE(kind_name(general.kind) == std::string("kPut"));
      REQUIRE(quick.key == general.key);
      REQUIRE(bits_of(quick.value) == bits_of(general.value));
      REQUIRE(quick.timestamp == general.timestamp);
    } else if (general.kind == RequestKind::kPut) {
      ++general_puts;
    }
  }
  // Both paths were exercised: many puts took the fast one, and valid puts
  // it leaves alone (exponents, 19 digits, long mantissas) took the other.
  CHECK(fast > 1000);
  CHECK(general_puts > 1000);
}

TEST_CASE("values that are finite decimal numbers are accepted", "[protocol][parse][value]") {
  // docs/protocol.md "Requests" (value) and "Fine print" (sign, leading zeros,
  // underflow rounds to zero or a subnormal and is accepted).
  struct Row {
    std::string text;
    double expected;
  };
  const double denorm_min = std::numeric_limits<double>::denorm_min();
  const std::vector<Row> rows = {
      {"10", 10.0},
      {"-0.5", -0.5},
      {".5", 0.5},
      {"-.5", -0.5},
      {"5.", 5.0},
      {"+5.", 5.0},
      {"1e3", 1000.0},
      {"1E3", 1000.0},
      {"1e+3", 1000.0},
      {"2.5E-4", 0.00025},
      {"2.5e-4", 0.00025},
      {".5e1", 5.0},
      {"5.e1", 50.0},
      {"+1.5", 1.5},
      {"007.50", 7.5},
      {"-007.50", -7.5},
      {"0", 0.0},
      {"-0", -0.0},
      {"-0.0", -0.0},
      {"+0", 0.0},
      {"12.0", 12.0},
      {"0.1", 0.1},
      {"0.30000000000000004", 0.1 + 0.2},
      {"123456789.123", 123456789.123},
      {"1.7976931348623157e308", std::numeric_limits<double>::max()},
      {"-1.7976931348623157e308", std::numeric_limits<double>::lowest()},
      {"2.2250738585072014e-308", std::numeric_limits<double>::min()},
      {"5e-324", denorm_min},
      {"1e0000000000000000000000003", 1000.0},
      // Underflow is rounded, not rejected.
      {"1e-400", 0.0},
      {"-1e-400", -0.0},
      {"4e-324", denorm_min},
      {"3e-324", denorm_min},
      {"2e-324", 0.0},
      {"1.5e-323", 3 * denorm_min},
      {"0.00000000000000000000000000000000000000000000000000000000000000001e-300", 0.0},
  };
  for (const Row& row : rows) {
    INFO("value " << printable(row.text));
    double value = 12345.0;
    REQUIRE(metrics::parse_value(row.text, &value));
    CHECK(bits_of(value) == bits_of(row.expected));
    CHECK(std::signbit(value) == std::signbit(row.expected));
    // The request parser uses the same rule.
    metrics::Request request = metrics::parse_request("put k " + row.text + " 1");
    CHECK(kind_name(request.kind) == std::string("kPut"));
    CHECK(bits_of(request.value) == bits_of(row.expected));
  }
}

TEST_CASE("values that are not finite decimal numbers are rejected", "[protocol][parse][value]") {
  // docs/protocol.md "Requests" (value): nan, inf, hex floats, digit separators,
  // empty text and any literal that overflows a double are rejected.
  const std::vector<std::string> rows = {
      "nan",      "NaN",       "-nan",   "nan(1)",  "inf",          "-inf",  "+inf", "Inf",
      "infinity", "-infinity", "0x1p3",  "0x10",    "0X1P3",        "1_000", "1,5",  "1'000",
      "",         ".",         "-.",     "+.",      "e5",           ".e5",   "-e5",  "1e",
      "1e+",      "1e-",       "1E",     "--1",     "+-1",          "-+1",   "++1",  "-",
      "+",        "1e999",     "-1e999", "1.8e308", "1e308000",     "1.5.2", "1..5", "1e5.5",
      "1e5e5",    "1f",        "1d",     "1.0L",    "abc",          "10a",   "a10",  " 1",
      "1 ",       "1\r",       "\r1",    "1\0"s,    "\xef\xbc\x91",
  };
  for (const std::string& text : rows) {
    INFO("value " << printable(text));
    double value = 12345.0;
    CHECK_FALSE(metrics::parse_value(text, &value));
  }
  // Through the request parser too.
  check_puts_invalid(rows, "put k ", " 1");
}

TEST_CASE("timestamps that fit a signed 64-bit integer are accepted",
          "[protocol][parse][timestamp]") {
  // docs/protocol.md "Requests" (timestamp) and "Fine print" (sign, leading zeros).
  struct Row {
    std::string text;
    int64_t expected;
  };
  const std::vector<Row> rows = {
      {"1501864247", 1501864247},
      {"-5", -5},
      {"+5", 5},
      {"05", 5},
      {"+0008", 8},
      {"-0008", -8},
      {"0", 0},
      {"-0", 0},
      {"+0", 0},
      {"9223372036854775807", kInt64Max},
      {"+9223372036854775807", kInt64Max},
      {"-9223372036854775808", kInt64Min},
      {"00009223372036854775807", kInt64Max},
  };
  for (const Row& row : rows) {
    INFO("timestamp " << printable(row.text));
    int64_t timestamp = 12345;
    REQUIRE(metrics::parse_timestamp(row.text, &timestamp));
    CHECK(timestamp == row.expected);
    metrics::Request request = metrics::parse_request("put k 1 " + row.text);
    CHECK(kind_name(request.kind) == std::string("kPut"));
    CHECK(request.timestamp == row.expected);
  }
}

TEST_CASE("timestamps that are not 64-bit integers are rejected", "[protocol][parse][timestamp]") {
  // docs/protocol.md "Requests" (timestamp): `1.5`, `1e9`, `12abc`, out of range.
  const std::vector<std::string> rows = {
      "1.5",
      "1.",
      ".5",
      "1e9",
      "12abc",
      "abc",
      "+-5",
      "-+5",
      "--5",
      "++5",
      "-",
      "+",
      "",
      " 5",
      "5 ",
      "5\r",
      "0x10",
      "1_000",
      "1,000",
      "inf",
      "nan",
      "\xd9\xa1",
      "9223372036854775808",
      "-9223372036854775809",
      "+9223372036854775808",
      "99999999999999999999",
      "-99999999999999999999",
  };
  for (const std::string& text : rows) {
    INFO("timestamp " << printable(text));
    int64_t timestamp = 12345;
    CHECK_FALSE(metrics::parse_timestamp(text, &timestamp));
  }
  check_puts_invalid(rows, "put k 1 ", "");
}

TEST_CASE("timestamps print canonically", "[protocol][format][timestamp]") {
  // docs/protocol.md "Fine print": `+5` and `05` print `5`, `-0` prints `0`; two
  // spellings of one number are the same second.
  struct Row {
    std::string text;
    std::string printed;
  };
  const std::vector<Row> rows = {
      {"5", "5"},
      {"+5", "5"},
      {"05", "5"},
      {"+0005", "5"},
      {"-0", "0"},
      {"+0", "0"},
      {"000", "0"},
      {"-05", "-5"},
      {"1501864247", "1501864247"},
      {"+9223372036854775807", "9223372036854775807"},
      {"-9223372036854775808", "-9223372036854775808"},
  };
  for (const Row& row : rows) {
    INFO("timestamp " << printable(row.text));
    metrics::Request request = metrics::parse_request("put k 1 " + row.text);
    REQUIRE(request.kind == RequestKind::kPut);
    std::string out = "prefix ";
    metrics::append_timestamp(&out, request.timestamp);
    CHECK(out == "prefix " + row.printed);
  }
}

// ---------------------------------------------------------------------------
// Value printing

TEST_CASE("values print exactly like Python's repr(float)", "[protocol][format][value]") {
  // docs/protocol.md "Responses": shortest round-trip digits; fixed notation with
  // at least one digit after the point for decimal exponents in [-4, 16),
  // otherwise scientific with a signed exponent of at least two digits. The
  // expected texts were printed by python3's repr().
  struct Row {
    double value;
    const char* python;
  };
  const double denorm_min = std::numeric_limits<double>::denorm_min();
  const std::vector<Row> rows = {
      {10.0, "10.0"},
      {10.5, "10.5"},
      {4200000.0, "4200000.0"},
      {0.0001, "0.0001"},
      {1e-05, "1e-05"},
      {1e16, "1e+16"},
      {1.2345678901234568e+17, "1.2345678901234568e+17"},
      {0.1 + 0.2, "0.30000000000000004"},
      {-0.0, "-0.0"},
      {0.0, "0.0"},
      {denorm_min, "5e-324"},
      {std::numeric_limits<double>::max(), "1.7976931348623157e+308"},
      {std::numeric_limits<double>::lowest(), "-1.7976931348623157e+308"},
      {1e15, "1000000000000000.0"},
      {9999999999999998.0, "9999999999999998.0"},
      {0.001, "0.001"},
      {123456789.123, "123456789.123"},
      {-2.5, "-2.5"},
      {1e100, "1e+100"},
      {std::numeric_limits<double>::min(), "2.2250738585072014e-308"},
      {0.1, "0.1"},
      {100.0, "100.0"},
      {12.0, "12.0"},
      {13.0, "13.0"},
      {0.25, "0.25"},
      {2.156, "2.156"},
      {1.5e-05, "1.5e-05"},
      {-1e-05, "-1e-05"},
      {1e-07, "1e-07"},
      {0.00025, "0.00025"},
      {0.00012345, "0.00012345"},
      {1.2345e-05, "1.2345e-05"},
      {0.0009999, "0.0009999"},
      {1.0 / 3.0, "0.3333333333333333"},
      {9007199254740992.0, "9007199254740992.0"},
      {1234567890123456.8, "1234567890123456.8"},
      {1e15 + 0.3, "1000000000000000.2"},
      {123450000000000.0, "123450000000000.0"},
      {1.2345678901234568e+16, "1.2345678901234568e+16"},
      {9.223372036854776e+18, "9.223372036854776e+18"},
      {1e22, "1e+22"},
      {1e23, "1e+23"},
      {3 * denorm_min, "1.5e-323"},
      {std::numeric_limits<double>::min() / 2, "1.1125369292536007e-308"},
      // Either side of the fixed/scientific boundaries, 1e-4 and 1e16.
      {std::nextafter(1e-4, 0.0), "9.999999999999999e-05"},
      {-std::nextafter(1e-4, 0.0), "-9.999999999999999e-05"},
      {std::nextafter(1e-4, 1.0), "0.00010000000000000002"},
      {1e-4 * 3, "0.00030000000000000003"},
      {6.103515625e-05, "6.103515625e-05"},
      {9.5367431640625e-07, "9.5367431640625e-07"},
      {std::nextafter(1e16, 0.0), "9999999999999998.0"},
      {std::nextafter(1e16, 2e16), "1.0000000000000002e+16"},
      {9007199254740994.0, "9007199254740994.0"},
      {1e15 / 7, "142857142857142.84"},
      {99999.99999999999, "99999.99999999999"},
      {2.675, "2.675"},
      {3e16, "3e+16"},
      {7e22, "7e+22"},
  };
  for (const Row& row : rows) {
    INFO("value bits 0x" << std::hex << bits_of(row.value) << ", python says " << row.python);
    CHECK(metrics::format_value(row.value) == row.python);
    std::string out = "k ";
    metrics::append_value(&out, row.value);
    CHECK(out == "k "s + row.python);
  }
}

namespace {

// A pseudo-random double's bits: any pattern, or with `near_one` one whose
// biased exponent is in [1023 - 20, 1023 + 60): decimal exponents of about
// -6 to 18, around the fixed/scientific boundary.
uint64_t random_double_bits(std::mt19937_64& random, bool near_one) {
  uint64_t bits = random();
  if (near_one) {
    uint64_t exponent = 1003 + (bits >> 52) % 80;
    bits = (bits & 0x800fffffffffffffULL) | (exponent << 52);
  }
  return bits;
}

}  // namespace

TEST_CASE("every printed value reads back to the same double", "[protocol][format][value]") {
  // docs/protocol.md "Responses": the printed text reads back to the same double.
  // Deterministic pseudo-random bit patterns cover every exponent; a second
  // set keeps the exponent near 1 so the fixed-notation layout is exercised
  // as much as the scientific one.
  std::mt19937_64 random(20170817);
  int checked = 0;
  for (int i = 0; i < 6000; ++i) {
    uint64_t bits = random_double_bits(random, i % 2 == 1);
    double x = double_from_bits(bits);
    if (!std::isfinite(x)) continue;
    std::string text = metrics::format_value(x);
    INFO("bits 0x" << std::hex << bits << " printed " << text);
    double back = 0;
    REQUIRE(metrics::parse_value(text, &back));
    REQUIRE(bits_of(back) == bits);
    ++checked;
  }
  CHECK(checked > 5000);
}

namespace {

// The significant digits of a printed value: the mantissa's digits without
// leading zeros and without the trailing zeros that only pad the layout.
std::string significant_digits(std::string_view text) {
  std::string digits;
  for (char c : text.substr(0, text.find('e'))) {
    if (c >= '0' && c <= '9') digits.push_back(c);
  }
  digits.erase(0, digits.find_first_not_of('0'));
  digits.erase(digits.find_last_not_of('0') + 1);
  return digits;
}

}  // namespace

TEST_CASE("every printed value has the fewest digits and Python's layout",
          "[protocol][format][value]") {
  // docs/protocol.md "Responses": the shortest text that reads back to the same
  // double, fixed notation exactly when the decimal exponent is in [-4, 16).
  // Both are checked independently of the printer: the layout by magnitude
  // (1e-4 and 1e16 are doubles, so no other double's shortest digits reach
  // them), and shortness by printf rounding x to one digit fewer, which must
  // then read back to a different double. Powers of two are skipped there,
  // as the closer neighbour of x below them is nearer than the one above.
  std::mt19937_64 random(1503319739);
  int checked = 0;
  for (int i = 0; i < 4000; ++i) {
    uint64_t bits = random_double_bits(random, i % 2 == 1);
    double x = double_from_bits(bits);
    if (!std::isfinite(x) || x == 0) continue;
    std::string text = metrics::format_value(x);
    INFO("bits 0x" << std::hex << bits << " printed " << text);
    const bool scientific = std::fabs(x) < 1e-4 || std::fabs(x) >= 1e16;
    CHECK((text.find('e') != std::string::npos) == scientific);
    if (!scientific) {
      // At least one digit after the point, and no exponent.
      REQUIRE(text.find('.') != std::string::npos);
      CHECK(text.back() != '.');
    }
    std::size_t n = significant_digits(text).size();
    REQUIRE(n >= 1);
    REQUIRE(n <= 17);
    if (n >= 2 && (bits & 0x000fffffffffffffULL) != 0) {
      char shorter[64];
      std::snprintf(shorter, sizeof shorter, "%.*e", static_cast<int>(n) - 2, x);
      INFO("one digit fewer: " << shorter);
      CHECK(std::strtod(shorter, nullptr) != x);
    }
    ++checked;
  }
  CHECK(checked > 3000);
}

// ---------------------------------------------------------------------------
// Answer formatting

TEST_CASE("a sample line is key, value and timestamp separated by spaces", "[protocol][format]") {
  // docs/protocol.md "Responses": one line `<key> <value> <timestamp>\n` per sample.
  struct Row {
    std::string key;
    metrics::Sample sample;
    std::string line;
  };
  const std::vector<Row> rows = {
      {"test_key", {1503319739, 13.0}, "test_key 13.0 1503319739\n"},
      {"palm.cpu", {1501864247, 10.5}, "palm.cpu 10.5 1501864247\n"},
      {"k", {-5, -0.0}, "k -0.0 -5\n"},
      {"k", {0, 1e-05}, "k 1e-05 0\n"},
      {"k", {kInt64Min, 1e16}, "k 1e+16 -9223372036854775808\n"},
      {"\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87", {1, 0.25}, "\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87 0.25 1\n"},
      {"a\0b"s, {2, 1.0}, "a\0b 1.0 2\n"s},
  };
  for (const Row& row : rows) {
    INFO("key " << printable(row.key));
    std::string out = "ok\n";
    metrics::append_sample_line(&out, row.key, row.sample);
    CHECK(printable(out) == printable("ok\n" + row.line));
  }
}

TEST_CASE("the seed's get answer is built from sample lines", "[protocol][format]") {
  // docs/protocol.md "Example": `get *` after the seed's puts.
  std::string out(metrics::kOkAnswer.substr(0, 3));
  metrics::append_sample_line(&out, "test_key", {1503319739, 13.0});
  metrics::append_sample_line(&out, "test_key", {1503319740, 12.0});
  metrics::append_sample_line(&out, "another_key", {1503319739, 10.0});
  out.push_back('\n');
  CHECK(out ==
        "ok\ntest_key 13.0 1503319739\ntest_key 12.0 1503319740\nanother_key 10.0 1503319739\n\n");
}

TEST_CASE("error answers carry their reason between the status and the empty line",
          "[protocol][format]") {
  // docs/protocol.md "Responses": `error\n<reason>\n\n`.
  CHECK(metrics::error_answer("wrong command") == "error\nwrong command\n\n");
  CHECK(metrics::error_answer("wrong command") == metrics::kWrongCommandAnswer);
  CHECK(metrics::error_answer("too many connections") == "error\ntoo many connections\n\n");
  CHECK(metrics::error_answer("too many connections") == metrics::kTooManyConnectionsAnswer);
  CHECK(metrics::kOkAnswer == "ok\n\n");
}

TEST_CASE("client requests are formatted as one line the server parses back",
          "[protocol][format]") {
  struct Row {
    std::string key;
    double value;
    int64_t timestamp;
    std::string line;
  };
  const std::vector<Row> rows = {
      {"palm.cpu", 10.5, 1501864247, "put palm.cpu 10.5 1501864247\n"},
      {"k", 10.0, 1, "put k 10.0 1\n"},
      {"k", -0.0, -5, "put k -0.0 -5\n"},
      {"k", 0.1 + 0.2, 0, "put k 0.30000000000000004 0\n"},
      {"k", 1e-300, kInt64Max, "put k 1e-300 9223372036854775807\n"},
      {"\xd1\x8f", 5e-324, kInt64Min, "put \xd1\x8f 5e-324 -9223372036854775808\n"},
  };
  for (const Row& row : rows) {
    INFO("key " << printable(row.key) << ", line " << printable(row.line));
    std::string line = metrics::format_put_request(row.key, row.value, row.timestamp);
    CHECK(printable(line) == printable(row.line));
    // What the client sends, the server reads back exactly.
    REQUIRE(!line.empty());
    REQUIRE(line.back() == '\n');
    metrics::Request request =
        metrics::parse_request(std::string_view(line).substr(0, line.size() - 1));
    REQUIRE(request.kind == RequestKind::kPut);
    CHECK(printable(request.key) == printable(row.key));
    CHECK(bits_of(request.value) == bits_of(row.value));
    CHECK(request.timestamp == row.timestamp);
  }

  CHECK(metrics::format_get_request("palm.cpu") == "get palm.cpu\n");
  CHECK(metrics::format_get_request("*") == "get *\n");
  std::string get = metrics::format_get_request("\xd1\x8f");
  CHECK(get == "get \xd1\x8f\n");
  metrics::Request request =
      metrics::parse_request(std::string_view(get).substr(0, get.size() - 1));
  CHECK(request.kind == RequestKind::kGet);
  CHECK(request.key == "\xd1\x8f");
}

// ---------------------------------------------------------------------------
// Line splitting

namespace {

// Feeds `chunks` to one splitter and records what it reports, a line as
// "L:<bytes>" and a too-long line as "TOO LONG", in the order reported.
class SplitRecorder {
 public:
  explicit SplitRecorder(std::size_t limit) : splitter_(limit) {}

  void feed(std::string_view chunk) {
    splitter_.feed(
        chunk, [this](std::string_view line) { events_.push_back("L:" + std::string(line)); },
        [this]() { events_.push_back("TOO LONG"); });
  }

  const std::vector<std::string>& events() const { return events_; }
  const metrics::LineSplitter& splitter() const { return splitter_; }

 private:
  metrics::LineSplitter splitter_;
  std::vector<std::string> events_;
};

std::vector<std::string> split_whole(std::size_t limit, std::string_view stream) {
  SplitRecorder recorder(limit);
  recorder.feed(stream);
  return recorder.events();
}

std::string show_events(const std::vector<std::string>& events) {
  std::string out;
  for (const std::string& e : events) out += printable(e) + " ";
  return out;
}

// Checks that `stream`, fed in three chunks cut at every pair of points, is
// split with `limit` into `expected`.
void check_every_two_cuts(std::size_t limit, const std::string& stream,
                          const std::vector<std::string>& expected) {
  for (std::size_t i = 0; i <= stream.size(); ++i) {
    for (std::size_t j = i; j <= stream.size(); ++j) {
      INFO("cut at " << i << " and " << j);
      SplitRecorder recorder(limit);
      recorder.feed(std::string_view(stream).substr(0, i));
      recorder.feed(std::string_view(stream).substr(i, j - i));
      recorder.feed(std::string_view(stream).substr(j));
      REQUIRE(show_events(recorder.events()) == show_events(expected));
    }
  }
}

}  // namespace

TEST_CASE("lines come out the same however the stream is cut into chunks", "[protocol][split]") {
  // docs/protocol.md "Transport": pipelined lines in one packet and one line split
  // across many packets both work; the '\r' is left for the parser. Bytes
  // after the last '\n' are held, not reported.
  const std::string stream =
      "put a 1 1\nget a\n\n\r\nget *\r\n  \t \nget k\r\r\nx\0y\nunterminated"s;
  const std::vector<std::string> expected = {
      "L:put a 1 1", "L:get a", "L:", "L:\r", "L:get *\r", "L:  \t ", "L:get k\r\r", "L:x\0y"s,
  };
  REQUIRE(show_events(split_whole(1024, stream)) == show_events(expected));

  SECTION("one byte at a time") {
    SplitRecorder recorder(1024);
    for (char c : stream) recorder.feed(std::string_view(&c, 1));
    CHECK(show_events(recorder.events()) == show_events(expected));
    CHECK(recorder.splitter().pending_bytes() == std::string("unterminated").size());
  }
  SECTION("at every pair of cut points") { check_every_two_cuts(1024, stream, expected); }
}

TEST_CASE("a line of exactly the limit is accepted and one byte more is rejected once",
          "[protocol][split]") {
  // docs/protocol.md "Fine print": the bytes before the '\n' are counted, a trailing
  // '\r' included; a longer line gets one error, in order with the other
  // lines, when its '\n' arrives; the stream then continues.
  const std::string stream =
      "ok\n12345678\n123456789\nnext\n1234567\r\n12345678\r\n\n123456789012345678901234\nend\n";
  const std::vector<std::string> expected = {
      "L:ok",     "L:12345678", "TOO LONG", "L:next", "L:1234567\r",
      "TOO LONG", "L:",         "TOO LONG", "L:end",
  };
  CHECK(show_events(split_whole(8, stream)) == show_events(expected));

  SplitRecorder bytewise(8);
  for (char c : stream) {
    bytewise.feed(std::string_view(&c, 1));
    INFO("after " << printable(std::string(1, c)));
    REQUIRE(bytewise.splitter().pending_bytes() <= 8);
  }
  CHECK(show_events(bytewise.events()) == show_events(expected));

  check_every_two_cuts(8, stream, expected);
}

TEST_CASE("the default line limit is 64 KiB", "[protocol][split]") {
  // docs/protocol.md "Fine print": a line of more than 65536 bytes is rejected.
  REQUIRE(metrics::kDefaultMaxLineBytes == 65536);
  metrics::LineSplitter splitter;
  std::vector<std::size_t> lengths;
  int too_long = 0;
  auto on_line = [&](std::string_view line) { lengths.push_back(line.size()); };
  auto on_too_long = [&]() { ++too_long; };
  splitter.feed(std::string(65536, 'a') + "\n", on_line, on_too_long);
  splitter.feed(std::string(65537, 'b') + "\n", on_line, on_too_long);
  // The same two lines arriving in two pieces each.
  splitter.feed(std::string(40000, 'c'), on_line, on_too_long);
  splitter.feed(std::string(25536, 'c') + "\n", on_line, on_too_long);
  splitter.feed(std::string(40000, 'd'), on_line, on_too_long);
  splitter.feed(std::string(25537, 'd') + "\n", on_line, on_too_long);
  CHECK(lengths == std::vector<std::size_t>{65536, 65536});
  CHECK(too_long == 2);
}

TEST_CASE("a too-long line is reported once, when its newline arrives", "[protocol][split]") {
  SplitRecorder recorder(8);
  recorder.feed("123456789");
  CHECK(recorder.events().empty());
  CHECK(recorder.splitter().discarding());
  CHECK(recorder.splitter().pending_bytes() == 0);
  recorder.feed("more bytes of the same line");
  CHECK(recorder.events().empty());
  recorder.feed("\nx\n");
  CHECK(show_events(recorder.events()) == show_events({"TOO LONG", "L:x"}));
  CHECK_FALSE(recorder.splitter().discarding());
}

TEST_CASE("a too-long line still unterminated at the end is never reported", "[protocol][split]") {
  // docs/protocol.md "Fine print": a too-long line unterminated at EOF gets no
  // answer.
  SplitRecorder recorder(8);
  recorder.feed("get a\n");
  recorder.feed("123456789abcdef");
  recorder.feed("ghijkl");
  CHECK(show_events(recorder.events()) == show_events({"L:get a"}));
}

TEST_CASE("memory held for a long line never exceeds the limit", "[protocol][split]") {
  // docs/protocol.md "Limits": memory per connection stays bounded whatever a
  // client sends. 10 MB of one line in uneven chunks, then the stream goes on.
  const std::size_t limit = 1024;
  SplitRecorder recorder(limit);
  const std::string chunk(1000, 'x');
  std::size_t fed = 0;
  std::size_t max_pending = 0;
  while (fed < 10 * 1000 * 1000) {
    std::size_t n = 1 + (fed / 1000) % chunk.size();
    recorder.feed(std::string_view(chunk).substr(0, n));
    fed += n;
    max_pending = std::max(max_pending, recorder.splitter().pending_bytes());
  }
  CHECK(max_pending <= limit);
  CHECK(max_pending > 0);
  CHECK(recorder.events().empty());
  recorder.feed("x\nget k\r\n");
  CHECK(show_events(recorder.events()) == show_events({"TOO LONG", "L:get k\r"}));
  CHECK(recorder.splitter().pending_bytes() == 0);
}

// ---------------------------------------------------------------------------
// Answers, as the client reads them

TEST_CASE("the end of an answer is found after its empty line", "[protocol][answer]") {
  struct Row {
    std::string buffer;
    std::size_t end;
  };
  const std::vector<Row> rows = {
      {"", 0},
      {"o", 0},
      {"ok", 0},
      {"ok\n", 0},
      {"ok\n\n", 4},
      {"ok\n\nok\n\n", 4},
      {"ok\nk 1.0 1\n", 0},
      {"ok\nk 1.0 1\n\n", 12},
      {"ok\nk 1.0 1\n\nerror\nwrong command\n\n", 12},
      {"error\nwrong command\n\n", 21},
      {"error\nwrong command\n\nrest", 21},
      {"\n\n", 2},
  };
  for (const Row& row : rows) {
    INFO("buffer " << printable(row.buffer));
    CHECK(metrics::find_answer_end(row.buffer) == row.end);
  }
}

TEST_CASE("an answer's end is found when its empty line straddles the scanned part",
          "[protocol][answer]") {
  // The client appends what it receives and scans only the new bytes; the
  // "\n\n" can begin in the part it already scanned.
  CHECK(metrics::find_answer_end("ok\n\n", 3) == 4);
  CHECK(metrics::find_answer_end("ok\nk 1.0 1\n\n", 11) == 12);

  // However the answer arrives, it is complete exactly when its last byte is.
  const std::string answer =
      "ok\ntest_key 13.0 1503319739\ntest_key 12.0 1503319740\nanother_key 10.0 1503319739\n\n";
  for (std::size_t step = 1; step <= answer.size(); ++step) {
    INFO("received in pieces of " << step << " bytes");
    std::size_t scanned = 0;
    std::size_t end = 0;
    std::size_t received = 0;
    while (end == 0 && received < answer.size()) {
      received = std::min(answer.size(), received + step);
      end = metrics::find_answer_end(std::string_view(answer).substr(0, received), scanned);
      scanned = received;
    }
    CHECK(end == answer.size());
  }
}

TEST_CASE("an ok answer without lines parses to no series", "[protocol][answer]") {
  // docs/protocol.md "Client library contract": `ok\n\n` gives an empty map.
  metrics::Answer answer = metrics::parse_answer("ok\n\n");
  CHECK(kind_name(answer.kind) == std::string("kOk"));
  CHECK(answer.series.empty());
}

TEST_CASE("the seed's get answers parse to their series", "[protocol][answer]") {
  // docs/protocol.md "Example".
  metrics::Answer answer = metrics::parse_answer(
      "ok\ntest_key 13.0 1503319739\ntest_key 12.0 1503319740\nanother_key 10.0 1503319739\n\n");
  REQUIRE(kind_name(answer.kind) == std::string("kOk"));
  REQUIRE(answer.series.size() == 2);
  CHECK(answer.series[0].key == "test_key");
  CHECK(answer.series[0].samples ==
        std::vector<metrics::Sample>{{1503319739, 13.0}, {1503319740, 12.0}});
  CHECK(answer.series[1].key == "another_key");
  CHECK(answer.series[1].samples == std::vector<metrics::Sample>{{1503319739, 10.0}});
}

TEST_CASE("answer lines are grouped by key in order of first appearance, sorted by timestamp",
          "[protocol][answer]") {
  // docs/protocol.md "Client library contract": get returns each key's samples
  // sorted by ascending timestamp.
  metrics::Answer answer = metrics::parse_answer(
      "ok\nb 1.0 3\na 2.0 1\nb 3.0 1\na 4.0 2\nc -0.0 -9223372036854775808\nb 5.0 2\n\n");
  REQUIRE(kind_name(answer.kind) == std::string("kOk"));
  REQUIRE(answer.series.size() == 3);
  CHECK(answer.series[0].key == "b");
  CHECK(answer.series[0].samples == std::vector<metrics::Sample>{{1, 3.0}, {2, 5.0}, {3, 1.0}});
  CHECK(answer.series[1].key == "a");
  CHECK(answer.series[1].samples == std::vector<metrics::Sample>{{1, 2.0}, {2, 4.0}});
  CHECK(answer.series[2].key == "c");
  REQUIRE(answer.series[2].samples.size() == 1);
  CHECK(answer.series[2].samples[0].timestamp == kInt64Min);
  CHECK(std::signbit(answer.series[2].samples[0].value));
}

TEST_CASE("error answers parse to their reason", "[protocol][answer]") {
  // docs/protocol.md "Limits": clients treat every `error` status as a failure and
  // show its reason.
  struct Row {
    std::string answer;
    std::string reason;
  };
  const std::vector<Row> rows = {
      {"error\nwrong command\n\n", "wrong command"},
      {"error\ntoo many connections\n\n", "too many connections"},
      {"error\nout of memory\n\n", "out of memory"},
  };
  for (const Row& row : rows) {
    INFO("answer " << printable(row.answer));
    metrics::Answer answer = metrics::parse_answer(row.answer);
    CHECK(kind_name(answer.kind) == std::string("kError"));
    CHECK(answer.detail == row.reason);
    CHECK(answer.series.empty());
  }
}

TEST_CASE("malformed answers are reported as malformed", "[protocol][answer]") {
  // docs/protocol.md "Client library contract": an unknown status, a line without
  // exactly three fields, a value or timestamp that does not parse, a missing
  // terminator are failures.
  const std::vector<std::string> rows = {
      // Unknown status.
      "OK\n\n",
      "Ok\n\n",
      "okay\n\n",
      "ok \n\n",
      "\n\n",
      "ERROR\nwrong command\n\n",
      "err\nwrong command\n\n",
      "hello world\n\n",
      // Data lines without exactly three fields.
      "ok\nk 1.0\n\n",
      "ok\nk\n\n",
      "ok\nk 1.0 1 x\n\n",
      "ok\nk 1.0 1 2\n\n",
      "ok\ntest_key 13.0 1503319739\nk 1.0\n\n",
      "ok\n\nk 1.0 1\n\n",
      "ok\n\n\n",
      // Values and timestamps that do not parse.
      "ok\nk abc 1\n\n",
      "ok\nk nan 1\n\n",
      "ok\nk inf 1\n\n",
      "ok\nk 1e999 1\n\n",
      "ok\nk 1.0 1.5\n\n",
      "ok\nk 1.0 abc\n\n",
      "ok\nk 1.0 9223372036854775808\n\n",
      "ok\nk 1 1\r\n\n",
      // A missing terminator.
      "",
      "ok",
      "ok\n",
      "ok\nk 1.0 1\n",
      "ok\nk 1.0 1",
      "error\nwrong command\n",
      "error\nwrong command",
      // An error without a reason.
      "error\n\n",
  };
  for (const std::string& text : rows) {
    INFO("answer " << printable(text));
    metrics::Answer answer = metrics::parse_answer(text);
    CHECK(kind_name(answer.kind) == std::string("kMalformed"));
    CHECK_FALSE(answer.detail.empty());
  }
}

// ---------------------------------------------------------------------------
// Key checks

TEST_CASE("keys are checked before a client sends them", "[protocol][key]") {
  // docs/protocol.md "Client library contract": put throws before sending when the
  // key is empty, is `*`, or contains whitespace; "Requests": a key is any
  // run of bytes without space, tab, '\r' or '\n', UTF-8 passes through.
  struct Row {
    std::string key;
    std::string put_error;
    std::string get_error;
  };
  const std::string empty = "key is empty";
  const std::string star = "key '*' is reserved for get";
  const std::string space = "key contains whitespace";
  const std::vector<Row> rows = {
      {"", empty, empty},
      {"*", star, ""},
      {" ", space, space},
      {"a b", space, space},
      {"a\tb", space, space},
      {"a\rb", space, space},
      {"a\nb", space, space},
      {"k\r", space, space},
      {"\nk", space, space},
      {"palm.cpu", "", ""},
      // Vertical tab and form feed are ordinary key bytes to the server, so
      // the client sends them too.
      {"a\vb", "", ""},
      {"a\fb", "", ""},
      {"**", "", ""},
      {"a*", "", ""},
      {"\xd0\xbf\xd0\xb0\xd0\xbb\xd1\x8c\xd0\xb5\xd1\x86.cpu", "", ""},
      {"\xe2\x9c\x93", "", ""},
  };
  for (const Row& row : rows) {
    INFO("key " << printable(row.key));
    CHECK(metrics::check_put_key(row.key) == row.put_error);
    CHECK(metrics::check_get_key(row.key) == row.get_error);
  }
}

TEST_CASE("values parse to the double strtod gives, on every path of the parser", "[protocol]") {
  // parse_value takes a fast path for plain decimals (Clinger's: at most
  // 2^53 as an integer, at most 22 fraction digits) and from_chars for the
  // rest. Random literals on both sides of each limit must read as the
  // correctly rounded double, which glibc's strtod gives.
  std::mt19937_64 random(20261122);
  auto digits = [&](int count) {
    std::string s;
    for (int i = 0; i < count; ++i) s.push_back(static_cast<char>('0' + random() % 10));
    return s;
  };
  int wrong = 0;
  int rejected = 0;
  for (int i = 0; i < 200000; ++i) {
    const int int_digits = static_cast<int>(random() % 20);
    const int frac_digits = static_cast<int>(random() % 26);
    std::string text;
    switch (random() % 3) {
      case 0: text = "-"; break;
      case 1: text = "+"; break;
      default: break;
    }
    text += digits(int_digits);
    if (frac_digits > 0 || random() % 2 == 0) text += "." + digits(frac_digits);
    if (int_digits + frac_digits == 0) text += "0";
    if (random() % 8 == 0) text += "e" + std::to_string(static_cast<int>(random() % 40) - 20);
    double parsed = 0;
    if (!metrics::parse_value(text, &parsed)) {
      ++rejected;
      continue;
    }
    const double expected = std::strtod(text.c_str(), nullptr);
    if (std::memcmp(&parsed, &expected, sizeof parsed) != 0) {
      if (wrong++ < 5) FAIL_CHECK(text << " parsed as " << parsed << ", strtod: " << expected);
    }
  }
  CHECK(wrong == 0);
  CHECK(rejected == 0);
}
