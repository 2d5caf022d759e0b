// metrics-bench: a load generator for metrics-server, in the manner of
// redis-benchmark.
//
//   metrics-bench -c 50 -n 200000 -P 1                 # ping-pong puts
//   metrics-bench -c 4 -n 4000000 -P 64 --server-pid $PID
//   metrics-bench --mode get-all --keys 1000 --samples-per-key 1000 -n 5 -c 1 --background 4
//   metrics-bench --protocol redis --port 6379 -c 50 -n 200000   # HSET key timestamp value
//
// One thread per connection; each connection writes P requests at once and
// then reads their P answers. Every answer is compared byte for byte with the
// one the protocol prescribes; a wrong or missing answer is counted, ends that
// connection (its stream is out of step) and makes the exit status 1.
// With --server-pid, the server's CPU time (utime + stime from /proc/PID/stat)
// and resident memory (VmRSS from /proc/PID/status) are read before and after
// the measured phase. Exit status: 0 all answers right, 1 some wrong or
// missing or a connection failed, 2 a usage error.
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "procfs.hpp"
#include "metrics/protocol.hpp"
#include "metrics/socket.hpp"
#include "metrics/version.hpp"

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// Puts sent per write while preloading data for the get modes.
constexpr std::size_t kPreloadBatch = 1000;

// Bytes asked of each recv.
constexpr std::size_t kReadBytes = 64 * 1024;

struct Options {
  std::string host = "127.0.0.1";
  int port = 8888;
  std::size_t connections = 50;
  std::size_t requests = 100000;
  std::size_t pipeline = 1;
  std::size_t keys = 1000;
  std::size_t samples_per_key = 100;
  std::string mode = "put";
  std::string protocol = "metrics";
  std::size_t background = 0;
  long server_pid = 0;
  double timeout = 10;
  bool csv = false;
  std::string label;
  int64_t base_timestamp = 1500000000;
};

// A failure that ends the run: a connection that cannot be made, a preload
// that is answered wrongly.
struct BenchError {
  std::string message;
};

// What one request must be answered with: `main` exactly, or `alt` when it
// is not empty (Redis answers HSET with :1 for a new field, :0 for a
// replaced one). Both views point into the Workload, which outlives them.
struct Expectation {
  std::string_view main;
  std::string_view alt;
};

// The requests of a run and their answers, as pure functions of the
// connection number `c` and the request number `j` within that connection.
// Immutable once built: shared by every thread.
class Workload {
 public:
  explicit Workload(const Options& options)
      : options_(options),
        redis_(options.protocol == "redis"),
        put_(options.mode == "put"),
        mixed_(options.mode == "mixed"),
        get_(options.mode == "get") {
    // The text of every value a measured put sends, formatted once: the
    // load generator should spend its time on the wire, not in to_chars.
    put_values_.resize(kPutValues);
    for (std::size_t k = 0; k < kPutValues; ++k) {
      metrics::append_value(&put_values_[k], static_cast<double>(k) / 4.0);
    }
    if (options.mode == "get" || options.mode == "mixed" || options.mode == "get-all") {
      build_preload_answers();
    }
  }

  bool preloads() const { return !key_answers_.empty(); }
  std::size_t preload_samples() const { return options_.keys * options_.samples_per_key; }

  // Appends request j of connection c in the measured phase. In mixed mode
  // puts and gets alternate.
  void append_request(std::string* out, uint64_t c, uint64_t j) const {
    if (put_ || (mixed_ && j % 2 == 0)) {
      append_put(out, c, mixed_ ? j / 2 : j);
    } else if (get_ || mixed_) {
      out->append(redis_ ? "HGETALL " : "get ");
      append_preload_key(out, get_key(c, mixed_ ? j / 2 : j));
      out->append(redis_ ? "\r\n" : "\n");
    } else {  // get-all
      out->append("get *\n");
    }
  }

  Expectation expected(uint64_t c, uint64_t j) const {
    if (put_ || (mixed_ && j % 2 == 0)) return put_answer();
    if (get_ || mixed_) {
      return {key_answers_[get_key(c, mixed_ ? j / 2 : j)], {}};
    }
    return {all_answer_, {}};
  }

  // Appends preloaded sample number i (key-major: every sample of key 0, then
  // of key 1, ...), which is also what a background connection re-puts.
  void append_preload_put(std::string* out, uint64_t i) const {
    std::size_t key = i / options_.samples_per_key;
    std::size_t sample = i % options_.samples_per_key;
    const int64_t timestamp = options_.base_timestamp + static_cast<int64_t>(sample);
    out->append(redis_ ? "HSET " : "put ");
    append_preload_key(out, key);
    out->push_back(' ');
    if (redis_) {
      metrics::append_timestamp(out, timestamp);
      out->push_back(' ');
      metrics::append_value(out, preload_value(key, sample));
      out->append("\r\n");
    } else {
      metrics::append_value(out, preload_value(key, sample));
      out->push_back(' ');
      metrics::append_timestamp(out, timestamp);
      out->push_back('\n');
    }
  }

  Expectation put_answer() const {
    if (redis_) return {":1\r\n", ":0\r\n"};
    return {metrics::kOkAnswer, {}};
  }

 private:
  // Every put stores a sample that no other put stores. With at least as
  // many keys as connections, connection c owns keys c, c + C, c + 2C, ...
  // and sends each key's timestamps in order, as a monitoring agent does;
  // with fewer keys, the connections sharing a key interleave timestamps.
  void append_put(std::string* out, uint64_t c, uint64_t j) const {
    const uint64_t keys = options_.keys;
    const uint64_t conns = options_.connections;
    uint64_t key, step;
    if (keys >= conns) {
      uint64_t owned = (keys - c + conns - 1) / conns;
      key = c + conns * (j % owned);
      step = j / owned;
    } else {
      uint64_t sharing = (conns + keys - 1) / keys;
      key = c % keys;
      step = j * sharing + c / keys;
    }
    out->append(redis_ ? std::string_view("HSET bench:") : std::string_view("put bench:"));
    append_number(out, key);
    out->push_back(' ');
    const std::string& value = put_values_[(c * 7 + j) % kPutValues];
    int64_t ts = options_.base_timestamp + static_cast<int64_t>(step);
    if (redis_) {
      metrics::append_timestamp(out, ts);
      out->push_back(' ');
      out->append(value);
      out->append("\r\n");
    } else {
      out->append(value);
      out->push_back(' ');
      metrics::append_timestamp(out, ts);
      out->push_back('\n');
    }
  }

  uint64_t get_key(uint64_t c, uint64_t j) const {
    return (c + j * options_.connections) % options_.keys;
  }

  static void append_number(std::string* out, uint64_t n) {
    metrics::append_timestamp(out, static_cast<int64_t>(n));
  }

  static void append_preload_key(std::string* out, std::size_t key) {
    out->append("bench:get:");
    append_number(out, key);
  }

  static double preload_value(std::size_t key, std::size_t sample) {
    return static_cast<double>((key * 7919 + sample) % 100003) * 0.25 - 1000.0;
  }

  // Redis answers HGETALL with every field and its value as bulk strings,
  // in insertion order while the hash is small (a listpack, up to 128
  // fields), which here is timestamp order.
  void build_redis_answers() {
    key_answers_.resize(options_.keys);
    std::string text;
    auto bulk = [](std::string* out, const std::string& s) {
      out->push_back('$');
      append_number(out, s.size());
      out->append("\r\n");
      out->append(s);
      out->append("\r\n");
    };
    for (std::size_t k = 0; k < options_.keys; ++k) {
      std::string& answer = key_answers_[k];
      answer = "*";
      append_number(&answer, 2 * options_.samples_per_key);
      answer.append("\r\n");
      for (std::size_t s = 0; s < options_.samples_per_key; ++s) {
        text.clear();
        metrics::append_timestamp(&text, options_.base_timestamp + static_cast<int64_t>(s));
        bulk(&answer, text);
        text.clear();
        metrics::append_value(&text, preload_value(k, s));
        bulk(&answer, text);
      }
    }
  }

  void build_preload_answers() {
    if (redis_) {
      build_redis_answers();
      return;
    }
    all_answer_ = "ok\n";
    key_answers_.resize(options_.keys);
    std::string key;
    for (std::size_t k = 0; k < options_.keys; ++k) {
      key.clear();
      append_preload_key(&key, k);
      std::string& answer = key_answers_[k];
      answer = "ok\n";
      for (std::size_t s = 0; s < options_.samples_per_key; ++s) {
        metrics::Sample sample{options_.base_timestamp + static_cast<int64_t>(s),
                               preload_value(k, s)};
        metrics::append_sample_line(&answer, key, sample);
      }
      all_answer_.append(answer, 3, std::string::npos);
      answer.push_back('\n');
    }
    all_answer_.push_back('\n');
  }

  static constexpr std::size_t kPutValues = 10000;

  const Options& options_;
  const bool redis_;
  const bool put_, mixed_, get_;         // the mode
  std::vector<std::string> put_values_;  // put_values_[k] is the text of k / 4.0
  std::vector<std::string> key_answers_;
  std::string all_answer_;
};

// Checks a stream of answers against the expected ones, however the bytes are
// split across reads. Not thread-safe: one per connection.
class AnswerChecker {
 public:
  void expect(Expectation e) { pending_.push_back(e); }
  std::size_t pending() const { return pending_.size() - head_; }
  // Answers checked and found right since the last take_done().
  std::size_t take_done() { return std::exchange(done_, 0); }

  // Consumes received bytes. Returns false at the first byte that no expected
  // answer allows (including bytes nobody asked for).
  bool feed(std::string_view data) {
    while (!data.empty()) {
      if (head_ == pending_.size()) return false;
      const Expectation& e = pending_[head_];
      std::size_t n = std::min(data.size(), e.main.size() - offset_);
      main_ok_ = main_ok_ && std::memcmp(data.data(), e.main.data() + offset_, n) == 0;
      alt_ok_ = alt_ok_ && e.alt.size() == e.main.size() &&
                std::memcmp(data.data(), e.alt.data() + offset_, n) == 0;
      if (!main_ok_ && !alt_ok_) return false;
      data.remove_prefix(n);
      offset_ += n;
      if (offset_ == e.main.size()) {
        ++head_;
        ++done_;
        offset_ = 0;
        main_ok_ = alt_ok_ = true;
      }
    }
    if (head_ == pending_.size()) {
      pending_.clear();
      head_ = 0;
    }
    return true;
  }

 private:
  std::vector<Expectation> pending_;
  std::size_t head_ = 0;
  std::size_t offset_ = 0;
  std::size_t done_ = 0;
  bool main_ok_ = true;
  bool alt_ok_ = true;
};

// What one connection did.
struct ConnectionResult {
  uint64_t answered = 0;      // requests answered correctly
  uint64_t failed = 0;        // requests answered wrongly, not answered or not sent
  uint64_t answer_bytes = 0;  // bytes of correct answers
  std::vector<int64_t> latencies_ns;  // one per batch: write to last answer
  std::string error;          // the first failure, if any
};

metrics::Fd connect_to(const Options& options) {
  try {
    metrics::Fd fd = metrics::connect_tcp(options.host, static_cast<uint16_t>(options.port),
                                          std::chrono::milliseconds(
                                              static_cast<long long>(options.timeout * 1000)));
    metrics::set_socket_timeouts(fd.get(), options.timeout);
    return fd;
  } catch (const metrics::SystemError& e) {
    throw BenchError{e.what()};
  }
}

// Sends `requests` and reads answers until `checker` expects none. Returns an
// empty string on success, else what went wrong. `answer_bytes` grows by
// the bytes received.
std::string round_trip(int fd, std::string_view requests, AnswerChecker& checker,
                       std::vector<char>& buf, uint64_t* answer_bytes) {
  if (!metrics::send_all(fd, requests)) return metrics::errno_message("send", errno);
  while (checker.pending() > 0) {
    long n = metrics::recv_some(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return "receive: timed out";
      return metrics::errno_message("receive", errno);
    }
    if (n == 0) return "receive: the server closed the connection";
    *answer_bytes += static_cast<uint64_t>(n);
    if (!checker.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)))) {
      return "wrong answer";
    }
  }
  return {};
}

// Runs requests 0 .. count - 1 of connection c on `fd` in batches of
// `pipeline`, after `start` opens.
void run_connection(const Workload& workload, const Options& options, metrics::Fd fd,
                    uint64_t c, uint64_t count,
                    const std::atomic<bool>& start, ConnectionResult* result) {
  std::string batch;
  std::vector<char> buf(kReadBytes);
  AnswerChecker checker;
  result->latencies_ns.reserve(count / options.pipeline + 1);
  while (!start.load(std::memory_order_acquire)) std::this_thread::yield();
  uint64_t sent = 0;
  while (sent < count) {
    uint64_t n = std::min<uint64_t>(options.pipeline, count - sent);
    batch.clear();
    for (uint64_t i = 0; i < n; ++i) {
      workload.append_request(&batch, c, sent + i);
      checker.expect(workload.expected(c, sent + i));
    }
    auto t0 = Clock::now();
    uint64_t bytes = 0;
    std::string error = round_trip(fd.get(), batch, checker, buf, &bytes);
    uint64_t done = checker.take_done();
    result->answered += done;
    sent += n;
    if (!error.empty()) {
      result->error = error;
      result->failed += count - (sent - n) - done;
      return;
    }
    result->answer_bytes += bytes;
    result->latencies_ns.push_back(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
  }
}

// Re-puts preloaded samples with their own values, one at a time, until
// `stop`: load that contends for the storage without changing any answer.
void run_background(const Workload& workload, const Options& options, metrics::Fd fd,
                    uint64_t first, const std::atomic<bool>& start,
                    const std::atomic<bool>& stop, ConnectionResult* result) {
  std::string request;
  std::vector<char> buf(kReadBytes);
  AnswerChecker checker;
  while (!start.load(std::memory_order_acquire)) std::this_thread::yield();
  uint64_t i = first;
  while (!stop.load(std::memory_order_acquire)) {
    request.clear();
    workload.append_preload_put(&request, i % workload.preload_samples());
    checker.expect(workload.put_answer());
    auto t0 = Clock::now();
    uint64_t bytes = 0;
    std::string error = round_trip(fd.get(), request, checker, buf, &bytes);
    if (!error.empty()) {
      result->error = error;
      result->failed += 1;
      return;
    }
    result->answered += checker.take_done();
    result->latencies_ns.push_back(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
    i += options.background;
  }
}

// Stores every preloaded sample through one connection, pipelined.
void preload(const Workload& workload, const Options& options) {
  metrics::Fd fd = connect_to(options);
  std::string batch;
  std::vector<char> buf(kReadBytes);
  AnswerChecker checker;
  uint64_t total = workload.preload_samples();
  for (uint64_t i = 0; i < total;) {
    batch.clear();
    for (std::size_t j = 0; j < kPreloadBatch && i < total; ++j, ++i) {
      workload.append_preload_put(&batch, i);
      checker.expect(workload.put_answer());
    }
    uint64_t bytes = 0;
    std::string error = round_trip(fd.get(), batch, checker, buf, &bytes);
    if (!error.empty()) throw BenchError{"preload: " + error};
    checker.take_done();
  }
}

// CPU time (user + system) of process `pid`, from /proc/PID/stat.
double process_cpu_seconds(long pid) {
  double seconds = metrics::proc_cpu_seconds(pid);
  if (seconds < 0) throw BenchError{"cannot read /proc/" + std::to_string(pid) + "/stat"};
  return seconds;
}

// Resident memory of process `pid` in bytes, from VmRSS in /proc/PID/status.
long long process_rss_bytes(long pid) {
  long kib = metrics::proc_status_field(pid, "VmRSS");
  if (kib < 0) throw BenchError{"cannot read VmRSS of process " + std::to_string(pid)};
  return static_cast<long long>(kib) * 1024;
}

double self_cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

void raise_descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

struct Percentiles {
  double p50_us = 0, p99_us = 0, p999_us = 0;
};

Percentiles percentiles(std::vector<int64_t> ns) {
  Percentiles p;
  if (ns.empty()) return p;
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    std::size_t i = static_cast<std::size_t>(q * static_cast<double>(ns.size() - 1) + 0.5);
    return static_cast<double>(ns[i]) / 1000.0;
  };
  p.p50_us = at(0.50);
  p.p99_us = at(0.99);
  p.p999_us = at(0.999);
  return p;
}

// The outcome of a run, printed as text or as one CSV row.
struct Report {
  uint64_t requests = 0;
  uint64_t answered = 0;
  uint64_t failed = 0;
  double seconds = 0;
  Percentiles latency;
  uint64_t answer_bytes = 0;
  double client_cpu_s = 0;
  bool server_measured = false;
  double server_cpu_s = 0;
  long long rss_delta = 0;
  uint64_t background_answered = 0;
  Percentiles background;
  std::string first_error;
};

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

void print_report(const Options& o, const Report& r) {
  const double rate = r.seconds > 0 ? static_cast<double>(r.answered) / r.seconds : 0;
  const double per_request = r.answered > 0 ? 1.0 / static_cast<double>(r.answered) : 0;
  const double mbps = r.seconds > 0 ? static_cast<double>(r.answer_bytes) / r.seconds / 1e6 : 0;
  if (o.csv) {
    std::printf(
        "label,mode,protocol,connections,pipeline,requests,answered,failed,seconds,"
        "requests_per_s,p50_us,p99_us,p999_us,answer_mb_per_s,client_cpu_us_per_request,"
        "server_cpu_us_per_request,server_rss_delta_bytes,rss_bytes_per_request,"
        "background_requests,background_p50_us,background_p99_us,background_p999_us\n");
    std::printf("%s,%s,%s,%zu,%zu,%llu,%llu,%llu,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%llu,%s,%s,%s\n",
                o.label.c_str(), o.mode.c_str(), o.protocol.c_str(), o.connections, o.pipeline,
                static_cast<unsigned long long>(r.requests),
                static_cast<unsigned long long>(r.answered),
                static_cast<unsigned long long>(r.failed), fixed(r.seconds, 3).c_str(),
                fixed(rate, 0).c_str(), fixed(r.latency.p50_us, 1).c_str(),
                fixed(r.latency.p99_us, 1).c_str(), fixed(r.latency.p999_us, 1).c_str(),
                fixed(mbps, 1).c_str(), fixed(r.client_cpu_s * 1e6 * per_request, 3).c_str(),
                r.server_measured ? fixed(r.server_cpu_s * 1e6 * per_request, 3).c_str() : "",
                r.server_measured ? std::to_string(r.rss_delta).c_str() : "",
                r.server_measured
                    ? fixed(static_cast<double>(r.rss_delta) * per_request, 1).c_str()
                    : "",
                static_cast<unsigned long long>(r.background_answered),
                fixed(r.background.p50_us, 1).c_str(), fixed(r.background.p99_us, 1).c_str(),
                fixed(r.background.p999_us, 1).c_str());
    return;
  }
  std::printf("%s: %s, %s protocol, %zu connection(s), pipeline %zu\n",
              o.label.empty() ? "metrics-bench" : o.label.c_str(), o.mode.c_str(),
              o.protocol.c_str(), o.connections, o.pipeline);
  std::printf("  requests     %llu answered right, %llu failed, in %s s\n",
              static_cast<unsigned long long>(r.answered),
              static_cast<unsigned long long>(r.failed), fixed(r.seconds, 3).c_str());
  if (o.mode != "idle") {
    std::printf("  throughput   %s requests/s\n", fixed(rate, 0).c_str());
    std::printf("  latency      p50 %s us, p99 %s us, p99.9 %s us (per batch of %zu)\n",
                fixed(r.latency.p50_us, 1).c_str(), fixed(r.latency.p99_us, 1).c_str(),
                fixed(r.latency.p999_us, 1).c_str(), o.pipeline);
    std::printf("  answers      %s MB/s\n", fixed(mbps, 1).c_str());
    std::printf("  client CPU   %s us/request\n",
                fixed(r.client_cpu_s * 1e6 * per_request, 3).c_str());
  }
  if (r.server_measured) {
    if (o.mode != "idle") {
      std::printf("  server CPU   %s us/request\n",
                  fixed(r.server_cpu_s * 1e6 * per_request, 3).c_str());
    }
    std::printf("  server RSS   %+lld bytes, %s bytes per %s\n", r.rss_delta,
                fixed(static_cast<double>(r.rss_delta) * per_request, 1).c_str(),
                o.mode == "idle" ? "connection" : "request");
  }
  if (o.background > 0) {
    std::printf("  background   %llu ping-pong puts on %zu connection(s): p50 %s us, p99 %s us, "
                "p99.9 %s us\n",
                static_cast<unsigned long long>(r.background_answered), o.background,
                fixed(r.background.p50_us, 1).c_str(), fixed(r.background.p99_us, 1).c_str(),
                fixed(r.background.p999_us, 1).c_str());
  }
  if (!r.first_error.empty()) std::printf("  first error  %s\n", r.first_error.c_str());
}

// Opens `connections` connections, sends one put on each and keeps them all
// open while the server's RSS is read: the memory an idle session costs.
Report run_idle(const Options& options, const Workload& workload) {
  Report report;
  long long rss_before = options.server_pid ? process_rss_bytes(options.server_pid) : 0;
  std::vector<metrics::Fd> open;
  std::vector<char> buf(kReadBytes);
  auto t0 = Clock::now();
  for (std::size_t c = 0; c < options.connections; ++c) {
    metrics::Fd fd = connect_to(options);
    std::string request;
    request.append(options.protocol == "redis" ? "HSET bench:idle " : "put bench:idle 1 ");
    metrics::append_timestamp(&request, options.base_timestamp + static_cast<int64_t>(c));
    request.append(options.protocol == "redis" ? " 1\r\n" : "\n");
    AnswerChecker checker;
    checker.expect(workload.put_answer());
    uint64_t bytes = 0;
    std::string error = round_trip(fd.get(), request, checker, buf, &bytes);
    ++report.requests;
    if (!error.empty()) {
      ++report.failed;
      if (report.first_error.empty()) report.first_error = error;
    } else {
      ++report.answered;
    }
    open.push_back(std::move(fd));
  }
  report.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (options.server_pid) {
    report.server_measured = true;
    report.rss_delta = process_rss_bytes(options.server_pid) - rss_before;
  }
  return report;
}

Report run(const Options& options) {
  Workload workload(options);
  if (options.mode == "idle") return run_idle(options, workload);
  if (workload.preloads()) preload(workload, options);

  std::atomic<bool> start{false};
  std::atomic<bool> stop_background{false};
  std::vector<ConnectionResult> results(options.connections);
  std::vector<ConnectionResult> background(options.background);
  std::vector<std::thread> threads;
  std::vector<std::thread> background_threads;
  Report report;
  report.requests = options.requests;

  // Connect everything before the clock starts.
  std::vector<metrics::Fd> fds;
  for (std::size_t c = 0; c < options.connections + options.background; ++c) {
    fds.push_back(connect_to(options));
  }
  for (std::size_t c = 0; c < options.connections; ++c) {
    uint64_t count = options.requests / options.connections +
                     (c < options.requests % options.connections ? 1 : 0);
    threads.emplace_back(run_connection, std::cref(workload), std::cref(options),
                         std::move(fds[c]), c, count, std::cref(start),
                         &results[c]);
  }
  for (std::size_t b = 0; b < options.background; ++b) {
    background_threads.emplace_back(run_background, std::cref(workload), std::cref(options),
                                    std::move(fds[options.connections + b]), b,
                                    std::cref(start), std::cref(stop_background),
                                    &background[b]);
  }

  double server_cpu_before = 0;
  long long rss_before = 0;
  if (options.server_pid) {
    server_cpu_before = process_cpu_seconds(options.server_pid);
    rss_before = process_rss_bytes(options.server_pid);
  }
  double client_cpu_before = self_cpu_seconds();
  auto t0 = Clock::now();
  start.store(true, std::memory_order_release);
  for (std::thread& t : threads) t.join();
  report.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  report.client_cpu_s = self_cpu_seconds() - client_cpu_before;
  if (options.server_pid) {
    report.server_measured = true;
    report.server_cpu_s = process_cpu_seconds(options.server_pid) - server_cpu_before;
    report.rss_delta = process_rss_bytes(options.server_pid) - rss_before;
  }
  stop_background.store(true, std::memory_order_release);
  for (std::thread& t : background_threads) t.join();

  std::vector<int64_t> latencies;
  for (ConnectionResult& r : results) {
    report.answered += r.answered;
    report.failed += r.failed;
    report.answer_bytes += r.answer_bytes;
    if (report.first_error.empty()) report.first_error = r.error;
    latencies.insert(latencies.end(), r.latencies_ns.begin(), r.latencies_ns.end());
  }
  report.latency = percentiles(std::move(latencies));
  std::vector<int64_t> background_latencies;
  for (ConnectionResult& r : background) {
    report.background_answered += r.answered;
    report.failed += r.failed;
    if (report.first_error.empty()) report.first_error = r.error;
    background_latencies.insert(background_latencies.end(), r.latencies_ns.begin(),
                                r.latencies_ns.end());
  }
  report.background = percentiles(std::move(background_latencies));
  return report;
}

// Adds an option whose default --help shows and whose values `check` accepts.
template <typename T>
void add_checked_option(CLI::App& app, const std::string& name, T& value, const std::string& help,
                        const CLI::Validator& check) {
  app.add_option(name, value, help)->capture_default_str()->check(check);
}

void setup_options(CLI::App& app, Options& o) {
  app.add_option("--host", o.host, "Server host: name, IPv4 or IPv6 literal")->capture_default_str();
  add_checked_option(app, "-p,--port", o.port, "Server TCP port", CLI::Range(1, 65535));
  add_checked_option(app, "-c,--connections", o.connections, "Connections, one thread each",
                     CLI::Range(1, 100000));
  add_checked_option(app, "-n,--requests", o.requests,
                     "Requests in all, spread over the connections", CLI::PositiveNumber);
  add_checked_option(app, "-P,--pipeline", o.pipeline, "Requests written at once per connection",
                     CLI::Range(1, 100000));
  add_checked_option(app, "--keys", o.keys, "Distinct keys that puts and gets spread over",
                     CLI::Range(1, 10000000));
  add_checked_option(app, "--samples-per-key", o.samples_per_key,
                     "Samples preloaded per key for the get, mixed and get-all modes",
                     CLI::Range(1, 10000000));
  add_checked_option(app, "--mode", o.mode,
                     "put; get (one key per request); mixed (puts and gets alternate); get-all "
                     "('get *'); idle (open -c connections, one put each, and hold them)",
                     CLI::IsMember({"put", "get", "mixed", "get-all", "idle"}));
  add_checked_option(
      app, "--protocol", o.protocol,
      "metrics, or redis: inline 'HSET bench:KEY TIMESTAMP VALUE' answered :1 or :0, "
      "and 'HGETALL bench:get:KEY' for gets (put, idle and get modes)",
      CLI::IsMember({"metrics", "redis"}));
  add_checked_option(
      app, "--background", o.background,
      "Extra connections doing ping-pong puts (of preloaded samples, unchanged) while "
      "the measured requests run; their latency is reported apart",
      CLI::Range(0, 1000));
  app.add_option("--server-pid", o.server_pid,
                 "Measure this process's CPU time and RSS around the measured phase")
      ->check(CLI::PositiveNumber);
  // Bounded, so that the conversion to milliseconds cannot overflow.
  add_checked_option(app, "--timeout", o.timeout,
                     "Seconds to wait for any connect, send or answer, 0.001 to 1000000",
                     CLI::Range(0.001, 1000000.0));
  app.add_option("--label", o.label, "A name for this run in the output");
  app.add_flag("--csv", o.csv, "Print a CSV header and one row instead of text");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"metrics-bench: load and check a metrics-server (or Redis, for comparison)."};
  app.footer(
      "It writes keys named bench:N (and bench:get:N, bench:idle) to the server and leaves "
      "them there: point it at a scratch server, not one whose data you keep.");
  app.set_version_flag("--version", std::string("metrics-bench ") + metrics::kVersion);
  Options options;
  setup_options(app, options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "metrics-bench: %s (see --help)\n", e.what());
    return kExitUsage;
  }
  if (options.protocol == "redis" &&
      (options.mode == "mixed" || options.mode == "get-all" || options.background > 0 ||
       (options.mode == "get" && options.samples_per_key > 128))) {
    std::fprintf(stderr,
                 "metrics-bench: --protocol redis supports --mode put, idle, and get with at most "
                 "128 samples per key (Redis keeps their order only that far), without "
                 "--background\n");
    return kExitUsage;
  }
  if (options.background > 0 && options.mode != "get" && options.mode != "mixed" &&
      options.mode != "get-all") {
    std::fprintf(stderr, "metrics-bench: --background needs --mode get, mixed or get-all\n");
    return kExitUsage;
  }
  raise_descriptor_limit();
  try {
    Report report = run(options);
    print_report(options, report);
    if (report.failed > 0 || report.answered == 0) {
      std::fprintf(stderr, "metrics-bench: %llu request(s) not answered right: %s\n",
                   static_cast<unsigned long long>(report.failed), report.first_error.c_str());
      return kExitFailure;
    }
  } catch (const BenchError& e) {
    std::fprintf(stderr, "metrics-bench: %s\n", e.message.c_str());
    return kExitFailure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "metrics-bench: %s\n", e.what());
    return kExitFailure;
  }
  return 0;
}
