// The thread-per-connection TCP server.
//
// A raw BSD-sockets accept loop (Server::run) starts one std::thread per
// connection. Each session thread reads into a buffer, splits the bytes into
// bounded lines, hands every complete line to its session's LineHandler in
// order, and writes the answers of one read back with one send. What a line
// means is the Service's business: MetricsService (service.hpp) implements the
// metrics protocol; a no-op service measures the socket loop alone.
#ifndef METRICS_SERVER_HPP_
#define METRICS_SERVER_HPP_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "metrics/protocol.hpp"
#include "metrics/socket.hpp"

namespace metrics {

class LineHandler;

// The answers of one session, buffered and sent by the session loop in one
// write per batch of requests. Not thread-safe: belongs to one session.
class Output {
 public:
  // `handler` settles provisional answers (append_provisional); it may be
  // null when none are used.
  explicit Output(int fd, LineHandler* handler = nullptr) : fd_(fd), handler_(handler) {}

  // The bytes still to be sent; handlers append their answers here.
  std::string& buffer() { return buffer_; }

  // A buffer grown past this many bytes is sent by flush_if_large().
  static constexpr std::size_t kStreamBytes = 64 * 1024;

  // Sends the buffer now if it holds more than kStreamBytes, so that a very
  // large answer streams out instead of being built whole in memory. The
  // buffer keeps its capacity for the rest of that answer.
  void flush_if_large() {
    if (buffer_.size() > kStreamBytes) flush(/*keep_capacity=*/true);
  }

  // Sends everything buffered. Returns false once any send has failed (the
  // peer is gone or too slow); later data is then dropped. Unless
  // `keep_capacity`, a large buffer's memory is returned to the allocator, so
  // an idle session does not keep the memory of its largest answer.
  bool flush(bool keep_capacity = false);

  bool failed() const { return failed_; }

  // Appends `answer`, which must not reach the peer before the handler has
  // settled `ticket` (LineHandler::settle), e.g. a put's "ok" that waits for
  // its log record to be written. If that ticket fails, the answer is sent as
  // `if_failed` instead, which must outlive the Output (a literal). Tickets
  // passed to one Output never decrease.
  void append_provisional(std::string_view answer, std::string_view if_failed, uint64_t ticket);

 private:
  struct Provisional {
    std::size_t offset;
    std::size_t length;
    std::string_view if_failed;
    uint64_t ticket;
  };

  // Settles every provisional answer in the buffer, rewriting the failed ones.
  void settle();

  int fd_;
  LineHandler* handler_;
  std::string buffer_;
  std::vector<Provisional> provisional_;
  bool failed_ = false;
};

// What one session does with each of its request lines. Belongs to one
// session: called from that session's thread only.
class LineHandler {
 public:
  virtual ~LineHandler() = default;

  // Answers one complete request line (the bytes before its '\n'; a trailing
  // '\r' is still there) by appending to `out`.
  virtual void handle_line(std::string_view line, Output& out) = 0;

  // Answers a line longer than the server's line limit. By default:
  // "error\nwrong command\n\n" (docs/protocol.md).
  virtual void handle_too_long(Output& out) { out.buffer().append(kWrongCommandAnswer); }

  // Waits until the work behind every provisional answer with a ticket up to
  // `ticket` is done (Output::append_provisional) and returns the highest
  // ticket that succeeded; answers with a higher one are sent as failures.
  // Called by a session before it sends answers. By default all succeed.
  virtual uint64_t settle(uint64_t ticket) { return ticket; }
};

// What a server serves: makes each session's LineHandler. Thread-safe.
class Service {
 public:
  virtual ~Service() = default;
  virtual std::unique_ptr<LineHandler> open_session() = 0;
};

// The name (/proc/PID/task/TID/comm) of every session thread.
inline constexpr char kSessionThreadName[] = "session";

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8888;  // 0 picks a free port
  std::size_t max_line_bytes = kDefaultMaxLineBytes;
  std::size_t max_connections = 10000;
  // A session that completes no request for this long is closed; 0 = never.
  double idle_timeout_seconds = 0;
  int listen_backlog = 4096;
  // Receives one line per start, stop, refused connection and internal
  // error. Empty: lines go to stderr. Called from several threads, serialised
  // by the server.
  std::function<void(std::string_view)> log;
  // Silences the log, except the "listening on" line.
  bool quiet = false;
};

// Where a server's log lines go (src/logger.hpp).
class Logger;

// Thread-safe: stop() and the accessors may be called from any thread while
// run() runs in another. listen() and run() are called once each, in order.
class Server {
 public:
  Server(ServerOptions options, Service& service);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens on options.host:options.port and logs
  // "listening on ADDRESS". Throws SystemError if that fails.
  void listen();

  // The bound address ("127.0.0.1:41234") and port; valid after listen().
  const std::string& address() const { return address_; }
  uint16_t port() const { return port_; }

  // Accepts connections until stop(), then ends every session, joins every
  // session thread and returns. Transient accept failures (EMFILE, ENFILE,
  // ECONNABORTED, ...) are logged and survived with a back-off.
  void run();

  // Asks run() to finish. Async-signal-safe and idempotent.
  void stop();

  // Sessions open now: started and not yet ended. A session ends when its
  // client has gone (or the server stops); from then on it no longer counts
  // against max_connections, even before run() has joined its thread.
  std::size_t session_count() const;
  // Connections refused so far because the connection limit was reached or a
  // session thread could not be started.
  std::size_t refused_count() const { return refused_.load(); }

 private:
  struct Session {
    Fd fd;
    std::string peer;
    std::thread thread;
    bool done = false;  // guarded by mu_: serve() has finished
  };

  // Logs one line unless options_.quiet (and `always` is false).
  void log(std::string_view line, bool always = false) const;
  void accept_ready();
  void start_session(Fd fd, std::string peer);
  // Counts a new session in if the limit allows; sets `open` to the sessions
  // open before it and, if admitted, `id` to the new session's.
  bool admit(uint64_t* id, std::size_t* open);
  // Whether the client of some open session has closed or reset its
  // connection (so that session is about to end).
  bool some_client_gone() const;
  // Waits (at most 1 s, or until stop()) for sessions to end, reaping them,
  // and admits as admit() does as soon as there is room.
  bool wait_to_admit(uint64_t* id, std::size_t* open);
  void serve(Session* session, uint64_t id);
  void finish(uint64_t id);
  // Joins and closes the sessions that have ended; returns how many.
  std::size_t reap_finished();
  void wait_wake(int timeout_ms);
  void wake();
  void end_all_sessions();

  ServerOptions options_;
  Service& service_;
  const std::unique_ptr<const Logger> logger_;  // options_.log and options_.quiet
  Fd listener_;
  Fd wake_read_;
  Fd wake_write_;
  std::string address_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> refused_{0};
  int accept_backoff_ms_ = 0;  // used only by the run() thread


  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::unique_ptr<Session>> sessions_;  // guarded by mu_
  std::vector<uint64_t> finished_;                                    // guarded by mu_
  uint64_t next_id_ = 0;                                              // guarded by mu_
  // Sessions whose serve() has not finished: what max_connections limits.
  std::size_t live_ = 0;  // guarded by mu_
};

// The signals of a server program. block_stop_signals() ignores SIGPIPE and
// blocks SIGINT and SIGTERM in the calling thread, and so in every thread it
// starts afterwards: call it first in main(), before any thread exists, so
// that no thread is ever interrupted by them. run_until_stop_signal() then
// runs server.run() while one thread waits for SIGINT or SIGTERM (sigwait)
// and calls server.stop(); it returns when run() does (after a stop signal,
// a server.stop() from another thread, or a broken listener), its thread
// joined. It sends no signal to the process: in a program that did not call
// block_stop_signals(), a SIGTERM from outside may still reach a thread that
// does not block it and take its default action, but its own wake-up of the
// signal thread cannot.
void block_stop_signals();
void run_until_stop_signal(Server& server);

// Sets the stack size of threads created from now on in this process,
// std::thread included (pthread_setattr_default_np). metrics-server uses it
// to make 10,000 session threads cheap. Throws SystemError on failure.
void set_default_thread_stack_size(std::size_t bytes);

}  // namespace metrics

#endif  // METRICS_SERVER_HPP_
