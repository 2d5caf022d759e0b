// The log's record format as pure functions, without files: CRC32C, the
// fixed-width coding, records' round trips, torn tails, damage in the
// middle, and the resync after damage.
#include "log_format.hpp"

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "coding.hpp"
#include "crc32c.hpp"
#include "log_records.hpp"

namespace metrics {
namespace {

using test::log_of;
using test::Put;

std::vector<Put> scan_all(std::string_view file, bool repair, LogScan* scan) {
  std::vector<Put> seen;
  *scan = scan_log(file, repair, [&](const LogRecord& r) {
    seen.push_back(Put{std::string(r.key), r.timestamp, r.value});
  });
  return seen;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

TEST_CASE("crc32c gives the standard check value", "[crc32c]") {
  CHECK(crc32c("123456789", 9) == 0xe3069283u);
  CHECK(crc32c("", 0) == 0u);
  // Continuing a checksum equals checksumming the whole at once.
  CHECK(crc32c("6789", 4, crc32c("12345", 5)) == 0xe3069283u);
}

TEST_CASE("fixed-width integers are encoded least significant byte first and decode back",
          "[coding]") {
  char bytes[8];
  encode32(bytes, 0x04030201u);
  CHECK(std::string_view(bytes, 4) == std::string_view("\x01\x02\x03\x04", 4));
  CHECK(decode32(bytes) == 0x04030201u);
  encode64(bytes, 0x0807060504030201ull);
  CHECK(std::string_view(bytes, 8) == std::string_view("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
  CHECK(decode64(bytes) == 0x0807060504030201ull);
  for (uint64_t v : {uint64_t{0}, uint64_t{1}, uint64_t{0xff}, uint64_t{0x80000000},
                     std::numeric_limits<uint64_t>::max()}) {
    CAPTURE(v);
    encode64(bytes, v);
    CHECK(decode64(bytes) == v);
    encode32(bytes, static_cast<uint32_t>(v));
    CHECK(decode32(bytes) == static_cast<uint32_t>(v));
  }
}

TEST_CASE("a log record reads back as the put that wrote it", "[log_format]") {
  const std::vector<Put> puts = {
      {"palm.cpu", 1150864247, 0.5},
      {"k", -5, -0.0},
      {"\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87", std::numeric_limits<int64_t>::min(), 1e308},
      {std::string("nul\0byte", 8), std::numeric_limits<int64_t>::max(), 5e-324},
      {std::string(70000, 'x'), 0, -123.456},
  };
  for (const Put& p : puts) {
    std::string bytes;
    append_log_record(&bytes, p.key, p.timestamp, p.value);
    REQUIRE(bytes.size() == kLogRecordHeaderBytes + p.key.size());
    LogRecord record;
    REQUIRE(decode_log_record(bytes, &record) == bytes.size());
    CHECK(record.key == p.key);
    CHECK(record.timestamp == p.timestamp);
    CHECK(same_bits(record.value, p.value));
  }
  LogScan scan;
  std::vector<Put> seen = scan_all(log_of(puts), false, &scan);
  REQUIRE(seen.size() == puts.size());
  CHECK(scan.header_ok);
  CHECK(scan.torn_bytes == 0);
  CHECK(scan.corrupt_offset == std::string_view::npos);
  for (std::size_t i = 0; i < puts.size(); ++i) CHECK(seen[i].key == puts[i].key);
}

TEST_CASE("a torn last record is dropped at every byte offset, keeping the records before it",
          "[log_format]") {
  const std::vector<Put> puts = {{"first", 1, 1.0}, {"second", 2, 2.0}, {"third.key", 3, 3.0}};
  const std::string whole = log_of(puts);
  const std::size_t last_start = log_of({puts[0], puts[1]}).size();
  for (std::size_t cut = last_start; cut < whole.size(); ++cut) {
    CAPTURE(cut);
    LogScan scan;
    std::vector<Put> seen = scan_all(std::string_view(whole).substr(0, cut), false, &scan);
    CHECK(seen.size() == 2);
    CHECK(scan.header_ok);
    CHECK(scan.end == last_start);
    CHECK(scan.torn_bytes == cut - last_start);
    CHECK(scan.corrupt_offset == std::string_view::npos);
  }
  // A file cut inside its header is an empty log being created.
  for (std::size_t cut = 0; cut < kLogMagic.size(); ++cut) {
    LogScan scan;
    CHECK(scan_all(std::string_view(whole).substr(0, cut), false, &scan).empty());
    CHECK(scan.header_ok);
  }
}

TEST_CASE("a flipped bit in a middle record is corruption at its offset; repair keeps the others",
          "[log_format]") {
  const std::vector<Put> puts = {{"first", 1, 1.0}, {"middle", 2, 2.0}, {"last", 3, 3.0}};
  const std::string whole = log_of(puts);
  const std::size_t middle = log_of({puts[0]}).size();
  const std::size_t middle_end = log_of({puts[0], puts[1]}).size();
  for (std::size_t bit = middle * 8; bit < middle_end * 8; ++bit) {
    CAPTURE(bit);
    std::string damaged = whole;
    damaged[bit / 8] = static_cast<char>(damaged[bit / 8] ^ (1 << (bit % 8)));

    LogScan scan;
    std::vector<Put> seen = scan_all(damaged, false, &scan);
    CHECK(scan.corrupt_offset == middle);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].key == "first");

    seen = scan_all(damaged, true, &scan);
    CHECK(scan.corrupt_offset == middle);
    CHECK(scan.skipped_bytes == middle_end - middle);
    CHECK(scan.torn_bytes == 0);
    REQUIRE(seen.size() == 2);
    CHECK(seen[0].key == "first");
    CHECK(seen[1].key == "last");
  }
}

TEST_CASE("a file that does not start with the log header is not a log", "[log_format]") {
  LogScan scan;
  scan_all("hello, world: not a log at all", false, &scan);
  CHECK_FALSE(scan.header_ok);
  scan_all("MTRC", false, &scan);  // a prefix of the header
  CHECK(scan.header_ok);
  scan_all("MTRX", false, &scan);
  CHECK_FALSE(scan.header_ok);
}

TEST_CASE("scan_log tells zeros allocated ahead from a torn record", "[log_format]") {
  const std::string good = log_of({{"a", 1, 1.0}, {"b", 2, 0.0}});
  std::string torn;
  append_log_record(&torn, "c", 3, 3.0);
  torn.resize(10);
  const std::string zeros(5000, '\0');
  LogScan scan;
  CHECK(scan_all(good + zeros, false, &scan).size() == 2);
  CHECK(scan.end == good.size());
  CHECK(scan.torn_bytes == zeros.size());
  CHECK(scan.zero_bytes == zeros.size());

  CHECK(scan_all(good + torn + zeros, false, &scan).size() == 2);
  CHECK(scan.end == good.size());
  CHECK(scan.torn_bytes == torn.size() + zeros.size());
  CHECK(scan.zero_bytes < scan.torn_bytes);

  CHECK(scan_all(good, false, &scan).size() == 2);
  CHECK(scan.torn_bytes == 0);
  CHECK(scan.zero_bytes == 0);
}

TEST_CASE("resync after damage considers only records whose key a put could carry", "[log_format]") {
  // A record with a 1 MiB key after a damaged one: with max_key_bytes 64 KiB
  // the resync does not consider it (a garbage length field there would
  // cost a CRC over up to a gigabyte per offset otherwise), and finds the
  // short record after it.
  const std::string long_key(1 << 20, 'L');
  std::string bytes = log_of({{"a", 1, 1.0}, {"b", 2, 2.0}, {long_key, 3, 3.0}, {"c", 4, 4.0}});
  const std::size_t damaged = log_of({{"a", 1, 1.0}}).size();
  const std::size_t long_at = log_of({{"a", 1, 1.0}, {"b", 2, 2.0}}).size();
  const std::size_t c_at = log_of({{"a", 1, 1.0}, {"b", 2, 2.0}, {long_key, 3, 3.0}}).size();
  bytes[damaged + 10] = static_cast<char>(bytes[damaged + 10] ^ 0x10);
  constexpr std::size_t kBound = 64 * 1024;

  CHECK(find_next_log_record(bytes, damaged + 1) == long_at);  // unbounded
  CHECK(find_next_log_record(bytes, damaged + 1, kBound) == c_at);

  std::vector<Put> seen;
  LogScan scan = scan_log(
      bytes, true, [&](const LogRecord& r) { seen.push_back(Put{std::string(r.key), r.timestamp, r.value}); },
      kBound);
  CHECK(scan.corrupt_offset == damaged);
  CHECK(scan.skipped_bytes == c_at - damaged);
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].key == "a");
  CHECK(seen[1].key == "c");

  // Sequential replay still accepts any key up to kMaxLogKeyBytes.
  bytes[damaged + 10] = static_cast<char>(bytes[damaged + 10] ^ 0x10);
  seen.clear();
  scan = scan_log(
      bytes, false, [&](const LogRecord& r) { seen.push_back(Put{std::string(r.key), r.timestamp, r.value}); },
      kBound);
  CHECK(scan.corrupt_offset == std::string_view::npos);
  CHECK(seen.size() == 4);
}

TEST_CASE("damage followed only by records longer than the resync bound is not taken for a torn tail",
          "[log_format]") {
  // The resync cannot see the 100 KiB record after the damaged one; the
  // bytes after the damage are more than one record a put can write, so
  // they are not a torn tail to cut silently: opening refuses.
  std::string bytes = log_of({{"a", 1, 1.0}, {"b", 2, 2.0}, {std::string(100 * 1024, 'L'), 3, 3.0}});
  const std::size_t damaged = log_of({{"a", 1, 1.0}}).size();
  bytes[damaged + 10] = static_cast<char>(bytes[damaged + 10] ^ 0x10);
  LogScan scan;
  std::vector<Put> seen;
  scan = scan_log(
      bytes, false, [&](const LogRecord& r) { seen.push_back(Put{std::string(r.key), r.timestamp, r.value}); },
      64 * 1024);
  CHECK(scan.corrupt_offset == damaged);
  CHECK(seen.size() == 1);
}

}  // namespace metrics
