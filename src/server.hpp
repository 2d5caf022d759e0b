// The thread-per-connection TCP server.
//
// A raw BSD-sockets accept loop (Server::run) starts one std::thread per
// connection. Each session thread reads into a buffer, splits the bytes into
// bounded lines, hands every complete line to its session's LineHandler in
// order, and writes the answers of one read back with one send, letting the
// handler finish them first (LineHandler::before_send). What a line means is
// the Service's business: MetricsService (service.hpp) implements the metrics
// protocol; a no-op service measures the socket loop alone.
#ifndef METRICS_SERVER_HPP_
#define METRICS_SERVER_HPP_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "logger.hpp"
#include "metrics/protocol.hpp"
#include "metrics/socket.hpp"

namespace metrics {

// What the server serves (src/line_service.hpp): a Service makes each
// session's LineHandler, which answers into the session's Output.
class Service;

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
  };

  // A connection that arrived at the connection limit, waiting (until
  // `deadline`) for a session to end and free its slot.
  struct Waiting {
    Fd fd;
    std::string peer;
    std::chrono::steady_clock::time_point deadline;
  };

  // Logs one line unless options_.quiet (and `always` is false).
  void log(std::string_view line, bool always = false) const;
  void accept_ready();
  // Starts a session for a new connection, or, at the connection limit,
  // queues it in waiting_ (or refuses it when that queue is full).
  void start_session(Fd fd, std::string peer);
  // Starts the session thread of an admitted connection.
  void launch(uint64_t id, Fd fd, std::string peer);
  // Answers "too many connections" and closes the connection.
  void refuse(Fd fd, const std::string& peer, std::size_t open);
  // Admits waiting connections while there is room, in arrival order, and
  // refuses those whose wait is over.
  void admit_waiting();
  // Milliseconds until the first waiting connection's deadline, or -1.
  int waiting_timeout_ms() const;
  // Counts a new session in if the limit allows; sets `open` to the sessions
  // open before it and, if admitted, `id` to the new session's.
  bool admit(uint64_t* id, std::size_t* open);
  void serve(Session* session, uint64_t id);
  void finish(uint64_t id);
  // Joins and closes the sessions that have ended; returns how many.
  std::size_t reap_finished();
  void wake();
  void end_all_sessions();

  ServerOptions options_;
  Service& service_;
  const Logger logger_;  // options_.log and options_.quiet
  Fd listener_;
  Fd wake_read_;
  Fd wake_write_;
  std::string address_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> refused_{0};
  int accept_backoff_ms_ = 0;  // used only by the run() thread
  std::deque<Waiting> waiting_;  // used only by the run() thread


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

// Gives the session threads started from now on the small stack that a
// server program uses (a session's 16 KiB read buffer plus a few frames),
// so that 10,000 of them are cheap; call it in main() before the server
// starts. A ThreadSanitizer build keeps the default size instead: its
// pthread_create fails with EINVAL for a thread started without attributes
// (as std::thread starts them) once the process-wide default has been
// changed. Throws SystemError on failure.
void use_small_session_stacks();

}  // namespace metrics

#endif  // METRICS_SERVER_HPP_
