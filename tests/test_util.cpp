#include "test_util.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace metrics::test {

struct LogSink {
  mutable std::mutex mu;
  std::vector<std::string> lines;  // guarded by mu
};

TestServer::TestServer(ServerOptions options) : log_(std::make_shared<LogSink>()) {
  options.host = "127.0.0.1";
  options.port = 0;
  if (!options.log) {
    std::shared_ptr<LogSink> sink = log_;
    options.log = [sink](std::string_view line) {
      std::lock_guard<std::mutex> lock(sink->mu);
      sink->lines.emplace_back(line);
    };
  }
  server_ = std::make_unique<Server>(std::move(options), service_);
  server_->listen();
  thread_ = std::thread([this] { server_->run(); });
}

TestServer::~TestServer() {
  server_->stop();
  thread_.join();
}

std::vector<std::string> TestServer::log_lines() const {
  std::lock_guard<std::mutex> lock(log_->mu);
  return log_->lines;
}

RawConnection::RawConnection(uint16_t port)
    : fd_(connect_tcp("127.0.0.1", port, kDeadline)) {}

RawConnection::RawConnection(const std::string& host, uint16_t port)
    : fd_(connect_tcp(host, port, kDeadline)) {}

void RawConnection::send(std::string_view bytes) {
  if (!send_all(fd_.get(), bytes, kDeadline)) {
    throw std::runtime_error(errno_message("test send", errno));
  }
}

std::string RawConnection::read_answers(std::size_t count) {
  std::size_t end = 0;
  std::size_t found = 0;
  std::size_t scanned = 0;
  for (;;) {
    while (found < count) {
      std::size_t next = find_answer_end(std::string_view(buffer_).substr(end), scanned > end ? scanned - end : 0);
      if (next == 0) break;
      end += next;
      ++found;
    }
    if (found == count) break;
    scanned = buffer_.size();
    char chunk[65536];
    long n = recv_some(fd_.get(), chunk, sizeof chunk, kDeadline);
    if (n < 0) throw std::runtime_error(errno_message("test receive", errno));
    if (n == 0) {
      throw std::runtime_error("test receive: connection closed after " + std::to_string(found) +
                               " of " + std::to_string(count) + " answers; got '" + buffer_ + "'");
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
  std::string answers = buffer_.substr(0, end);
  buffer_.erase(0, end);
  return answers;
}

std::string RawConnection::read_until_close() {
  for (;;) {
    char chunk[65536];
    long n = recv_some(fd_.get(), chunk, sizeof chunk, kDeadline);
    if (n < 0) {
      if (errno == ECONNRESET) break;
      throw std::runtime_error(errno_message("test receive", errno));
    }
    if (n == 0) break;
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
  std::string rest;
  rest.swap(buffer_);
  return rest;
}

void RawConnection::shutdown_write() { ::shutdown(fd_.get(), SHUT_WR); }

void RawConnection::reset() {
  linger lg{1, 0};
  ::setsockopt(fd_.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  fd_.reset();
}

FakeReply reply(std::string bytes, bool close) {
  FakeReply r;
  r.pieces.push_back(std::move(bytes));
  r.close = close;
  return r;
}

FakeReply reply_bytewise(std::string_view bytes) {
  FakeReply r;
  for (char c : bytes) r.pieces.emplace_back(1, c);
  return r;
}

FakeServer::FakeServer(std::vector<FakeReply> script)
    : listener_(listen_tcp("127.0.0.1", 0, 16)), script_(std::move(script)) {
  port_ = local_port(listener_.get());
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("pipe2");
  wake_read_.reset(fds[0]);
  wake_write_.reset(fds[1]);
  thread_ = std::thread([this] { run(); });
}

FakeServer::~FakeServer() {
  // The byte is never drained, so every poll of the thread sees it.
  char byte = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_write_.get(), &byte, 1);
  thread_.join();
}

std::string FakeServer::received_after_closes(std::size_t count) {
  bool closed = wait_until([&] {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_ >= count;
  });
  std::lock_guard<std::mutex> lock(mu_);
  if (!closed) {
    throw std::runtime_error("fake server: " + std::to_string(closed_) + " of " +
                             std::to_string(count) + " connections ended in time");
  }
  return received_;
}

std::string FakeServer::received() const {
  std::lock_guard<std::mutex> lock(mu_);
  return received_;
}

std::size_t FakeServer::accepted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return accepted_;
}

void FakeServer::run() {
  for (;;) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {wake_read_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    Fd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) continue;  // the listener is non-blocking; try again on the next poll
    int one = 1;
    ::setsockopt(conn.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++accepted_;
    }
    bool go_on = serve(conn.get());
    conn.reset();
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++closed_;
    }
    if (!go_on) return;
  }
}

bool FakeServer::serve(int fd) {
  std::string pending;  // received bytes not yet ending a line
  for (;;) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {wake_read_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (fds[1].revents != 0) return false;
    char chunk[4096];
    long n = recv_some(fd, chunk, sizeof chunk);
    if (n <= 0) return true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      received_.append(chunk, static_cast<std::size_t>(n));
    }
    pending.append(chunk, static_cast<std::size_t>(n));
    for (std::size_t nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n')) {
      pending.erase(0, nl + 1);
      if (next_reply_ >= script_.size()) continue;
      const FakeReply& step = script_[next_reply_++];
      for (const std::string& piece : step.pieces) {
        if (!send_all(fd, piece)) return true;  // the client left
      }
      if (step.close) return true;
    }
  }
}

RefusedPort::RefusedPort() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
  if (!fd_) throw_errno("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw_errno("bind");
  port_ = local_port(fd_.get());
}

uint64_t listen_drop_count() {
  // The file holds pairs of lines: "TcpExt: Name1 Name2 ..." then
  // "TcpExt: value1 value2 ...".
  std::ifstream in("/proc/net/netstat");
  std::string names, values;
  while (std::getline(in, names) && std::getline(in, values)) {
    if (names.rfind("TcpExt:", 0) != 0) continue;
    std::istringstream name_stream(names), value_stream(values);
    std::string name, value;
    uint64_t count = 0;
    while (name_stream >> name && value_stream >> value) {
      if (name == "ListenOverflows" || name == "ListenDrops") count += std::stoull(value);
    }
    return count;
  }
  return 0;
}

SlowHandshakeListener::SlowHandshakeListener() : listener_(listen_tcp("127.0.0.1", 0, 0)) {
  port_ = local_port(listener_.get());
  // Backlog 0 still queues one connection, so this one completes at once and
  // leaves the queue full.
  filler_ = connect_tcp("127.0.0.1", port_, kDeadline);
}

SlowHandshakeListener::~SlowHandshakeListener() {
  if (thread_.joinable()) thread_.join();
}

void SlowHandshakeListener::serve_after_a_dropped_syn(std::string answer) {
  uint64_t before = listen_drop_count();
  thread_ = std::thread([this, before, answer = std::move(answer)] { serve(before, answer); });
}

SlowHandshakeListener::Outcome SlowHandshakeListener::finish() {
  if (thread_.joinable()) thread_.join();
  return outcome_;
}

void SlowHandshakeListener::serve(uint64_t drops_before, const std::string& answer) {
  outcome_.syn_dropped = wait_until([&] { return listen_drop_count() > drops_before; });
  // Frees the queue even when no drop was seen, so a client still waiting
  // connects on its next retransmit instead of hanging the test.
  auto accept_one = [this] {
    pollfd pfd{listener_.get(), POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(kDeadline.count())) <= 0) return Fd();
    return Fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  };
  Fd filler = accept_one();
  Fd conn = accept_one();
  if (!conn) return;
  outcome_.accepted = true;
  for (;;) {
    char chunk[4096];
    long n = recv_some(conn.get(), chunk, sizeof chunk, kDeadline);
    if (n <= 0) return;
    outcome_.request.append(chunk, static_cast<std::size_t>(n));
    std::size_t nl = outcome_.request.find('\n');
    if (nl != std::string::npos) {
      outcome_.request.resize(nl + 1);
      break;
    }
  }
  if (!send_all(conn.get(), answer, kDeadline)) return;
  // Closing only after the client did keeps its last read from a reset.
  char byte;
  while (recv_some(conn.get(), &byte, 1, kDeadline) > 0) {
  }
}

namespace {

using Clock = std::chrono::steady_clock;

// Starts argv with stdout/stderr on pipes; returns the pid.
pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env, Fd* out,
            Fd* err) {
  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw_errno("pipe2");
  Fd out_read(out_pipe[0]), out_write(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw_errno("pipe2");
  Fd err_read(err_pipe[0]), err_write(err_pipe[1]);

  std::vector<std::string> environment;
  // A variable given in `env` replaces an inherited one of the same name:
  // getenv() returns the first match, so appending alone would not override.
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view inherited(*e);
    std::string_view name = inherited.substr(0, inherited.find('='));
    bool overridden = false;
    for (const std::string& e2 : env) {
      overridden = overridden || std::string_view(e2).substr(0, e2.find('=')) == name;
    }
    if (!overridden) environment.emplace_back(*e);
  }
  for (const std::string& e : env) environment.push_back(e);
  std::vector<char*> c_argv;
  for (const std::string& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
  c_argv.push_back(nullptr);
  std::vector<char*> c_env;
  for (const std::string& e : environment) c_env.push_back(const_cast<char*>(e.c_str()));
  c_env.push_back(nullptr);

  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    // In the child only async-signal-safe calls until exec.
    // The child dies with the test process even when that is killed before
    // its destructors run (by a timeout, say): no server outlives its test.
    // (Tests spawn from the main thread, whose end is what this watches.)
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(out_write.get(), 1);
    ::dup2(err_write.get(), 2);
    // The test process blocks no signals the child should see, but a test
    // may have; start the child with an empty mask.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(c_argv[0], c_argv.data(), c_env.data());
    ::_exit(127);
  }
  *out = std::move(out_read);
  *err = std::move(err_read);
  return pid;
}

// Reads whatever is available on `fd` into `text`, waiting at most
// `timeout_ms`. Returns false at end of file.
bool read_available(int fd, std::string* text, int timeout_ms) {
  pollfd pfd{fd, POLLIN, 0};
  int rc = ::poll(&pfd, 1, timeout_ms);
  if (rc <= 0) return true;
  char chunk[4096];
  ssize_t n = ::read(fd, chunk, sizeof chunk);
  if (n <= 0) return false;
  text->append(chunk, static_cast<std::size_t>(n));
  return true;
}

ProcessResult collect(pid_t pid, Fd& out, Fd& err, std::string err_prefix,
                      std::chrono::milliseconds deadline) {
  ProcessResult result;
  result.err = std::move(err_prefix);
  auto end = Clock::now() + deadline;
  bool out_open = out.valid(), err_open = err.valid();
  while (out_open || err_open) {
    if (Clock::now() >= end) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      throw std::runtime_error("process " + std::to_string(pid) + " ran past its deadline");
    }
    pollfd fds[2] = {{out_open ? out.get() : -1, POLLIN, 0}, {err_open ? err.get() : -1, POLLIN, 0}};
    int rc = ::poll(fds, 2, 50);
    if (rc < 0 && errno != EINTR) break;
    char chunk[65536];
    if (out_open && fds[0].revents != 0) {
      ssize_t n = ::read(out.get(), chunk, sizeof chunk);
      if (n > 0) result.out.append(chunk, static_cast<std::size_t>(n)); else out_open = false;
    }
    if (err_open && fds[1].revents != 0) {
      ssize_t n = ::read(err.get(), chunk, sizeof chunk);
      if (n > 0) result.err.append(chunk, static_cast<std::size_t>(n)); else err_open = false;
    }
  }
  int status = 0;
  for (;;) {
    pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) throw_errno("waitpid");
    if (Clock::now() >= end) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      throw std::runtime_error("process " + std::to_string(pid) + " ran past its deadline");
    }
    ::poll(nullptr, 0, 1);
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                          std::chrono::milliseconds deadline) {
  Fd out, err;
  pid_t pid = spawn(argv, env, &out, &err);
  return collect(pid, out, err, "", deadline);
}

namespace {

constexpr char kChildTestVariable[] = "METRICS_TEST_IN_CHILD";

}  // namespace

bool in_child_test_process() { return std::getenv(kChildTestVariable) != nullptr; }

ProcessResult run_test_case_in_child(const std::string& name, std::chrono::milliseconds deadline) {
  // Catch reads the argument as a test spec: its special characters are
  // escaped so that it matches exactly the test case of that name.
  std::string spec;
  for (char c : name) {
    if (std::strchr("\\,[]*\"~", c) != nullptr) spec.push_back('\\');
    spec.push_back(c);
  }
  // Executed after the fork, /proc/self/exe is this very binary, however it
  // was started.
  return run_process({"/proc/self/exe", spec}, {std::string(kChildTestVariable) + "=1"}, deadline);
}

// Started in the body, not the initializer list: out_ and err_ are declared
// after pid_, so spawn() must not fill them before they are constructed.
ChildProcess::ChildProcess(const std::vector<std::string>& argv,
                           const std::vector<std::string>& env) {
  pid_ = spawn(argv, env, &out_, &err_);
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

std::string ChildProcess::wait_for_stderr_line(std::string_view needle) {
  auto end = Clock::now() + kDeadline;
  for (;;) {
    std::size_t pos = err_text_.find(needle);
    if (pos != std::string::npos) {
      std::size_t start = err_text_.rfind('\n', pos);
      start = start == std::string::npos ? 0 : start + 1;
      std::size_t stop = err_text_.find('\n', pos);
      if (stop != std::string::npos) return err_text_.substr(start, stop - start);
    }
    if (Clock::now() >= end) {
      throw std::runtime_error("no stderr line with '" + std::string(needle) + "'; got: " + err_text_);
    }
    if (!read_available(err_.get(), &err_text_, 50)) {
      throw std::runtime_error("stderr closed before a line with '" + std::string(needle) +
                               "'; got: " + err_text_);
    }
  }
}

ProcessResult ChildProcess::stop(int sig, std::chrono::milliseconds deadline) {
  ::kill(pid_, sig);
  ProcessResult result = collect(pid_, out_, err_, err_text_, deadline);
  pid_ = -1;
  return result;
}

namespace {

std::vector<std::string> server_command(std::vector<std::string> args,
                                        std::vector<std::string> prefix) {
  prefix.push_back(server_binary());
  prefix.insert(prefix.end(), args.begin(), args.end());
  return prefix;
}

}  // namespace

ServerProcess::ServerProcess(std::vector<std::string> args, std::vector<std::string> prefix)
    : process(server_command(std::move(args), std::move(prefix))),
      listening_line(process.wait_for_stderr_line("listening on")),
      port(port_from_listening_line(listening_line)) {}

TempDir::TempDir() {
  std::string pattern =
      (std::filesystem::temp_directory_path() / "metrics-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw_errno("mkdtemp " + pattern);
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string server_binary() {
  const char* path = std::getenv("METRICS_SERVER_BIN");
  return path != nullptr ? path : "build/metrics-server";
}

std::string cli_binary() {
  const char* path = std::getenv("METRICS_CLI_BIN");
  return path != nullptr ? path : "build/metrics-cli";
}

std::string bench_binary() {
  std::string path = server_binary();
  std::size_t slash = path.rfind('/');
  return (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) + "metrics-bench";
}

uint16_t port_from_listening_line(std::string_view line) {
  std::size_t colon = line.rfind(':');
  if (colon == std::string_view::npos) throw std::runtime_error("no port in '" + std::string(line) + "'");
  return static_cast<uint16_t>(std::stoi(std::string(line.substr(colon + 1))));
}

}  // namespace metrics::test
