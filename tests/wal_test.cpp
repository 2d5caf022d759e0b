// The Wal on real files, in-process: round trips, torn tails, corruption in
// the middle, locking, refused puts and compaction. (The record format alone
// is tests/log_format_test.cpp's.)
#include "wal.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "log_format.hpp"
#include "log_records.hpp"
#include "metrics/protocol.hpp"
#include "server.hpp"
#include "storage.hpp"
#include "test_util.hpp"

using metrics::test::log_of;
using metrics::test::Put;
using metrics::test::TempDir;

namespace {

using metrics::Sample;
using metrics::Storage;
using metrics::Wal;
using metrics::WalOptions;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// Options for a Wal on `path` that logs into `lines`.
WalOptions options_for(const std::string& path, std::vector<std::string>* lines) {
  WalOptions options;
  options.path = path;
  options.fsync = metrics::FsyncPolicy::kNo;
  options.log = [lines](std::string_view line) { lines->emplace_back(line); };
  return options;
}

bool any_line_has(const std::vector<std::string>& lines, std::string_view needle) {
  for (const std::string& line : lines) {
    if (line.find(needle) != std::string::npos) return true;
  }
  return false;
}

// Puts through the log and waits until the record is written.
void logged_put(Wal& wal, std::string_view key, int64_t ts, double value) {
  uint64_t ticket = 0;
  REQUIRE(wal.put(key, ts, value, &ticket));
  REQUIRE(wal.commit(ticket) >= ticket);
}

std::vector<Sample> series(const Storage& storage, std::string_view key) {
  std::vector<Sample> samples;
  storage.copy_series(key, &samples);
  return samples;
}

}  // namespace

TEST_CASE("fsync policies parse from their names", "[wal]") {
  metrics::FsyncPolicy policy;
  for (std::string_view name : {"always", "everysec", "no"}) {
    REQUIRE(metrics::parse_fsync_policy(name, &policy));
    CHECK(metrics::fsync_policy_name(policy) == name);
  }
  CHECK_FALSE(metrics::parse_fsync_policy("sometimes", &policy));
  CHECK_FALSE(metrics::parse_fsync_policy("Always", &policy));
}

TEST_CASE("puts logged by one Wal are restored by the next", "[wal]") {
  TempDir dir;
  std::vector<std::string> lines;
  const std::string path = dir.file("data.log");
  {
    Storage storage;
    Wal wal(options_for(path, &lines), storage);
    CHECK(wal.replay_stats().records == 0);
    logged_put(wal, "test_key", 1503319740, 12.0);
    logged_put(wal, "test_key", 1503319739, 13.0);
    logged_put(wal, "another_key", 1503319739, 10.0);
    logged_put(wal, "test_key", 1503319740, 14.0);  // replaces 12.0
  }
  Storage restored;
  Wal wal(options_for(path, &lines), restored);
  CHECK(wal.replay_stats().records == 4);
  CHECK(wal.replay_stats().samples == 3);
  CHECK(any_line_has(lines, "restored 3 samples from 4 records"));
  CHECK(series(restored, "test_key") ==
        std::vector<Sample>{{1503319739, 13.0}, {1503319740, 14.0}});
  CHECK(series(restored, "another_key") == std::vector<Sample>{{1503319739, 10.0}});
  std::string first_key;
  std::vector<Sample> ignored;
  REQUIRE(restored.copy_series(0, &first_key, &ignored));
  CHECK(first_key == "test_key");  // the order of first puts survives too
}

TEST_CASE("the log replays to the same store: each key's puts in order, new keys in key order",
          "[wal][threads]") {
  // Replaying the records in the order the log holds them rebuilds exactly
  // what memory holds. 6 writers race on shared keys at the same timestamps
  // with different values (so the last put processed decides each value)
  // and keep creating keys, each first put to a key racing with others.
  TempDir dir;
  std::vector<std::string> lines;
  const std::string path = dir.file("data.log");
  constexpr int kWriters = 6;
  constexpr int kPuts = 6000;
  Storage storage;
  {
    Wal wal(options_for(path, &lines), storage);
    std::promise<void> start;
    std::shared_future<void> started = start.get_future().share();
    std::atomic<int> refused{0};  // Catch2's assertions are not for threads
    auto writer = [&](int w) {
      started.wait();
      for (int i = 0; i < kPuts; ++i) {
        // A new key every 8 puts, shared by all writers; and 4 hot keys.
        std::string key =
            i % 2 == 0 ? "new." + std::to_string(i / 8) : "hot." + std::to_string(i % 4);
        uint64_t ticket = 0;
        if (!wal.put(key, i % 50, w * 1000.0 + i, &ticket)) refused.fetch_add(1);
      }
    };
    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; ++w) threads.emplace_back(writer, w);
    start.set_value();
    for (std::thread& t : threads) t.join();
    REQUIRE(refused.load() == 0);
  }

  Storage replayed;
  Wal wal(options_for(path, &lines), replayed);
  REQUIRE(replayed.key_count() == storage.key_count());
  // The same key at every place in key order, with the same samples.
  int different = 0;
  for (std::size_t i = 0; i < storage.key_count(); ++i) {
    std::string key, replayed_key;
    std::vector<Sample> samples, replayed_samples;
    storage.copy_series(i, &key, &samples);
    replayed.copy_series(i, &replayed_key, &replayed_samples);
    if (replayed_key != key || replayed_samples != samples) ++different;
  }
  CHECK(different == 0);
  CHECK(replayed.sample_count() == storage.sample_count());
}

TEST_CASE("a second Wal on the same file refuses to open", "[wal]") {
  TempDir dir;
  std::vector<std::string> lines;
  Storage storage, other;
  Wal wal(options_for(dir.file("data.log"), &lines), storage);
  try {
    Wal second(options_for(dir.file("data.log"), &lines), other);
    FAIL("the second Wal opened");
  } catch (const std::runtime_error& e) {
    CHECK_THAT(e.what(), Catch::Contains("locked"));
  }
}

TEST_CASE("a torn tail is truncated on open with a warning", "[wal]") {
  TempDir dir;
  std::vector<std::string> lines;
  const std::string path = dir.file("data.log");
  const std::string good = log_of({{"a", 1, 1.0}, {"b", 2, 2.0}});
  std::string torn;
  metrics::append_log_record(&torn, "c", 3, 3.0);
  write_file(path, good + torn.substr(0, torn.size() - 3));

  Storage storage;
  {
    Wal wal(options_for(path, &lines), storage);
    CHECK(wal.replay_stats().records == 2);
    CHECK(any_line_has(lines, "truncating a torn record at offset " + std::to_string(good.size()) +
                                  " (" + std::to_string(torn.size() - 3) + " bytes cut"));
    CHECK(read_file(path) == good);
    // New records follow the good ones directly.
    logged_put(wal, "d", 4, 4.0);
  }
  CHECK(read_file(path) == log_of({{"a", 1, 1.0}, {"b", 2, 2.0}, {"d", 4, 4.0}}));
}

TEST_CASE("zeros after the last record are space allocated ahead: a clean end, cut silently",
          "[wal]") {
  TempDir dir;
  std::vector<std::string> lines;
  const std::string path = dir.file("data.log");
  const std::string good = log_of({{"a", 1, 1.0}, {"b", 2, 0.0}});  // 0.0: zero bytes in a record
  write_file(path, good + std::string(100000, '\0'));  // what a killed server leaves

  Storage storage;
  {
    Wal wal(options_for(path, &lines), storage);
    CHECK(wal.replay_stats().records == 2);
    CHECK_FALSE(any_line_has(lines, "torn"));
    CHECK_FALSE(any_line_has(lines, "warning"));
    CHECK(read_file(path) == good);
    logged_put(wal, "c", 3, 3.0);
    // While open, the log has space allocated after its records.
    CHECK(std::filesystem::file_size(path) > log_of({{"a", 1, 1.0}, {"b", 2, 0.0}, {"c", 3, 3.0}}).size());
  }
  // Closing cuts it off.
  CHECK(read_file(path) == log_of({{"a", 1, 1.0}, {"b", 2, 0.0}, {"c", 3, 3.0}}));
}

TEST_CASE("corruption in the middle refuses to open naming the offset, and repair recovers",
          "[wal]") {
  TempDir dir;
  std::vector<std::string> lines;
  const std::string path = dir.file("data.log");
  std::string bytes = log_of({{"a", 1, 1.0}, {"b", 2, 2.0}, {"c", 3, 3.0}});
  const std::size_t middle = log_of({{"a", 1, 1.0}}).size();
  bytes[middle + 10] = static_cast<char>(bytes[middle + 10] ^ 0x10);
  write_file(path, bytes);

  {
    Storage storage;
    try {
      Wal wal(options_for(path, &lines), storage);
      FAIL("a corrupt log opened without repair");
    } catch (const std::runtime_error& e) {
      CHECK_THAT(e.what(), Catch::Contains("corrupt at byte offset " + std::to_string(middle)));
      CHECK_THAT(e.what(), Catch::Contains("--repair"));
    }
    CHECK(read_file(path) == bytes);  // refusing leaves the file untouched
  }
  {
    Storage storage;
    WalOptions options = options_for(path, &lines);
    options.repair = true;
    Wal wal(options, storage);
    CHECK(series(storage, "a") == std::vector<Sample>{{1, 1.0}});
    CHECK(series(storage, "b").empty());
    CHECK(series(storage, "c") == std::vector<Sample>{{3, 3.0}});
    CHECK(any_line_has(lines, "repair: dropped 25 damaged bytes"));
  }
  // The repaired file is clean: it opens without --repair.
  Storage storage;
  Wal wal(options_for(path, &lines), storage);
  CHECK(storage.sample_count() == 2);
}

TEST_CASE("a log holding a key longer than the default max_key_bytes replays normally", "[wal]") {
  // Written by a server with a larger --max-line-bytes; a server with the
  // default one must still restore it.
  TempDir dir;
  std::vector<std::string> lines;
  const std::string path = dir.file("data.log");
  const std::string long_key(100 * 1024, 'k');
  REQUIRE(long_key.size() > WalOptions().max_key_bytes);
  {
    Storage storage;
    WalOptions options = options_for(path, &lines);
    options.max_key_bytes = 200 * 1024;
    Wal wal(options, storage);
    logged_put(wal, "a", 1, 1.0);
    logged_put(wal, long_key, 2, 2.0);
    logged_put(wal, "b", 3, 3.0);
  }
  Storage restored;
  Wal wal(options_for(path, &lines), restored);
  CHECK(wal.replay_stats().records == 3);
  CHECK(series(restored, long_key) == std::vector<Sample>{{2, 2.0}});
  CHECK(series(restored, "b") == std::vector<Sample>{{3, 3.0}});
  CHECK_FALSE(any_line_has(lines, "warning"));
}

TEST_CASE("a put whose key the log could not replay is refused and changes nothing", "[wal]") {
  // Replay rejects a record with an empty key or one longer than
  // kMaxLogKeyBytes as damage, so such a put is never acknowledged.
  TempDir dir;
  std::vector<std::string> lines;
  const std::string path = dir.file("data.log");
  {
    Storage storage;
    Wal wal(options_for(path, &lines), storage);
    uint64_t ticket = 0;
    REQUIRE_FALSE(wal.put("", 1, 1.0, &ticket));
    CHECK(storage.key_count() == 0);

    // A key of kMaxLogKeyBytes + 1 bytes: untouched pages of an anonymous
    // mapping, so the test costs no memory if the key is refused unread.
    const std::size_t huge = std::size_t{metrics::kMaxLogKeyBytes} + 1;
    void* p = ::mmap(nullptr, huge, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    REQUIRE(p != MAP_FAILED);
    CHECK_FALSE(wal.put(std::string_view(static_cast<const char*>(p), huge), 1, 1.0, &ticket));
    ::munmap(p, huge);
    CHECK(storage.key_count() == 0);

    // In a batch, the puts before the unreplayable key are applied, the
    // rest change nothing.
    const std::vector<Storage::KeyedSample> batch = {{"a", 1, 1.0}, {"", 2, 2.0}, {"b", 3, 3.0}};
    CHECK(wal.put_batch(batch.data(), batch.size(), &ticket) == 1);
    CHECK(storage.key_count() == 1);
    CHECK_FALSE(wal.failed());  // the log itself is fine
    logged_put(wal, "c", 4, 4.0);
  }
  Storage restored;
  Wal wal(options_for(path, &lines), restored);
  CHECK(restored.key_count() == 2);
  CHECK(series(restored, "c") == std::vector<Sample>{{4, 4.0}});
}

TEST_CASE("a batch of puts stops at the first one the log refuses, which changes nothing",
          "[wal]") {
  // The log refuses an empty key; the puts before it are applied with
  // consecutive tickets, and neither it nor any put after it stores a sample
  // or creates a key.
  std::vector<std::string> keys;
  for (int i = 0; i < 40; ++i) keys.push_back("key" + std::to_string(i % 7));
  for (std::size_t accepted : {std::size_t{0}, std::size_t{1}, std::size_t{16}, std::size_t{17},
                               std::size_t{39}, std::size_t{40}}) {
    CAPTURE(accepted);
    std::vector<Storage::KeyedSample> puts;
    for (int i = 0; i < 40; ++i) puts.push_back(Storage::KeyedSample{keys[i], i, 0.5 * i});
    if (accepted < puts.size()) puts[accepted].key = "";
    TempDir dir;
    std::vector<std::string> lines;
    Storage storage;
    Wal wal(options_for(dir.file("data.log"), &lines), storage);
    uint64_t last = 0;
    CHECK(wal.put_batch(puts.data(), puts.size(), &last) == accepted);
    CHECK(last == accepted);
    CHECK(storage.sample_count() == accepted);
    // Only the puts accepted created keys.
    CHECK(storage.key_count() == std::min<std::size_t>(accepted, 7));
  }
}

TEST_CASE("a file that is not a log is refused and left untouched", "[wal]") {
  TempDir dir;
  std::vector<std::string> lines;
  const std::string path = dir.file("notes.txt");
  write_file(path, "precious notes that are not a metrics log\n");
  Storage storage;
  CHECK_THROWS_WITH(Wal(options_for(path, &lines), storage),
                    Catch::Contains("not a metrics-server log"));
  CHECK(read_file(path) == "precious notes that are not a metrics log\n");
}

TEST_CASE("compaction rewrites the log to the live samples and keeps puts made meanwhile",
          "[wal]") {
  TempDir dir;
  std::vector<std::string> lines;
  const std::string path = dir.file("data.log");
  WalOptions options = options_for(path, &lines);
  options.compact_min_bytes = std::numeric_limits<uint64_t>::max();  // only when asked
  constexpr int kWriters = 3;
  constexpr int kPutsPerWriter = 3000;
  {
    Storage storage;
    Wal wal(options, storage);
    // Many overwrites of few samples: the log is mostly dead records.
    for (int i = 0; i < 20000; ++i) logged_put(wal, "dead", i % 10, i);

    std::atomic<bool> go{false};
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&, w] {
        while (!go.load()) std::this_thread::yield();
        for (int i = 0; i < kPutsPerWriter; ++i) {
          uint64_t ticket = 0;
          if (wal.put("w" + std::to_string(w), i, i * 0.5, &ticket)) wal.commit(ticket);
        }
      });
    }
    go = true;
    CHECK(wal.compact());
    for (std::thread& t : writers) t.join();
    CHECK(wal.compactions() == 1);
    CHECK_FALSE(std::filesystem::exists(path + ".rewrite"));
  }
  // Once closed, the file is its records alone: 10 live "dead" samples and
  // the writers' 9,000, instead of 20,000 records of "dead" and those. A
  // writer's put made while the rewrite copied the store can be in the file
  // twice (in the copy, and among the records appended meanwhile), so how
  // many depends on timing (under ASan, about a quarter of them once): the
  // file holds at most the live records twice over, and less than the dead
  // records alone.
  std::vector<Put> live(10, Put{"dead", 0, 0.0});
  for (int w = 0; w < kWriters; ++w) {
    for (int i = 0; i < kPutsPerWriter; ++i) live.push_back(Put{"w" + std::to_string(w), i, 0.5});
  }
  const std::size_t live_bytes = log_of(live).size();
  const std::size_t before = log_of(std::vector<Put>(20000, Put{"dead", 0, 0.0})).size();
  CHECK(std::filesystem::file_size(path) >= live_bytes);
  CHECK(std::filesystem::file_size(path) <= 2 * live_bytes);
  CHECK(std::filesystem::file_size(path) < before);
  Storage restored;
  Wal wal(options, restored);
  CHECK(restored.sample_count() == 10 + kWriters * kPutsPerWriter);
  std::vector<Sample> dead = series(restored, "dead");
  REQUIRE(dead.size() == 10);
  for (int s = 0; s < 10; ++s) CHECK(dead[s].value == 19990 + s);
  for (int w = 0; w < kWriters; ++w) {
    std::vector<Sample> samples = series(restored, "w" + std::to_string(w));
    REQUIRE(samples.size() == kPutsPerWriter);
    for (int i = 0; i < kPutsPerWriter; ++i) CHECK(samples[i] == Sample{i, i * 0.5});
  }
}

TEST_CASE("compaction through a symlinked data file rewrites the target and keeps the link",
          "[wal]") {
  TempDir dir;
  std::vector<std::string> lines;
  const std::string target_dir = dir.file("real");
  REQUIRE(std::filesystem::create_directory(target_dir));
  const std::string target = target_dir + "/data.log";
  const std::string link = dir.file("data.log");
  std::filesystem::create_symlink("real/data.log", link);  // relative, as operators often make them
  WalOptions options = options_for(link, &lines);
  options.compact_min_bytes = std::numeric_limits<uint64_t>::max();  // only when asked
  {
    Storage storage;
    Wal wal(options, storage);
    for (int i = 0; i < 1000; ++i) logged_put(wal, "k", i % 10, i);
    REQUIRE(wal.compact());
    logged_put(wal, "after", 1, 1.0);  // appended to the rewritten file
    CHECK(std::filesystem::is_symlink(link));
    CHECK(std::filesystem::read_symlink(link) == "real/data.log");
    CHECK_FALSE(std::filesystem::exists(link + ".rewrite"));
    CHECK_FALSE(std::filesystem::exists(target + ".rewrite"));
  }
  CHECK(std::filesystem::is_symlink(link));
  // The target holds the compacted log: 10 live samples and the later put.
  std::vector<Put> live;
  for (int s = 0; s < 10; ++s) live.push_back(Put{"k", s, 990.0 + s});
  live.push_back(Put{"after", 1, 1.0});
  CHECK(read_file(target) == log_of(live));

  Storage restored;
  Wal wal(options, restored);
  CHECK(restored.sample_count() == 11);
  std::vector<Sample> k = series(restored, "k");
  REQUIRE(k.size() == 10);
  for (int s = 0; s < 10; ++s) CHECK(k[s].value == 990.0 + s);
  CHECK(series(restored, "after") == std::vector<Sample>{{1, 1.0}});
}

TEST_CASE("the log compacts itself in the background once it is twice the live data", "[wal]") {
  TempDir dir;
  std::vector<std::string> lines;
  WalOptions options = options_for(dir.file("data.log"), &lines);
  options.compact_min_bytes = 64 * 1024;
  Storage storage;
  Wal wal(options, storage);
  for (int i = 0; i < 10000; ++i) logged_put(wal, "k", i % 5, i);
  REQUIRE(metrics::test::wait_until([&] { return wal.compactions() >= 1; }));
  CHECK(series(storage, "k").size() == 5);
}
