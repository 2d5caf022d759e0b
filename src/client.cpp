#include "metrics/client.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>

#include "metrics/protocol.hpp"

namespace metrics {

namespace {

std::string seconds_text(double seconds) {
  std::string text = format_value(seconds);
  if (text.size() > 2 && text.compare(text.size() - 2, 2, ".0") == 0) text.resize(text.size() - 2);
  return text + "s";
}

}  // namespace

Client::Client(std::string host, uint16_t port, std::optional<double> timeout_seconds)
    : host_(std::move(host)), port_(port), peer_(format_host_port(host_, port)) {
  if (timeout_seconds) {
    double seconds = *timeout_seconds;
    if (!(seconds > 0) || !std::isfinite(seconds)) {
      throw ClientError("invalid timeout: must be a positive number of seconds");
    }
    // Round up to whole milliseconds, so a tiny timeout still waits a little.
    // poll() takes an int of milliseconds, so a longer timeout (over 24
    // days) is clamped to that; it also keeps the conversion defined for a
    // timeout like 1e300, which would overflow.
    double ms = std::min(std::ceil(seconds * 1000.0),
                         static_cast<double>(std::numeric_limits<int>::max()));
    timeout_ = std::chrono::milliseconds(static_cast<long long>(ms));
    timeout_text_ = seconds_text(seconds);
  }
  connect();
}

void Client::connect() {
  buffer_.clear();
  try {
    fd_ = connect_tcp(host_, port_, timeout_);
  } catch (const SystemError& e) {
    if (e.code() == ETIMEDOUT && timeout_) {
      throw ClientError("connect " + peer_ + ": timed out after " + timeout_text_);
    }
    throw ClientError(e.what());
  }
}

void Client::fail(const std::string& message) {
  fd_.reset();
  buffer_.clear();
  throw ClientError(message);
}

std::string Client::round_trip(std::string_view request) {
  if (!fd_) connect();
  if (!send_all(fd_.get(), request, timeout_)) {
    int err = errno;
    if (err == ETIMEDOUT) fail("send to " + peer_ + ": timed out after " + timeout_text_);
    fail(errno_message("send to " + peer_, err));
  }
  std::size_t scanned = 0;
  for (;;) {
    if (std::size_t end = find_answer_end(buffer_, scanned)) {
      std::string answer = buffer_.substr(0, end);
      buffer_.erase(0, end);
      return answer;
    }
    scanned = buffer_.size();
    char chunk[16384];
    long n = recv_some(fd_.get(), chunk, sizeof chunk, timeout_);
    if (n < 0) {
      int err = errno;
      if (err == ETIMEDOUT) fail("receive from " + peer_ + ": timed out after " + timeout_text_);
      fail(errno_message("receive from " + peer_, err));
    }
    if (n == 0) {
      fail("receive from " + peer_ + ": connection closed before the answer was complete");
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
}

void Client::put(std::string_view key, double value, std::optional<int64_t> timestamp) {
  if (std::string why = check_put_key(key); !why.empty()) throw ClientError("invalid key: " + why);
  if (!std::isfinite(value)) throw ClientError("invalid value: not a finite number");
  int64_t ts = timestamp ? *timestamp : static_cast<int64_t>(std::time(nullptr));
  std::string answer = round_trip(format_put_request(key, value, ts));
  if (answer == kOkAnswer) return;
  Answer parsed = parse_answer(answer);
  if (parsed.kind == AnswerKind::kError) throw ClientError("server error: " + parsed.detail);
  if (parsed.kind == AnswerKind::kOk) fail("malformed answer from " + peer_ + ": data in the answer to put");
  fail("malformed answer from " + peer_ + ": " + parsed.detail);
}

std::vector<Series> Client::get_series(std::string_view key) {
  if (std::string why = check_get_key(key); !why.empty()) throw ClientError("invalid key: " + why);
  Answer parsed = parse_answer(round_trip(format_get_request(key)));
  switch (parsed.kind) {
    case AnswerKind::kOk:
      return std::move(parsed.series);
    case AnswerKind::kError:
      throw ClientError("server error: " + parsed.detail);
    case AnswerKind::kMalformed:
      break;
  }
  fail("malformed answer from " + peer_ + ": " + parsed.detail);
}

std::map<std::string, std::vector<Sample>> Client::get(std::string_view key) {
  std::map<std::string, std::vector<Sample>> result;
  for (Series& series : get_series(key)) {
    result.emplace(std::move(series.key), std::move(series.samples));
  }
  return result;
}

}  // namespace metrics
