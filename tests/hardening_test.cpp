// Hardening: limits, bad peers and faults (issue 3, docs/protocol.md "Limits and
// bad peers"). Each test provokes one fault against a real server — in this
// process, or a child metrics-server when memory, descriptors, CPU time or
// signals of the server process itself are what is checked — and asserts the
// server's observable outcome. Figures worth reporting (RSS growth, CPU
// ratios, shutdown time) are printed on stderr as "[measure] ..." lines.
#include <poll.h>
#include <pthread.h>
#include <dirent.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "procfs.hpp"
#include "sanitizers.hpp"
#include "test_util.hpp"

namespace {

using metrics::Fd;
using metrics::ServerOptions;
using namespace metrics::test;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kWrongCommand = "error\nwrong command\n\n";
constexpr std::string_view kTooMany = "error\ntoo many connections\n\n";

long rss_kib(pid_t pid) { return metrics::proc_status_field(pid, "VmRSS"); }
long thread_count(pid_t pid) { return metrics::proc_status_field(pid, "Threads"); }
double cpu_seconds(pid_t pid) { return metrics::proc_cpu_seconds(pid); }

// Raises this process's soft descriptor limit to its hard limit and returns
// the result, so tests that open many connections can size themselves.
rlim_t raise_descriptor_limit() {
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur;
}

// Bytes queued for reading on a socket.
int readable_bytes(int fd) {
  int n = 0;
  ::ioctl(fd, FIONREAD, &n);
  return n;
}

// Whether the peer has closed `fd` (end of stream or reset), waiting at most
// `timeout_ms` for it. Any bytes that arrive meanwhile are discarded.
bool closed_by_peer(int fd, int timeout_ms) {
  auto end = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
    if (left.count() < 0) return false;
    char buf[4096];
    long n = metrics::recv_some(fd, buf, sizeof buf, left);
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
  }
}

// The largest buffer size in /proc/sys/net/ipv4/NAME ("min default max").
long tcp_buffer_max(const std::string& name) {
  std::ifstream in("/proc/sys/net/ipv4/" + name);
  long min = 0, def = 0, max = 0;
  in >> min >> def >> max;
  return max > 0 ? max : 16 << 20;
}

// Idle clients of the SIGTERM test. A ThreadSanitizer build of the server
// starts threads so slowly (about 40 ms each on the 2-core CI machine) that
// it gets fewer; the plain and ASan builds get the issue's thousand.
constexpr int kSigtermClients = metrics::kThreadSanitizer ? 100 : 1000;

// Puts `count` samples under `keys` keys directly into a storage.
void fill(metrics::Storage& storage, int keys, int samples_per_key) {
  for (int k = 0; k < keys; ++k) {
    std::string key = "key" + std::to_string(k);
    for (int t = 0; t < samples_per_key; ++t) storage.put(key, t, t * 0.5);
  }
}

// Sends `requests` puts of distinct keys on `c` and checks each is answered ok.
void put_and_check(RawConnection& c, const std::string& prefix, int requests) {
  std::string batch;
  for (int i = 0; i < requests; ++i) {
    batch += "put " + prefix + std::to_string(i) + " " + std::to_string(i) + " 1\n";
  }
  c.send(batch);
  std::string expected;
  for (int i = 0; i < requests; ++i) expected += "ok\n\n";
  REQUIRE(c.read_answers(static_cast<std::size_t>(requests)) == expected);
}

}  // namespace

// ---------------------------------------------------------------------------
// Limits

// docs/protocol.md, Limits: a line over the limit gets one wrong-command answer,
// is discarded without being buffered, and the session goes on.
TEST_CASE("a 100 MB request line gets one wrong command and leaves the server's memory as it was",
          "[hardening][limits]") {
  ServerProcess server({"127.0.0.1", "0"});
  RawConnection c(server.port);
  put_and_check(c, "warm", 10);
  long before = rss_kib(server.pid());
  REQUIRE(before > 0);

  const std::string chunk(1 << 20, 'x');
  c.send("put ");
  long peak = before;
  for (int i = 0; i < 100; ++i) {
    c.send(chunk);
    if (i % 10 == 9) peak = std::max(peak, rss_kib(server.pid()));
  }
  c.send(" 1 1\nget warm0\n");
  CHECK(c.read_answers(2) == std::string(kWrongCommand) + "ok\nwarm0 0.0 1\n\n");
  long after = rss_kib(server.pid());
  peak = std::max(peak, after);
  std::fprintf(stderr, "[measure] 100 MB line: server RSS %ld KiB before, %ld KiB peak, %ld KiB after\n",
               before, peak, after);
  CHECK(peak - before < 8 * 1024);
}

TEST_CASE("past the connection limit a new connection reads too many connections and EOF",
          "[hardening][limits]") {
  ServerOptions options;
  options.max_connections = 3;
  TestServer server(options);
  std::vector<std::unique_ptr<RawConnection>> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(std::make_unique<RawConnection>(server.port()));
    put_and_check(*open.back(), "c" + std::to_string(i) + "_", 1);
  }

  SECTION("when the refused client sends nothing") {
    RawConnection fourth(server.port());
    CHECK(fourth.read_until_close() == kTooMany);
  }
  SECTION("when the refused client has already sent a request") {
    RawConnection fourth(server.port());
    fourth.send("get *\n");
    CHECK(fourth.read_until_close() == kTooMany);
  }

  // Existing sessions are untouched, and the refusal is counted and logged.
  for (auto& c : open) put_and_check(*c, "again", 2);
  CHECK(server.server().refused_count() == 1);
  bool logged = false;
  for (const std::string& line : server.server().session_count() == 3 ? server.log_lines()
                                                                      : std::vector<std::string>{}) {
    if (line.find("refused") != std::string::npos &&
        line.find("too many connections") != std::string::npos) {
      logged = true;
    }
  }
  CHECK(logged);

  // A freed slot is usable again.
  open.pop_back();
  REQUIRE(wait_until([&] { return server.server().session_count() == 2; }));
  RawConnection next(server.port());
  put_and_check(next, "next", 1);
}

TEST_CASE("the idle timeout closes idle and slow-loris clients but not active ones",
          "[hardening][limits]") {
  ServerOptions options;
  options.idle_timeout_seconds = 0.3;
  const auto timeout = std::chrono::milliseconds(300);
  TestServer server(options);

  SECTION("a client that sends nothing is closed") {
    // Read before connecting: the server's clock starts after its accept, so
    // however late the test runs, a bug that closes early still shows here.
    // (The margin is the kernel timer's tick.)
    const auto start = Clock::now();
    RawConnection idle(server.port());
    CHECK(idle.read_until_close().empty());
    CHECK(Clock::now() - start >= timeout - std::chrono::milliseconds(50));
  }
  SECTION("a client trickling a line that never ends is closed") {
    RawConnection loris(server.port());
    bool closed = false;
    // One byte every 50 ms keeps the socket busy well inside the 0.3 s
    // receive timeout; only the "no complete request" rule can close it.
    // Bounded by a count (at least 10 s), not by how late the close comes.
    for (int i = 0; i < 200 && !closed; ++i) {
      if (::send(loris.fd(), "g", 1, MSG_NOSIGNAL) != 1) {
        closed = true;
        break;
      }
      closed = closed_by_peer(loris.fd(), 50);
    }
    CHECK(closed);
  }
  SECTION("a client completing a request more often than the timeout stays open") {
    // The client puts every 20 ms or so. Were the test to stall for a whole
    // timeout between two puts (a loaded machine, a sanitizer), the server
    // would rightly close: so the test does not assume it never stalls. It
    // knows when it sent each request; the server's idle clock for the next
    // one starts only after it answered the last, so a close noticed less
    // than a timeout after the last answered request was sent is a close too
    // early, whatever the scheduling. A rightful close starts the stretch
    // again on a new connection. The test passes once one connection stayed
    // open while active for four timeouts.
    const auto stretch = 4 * timeout;
    const auto give_up = Clock::now() + 3 * kDeadline;
    int closes = 0;
    bool kept_open = false;
    for (int attempt = 0; !kept_open && Clock::now() < give_up; ++attempt) {
      // Read before connecting: the server's clock starts after its accept.
      const auto opened = Clock::now();
      RawConnection active(server.port());
      auto last_answered_sent = opened;
      bool closed = false;
      for (int i = 0; !closed && Clock::now() - opened < stretch; ++i) {
        const auto sent = Clock::now();
        const std::string key = "active" + std::to_string(attempt) + "_" + std::to_string(i);
        std::string answer;
        try {
          active.send("put " + key + " 1 1\n");
          answer = active.read_answers();
        } catch (const std::runtime_error&) {
          closed = true;  // the server closed (end of stream or reset)
        }
        if (!closed) {
          REQUIRE(answer == "ok\n\n");
          last_answered_sent = sent;
          closed = closed_by_peer(active.fd(), 20);
        }
        if (closed) {
          const auto quiet = std::chrono::duration_cast<std::chrono::milliseconds>(
              Clock::now() - last_answered_sent);
          INFO("closed " << quiet.count() << " ms after the last answered request was sent");
          REQUIRE(quiet.count() >= timeout.count());
          ++closes;
        }
      }
      kept_open = !closed;
    }
    if (closes > 0) {
      std::fprintf(stderr,
                   "[measure] idle timeout: %d rightful close(s) after the test stalled for a "
                   "whole timeout\n",
                   closes);
    }
    CHECK(kept_open);
  }
  CHECK(wait_until([&] { return server.server().session_count() <= 1; }));
}

// ---------------------------------------------------------------------------
// Peers that go away

TEST_CASE("a client that goes away at any moment ends only its own session",
          "[hardening][faults]") {
  // In this process, whose SIGPIPE is not ignored: a send without
  // MSG_NOSIGNAL to a vanished peer would kill the test binary.
  TestServer server;
  fill(server.storage(), 200, 500);  // a get * answer of a few MB
  RawConnection witness(server.port());
  put_and_check(witness, "w", 1);

  SECTION("it closes in the middle of a line") {
    RawConnection c(server.port());
    c.send("put half 1");
  }
  SECTION("it closes in the middle of a get * answer") {
    RawConnection c(server.port());
    c.send("get *\n");
    REQUIRE(wait_until([&] { return readable_bytes(c.fd()) > 0; }));
  }
  SECTION("it resets the connection (SO_LINGER 0) in the middle of a get * answer") {
    RawConnection c(server.port());
    c.send("get *\nget *\nget *\n");
    REQUIRE(wait_until([&] { return readable_bytes(c.fd()) > 0; }));
    c.reset();
  }
  SECTION("it resets the connection before the server has read its request") {
    RawConnection c(server.port());
    c.send("get *\n");
    c.reset();
  }

  REQUIRE(wait_until([&] { return server.server().session_count() == 1; }));
  put_and_check(witness, "after", 3);
  RawConnection fresh(server.port());
  fresh.send("get w0\n");
  CHECK(fresh.read_answers() == "ok\nw0 0.0 1\n\n");
  CHECK(server.storage().key_count() == 200 + 1 + 3);  // "put half 1" stored nothing
}

// docs/protocol.md, Fine print: after a half-close every complete line is
// answered, the unterminated tail is dropped, and the server closes.
TEST_CASE("after a half-close the client still gets every answer and then EOF",
          "[hardening][faults]") {
  TestServer server;
  RawConnection c(server.port());
  c.send("put a 1 1\nget a\nget a");
  c.shutdown_write();
  CHECK(c.read_until_close() == "ok\n\nok\na 1.0 1\n\n");
}

TEST_CASE("signals interrupting every thread of the server do not disturb a session",
          "[hardening][faults]") {
  // A handler without SA_RESTART makes a blocking call (poll, accept, recv,
  // send, including those bounded by SO_RCVTIMEO) fail with EINTR whenever a
  // signal lands on its thread.
  struct sigaction action {};
  struct sigaction previous {};
  action.sa_handler = [](int) {};
  sigemptyset(&action.sa_mask);
  REQUIRE(::sigaction(SIGUSR1, &action, &previous) == 0);
  {
    TestServer server;
    fill(server.storage(), 50, 200);
    std::atomic<bool> done{false};
    std::atomic<long> signals{0};
    std::thread bomber([&] {
      const pid_t self = ::getpid();
      const pid_t bomber_tid = static_cast<pid_t>(::syscall(SYS_gettid));
      while (!done.load()) {
        DIR* dir = ::opendir("/proc/self/task");
        if (dir == nullptr) break;
        while (dirent* entry = ::readdir(dir)) {
          pid_t tid = static_cast<pid_t>(std::atol(entry->d_name));
          if (tid <= 0 || tid == bomber_tid) continue;
          if (::syscall(SYS_tgkill, self, tid, SIGUSR1) == 0) ++signals;
        }
        ::closedir(dir);
        std::this_thread::yield();
      }
    });
    std::string expected_get;
    for (int t = 0; t < 200; ++t) {
      expected_get += "key7 " + metrics::format_value(t * 0.5) + " " + std::to_string(t) + "\n";
    }
    // At least 100 rounds, and on until more than 100 signals have landed
    // however the threads were scheduled; bounded by the deadline.
    const auto give_up = Clock::now() + kDeadline;
    int rounds = 0;
    for (; rounds < 100 || (signals.load() <= 100 && Clock::now() < give_up); ++rounds) {
      RawConnection c(server.port());
      put_and_check(c, "r" + std::to_string(rounds) + "_", 5);
      c.send("get key7\n");
      REQUIRE(c.read_answers() == "ok\n" + expected_get + "\n");
    }
    done.store(true);
    bomber.join();
    std::fprintf(stderr,
                 "[measure] EINTR test: %ld signals delivered to the server's threads in %d "
                 "rounds\n",
                 signals.load(), rounds);
    CHECK(signals.load() > 100);
    CHECK(server.storage().key_count() == 50 + static_cast<std::size_t>(rounds) * 5);
  }
  ::sigaction(SIGUSR1, &previous, nullptr);
}

TEST_CASE("a client that never reads its answers blocks only its own session",
          "[hardening][faults]") {
  // docs/protocol.md, Fine print: one client can never stall another.
  TestServer server;
  fill(server.storage(), 500, 100);
  RawConnection probe(server.port());
  probe.send("get *\n");
  const std::string one = probe.read_answers();  // about 750 KB

  // More answer bytes than the socket buffers of both ends can ever hold, so
  // the session's send blocks until the client reads.
  const long buffers = tcp_buffer_max("tcp_rmem") + tcp_buffer_max("tcp_wmem");
  const std::size_t gets = 2 * static_cast<std::size_t>(buffers) / one.size() + 2;
  RawConnection stalled(server.port());
  std::string requests;
  for (std::size_t i = 0; i < gets; ++i) requests += "get *\n";
  stalled.send(requests);
  REQUIRE(wait_until([&] { return readable_bytes(stalled.fd()) > 0; }));

  // Meanwhile another client is served.
  RawConnection other(server.port());
  put_and_check(other, "other", 100);
  other.send("get other99\n");
  CHECK(other.read_answers() == "ok\nother99 99.0 1\n\n");

  // The stalled session was only waiting: its first answer is intact (the
  // other client's keys, stored later, may only follow the original ones).
  const std::string first = stalled.read_answers();
  CHECK(first.compare(0, one.size() - 1, one, 0, one.size() - 1) == 0);
  stalled.reset();
  CHECK(wait_until([&] { return server.server().session_count() == 2; }));
}

TEST_CASE("clients that never read a get of a huge key hold only a bounded piece of it each",
          "[hardening][faults][memory]") {
  // PROTOCOL.md, Limits: memory per connection stays bounded whatever a
  // client does. One key of a million samples: a full copy of its series is
  // 16 MB, its formatted answer about as much. Twenty clients ask for it and
  // never read; each session may block with a piece of the answer in hand,
  // never with the whole.
  ServerProcess server({"127.0.0.1", "0"});
  constexpr int kSamples = 1000000;
  constexpr long kCopyKib = kSamples * static_cast<long>(sizeof(metrics::Sample)) / 1024;
  constexpr int kReaders = 20;
  // What the readers may add to the server's RSS, in full copies: far less
  // than one each. Sanitizers add shadow memory and per-thread state to
  // every session, so they get more room (still half a copy a reader).
  constexpr long kAllowedCopies = metrics::kAddressSanitizer || metrics::kThreadSanitizer ? 10 : 5;
  {
    // Pipelined in rounds small enough that neither side's socket buffers
    // fill while the other waits.
    constexpr int kRound = 10000;
    std::string oks;
    for (int i = 0; i < kRound; ++i) oks += "ok\n\n";
    RawConnection loader(server.port);
    for (int base = 0; base < kSamples; base += kRound) {
      std::string puts;
      for (int t = base; t < base + kRound; ++t) puts += "put big 1.5 " + std::to_string(t) + "\n";
      loader.send(puts);
      REQUIRE(loader.read_answers(kRound) == oks);
    }
  }
  const pid_t pid = server.pid();
  REQUIRE(wait_until([&] { return metrics::proc_threads_named(pid, "session") == 0; }));
  const long before = rss_kib(pid);
  REQUIRE(before > 0);

  // The state letter of every session thread of the server ("R", "S", ...).
  auto session_states = [&] {
    std::string states;
    const std::string task_dir = "/proc/" + std::to_string(pid) + "/task/";
    const std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(task_dir.c_str()), &::closedir);
    if (dir == nullptr) return states;
    while (const dirent* entry = ::readdir(dir.get())) {
      if (entry->d_name[0] == '.') continue;
      std::ifstream comm(task_dir + entry->d_name + "/comm");
      std::string name;
      if (!std::getline(comm, name) || name != "session") continue;
      std::ifstream stat(task_dir + entry->d_name + "/stat");
      std::stringstream contents;
      contents << stat.rdbuf();
      const std::string text = contents.str();
      const std::size_t paren = text.rfind(')');
      if (paren != std::string::npos && paren + 2 < text.size()) states += text[paren + 2];
    }
    return states;
  };

  std::vector<std::unique_ptr<RawConnection>> readers;
  for (int i = 0; i < kReaders; ++i) {
    readers.push_back(std::make_unique<RawConnection>(server.port));
    readers.back()->send("get big\n");
  }
  // Blocked: every client has part of its answer and every session sleeps
  // (in send, its socket full; the answer is far larger than the socket
  // buffers). Whatever a session keeps of the answer, it keeps from here on.
  long peak = before;
  const bool blocked = wait_until([&] {
    peak = std::max(peak, rss_kib(pid));
    for (const auto& reader : readers) {
      if (readable_bytes(reader->fd()) == 0) return false;
    }
    const std::string states = session_states();
    return states == std::string(kReaders, 'S');
  });
  CHECK(blocked);
  peak = std::max(peak, rss_kib(pid));
  std::fprintf(stderr,
               "[measure] %d clients not reading a %d-sample get: server RSS %ld KiB before, "
               "%ld KiB peak (a full copy is %ld KiB)\n",
               kReaders, kSamples, before, peak, kCopyKib);
  CHECK(peak - before < kAllowedCopies * kCopyKib);

  // Gone, they take their sessions with them.
  for (auto& reader : readers) reader->reset();
  CHECK(wait_until([&] { return metrics::proc_threads_named(pid, "session") == 0; }));
  const long after = rss_kib(pid);
  std::fprintf(stderr, "[measure] after they closed: server RSS %ld KiB\n", after);
  CHECK(after - before < kAllowedCopies * kCopyKib);
}

TEST_CASE("a get * over a million samples does not hold up other clients' puts",
          "[hardening][faults]") {
  TestServer server;
  fill(server.storage(), 1000, 1000);
  REQUIRE(server.storage().sample_count() == 1000000);
  RawConnection reader(server.port());
  RawConnection writer(server.port());

  reader.send("get *\n");
  REQUIRE(wait_until([&] { return readable_bytes(reader.fd()) > 0; }));
  // The reader reads nothing: its answer stops in mid-stream while the
  // writer's puts are answered.
  put_and_check(writer, "during", 50);
  // Then it reads a little, slowly...
  char buf[4096];
  for (int i = 0; i < 16; ++i) {
    REQUIRE(metrics::recv_some(reader.fd(), buf, sizeof buf, kDeadline) > 0);
    put_and_check(writer, "slow" + std::to_string(i) + "_", 2);
  }
  // ...and vanishes with a reset.
  reader.reset();
  REQUIRE(wait_until([&] { return server.server().session_count() == 1; }));
  put_and_check(writer, "after", 10);
  writer.send("get during49\n");
  CHECK(writer.read_answers() == "ok\nduring49 49.0 1\n\n");
}

// ---------------------------------------------------------------------------
// Resources of the server process

TEST_CASE("out of descriptors the server keeps serving, backs off, and accepts again",
          "[hardening][faults]") {
  // 40 descriptors: stdio, the listener and the wake pipe leave room for
  // about 34 sessions; the connections past them wait in the backlog.
  ServerProcess server({"127.0.0.1", "0"}, {"/usr/bin/prlimit", "--nofile=40:40"});
  const int kConnections = 50;
  std::vector<std::unique_ptr<RawConnection>> conns;
  // The first session is served before descriptors run out. (Its first
  // request must be: UBSan's vptr check, in the sanitizer builds, needs a
  // descriptor the first time it meets a type and reports a false error
  // without one.)
  conns.push_back(std::make_unique<RawConnection>(server.port));
  put_and_check(*conns[0], "warm", 1);
  for (int i = 1; i < kConnections; ++i) {
    conns.push_back(std::make_unique<RawConnection>(server.port));
  }
  server.process.wait_for_stderr_line("Too many open files");

  // Existing sessions still answer.
  put_and_check(*conns[0], "first", 3);

  // It waits without spinning. A spinning server uses all the CPU it gets,
  // a waiting one next to none; but the server may still be busy for a while
  // with work that is not spinning (a ThreadSanitizer build starting its
  // session threads). So half-second windows are measured until one shows
  // it using less than half a core, and a server that never settles fails
  // at the deadline. (A window only ever takes longer on a loaded machine,
  // which lowers the ratio of a server that waits.)
  double ratio = 1;
  double wall = 0;
  const bool settled = wait_until([&] {
    const double cpu_before = cpu_seconds(server.pid());
    const auto wall_before = Clock::now();
    ::poll(nullptr, 0, 500);  // a measurement window, not a synchronisation
    wall = std::chrono::duration<double>(Clock::now() - wall_before).count();
    ratio = (cpu_seconds(server.pid()) - cpu_before) / wall;
    return ratio < 0.5;
  });
  std::fprintf(stderr, "[measure] EMFILE back-off: server CPU %.1f%% of one core over %.2f s\n",
               ratio * 100, wall);
  CHECK(settled);

  // A connection still in the backlog asks; closing early sessions frees
  // descriptors and it is accepted and answered.
  conns.back()->send("put last 1 1\n");
  for (int i = 0; i < 20; ++i) conns[static_cast<std::size_t>(i)].reset();
  CHECK(conns.back()->read_answers() == "ok\n\n");
  for (int i = 20; i < kConnections; ++i) {
    put_and_check(*conns[static_cast<std::size_t>(i)], "later" + std::to_string(i) + "_", 1);
  }

  // Every failed accept is logged once. A server that retried without
  // backing off would have logged thousands of them, however little CPU a
  // loaded machine gave it; one that backs off (10 ms doubling to 1 s, and
  // once more whenever sessions end) logs a few dozen at most in the time
  // this test can take.
  const std::string log = server.process.stop(SIGKILL).err;
  std::size_t retries = 0;
  for (std::size_t at = log.find("retrying in"); at != std::string::npos;
       at = log.find("retrying in", at + 1)) {
    ++retries;
  }
  std::fprintf(stderr, "[measure] EMFILE back-off: %zu failed accepts logged\n", retries);
  CHECK(retries >= 1);
  CHECK(retries < 200);
}

TEST_CASE("a session thread that cannot be started closes that one connection only",
          "[hardening][faults]") {
  // The test makes pthread_create fail for real by giving new threads a
  // stack larger than the address space. That is a setting of the whole
  // process: any thread started meanwhile fails too (a sanitizer runtime's,
  // say), and a restore that went wrong would fail the threads of every test
  // after it. So it runs in a test process of its own.
  if (!in_child_test_process()) {
    ProcessResult child = run_test_case_in_child(Catch::getResultCapture().getCurrentTestName());
    // The child's report, without its closing count line, which would read
    // as this run's own last line.
    const std::size_t count_line = child.out.rfind(" passed, ");
    INFO("child test process:\n" << child.out.substr(0, child.out.rfind('\n', count_line)) << "\n"
                                  << child.err);
    CHECK(child.exit_code == 0);
    CHECK(child.out.find("\n1 passed, 0 failed\n") != std::string::npos);
    return;
  }

  // In the child: the default is restored when the guard ends, so that the
  // server can be seen to start sessions again.
  struct StackGuard {
    StackGuard() {
      pthread_attr_t attr;
      ::pthread_getattr_default_np(&attr);
      ::pthread_attr_getstacksize(&attr, &saved);
      ::pthread_attr_destroy(&attr);
    }
    ~StackGuard() { metrics::set_default_thread_stack_size(saved); }
    std::size_t saved = 0;
  };

  TestServer server;
  RawConnection before(server.port());
  put_and_check(before, "before", 1);
  {
    StackGuard guard;
    metrics::set_default_thread_stack_size(std::size_t{1} << 47);
    RawConnection refused(server.port());
    CHECK(refused.read_until_close() == "error\nserver out of resources\n\n");
  }
  CHECK(server.server().refused_count() == 1);
  bool logged = false;
  for (const std::string& line : server.log_lines()) {
    if (line.find("cannot start a session thread") != std::string::npos) logged = true;
  }
  CHECK(logged);
  put_and_check(before, "still", 2);
  RawConnection after(server.port());
  put_and_check(after, "after", 2);
}

TEST_CASE("SIGTERM with a thousand idle clients ends every session and exits 0",
          "[hardening][signals]") {
  rlim_t limit = raise_descriptor_limit();
  const int kClients = std::min(kSigtermClients, static_cast<int>(limit) - 200);
  REQUIRE(kClients > 0);
  ServerProcess server({"127.0.0.1", "0"});
  std::vector<Fd> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(metrics::connect_tcp("127.0.0.1", server.port, kDeadline));
  }
  // Every client has its session thread (plus the accept and signal threads).
  REQUIRE(wait_until([&] { return thread_count(server.pid()) >= kClients + 2; },
                     3 * kDeadline));
  long rss = rss_kib(server.pid());

  auto start = Clock::now();
  ProcessResult result = server.process.stop(SIGTERM);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::fprintf(stderr,
               "[measure] SIGTERM with %d idle clients: exit after %.3f s (server RSS was %ld KiB)\n",
               kClients, seconds, rss);
  CHECK(result.exit_code == 0);
  CHECK(result.err.find("closing " + std::to_string(kClients) + " session(s)") !=
        std::string::npos);
  CHECK(result.err.find("stopped") != std::string::npos);
  // How soon it exits is measured, not asserted: stop() fails the test if
  // the server is still running after its deadline. The server's exit closed
  // every connection; the generous wait only bounds a loopback that is slow
  // to deliver the closes on a loaded machine.
  for (Fd& fd : clients) {
    REQUIRE(closed_by_peer(fd.get(), static_cast<int>(kDeadline.count())));
  }
}

TEST_CASE("SIGPIPE sent to the server does not kill it", "[hardening][signals]") {
  ServerProcess server({"127.0.0.1", "0"});
  REQUIRE(::kill(server.pid(), SIGPIPE) == 0);
  RawConnection c(server.port);
  put_and_check(c, "alive", 1);
  CHECK(server.process.stop(SIGINT).exit_code == 0);
}
