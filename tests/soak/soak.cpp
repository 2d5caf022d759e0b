// metrics-soak: a bounded soak of one metrics-server (issue 3, "Proof").
//
// Starts the server binary itself on 127.0.0.1:0 (by PID), opens N
// connections (default 10,000) served by a few epoll threads, and for T
// seconds has every connection send random valid and invalid requests —
// pipelined puts of its own keys, gets of them checked against what was
// acknowledged, invalid lines, blank lines, now and then an over-long line, a
// `get *`, or a disconnect in mid-line or by reset followed by a reconnect.
// Then it checks that every acknowledged put is readable with its value, and
// that every session thread ends and the RSS comes back down once the
// clients close.
// Prints its figures and exits 0 only if every check held.
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "metrics/client.hpp"
#include "procfs.hpp"
#include "metrics/protocol.hpp"
#include "server.hpp"
#include "metrics/socket.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using metrics::Fd;

struct Options {
  std::string server = "build/metrics-server";
  int connections = 10000;
  double seconds = 60;
  int threads = 2;
  double think_ms = 100;  // mean pause between a connection's batches
  double hold_seconds = 0;  // pause before stopping the server, to inspect it
  std::vector<std::string> server_args;
};

// ---------------------------------------------------------------------------
// The server process


class ServerProcess {
 public:
  explicit ServerProcess(const Options& options) {
    int err_pipe[2];
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) metrics::throw_errno("pipe2");
    Fd err_read(err_pipe[0]), err_write(err_pipe[1]);
    std::vector<std::string> argv = {options.server, "127.0.0.1", "0"};
    argv.insert(argv.end(), options.server_args.begin(), options.server_args.end());
    std::vector<char*> c_argv;
    for (std::string& a : argv) c_argv.push_back(a.data());
    c_argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) metrics::throw_errno("fork");
    if (pid_ == 0) {
      ::dup2(err_write.get(), 2);
      ::execv(c_argv[0], c_argv.data());
      ::_exit(127);
    }
    err_ = std::move(err_read);
    std::string line;
    while ((line = read_line()).find("listening on") == std::string::npos) {
      if (line.empty()) throw std::runtime_error("server exited before listening: " + log_);
    }
    port_ = static_cast<uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
    // From now on a thread drains the log, so the server never blocks on it.
    drain_ = std::thread([this] {
      while (!read_line().empty()) {
      }
    });
  }

  ~ServerProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (drain_.joinable()) drain_.join();
  }

  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  std::string log() {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }

  // SIGTERM, then waits (bounded) for the exit; returns the exit status or
  // -1, and the seconds it took.
  int terminate(double* seconds) {
    auto start = Clock::now();
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (;;) {
      pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_) break;
      if (Clock::now() - start > std::chrono::seconds(30)) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    *seconds = std::chrono::duration<double>(Clock::now() - start).count();
    pid_ = -1;
    drain_.join();
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  // One line of the server's stderr (kept in log_), or "" at end of file.
  std::string read_line() {
    std::string line;
    char c;
    while (::read(err_.get(), &c, 1) == 1) {
      line.push_back(c);
      if (c == '\n') break;
    }
    std::lock_guard<std::mutex> lock(mu_);
    log_ += line;
    return line;
  }

  pid_t pid_ = -1;
  uint16_t port_ = 0;
  Fd err_;
  std::mutex mu_;
  std::string log_;  // guarded by mu_
  std::thread drain_;
};

// ---------------------------------------------------------------------------
// The clients

// What one request's answer must be.
struct Expect {
  enum Kind { kPut, kWrong, kGetKey, kGetAll } kind;
  std::string key;  // kPut, kGetKey
  int64_t timestamp = 0;
  double value = 0;
  std::string answer;  // kGetKey: the exact answer
};

// Acknowledged state: key -> timestamp -> value.
using Model = std::unordered_map<std::string, std::map<int64_t, double>>;

struct Counters {
  long requests = 0;
  long answers = 0;
  long puts_acked = 0;
  long gets_checked = 0;
  long wrong_checked = 0;
  long get_all = 0;
  long reconnects = 0;
  long failures = 0;
  std::string first_failure;
};

struct Connection {
  int index = 0;
  Fd fd;
  std::string out;  // bytes still to send
  std::string in;   // bytes received, not yet matched
  std::size_t scanned = 0;
  std::deque<Expect> expects;
  Clock::time_point next_send;
};

class Worker {
 public:
  Worker(int id, const Options& options, uint16_t port, std::vector<int> indexes)
      : options_(options), port_(port), rng_(1234567u + static_cast<unsigned>(id)) {
    epoll_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
    for (int index : indexes) {
      auto c = std::make_unique<Connection>();
      c->index = index;
      conns_.push_back(std::move(c));
    }
  }

  // Opens every connection (blocking connects; the server accepts them).
  void connect_all() {
    for (auto& c : conns_) open(*c);
  }

  // Runs the random traffic until `stop_at`, then drains every outstanding
  // answer (bounded).
  void run(Clock::time_point stop_at) {
    auto now = Clock::now();
    for (auto& c : conns_) {
      c->next_send = now + pause();
      timers_.push({c->next_send, c->index});
    }
    bool stopping = false;
    auto drain_deadline = stop_at + std::chrono::seconds(60);
    epoll_event events[256];
    for (;;) {
      now = Clock::now();
      if (!stopping && now >= stop_at) stopping = true;
      if (stopping && (outstanding() == 0 || now >= drain_deadline)) break;
      while (!stopping && !timers_.empty() && timers_.top().first <= now) {
        int index = timers_.top().second;
        timers_.pop();
        Connection& c = *by_index(index);
        if (c.expects.empty() && c.out.empty()) send_batch(c);
      }
      int timeout = 50;
      if (!stopping && !timers_.empty()) {
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(timers_.top().first - now);
        timeout = static_cast<int>(std::clamp<long>(wait.count(), 0, 50));
      }
      int n = ::epoll_wait(epoll_.get(), events, 256, timeout);
      for (int i = 0; i < n; ++i) {
        Connection& c = *by_index(static_cast<int>(events[i].data.u32));
        if (events[i].events & EPOLLOUT) flush(c);
        if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) receive(c);
      }
    }
    if (outstanding() != 0) fail("answers still outstanding after the drain deadline");
  }

  void close_all() { conns_.clear(); }

  const Model& model() const { return model_; }
  const Counters& counters() const { return counters_; }

 private:
  std::chrono::milliseconds pause() {
    std::uniform_real_distribution<double> d(0, 2 * options_.think_ms);
    return std::chrono::milliseconds(static_cast<long>(d(rng_)));
  }

  Connection* by_index(int index) {
    return conns_[static_cast<std::size_t>(index / options_.threads)].get();
  }

  std::size_t outstanding() const {
    std::size_t n = 0;
    for (const auto& c : conns_) n += c->expects.size() + (c->out.empty() ? 0 : 1);
    return n;
  }

  void open(Connection& c) {
    c.fd = metrics::connect_tcp("127.0.0.1", port_, std::chrono::milliseconds(30000));
    int flags = ::fcntl(c.fd.get(), F_GETFL);
    ::fcntl(c.fd.get(), F_SETFL, flags | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(c.index);
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.fd.get(), &ev);
    c.in.clear();
    c.out.clear();
    c.scanned = 0;
  }

  std::string key(const Connection& c, int j) const {
    return "s" + std::to_string(c.index) + "_" + std::to_string(j);
  }

  double random_value() {
    switch (rng_() % 4) {
      case 0:
        return static_cast<double>(static_cast<int>(rng_() % 2001) - 1000);
      case 1:
        return static_cast<double>(static_cast<int>(rng_() % 2001) - 1000) / 8;
      case 2: {
        std::uniform_real_distribution<double> d(-1e6, 1e6);
        return d(rng_);
      }
      default: {
        std::uniform_real_distribution<double> d(-300, 300);
        return std::pow(10.0, d(rng_));
      }
    }
  }

  void send_batch(Connection& c) {
    unsigned roll = static_cast<unsigned>(rng_() % 10000);
    if (roll < 20) {
      // Goes away: in mid-line (never stored) or with a reset, then returns.
      std::string partial = "put " + key(c, 0) + " 1";
      ::send(c.fd.get(), partial.data(), partial.size(), MSG_NOSIGNAL);
      if (roll < 10) {
        linger lg{1, 0};
        ::setsockopt(c.fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      }
      c.fd.reset();  // closing also removes it from the epoll set
      ++counters_.reconnects;
      open(c);
    } else if (roll < 22 && Clock::now() - last_get_all_ > std::chrono::seconds(5)) {
      // Rare: with every key stored, one answer is tens of megabytes.
      last_get_all_ = Clock::now();
      c.out += "get *\n";
      c.expects.push_back(Expect{Expect::kGetAll, {}, 0, 0, {}});
    } else if (roll < 25) {
      // An over-long line: one wrong command, the session goes on.
      c.out += "put " + std::string(70000, 'x') + " 1 1\n";
      c.expects.push_back(Expect{Expect::kWrong, {}, 0, 0, {}});
    } else if (roll < 1500) {
      // A get of one of its own keys, alone on the wire so the expected
      // answer is exactly what was acknowledged.
      std::string k = key(c, static_cast<int>(rng_() % 4));
      std::string answer = "ok\n";
      auto it = model_.find(k);
      if (it != model_.end()) {
        for (const auto& [ts, value] : it->second) {
          metrics::append_sample_line(&answer, k, metrics::Sample{ts, value});
        }
      }
      answer += "\n";
      c.out += metrics::format_get_request(k);
      c.expects.push_back(Expect{Expect::kGetKey, k, 0, 0, answer});
    } else {
      // A pipelined batch of puts and invalid lines, sometimes with a blank
      // line (which gets no answer).
      int count = 1 + static_cast<int>(rng_() % 4);
      for (int i = 0; i < count; ++i) {
        if (rng_() % 5 == 0) {
          static const char* const kInvalid[] = {
              "PUT k 1 1\n", "put k nan 1\n", "put * 1 1\n", "get\n",       "get a b\n",
              "put k 1 1.5\n", "hello\n",      "put k 1e999 1\n", "put k 1 1 1\n"};
          c.out += kInvalid[rng_() % (sizeof kInvalid / sizeof kInvalid[0])];
          c.expects.push_back(Expect{Expect::kWrong, {}, 0, 0, {}});
        } else {
          Expect e{Expect::kPut, key(c, static_cast<int>(rng_() % 4)),
                   static_cast<int64_t>(rng_() % 50), random_value(), {}};
          c.out += metrics::format_put_request(e.key, e.value, e.timestamp);
          c.expects.push_back(std::move(e));
        }
        if (rng_() % 20 == 0) c.out += " \t\n";
      }
    }
    counters_.requests += static_cast<long>(c.expects.size());
    flush(c);
    if (c.expects.empty() && c.out.empty()) schedule(c);
  }

  void schedule(Connection& c) {
    c.next_send = Clock::now() + pause();
    timers_.push({c.next_send, c.index});
  }

  void flush(Connection& c) {
    while (!c.out.empty()) {
      ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        fail(metrics::errno_message("send on connection " + std::to_string(c.index), errno));
        c.out.clear();
        c.expects.clear();
        return;
      }
      c.out.erase(0, static_cast<std::size_t>(n));
    }
    epoll_event ev{};
    ev.events = c.out.empty() ? EPOLLIN : (EPOLLIN | EPOLLOUT);
    ev.data.u32 = static_cast<uint32_t>(c.index);
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev);
  }

  void receive(Connection& c) {
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
      if (n > 0) {
        c.in.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      fail("connection " + std::to_string(c.index) + " closed by the server" +
           (n < 0 ? ": " + std::string(std::strerror(errno)) : std::string()));
      c.expects.clear();
      c.out.clear();
      c.fd.reset();
      open(c);
      return;
    }
    for (;;) {
      std::size_t end = metrics::find_answer_end(c.in, c.scanned);
      if (end == 0) {
        c.scanned = c.in.size();
        break;
      }
      check(c, std::string_view(c.in).substr(0, end));
      c.in.erase(0, end);
      c.scanned = 0;
    }
    if (c.expects.empty() && c.out.empty()) schedule(c);
  }

  void check(Connection& c, std::string_view answer) {
    ++counters_.answers;
    if (c.expects.empty()) {
      fail("an answer nobody asked for on connection " + std::to_string(c.index));
      return;
    }
    Expect e = std::move(c.expects.front());
    c.expects.pop_front();
    switch (e.kind) {
      case Expect::kPut:
        if (answer != metrics::kOkAnswer) return fail("put answered " + std::string(answer));
        model_[e.key][e.timestamp] = e.value;
        ++counters_.puts_acked;
        return;
      case Expect::kWrong:
        if (answer != metrics::kWrongCommandAnswer) {
          return fail("invalid request answered " + std::string(answer.substr(0, 60)));
        }
        ++counters_.wrong_checked;
        return;
      case Expect::kGetKey:
        if (answer != e.answer) {
          return fail("get " + e.key + " answered '" + std::string(answer.substr(0, 200)) +
                      "', expected '" + e.answer.substr(0, 200) + "'");
        }
        ++counters_.gets_checked;
        return;
      case Expect::kGetAll:
        if (metrics::parse_answer(answer).kind != metrics::AnswerKind::kOk) {
          return fail("get * answered " + std::string(answer.substr(0, 60)));
        }
        ++counters_.get_all;
        return;
    }
  }

  void fail(const std::string& what) {
    if (counters_.failures++ == 0) counters_.first_failure = what;
  }

  const Options& options_;
  uint16_t port_;
  std::mt19937_64 rng_;
  Fd epoll_;
  std::vector<std::unique_ptr<Connection>> conns_;
  std::priority_queue<std::pair<Clock::time_point, int>,
                      std::vector<std::pair<Clock::time_point, int>>, std::greater<>>
      timers_;
  Clock::time_point last_get_all_;
  Model model_;
  Counters counters_;
};

// Raises this process's descriptor limit (soft and, as root, hard) so that
// it and the server it starts can hold `needed` descriptors.
void raise_descriptor_limit(rlim_t needed) {
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_max < needed) {
    rlimit raised{needed, needed};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) return;
  }
  limit.rlim_cur = limit.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &limit);
}

// Waits up to `seconds` for `condition`, checking every 10 ms.
template <typename Condition>
bool wait_for(Condition condition, double seconds) {
  auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(seconds));
  while (!condition()) {
    if (Clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

int run(const Options& options) {
  raise_descriptor_limit(static_cast<rlim_t>(options.connections) * 2 + 1024);
  ::signal(SIGPIPE, SIG_IGN);
  // Headroom over N: a client that reconnects may arrive before the server
  // has reaped its previous session.
  Options with_limit = options;
  with_limit.server_args.insert(with_limit.server_args.begin(),
                                {"--max-connections", std::to_string(options.connections + 1000)});
  ServerProcess server(with_limit);
  const pid_t pid = server.pid();
  std::printf("soak: %d connections, %.0f s, %d client threads, server pid %d on port %u\n",
              options.connections, options.seconds, options.threads, pid, server.port());
  bool ok = true;
  auto expect = [&](bool condition, const std::string& what) {
    if (!condition) {
      std::printf("FAILED: %s\n", what.c_str());
      ok = false;
    }
  };

  // Session threads are told from the server's own ones (the accept loop,
  // the signal thread, with a log its syncer and compactor) by their name.
  auto sessions = [pid] { return metrics::proc_threads_named(pid, metrics::kSessionThreadName); };
  wait_for([&] { return metrics::proc_status_field(pid, "Threads") >= 2; }, 5);
  const long base_threads = metrics::proc_status_field(pid, "Threads");
  const long base_rss = metrics::proc_status_field(pid, "VmRSS");

  std::vector<std::unique_ptr<Worker>> workers;
  for (int w = 0; w < options.threads; ++w) {
    std::vector<int> indexes;
    for (int i = w; i < options.connections; i += options.threads) indexes.push_back(i);
    workers.push_back(std::make_unique<Worker>(w, options, server.port(), std::move(indexes)));
  }
  auto connect_start = Clock::now();
  for (auto& w : workers) w->connect_all();
  bool all_up = wait_for([&] { return sessions() >= options.connections; }, 60);
  double connect_seconds = std::chrono::duration<double>(Clock::now() - connect_start).count();
  expect(all_up, "the server did not reach one session thread per connection");
  const long idle_rss = metrics::proc_status_field(pid, "VmRSS");
  std::printf(
      "idle: %d connections open in %.2f s; %ld session threads, server threads %ld -> "
      "%ld, RSS %ld -> %ld KiB (%.1f KiB per idle connection)\n",
      options.connections, connect_seconds, sessions(), base_threads,
      metrics::proc_status_field(pid, "Threads"), base_rss, idle_rss,
      static_cast<double>(idle_rss - base_rss) / options.connections);

  // Traffic; the main thread samples the server meanwhile.
  const Clock::time_point stop_at =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(options.seconds));
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w, stop_at] { w->run(stop_at); });
  long peak_rss = idle_rss, peak_threads = 0;
  auto traffic_start = Clock::now();
  while (Clock::now() < stop_at) {
    peak_rss = std::max(peak_rss, metrics::proc_status_field(pid, "VmRSS"));
    peak_threads = std::max(peak_threads, metrics::proc_status_field(pid, "Threads"));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  for (std::thread& t : threads) t.join();
  double traffic_seconds = std::chrono::duration<double>(Clock::now() - traffic_start).count();

  Counters total;
  Model model;
  for (auto& w : workers) {
    const Counters& c = w->counters();
    total.requests += c.requests;
    total.answers += c.answers;
    total.puts_acked += c.puts_acked;
    total.gets_checked += c.gets_checked;
    total.wrong_checked += c.wrong_checked;
    total.get_all += c.get_all;
    total.reconnects += c.reconnects;
    total.failures += c.failures;
    if (total.first_failure.empty()) total.first_failure = c.first_failure;
    for (const auto& [key, samples] : w->model()) model[key] = samples;
  }
  std::printf("traffic: %ld requests, %ld answers in %.1f s (%.0f answers/s); %ld puts acked, "
              "%ld gets and %ld invalid requests checked, %ld get *, %ld reconnects\n",
              total.requests, total.answers, traffic_seconds, total.answers / traffic_seconds,
              total.puts_acked, total.gets_checked, total.wrong_checked, total.get_all,
              total.reconnects);
  std::printf("server during traffic: peak RSS %ld KiB, peak threads %ld\n", peak_rss,
              peak_threads);
  expect(total.failures == 0, std::to_string(total.failures) +
                                  " wrong or missing answers; first: " + total.first_failure);

  // Every acknowledged put is readable with its value, and nothing else of
  // ours is stored.
  std::size_t samples_checked = 0, mismatches = 0;
  try {
    metrics::Client client("127.0.0.1", server.port(), 120.0);
    auto stored = client.get("*");
    for (const auto& [key, samples] : model) {
      auto it = stored.find(key);
      std::map<int64_t, double> got;
      if (it != stored.end()) {
        for (const metrics::Sample& s : it->second) got[s.timestamp] = s.value;
      }
      samples_checked += samples.size();
      if (got != samples) ++mismatches;
    }
    std::size_t ours = 0;
    for (const auto& [key, samples] : stored) {
      if (key.size() > 1 && key[0] == 's' && key.find('_') != std::string::npos) ++ours;
    }
    expect(ours == model.size(), "the store holds " + std::to_string(ours) +
                                     " soak keys, the clients acknowledged " +
                                     std::to_string(model.size()));
  } catch (const std::exception& e) {
    expect(false, std::string("verification get *: ") + e.what());
  }
  std::printf("verify: %zu keys, %zu acknowledged samples read back; %zu keys differ\n",
              model.size(), samples_checked, mismatches);
  expect(mismatches == 0, std::to_string(mismatches) + " keys differ from what was acknowledged");

  // Clients close: every session thread ends and memory comes back.
  const long loaded_rss = metrics::proc_status_field(pid, "VmRSS");
  for (auto& w : workers) w->close_all();
  bool threads_down = wait_for([&] { return sessions() == 0; }, 60);
  const long closed_sessions = sessions();
  const long closed_threads = metrics::proc_status_field(pid, "Threads");
  expect(threads_down, "session threads were still running after the clients closed");
  // The connections' share of the memory — at least half of what the idle
  // connections took — must be returned; the stored samples stay. Threads
  // leave /proc before the server has joined them and unmapped their stacks,
  // which takes a few seconds after 10,000 sessions end.
  const long connection_share = idle_rss - base_rss;
  auto close_start = Clock::now();
  bool rss_down = wait_for(
      [&] { return loaded_rss - metrics::proc_status_field(pid, "VmRSS") >= connection_share / 2; }, 60);
  const long closed_rss = metrics::proc_status_field(pid, "VmRSS");
  std::printf(
      "after close: %ld session threads, threads %ld (baseline %ld), RSS %ld KiB after "
      "%.1f s (with connections %ld, baseline %ld)\n",
      closed_sessions, closed_threads, base_threads, closed_rss,
      std::chrono::duration<double>(Clock::now() - close_start).count(), loaded_rss, base_rss);
  expect(rss_down, "server RSS did not come down after the clients closed");

  if (options.hold_seconds > 0) {
    std::printf("holding the server (pid %d) for %.0f s\n", pid, options.hold_seconds);
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::duration<double>(options.hold_seconds));
  }
  double stop_seconds = 0;
  int status = server.terminate(&stop_seconds);
  std::printf("SIGTERM: exit status %d after %.3f s\n", status, stop_seconds);
  expect(status == 0, "server did not exit 0 on SIGTERM");
  std::string log = server.log();
  std::size_t refused = 0;
  for (std::size_t pos = log.find("refused"); pos != std::string::npos;
       pos = log.find("refused", pos + 1)) {
    ++refused;
  }
  std::printf("server log: %zu bytes, %zu refused-connection lines\n", log.size(), refused);
  expect(refused == 0, "the server refused connections:\n" + log.substr(0, 2000));
  std::printf("%s\n", ok ? "soak: PASS" : "soak: FAIL");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"metrics-soak: N connections of random traffic against one metrics-server."};
  app.add_option("--server", options.server, "The metrics-server binary to start")
      ->capture_default_str();
  app.add_option("-n,--connections", options.connections, "Concurrent connections")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("-t,--seconds", options.seconds, "Seconds of traffic")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--threads", options.threads, "Client threads (each runs an epoll loop)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--think-ms", options.think_ms,
                 "Mean pause of a connection between its request batches")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--server-arg", options.server_args, "An extra argument for the server");
  app.add_option("--hold-seconds", options.hold_seconds,
                 "Before stopping the server, wait this long (to inspect /proc/PID)")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  // One line per phase, visible as it happens even when piped to a file.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    return run(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "metrics-soak: %s\n", e.what());
    return 1;
  }
}
