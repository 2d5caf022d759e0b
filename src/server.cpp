#include "server.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <system_error>

#include "line_service.hpp"
#include "line_splitter.hpp"
#include "sanitizers.hpp"

namespace metrics {

namespace {

// The receive buffer of a session lives on its thread's stack: an idle
// session keeps no heap buffer, and only the pages a read touched are
// resident.
constexpr std::size_t kReadChunk = 16 * 1024;

// Each session thread's stack (use_small_session_stacks): the 16 KiB read
// buffer plus a few frames.
constexpr std::size_t kSessionStackBytes = 256 * 1024;

// A connection that arrives at the connection limit waits this long for a
// session to end before it is refused, and at most this many wait at once
// (Server::start_session).
constexpr std::chrono::milliseconds kSlotWait{1000};
constexpr std::size_t kMaxWaiting = 64;

constexpr std::string_view kOutOfResourcesAnswer = "error\nserver out of resources\n\n";

bool is_transient_accept_error(int err) {
  switch (err) {
    case EINTR:
    case EAGAIN:
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    // Linux passes pending network errors of the new socket to accept(2);
    // they concern that one connection, not the listener.
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
      return true;
    default:
      return false;
  }
}

bool is_resource_accept_error(int err) {
  return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}


}  // namespace

Server::Server(ServerOptions options, Service& service)
    : options_(std::move(options)),
      service_(service),
      logger_(options_.log, options_.quiet) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw_errno("pipe2");
  wake_read_.reset(fds[0]);
  wake_write_.reset(fds[1]);
}

Server::~Server() {
  // run() joins every session before it returns; if it never ran, there are
  // none. Sessions still here would mean run() is still running, which is a
  // caller bug; ending them keeps the destructor from std::terminate.
  stop();
  end_all_sessions();
}

void Server::log(std::string_view line, bool always) const {
  logger_.line(line, /*info=*/!always);
}

void Server::listen() {
  listener_ = listen_tcp(options_.host, options_.port, options_.listen_backlog);
  address_ = local_address(listener_.get());
  port_ = local_port(listener_.get());
  log("listening on " + address_, /*always=*/true);
}

void Server::stop() {
  stopping_.store(true);
  wake();
}

void Server::wake() {
  char byte = 1;
  // A full pipe already holds a wake-up; the result does not matter.
  [[maybe_unused]] ssize_t n = ::write(wake_write_.get(), &byte, 1);
}

std::size_t Server::session_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_;
}

void Server::run() {
  while (!stopping_.load()) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {wake_read_.get(), POLLIN, 0}};
    // While accept is backing off from a resource error, the listener is not
    // polled: only a wake-up or the end of the back-off resumes the loop.
    int count = accept_backoff_ms_ > 0 ? 1 : 2;
    pollfd* first = accept_backoff_ms_ > 0 ? &fds[1] : &fds[0];
    // Waiting connections are refused when their wait is over: wake for the
    // first deadline too.
    int timeout_ms = accept_backoff_ms_ > 0 ? accept_backoff_ms_ : -1;
    if (const int wait_ms = waiting_timeout_ms();
        wait_ms >= 0 && (timeout_ms < 0 || wait_ms < timeout_ms)) {
      timeout_ms = wait_ms;
    }
    int rc = ::poll(first, static_cast<nfds_t>(count), timeout_ms);
    if (rc < 0) {
      if (errno == EINTR) continue;
      log(errno_message("poll", errno));
      break;
    }
    std::size_t reaped = 0;
    if (fds[1].revents != 0) {
      char drain[256];
      while (::read(wake_read_.get(), drain, sizeof drain) > 0) {
      }
      reaped = reap_finished();
    }
    if (stopping_.load()) break;
    admit_waiting();
    if (accept_backoff_ms_ > 0 && (fds[1].revents == 0 || reaped > 0)) {
      // The back-off ran out, or ended sessions freed descriptors: try
      // accepting again. Waiting out the back-off after every wake-up would
      // starve accept for as long as sessions keep ending.
      accept_ready();
    } else if (accept_backoff_ms_ == 0 && fds[0].revents != 0) {
      accept_ready();
    }
  }
  waiting_.clear();  // closes the connections still waiting for a slot
  std::size_t open = session_count();
  log("stopping: closing " + std::to_string(open) + " session(s)");
  end_all_sessions();
  log("stopped");
}

void Server::accept_ready() {
  // Accept everything pending; the listener is non-blocking.
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd = ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        accept_backoff_ms_ = 0;
        return;
      }
      if (is_transient_accept_error(err)) continue;
      if (is_resource_accept_error(err)) {
        // Out of descriptors or memory: pending connections stay queued in
        // the backlog. Back off (10 ms doubling to 1 s) instead of spinning;
        // sessions that end free descriptors meanwhile.
        accept_backoff_ms_ = accept_backoff_ms_ == 0 ? 10 : std::min(accept_backoff_ms_ * 2, 1000);
        log(errno_message("accept", err) + "; retrying in " +
            std::to_string(accept_backoff_ms_) + " ms");
        return;
      }
      log(errno_message("accept", err) + "; the listener is broken, stopping");
      stopping_.store(true);
      return;
    }
    accept_backoff_ms_ = 0;
    start_session(Fd(fd), format_address(reinterpret_cast<sockaddr*>(&ss), len));
  }
}

bool Server::admit(uint64_t* id, std::size_t* open) {
  // Only the accept thread admits sessions, and sessions only ever leave the
  // count, so checking and counting under one lock can never admit more than
  // the limit.
  std::lock_guard<std::mutex> lock(mu_);
  *open = live_;
  if (live_ >= options_.max_connections) return false;
  ++live_;
  *id = next_id_++;
  return true;
}

void Server::start_session(Fd fd, std::string peer) {
  // A session leaves the count as its serve() ends. But a client that closes
  // and at once reconnects can be accepted before its old session has seen
  // the end of stream (the kernel may even deliver the new SYN before the
  // old FIN): so at the limit a connection waits, briefly and in a bounded
  // queue, for a slot, instead of being refused for one that is as good as
  // free. Connections that came first are admitted first.
  uint64_t id = 0;
  std::size_t open = 0;
  if (waiting_.empty() && admit(&id, &open)) {
    launch(id, std::move(fd), std::move(peer));
    return;
  }
  if (waiting_.size() < kMaxWaiting) {
    waiting_.push_back(
        Waiting{std::move(fd), std::move(peer), std::chrono::steady_clock::now() + kSlotWait});
    return;
  }
  refuse(std::move(fd), peer, session_count());
}

void Server::admit_waiting() {
  while (!waiting_.empty()) {
    uint64_t id = 0;
    std::size_t open = 0;
    if (admit(&id, &open)) {
      Waiting w = std::move(waiting_.front());
      waiting_.pop_front();
      launch(id, std::move(w.fd), std::move(w.peer));
      continue;
    }
    // Deadlines grow along the queue: only its front can be over.
    if (waiting_.front().deadline > std::chrono::steady_clock::now()) return;
    Waiting w = std::move(waiting_.front());
    waiting_.pop_front();
    refuse(std::move(w.fd), w.peer, open);
  }
}

int Server::waiting_timeout_ms() const {
  if (waiting_.empty()) return -1;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(
      waiting_.front().deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<std::chrono::milliseconds::rep>(left.count(), 0));
}

void Server::refuse(Fd fd, const std::string& peer, std::size_t open) {
  ++refused_;
  ::send(fd.get(), kTooManyConnectionsAnswer.data(), kTooManyConnectionsAnswer.size(),
         MSG_NOSIGNAL | MSG_DONTWAIT);
  log("refused " + peer + ": too many connections (" + std::to_string(open) + " open, limit " +
      std::to_string(options_.max_connections) + ")");
  // `fd` closes here.
}

void Server::launch(uint64_t id, Fd fd, std::string peer) {
  auto session = std::make_unique<Session>();
  Session* raw = session.get();
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (options_.idle_timeout_seconds > 0) {
    // A receive that waits this long returns EAGAIN and ends the session; a
    // client that stops reading its answers is dropped after as long.
    set_socket_timeouts(fd.get(), options_.idle_timeout_seconds);
  }

  session->fd = std::move(fd);
  session->peer = std::move(peer);
  {
    std::lock_guard<std::mutex> lock(mu_);
    sessions_.emplace(id, std::move(session));
  }
  try {
    raw->thread = std::thread(&Server::serve, this, raw, id);
  } catch (const std::system_error& e) {
    ++refused_;
    ::send(raw->fd.get(), kOutOfResourcesAnswer.data(), kOutOfResourcesAnswer.size(),
           MSG_NOSIGNAL | MSG_DONTWAIT);
    log("refused " + raw->peer + ": cannot start a session thread: " + e.what());
    std::lock_guard<std::mutex> lock(mu_);
    --live_;
    sessions_.erase(id);  // closes the connection
  }
}

void Server::serve(Session* session, uint64_t id) {
  // Named, so that `top -H` and tools that watch the server (the soak) can
  // tell sessions from the server's own threads.
  ::pthread_setname_np(::pthread_self(), kSessionThreadName);
  const int fd = session->fd.get();
  const std::unique_ptr<LineHandler> handler = service_.open_session();
  Output out(fd, handler.get());
  LineSplitter splitter(options_.max_line_bytes);
  const bool idle_limit = options_.idle_timeout_seconds > 0;
  const auto idle_duration = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(options_.idle_timeout_seconds));
  auto last_request = std::chrono::steady_clock::now();
  char buf[kReadChunk];

  for (;;) {
    long n = recv_some(fd, buf, sizeof buf);
    if (n <= 0) break;  // end of stream, reset, idle timeout or shutdown
    bool answered = false;
    splitter.feed(
        std::string_view(buf, static_cast<std::size_t>(n)),
        [&](std::string_view line) {
          answered = true;
          handler->handle_line(line, out);
          out.flush_if_large();
        },
        [&] {
          answered = true;
          handler->handle_too_long(out);
        });
    if (!out.flush()) break;
    if (idle_limit) {
      auto now = std::chrono::steady_clock::now();
      if (answered) {
        last_request = now;
      } else if (now - last_request >= idle_duration) {
        // Bytes that never complete a request (a slow-loris client) do not
        // keep a session alive.
        break;
      }
    }
  }
  finish(id);
}

void Server::finish(uint64_t id) {
  {
    // The slot is free from here on; the accept loop joins the thread and
    // closes the descriptor when it reaps `id`.
    std::lock_guard<std::mutex> lock(mu_);
    --live_;
    finished_.push_back(id);
  }
  wake();
}

std::size_t Server::reap_finished() {
  std::vector<std::unique_ptr<Session>> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (uint64_t id : finished_) {
      auto it = sessions_.find(id);
      if (it == sessions_.end()) continue;
      done.push_back(std::move(it->second));
      sessions_.erase(it);
    }
    finished_.clear();
  }
  // Joining outside the lock: a finishing thread needs mu_ in finish(). Each
  // of these threads has already left serve(), so the joins are immediate.
  for (auto& session : done) {
    if (session->thread.joinable()) session->thread.join();
  }
  // Destroying `done` on return closes the sockets.
  return done.size();
}

void Server::end_all_sessions() {
  std::vector<std::unique_ptr<Session>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, session] : sessions_) {
      // Wakes a thread blocked in recv or send on this socket; the thread
      // then finishes on its own. The descriptor stays open until the join,
      // so its number cannot be reused under the thread.
      ::shutdown(session->fd.get(), SHUT_RDWR);
      all.push_back(std::move(session));
    }
    sessions_.clear();
    finished_.clear();
  }
  for (auto& session : all) {
    if (session->thread.joinable()) session->thread.join();
  }
}

namespace {

sigset_t stop_signal_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

void block_stop_signals() {
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t set = stop_signal_set();
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void run_until_stop_signal(Server& server) {
  const sigset_t set = stop_signal_set();
  // The signal thread must have the stop signals blocked from its first
  // instruction, whatever the caller's mask (a program may embed the server
  // without block_stop_signals()): a thread inherits its creator's mask, so
  // block them here while starting it, and restore the caller's mask after.
  struct MaskGuard {
    sigset_t previous;
    explicit MaskGuard(const sigset_t& block) {
      ::pthread_sigmask(SIG_BLOCK, &block, &previous);
    }
    ~MaskGuard() { ::pthread_sigmask(SIG_SETMASK, &previous, nullptr); }
  };
  std::thread signal_thread;
  {
    MaskGuard blocked(set);
    signal_thread = std::thread([&] {
      int signal_number = 0;
      ::sigwait(&set, &signal_number);
      server.stop();
    });
  }
  // run() also returns when the listener breaks or stop() is called: release
  // the signal thread with a SIGTERM directed at it alone (pthread_kill). It
  // has the signal blocked, so the signal can only end its sigwait, and if
  // the thread has already taken a signal, it stays pending on that thread
  // and vanishes with it. A SIGTERM to the whole process (kill) could
  // instead land in any thread that does not block it and kill the process.
  // Waking sigwait this way costs nothing while the server runs, unlike a
  // sigtimedwait loop polling a flag.
  struct Release {
    std::thread& thread;
    ~Release() {
      ::pthread_kill(thread.native_handle(), SIGTERM);
      thread.join();
    }
  } release{signal_thread};
  server.run();
}

void set_default_thread_stack_size(std::size_t bytes) {
  pthread_attr_t attr;
  int rc = ::pthread_getattr_default_np(&attr);
  if (rc == 0) {
    rc = ::pthread_attr_setstacksize(&attr, bytes);
    if (rc == 0) rc = ::pthread_setattr_default_np(&attr);
    ::pthread_attr_destroy(&attr);
  }
  if (rc != 0) {
    throw SystemError(errno_message("set thread stack size", rc), rc);
  }
}

void use_small_session_stacks() {
  if (!kThreadSanitizer) set_default_thread_stack_size(kSessionStackBytes);
}

}  // namespace metrics
