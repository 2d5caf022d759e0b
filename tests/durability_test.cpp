// Durability against the real metrics-server binary, run as a child process
// by PID: SIGKILL under pipelined load, SIGKILL during a compaction, a full
// disk (RLIMIT_FSIZE; a small tmpfs), a second server on the same file, a
// corrupt file.
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "metrics/client.hpp"
#include "metrics/protocol.hpp"
#include "metrics/socket.hpp"
#include "test_util.hpp"

using namespace metrics::test;

namespace {

// Starts metrics-server on 127.0.0.1, a free port, with `args`, and waits
// for its "listening on" line.
std::unique_ptr<ServerProcess> start_server(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"127.0.0.1", "0"};
  argv.insert(argv.end(), args.begin(), args.end());
  return std::make_unique<ServerProcess>(argv);
}

struct Put {
  int64_t timestamp;
  double value;
};

// One client connection that pipelines puts to one key and records which
// were answered "ok". The i-th put of the connection goes to timestamp_of(i)
// with value_of(i).
struct Pump {
  std::string key;
  std::vector<Put> acked;         // in the order sent
  std::size_t sent = 0;           // puts sent, answered or not
  std::size_t other_answers = 0;  // answers that were neither ok nor storage failure
  std::size_t failures = 0;       // "storage failure" answers
  metrics::Fd fd;
  std::string buffer;

  bool connect(uint16_t port) {
    try {
      fd = metrics::connect_tcp("127.0.0.1", port, kDeadline);
      return true;
    } catch (const metrics::SystemError&) {
      return false;
    }
  }

  // Sends `batch` puts in one write and reads their answers. Returns false
  // when the connection ends first (the server was killed): the puts not
  // answered are not acknowledged.
  template <typename TimestampOf, typename ValueOf>
  bool put_batch(std::atomic<std::size_t>& acks, TimestampOf timestamp_of, ValueOf value_of,
                 std::size_t batch) {
    std::string lines;
    std::vector<Put> puts;
    for (std::size_t i = 0; i < batch; ++i) {
      Put p{timestamp_of(sent + i), value_of(sent + i)};
      puts.push_back(p);
      lines += metrics::format_put_request(key, p.value, p.timestamp);
    }
    if (!metrics::send_all(fd.get(), lines, kDeadline)) return false;
    sent += batch;
    std::size_t answered = 0;
    while (answered < batch) {
      std::size_t end = metrics::find_answer_end(buffer);
      if (end == 0) {
        char chunk[65536];
        long n = metrics::recv_some(fd.get(), chunk, sizeof chunk, kDeadline);
        if (n <= 0) return false;
        buffer.append(chunk, static_cast<std::size_t>(n));
        continue;
      }
      std::string_view answer(buffer.data(), end);
      if (answer == metrics::kOkAnswer) {
        acked.push_back(puts[answered]);
        ++acks;
      } else if (answer == metrics::kStorageFailureAnswer) {
        ++failures;
      } else {
        ++other_answers;
      }
      buffer.erase(0, end);
      ++answered;
    }
    return true;
  }

  // Pipelines batches of 64 until `stop` or the connection ends.
  template <typename TimestampOf, typename ValueOf>
  void run(uint16_t port, const std::atomic<bool>& stop, std::atomic<std::size_t>& acks,
           TimestampOf timestamp_of, ValueOf value_of) {
    if (!connect(port)) return;
    while (!stop.load() && put_batch(acks, timestamp_of, value_of, 64)) {
    }
  }
};

// The samples of `key` on the server at `port`, by timestamp.
std::map<int64_t, double> stored(uint16_t port, const std::string& key) {
  metrics::Client client("127.0.0.1", port, 10.0);
  std::map<int64_t, double> result;
  auto answer = client.get(key);
  for (const metrics::Sample& s : answer[key]) result[s.timestamp] = s.value;
  return result;
}

// How many acknowledged puts (each to its own timestamp) are not stored
// with their value; `first` describes the first such put.
std::size_t count_lost(const std::map<int64_t, double>& have, const std::vector<Put>& acked,
                       std::string* first) {
  std::size_t lost = 0;
  for (const Put& p : acked) {
    auto it = have.find(p.timestamp);
    if (it == have.end() || it->second != p.value) {
      if (lost++ == 0) {
        *first = "timestamp " + std::to_string(p.timestamp) + " value " + std::to_string(p.value);
      }
    }
  }
  return lost;
}

// The clients of one round of a crash test: one Pump each, on keys
// "r<round>.c<c>", each in a thread of its own until stop_and_join() (or
// destruction). value_of(c, i) is client c's i-th value.
class PumpRound {
 public:
  template <typename TimestampOf, typename ValueOf>
  PumpRound(int clients, int round, uint16_t port, TimestampOf timestamp_of, ValueOf value_of)
      : pumps_(static_cast<std::size_t>(clients)) {
    for (std::size_t c = 0; c < pumps_.size(); ++c) {
      pumps_[c].key = "r" + std::to_string(round) + ".c" + std::to_string(c);
      threads_.emplace_back([this, port, c, timestamp_of, value_of] {
        pumps_[c].run(port, stop_, acks_, timestamp_of,
                      [c, value_of](std::size_t i) { return value_of(c, i); });
      });
    }
  }
  ~PumpRound() { stop_and_join(); }
  PumpRound(const PumpRound&) = delete;
  PumpRound& operator=(const PumpRound&) = delete;

  // Puts answered "ok" so far, over all clients.
  std::size_t acks() const { return acks_.load(); }
  void stop_and_join() {
    stop_ = true;
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  // Read them only after stop_and_join().
  const std::vector<Pump>& pumps() const { return pumps_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> acks_{0};
  std::vector<Pump> pumps_;
  std::vector<std::thread> threads_;
};

// The rounds of a crash test against a metrics-server started with `args`:
// in each, `clients` pumps load it while kill(server, load) waits for its
// moment and kills it with SIGKILL; then the pumps stop, the server restarts
// on the same file, and check(port, pump) checks what each pump's key holds.
// A SIGTERM at the end must stop the server with exit status 0.
template <typename TimestampOf, typename ValueOf, typename Kill, typename Check>
void run_crash_rounds(const std::vector<std::string>& args, int rounds, int clients,
                      TimestampOf timestamp_of, ValueOf value_of, Kill kill, Check check) {
  auto server = start_server(args);
  for (int round = 0; round < rounds; ++round) {
    CAPTURE(round);
    PumpRound load(clients, round, server->port, timestamp_of, value_of);
    kill(server->process, load);
    load.stop_and_join();

    server = start_server(args);
    for (const Pump& pump : load.pumps()) {
      CAPTURE(pump.key, pump.acked.size(), pump.sent);
      CHECK(pump.other_answers == 0);
      check(server->port, pump);
    }
  }
  ProcessResult stopped = server->process.stop(SIGTERM);
  CHECK(stopped.exit_code == 0);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Flips the lowest bit of the byte at `offset` of the file at `path`.
void flip_bit(const std::string& path, std::size_t offset) {
  std::string bytes = read_file(path);
  bytes.at(offset) = static_cast<char>(bytes.at(offset) ^ 0x01);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Puts keys[i] = i + 1 at timestamp i + 1, in order, over one connection to
// the server at `port`.
void put_one_each(uint16_t port, const std::vector<std::string>& keys) {
  metrics::Client client("127.0.0.1", port, 10.0);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    client.put(keys[i], static_cast<double>(i + 1), static_cast<int64_t>(i + 1));
  }
}

}  // namespace

TEST_CASE("every put acknowledged before a SIGKILL is restored after the restart",
          "[durability]") {
  // The crash test: pipelined puts from several clients, SIGKILL at a
  // pseudo-random moment (after a random number of acknowledgements),
  // restart on the same file, 20 times. A killed process loses nothing it
  // acknowledged under any policy: without kAlways, a record counts once it
  // is in the page cache, which outlives the process. (The killed server
  // also leaves zeros allocated ahead at the end of the file.)
  const std::string policy = GENERATE(as<std::string>{}, "always", "everysec", "no");
  CAPTURE(policy);
  constexpr int kRounds = 20;
  constexpr int kClients = 4;
  TempDir dir;
  const std::vector<std::string> args = {"--data-file", dir.file("data.log"), "--fsync", policy};
  std::mt19937 rng(Catch::rngSeed());
  run_crash_rounds(
      args, kRounds, kClients, [](std::size_t i) { return static_cast<int64_t>(i); },
      [](std::size_t c, std::size_t i) {
        return static_cast<double>(c) + 0.25 * static_cast<double>(i);
      },
      [&](ChildProcess& server, const PumpRound& load) {
        const std::size_t target = std::uniform_int_distribution<std::size_t>(1, 2000)(rng);
        // A generous deadline: with --fsync always on a disk that other work
        // keeps busy, 2000 acknowledgements can take a while.
        bool loaded = wait_until([&] { return load.acks() >= target; }, 3 * kDeadline);
        ProcessResult killed = server.stop(SIGKILL);
        REQUIRE(loaded);
        CHECK(killed.signal == SIGKILL);
      },
      [](uint16_t port, const Pump& pump) {
        CHECK(pump.failures == 0);
        std::string first;
        CHECK(count_lost(stored(port, pump.key), pump.acked, &first) == 0);
        INFO("first lost: " << first);
      });
}

TEST_CASE("nothing acknowledged is lost when the server is killed during a compaction",
          "[durability]") {
  // Each client overwrites the same 50 timestamps of its key, so the log is
  // mostly dead records and a compaction starts soon; the server is killed
  // right after it logs "compaction started", or a little later.
  constexpr int kRounds = 5;
  constexpr int kClients = 3;
  constexpr int kSlots = 50;
  TempDir dir;
  const std::string path = dir.file("data.log");
  const std::vector<std::string> args = {"--data-file", path, "--fsync", "everysec",
                                         "--compact-min-bytes", "65536"};
  std::mt19937 rng(Catch::rngSeed());
  int interrupted = 0;
  run_crash_rounds(
      args, kRounds, kClients, [](std::size_t i) { return static_cast<int64_t>(i % kSlots); },
      [](std::size_t, std::size_t i) { return static_cast<double>(i); },
      [&](ChildProcess& server, const PumpRound&) {
        server.wait_for_stderr_line("compaction started");
        // Kill at once, or after up to 2 ms of the rewrite.
        auto delay = std::chrono::microseconds(std::uniform_int_distribution<int>(0, 2000)(rng));
        auto until = std::chrono::steady_clock::now() + delay;
        while (std::chrono::steady_clock::now() < until) {
        }
        ProcessResult killed = server.stop(SIGKILL);
        if (std::filesystem::exists(path + ".rewrite")) ++interrupted;
        CHECK(killed.signal == SIGKILL);
      },
      [](uint16_t port, const Pump& pump) {
        std::map<int64_t, double> have = stored(port, pump.key);
        // For each timestamp, the value must be the last acknowledged put's,
        // or a later put's that was sent but not yet answered.
        std::map<int64_t, double> last_acked;
        for (const Put& p : pump.acked) last_acked[p.timestamp] = p.value;
        for (const auto& [ts, value] : last_acked) {
          CAPTURE(ts, value);
          auto it = have.find(ts);
          REQUIRE(it != have.end());
          CHECK(it->second >= value);
          CHECK(it->second < static_cast<double>(pump.sent));
          CHECK(static_cast<int64_t>(it->second) % kSlots == ts);
        }
      });
  // Not asserted, since it depends on timing (5 of 5 on the development
  // machine's ext4): how many kills landed while the rewrite file existed.
  INFO("kills that interrupted a rewrite: " << interrupted << " of " << kRounds);
  SUCCEED();
}

TEST_CASE("a full disk fails puts with storage failure, gets keep working, nothing acked is lost",
          "[durability]") {
  TempDir dir;
  const std::string path = dir.file("data.log");
  const std::vector<std::string> args = {"--data-file", path, "--fsync", "always"};
  auto server = start_server(args);
  std::atomic<std::size_t> acks{0};
  Pump pump;
  pump.key = "disk";
  REQUIRE(pump.connect(server->port));
  auto timestamp_of = [](std::size_t i) { return static_cast<int64_t>(i); };
  auto value_of = [](std::size_t i) { return 0.5 * static_cast<double>(i); };
  REQUIRE(pump.put_batch(acks, timestamp_of, value_of, 8));
  REQUIRE(pump.acked.size() == 8);
  // A file-size limit in the server makes it fail to allocate log space past
  // 16 KiB with EFBIG (the server ignores SIGXFSZ), like a disk that is
  // full. The log allocates ahead (64 KiB for a small one), so puts fail
  // once that space is used up.
  rlimit small{16 * 1024, RLIM_INFINITY};
  REQUIRE(::prlimit(server->pid(), RLIMIT_FSIZE, &small, nullptr) == 0);

  // Batches of 8 until the log fills up and the first failure comes back.
  for (int batch = 0; batch < 1000 && pump.failures == 0; ++batch) {
    REQUIRE(pump.put_batch(acks, timestamp_of, value_of, 8));
  }
  REQUIRE(pump.failures > 0);
  CHECK(pump.other_answers == 0);
  REQUIRE_FALSE(pump.acked.empty());

  // While the log cannot be written, puts are refused and gets still work.
  RawConnection c(server->port);
  c.send("put refused 1 1\n");
  CHECK(c.read_answers() == "error\nstorage failure\n\n");
  std::string first;
  CHECK(count_lost(stored(server->port, "disk"), pump.acked, &first) == 0);
  c.send("get refused\n");
  CHECK(c.read_answers() == "ok\n\n");

  // Room again: the retry (once a second) makes the log writable.
  rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
  REQUIRE(::prlimit(server->pid(), RLIMIT_FSIZE, &unlimited, nullptr) == 0);
  bool writable = wait_until([&] {
    c.send("put after 2 2\n");
    return c.read_answers() == "ok\n\n";
  });
  CHECK(writable);
  // Both are logged. The server logs "writable again" just after it lets
  // puts through again, so the put above can be answered before the line is
  // written: the test waits for the lines instead of killing the server at
  // once and expecting them.
  CHECK_NOTHROW(server->process.wait_for_stderr_line("write failed: File too large"));
  CHECK_NOTHROW(server->process.wait_for_stderr_line("writable again"));
  ProcessResult killed = server->process.stop(SIGKILL);
  CHECK(killed.signal == SIGKILL);

  server = start_server(args);
  CHECK(count_lost(stored(server->port, "disk"), pump.acked, &first) == 0);
  INFO("first lost: " << first);
  CHECK(stored(server->port, "after") == std::map<int64_t, double>{{2, 2.0}});
  CHECK(stored(server->port, "refused").empty());
  CHECK(server->process.stop(SIGTERM).exit_code == 0);
}

namespace {

// A tmpfs of a fixed size mounted on a directory for the guard's lifetime,
// the way the issue reproduced a full disk. Mounting needs root
// (CAP_SYS_ADMIN); mounted() says whether it worked.
class TmpfsMount {
 public:
  TmpfsMount(const std::string& dir, const std::string& size) : dir_(dir) {
    const std::string data = "size=" + size;
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, data.c_str()) == 0;
    if (!mounted_) error_ = errno;
  }
  // Detached lazily, so an unmount never fails on a file still open.
  ~TmpfsMount() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;
  bool mounted() const { return mounted_; }
  int error() const { return error_; }

 private:
  std::string dir_;
  bool mounted_ = false;
  int error_ = 0;
};

// Sends `requests` (complete lines) in one write and returns the `count`
// answers, one string each.
std::vector<std::string> pipelined(RawConnection& c, const std::string& requests,
                                   std::size_t count) {
  c.send(requests);
  const std::string all = c.read_answers(count);
  std::vector<std::string> answers;
  std::size_t start = 0;
  while (start < all.size()) {
    const std::size_t end = metrics::find_answer_end(std::string_view(all).substr(start));
    REQUIRE(end != 0);
    answers.push_back(all.substr(start, end));
    start += end;
  }
  REQUIRE(answers.size() == count);
  return answers;
}

// Checks on the server at `port` that every key in `acked` holds exactly its
// one sample (value and timestamp i for key "k<i>"), and that no key in
// `refused` is stored: neither by a get of it nor among `get *`'s keys.
void check_only_acked_stored(uint16_t port, const std::vector<std::size_t>& acked,
                             const std::vector<std::size_t>& refused) {
  RawConnection c(port);
  std::string requests;
  std::vector<std::string> expected;
  for (std::size_t i : acked) {
    const std::string key = "k" + std::to_string(i);
    requests += "get " + key + "\n";
    std::string answer = "ok\n";
    metrics::append_sample_line(
        &answer, key, metrics::Sample{static_cast<int64_t>(i), static_cast<double>(i)});
    expected.push_back(answer + "\n");
  }
  for (std::size_t i : refused) {
    requests += "get k" + std::to_string(i) + "\n";
    expected.push_back("ok\n\n");
  }
  // In rounds of 1,000 gets, so that neither side's socket buffers fill up
  // while the other is still sending.
  std::vector<std::string> answers;
  std::size_t start = 0;
  for (std::size_t sent = 0; sent < expected.size();) {
    const std::size_t n = std::min<std::size_t>(1000, expected.size() - sent);
    std::size_t end = start;
    for (std::size_t r = 0; r < n; ++r) end = requests.find('\n', end) + 1;
    for (std::string& a : pipelined(c, requests.substr(start, end - start), n)) {
      answers.push_back(std::move(a));
    }
    start = end;
    sent += n;
  }
  std::size_t wrong = 0;
  for (std::size_t a = 0; a < answers.size(); ++a) {
    if (answers[a] == expected[a]) continue;
    if (wrong++ == 0) {
      INFO("first wrong answer: " << (a < acked.size() ? "acked" : "refused") << " put, got "
                                  << answers[a] << "expected " << expected[a]);
      CHECK(answers[a] == expected[a]);
    }
  }
  CHECK(wrong == 0);

  // `get *`: the keys stored, one line per sample.
  const std::string all = pipelined(c, "get *\n", 1).front();
  std::set<std::string> keys;
  std::istringstream lines(all.substr(3));
  for (std::string line; std::getline(lines, line) && !line.empty();) {
    keys.insert(line.substr(0, line.find(' ')));
  }
  std::size_t refused_listed = 0;
  for (std::size_t i : refused) refused_listed += keys.count("k" + std::to_string(i));
  CHECK(refused_listed == 0);
  CHECK(keys.size() == acked.size());
}

}  // namespace

TEST_CASE("with --fsync always on a full tmpfs, every ok put is stored and no refused put is",
          "[durability]") {
  // The reproduction: pipelined batches of 200 puts to new keys on a
  // 2 MB tmpfs until the log runs out of space. A batch that fails part way
  // had its first puts appended (and applied): they must be acknowledged,
  // and the refused ones must leave no trace, before and after a SIGKILL.
  TempDir dir;
  const std::string mount_dir = dir.file("fs");
  REQUIRE(std::filesystem::create_directory(mount_dir));
  TmpfsMount tmpfs(mount_dir, "2m");
  if (!tmpfs.mounted()) {
    WARN("skipped: cannot mount a tmpfs (" << std::strerror(tmpfs.error())
                                           << "); this test needs root");
    SUCCEED();
    return;
  }
  const std::vector<std::string> args = {"--data-file", mount_dir + "/data.log", "--fsync",
                                         "always"};
  auto server = start_server(args);
  constexpr std::size_t kBatch = 200;
  std::vector<std::size_t> acked;
  std::vector<std::size_t> refused;
  std::size_t other = 0;
  std::size_t next = 0;
  {
    RawConnection c(server->port);
    // 2 MB holds some 50,000 of these records; two more batches after the
    // first refusal show the log stays refusing.
    int batches_after_refusal = 0;
    for (int batch = 0; batch < 1000 && batches_after_refusal < 3; ++batch) {
      std::string requests;
      for (std::size_t i = next; i < next + kBatch; ++i) {
        requests += metrics::format_put_request("k" + std::to_string(i), static_cast<double>(i),
                                                static_cast<int64_t>(i));
      }
      const std::vector<std::string> answers = pipelined(c, requests, kBatch);
      for (std::size_t a = 0; a < kBatch; ++a, ++next) {
        if (answers[a] == metrics::kOkAnswer) {
          acked.push_back(next);
        } else if (answers[a] == metrics::kStorageFailureAnswer) {
          refused.push_back(next);
        } else {
          ++other;
        }
      }
      if (!refused.empty()) ++batches_after_refusal;
    }
  }
  REQUIRE(!refused.empty());
  REQUIRE(!acked.empty());
  CHECK(other == 0);
  INFO(acked.size() << " puts acknowledged, " << refused.size() << " refused");
  check_only_acked_stored(server->port, acked, refused);

  ProcessResult killed = server->process.stop(SIGKILL);
  CHECK(killed.signal == SIGKILL);
  CHECK_THAT(killed.err, Catch::Contains("write failed: No space left on device"));
  server = start_server(args);
  check_only_acked_stored(server->port, acked, refused);
  CHECK(server->process.stop(SIGTERM).exit_code == 0);
}

TEST_CASE("with a log, pipelined puts and gets are answered in order and gets see earlier puts",
          "[durability]") {
  // The session gathers puts and applies them together: a get in the same
  // packet must still see every put before it, and nothing after it.
  TempDir dir;
  const std::vector<std::string> args = {"--data-file", dir.file("data.log")};
  auto server = start_server(args);
  RawConnection c(server->port);
  c.send("put a 1 1\nput a 2 2\nget a\nput b 3 3\nbad\nget *\nput a 9 1\n\nget a\n");
  CHECK(c.read_answers(8) ==
        "ok\n\nok\n\nok\na 1.0 1\na 2.0 2\n\nok\n\nerror\nwrong command\n\n"
        "ok\na 1.0 1\na 2.0 2\nb 3.0 3\n\nok\n\nok\na 9.0 1\na 2.0 2\n\n");

  // More puts in one packet than one batch holds (256).
  std::string many;
  std::string expected;
  constexpr int kPuts = 1000;
  for (int i = 0; i < kPuts; ++i) {
    many += "put many." + std::to_string(i % 7) + " " + std::to_string(i) + " " +
            std::to_string(i) + "\n";
    expected += "ok\n\n";
  }
  c.send(many);
  CHECK(c.read_answers(kPuts) == expected);
  ProcessResult stopped = server->process.stop(SIGTERM);
  CHECK(stopped.exit_code == 0);

  server = start_server(args);
  CHECK(stored(server->port, "a") == std::map<int64_t, double>{{1, 9.0}, {2, 2.0}});
  std::size_t restored = 0;
  for (int k = 0; k < 7; ++k) restored += stored(server->port, "many." + std::to_string(k)).size();
  CHECK(restored == kPuts);
  CHECK(server->process.stop(SIGTERM).exit_code == 0);
}

TEST_CASE("a second server on the same data file refuses to start", "[durability]") {
  TempDir dir;
  const std::string path = dir.file("data.log");
  auto first = start_server({"--data-file", path});
  ProcessResult second = run_process({server_binary(), "127.0.0.1", "0", "--data-file", path});
  CHECK(second.exit_code == 1);
  CHECK_THAT(second.err, Catch::Contains("data file " + path +
                                         " is locked: another metrics-server is using it"));
  // The first one is unharmed.
  metrics::Client client("127.0.0.1", first->port, 10.0);
  client.put("k", 1.5, 1);
  CHECK(stored(first->port, "k") == std::map<int64_t, double>{{1, 1.5}});
  CHECK(first->process.stop(SIGTERM).exit_code == 0);
}

TEST_CASE("a repair finds a record after damage whose key only --max-line-bytes allows",
          "[durability]") {
  // The resync after damage considers keys as long as a request line can
  // carry: the server hands its --max-line-bytes to the log.
  TempDir dir;
  const std::string path = dir.file("data.log");
  const std::string long_key(100000, 'k');
  const std::vector<std::string> args = {"--data-file", path, "--max-line-bytes", "200000"};
  auto server = start_server(args);
  put_one_each(server->port, {"a", long_key, "c"});
  REQUIRE(server->process.stop(SIGTERM).exit_code == 0);

  REQUIRE(read_file(path).size() == 8 + 25 + (24 + long_key.size()) + 25);
  flip_bit(path, 8 + 20);  // record "a"'s value

  std::vector<std::string> repair_args = args;
  repair_args.push_back("--repair");
  server = start_server(repair_args);
  CHECK(stored(server->port, "a").empty());
  CHECK(stored(server->port, long_key) == std::map<int64_t, double>{{2, 2.0}});
  CHECK(stored(server->port, "c") == std::map<int64_t, double>{{3, 3.0}});
  CHECK(server->process.stop(SIGTERM).exit_code == 0);
}

TEST_CASE("a data file corrupt in the middle stops the server unless --repair", "[durability]") {
  TempDir dir;
  const std::string path = dir.file("data.log");
  auto server = start_server({"--data-file", path});
  put_one_each(server->port, {"a", "b", "c"});
  REQUIRE(server->process.stop(SIGTERM).exit_code == 0);

  const std::size_t middle = 8 + 25;  // the header, then record "a"
  REQUIRE(read_file(path).size() == 8 + 3 * 25);
  flip_bit(path, middle + 20);

  ProcessResult refused = run_process({server_binary(), "127.0.0.1", "0", "--data-file", path});
  CHECK(refused.exit_code == 1);
  CHECK_THAT(refused.err, Catch::Contains("corrupt at byte offset " + std::to_string(middle)));
  CHECK_THAT(refused.err, Catch::Contains("--repair"));

  server = start_server({"--data-file", path, "--repair"});
  CHECK(stored(server->port, "a") == std::map<int64_t, double>{{1, 1.0}});
  CHECK(stored(server->port, "b").empty());
  CHECK(stored(server->port, "c") == std::map<int64_t, double>{{3, 3.0}});
  ProcessResult repaired = server->process.stop(SIGTERM);
  CHECK(repaired.exit_code == 0);
  CHECK_THAT(repaired.err, Catch::Contains("repair: dropped 25 damaged bytes"));
}
