// Helpers shared by the tests: an in-process server on an ephemeral port,
// raw loopback connections with deadlines, and child processes by PID.
#ifndef METRICS_TESTS_TEST_UTIL_HPP_
#define METRICS_TESTS_TEST_UTIL_HPP_

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sanitizers.hpp"
#include "server.hpp"
#include "service.hpp"
#include "metrics/socket.hpp"
#include "storage.hpp"

namespace metrics::test {

// Every blocking step of a test waits at most this long.
inline constexpr std::chrono::milliseconds kDeadline{10000};

// The exit statuses of metrics-cli and metrics-bench besides 0: the request
// failed, or the command line was wrong.
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Whether this build runs under ThreadSanitizer or AddressSanitizer, which
// make threads, memory and time costlier: the library's one answer.
using metrics::kAddressSanitizer;
using metrics::kThreadSanitizer;

// A MetricsService over a fresh Storage, served on 127.0.0.1 at a free port
// by a thread of this process; stopped and joined on destruction.
class TestServer {
 public:
  explicit TestServer(ServerOptions options = {});
  ~TestServer();

  uint16_t port() const { return server_->port(); }
  Storage& storage() { return storage_; }
  Server& server() { return *server_; }
  // Log lines the server wrote so far.
  std::vector<std::string> log_lines() const;

 private:
  Storage storage_;
  MetricsService service_{storage_};
  std::shared_ptr<struct LogSink> log_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
};

// A raw client connection to 127.0.0.1:port. Every read waits at most
// kDeadline and fails the test (throws) when it runs out.
class RawConnection {
 public:
  explicit RawConnection(uint16_t port);
  // Connects to host:port instead (e.g. "::1").
  RawConnection(const std::string& host, uint16_t port);
  void send(std::string_view bytes);
  // Reads until `count` complete answers (each ending in "\n\n") have arrived
  // and returns exactly their bytes; bytes past them stay buffered.
  std::string read_answers(std::size_t count = 1);
  // Reads until the peer closes; returns everything not yet returned.
  std::string read_until_close();
  // Half-closes the write side.
  void shutdown_write();
  // Closes with SO_LINGER 0: the peer sees a reset.
  void reset();
  int fd() const { return fd_.get(); }

 private:
  Fd fd_;
  std::string buffer_;
};

// One step of a FakeServer's script: the bytes that answer one request line,
// sent in `pieces` (one send each, with TCP_NODELAY, so each piece leaves as
// its own segment), then optionally closing the connection.
struct FakeReply {
  std::vector<std::string> pieces;
  bool close = false;
};

// A reply sent in one piece.
FakeReply reply(std::string bytes, bool close = false);
// A reply sent one byte per send.
FakeReply reply_bytewise(std::string_view bytes);

// A scripted stand-in for a metrics server on 127.0.0.1 at a free port, run
// by a thread of this process and joined on destruction. It accepts one
// connection at a time and answers the i-th request line it receives (over
// all connections) with script[i]; past the end of the script it reads and
// never answers. Thread-safe accessors.
class FakeServer {
 public:
  explicit FakeServer(std::vector<FakeReply> script = {});
  ~FakeServer();
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  uint16_t port() const { return port_; }
  // Waits (at most kDeadline) until `count` connections have ended, then
  // returns every byte received so far. Throws if they do not end in time.
  std::string received_after_closes(std::size_t count);
  // Every byte received so far.
  std::string received() const;
  // Connections accepted so far.
  std::size_t accepted() const;

 private:
  void run();
  // Serves one connection until it ends or the server stops; returns false
  // when the server is stopping.
  bool serve(int fd);

  Fd listener_;
  Fd wake_read_;
  Fd wake_write_;
  uint16_t port_ = 0;
  std::vector<FakeReply> script_;
  std::size_t next_reply_ = 0;  // used only by thread_

  mutable std::mutex mu_;
  std::string received_;      // guarded by mu_
  std::size_t accepted_ = 0;  // guarded by mu_
  std::size_t closed_ = 0;    // guarded by mu_
  std::thread thread_;
};

// A loopback port where nothing listens: a socket bound to it, but not
// listening, keeps other processes from taking the port while the test runs,
// so every connect to 127.0.0.1:port() is refused.
class RefusedPort {
 public:
  RefusedPort();
  uint16_t port() const { return port_; }

 private:
  Fd fd_;
  uint16_t port_ = 0;
};

// The kernel's count of SYNs dropped by listening sockets (TcpExt
// ListenOverflows plus ListenDrops in /proc/net/netstat); 0 if unreadable.
// It counts for the whole network namespace, so only a rise matters.
uint64_t listen_drop_count();

// A loopback listener whose handshakes take a SYN retransmit (about 1 s), the
// way a handshake across a real network takes a round trip: a socket listening
// with backlog 0 whose accept queue one "filler" connection already fills. The
// kernel drops a SYN to a full queue, so a client's connect completes only on
// the retransmit, and only if the queue has room by then; left alone, the
// queue stays full and every connect to it hangs. Not thread-safe.
class SlowHandshakeListener {
 public:
  SlowHandshakeListener();
  // Joins the thread serve_after_a_dropped_syn() started.
  ~SlowHandshakeListener();
  SlowHandshakeListener(const SlowHandshakeListener&) = delete;
  SlowHandshakeListener& operator=(const SlowHandshakeListener&) = delete;

  uint16_t port() const { return port_; }

  // What the serving thread saw, once finish() has joined it.
  struct Outcome {
    bool syn_dropped = false;  // the drop count rose before the queue was freed
    bool accepted = false;     // a connection came after the filler
    std::string request;       // the first request line it sent, with its '\n'
  };

  // Starts a thread that waits (at most kDeadline) until a SYN was dropped,
  // then accepts the filler so the retransmitted SYN finds room, accepts that
  // connection (waiting at most kDeadline), answers its first request line
  // with `answer` and closes it once the client has. Call it before the
  // client starts to connect, at most once.
  void serve_after_a_dropped_syn(std::string answer = "ok\n\n");
  // Joins that thread and returns what it saw.
  Outcome finish();

 private:
  void serve(uint64_t drops_before, const std::string& answer);

  Fd listener_;
  Fd filler_;
  uint16_t port_ = 0;
  Outcome outcome_;  // written by thread_ only, read after it is joined
  std::thread thread_;
};

// Runs connect_and_ask(port) against a SlowHandshakeListener that answers
// its first request line with "ok\n\n" once a SYN was dropped, and returns
// what the listener saw.
template <typename ConnectAndAsk>
SlowHandshakeListener::Outcome after_a_slow_handshake(ConnectAndAsk connect_and_ask) {
  SlowHandshakeListener listener;
  listener.serve_after_a_dropped_syn("ok\n\n");
  connect_and_ask(listener.port());
  return listener.finish();
}

// Waits (polling, bounded by `deadline`) until `condition` holds; returns
// whether it did.
template <typename Condition>
bool wait_until(Condition condition, std::chrono::milliseconds deadline = kDeadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// The result of a child process run to completion.
struct ProcessResult {
  int exit_code = -1;  // -1 if killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
};

// Runs `argv` with extra environment `env` ("NAME=value"), stdin from
// /dev/null, capturing stdout and stderr; kills it (by PID) if it runs past
// `deadline`, which fails the test.
ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::vector<std::string>& env = {},
                          std::chrono::milliseconds deadline = kDeadline);

// Whether this test binary was started by run_test_case_in_child().
bool in_child_test_process();

// Runs the one test case named `name` of this very test binary in a child
// process (bounded by `deadline`) and returns its result; its last line of
// stdout is "N passed, M failed". For a test that changes state of the whole
// process (the default thread stack size, a signal disposition), which must
// not leak into the tests that run after it: the test case calls this when
// in_child_test_process() is false, checks the result, and does its real
// work only when it is true.
ProcessResult run_test_case_in_child(const std::string& name,
                                     std::chrono::milliseconds deadline = 3 * kDeadline);

// A child process started in the background, killed by PID on destruction.
class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& argv, const std::vector<std::string>& env = {});
  ~ChildProcess();
  pid_t pid() const { return pid_; }
  // Reads stderr until a line containing `needle` appears; returns that line.
  std::string wait_for_stderr_line(std::string_view needle);
  // Sends `sig` and waits for the process to end; returns its result.
  ProcessResult stop(int sig, std::chrono::milliseconds deadline = kDeadline);

 private:
  pid_t pid_ = -1;
  Fd out_;
  Fd err_;
  std::string err_text_;
};

// A metrics-server child process, killed by PID on destruction. Starts
// `prefix... metrics-server args...` and waits for its "listening on" line;
// `args` name the address, e.g. {"127.0.0.1", "0"}, and a `prefix` (such as
// prlimit) must exec the server so that the PID stays the server's.
struct ServerProcess {
  explicit ServerProcess(std::vector<std::string> args, std::vector<std::string> prefix = {});
  pid_t pid() const { return process.pid(); }

  ChildProcess process;
  std::string listening_line;
  uint16_t port = 0;
};

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on
// destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // The path of `name` inside the directory.
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The path of a built program, from METRICS_SERVER_BIN / METRICS_CLI_BIN
// (set by `make test`), else build/<name>.
std::string server_binary();
std::string cli_binary();
// metrics-bench, built next to metrics-server.
std::string bench_binary();

// The port in a "listening on HOST:PORT" line.
uint16_t port_from_listening_line(std::string_view line);

}  // namespace metrics::test

#endif  // METRICS_TESTS_TEST_UTIL_HPP_
