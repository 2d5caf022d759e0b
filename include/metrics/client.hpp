// metrics::Client: the C++ client of the metrics protocol (docs/protocol.md,
// "Client library contract").
//
//   metrics::Client client("127.0.0.1", 8888, 15.0);
//   client.put("palm.cpu", 0.5, 1150864247);
//   client.put("eardrum.memory", 4200000);      // timestamp: now
//   auto metrics = client.get("*");             // key -> samples by time
#ifndef METRICS_CLIENT_HPP_
#define METRICS_CLIENT_HPP_

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/sample.hpp"
#include "metrics/socket.hpp"

namespace metrics {

// Every failure of a Client call: the message names what failed and why
// ("connect 127.0.0.1:8888: Connection refused", "server error: wrong
// command", "receive from 127.0.0.1:8888: timed out after 2s", "malformed
// answer from ...: ...", "invalid key: key contains whitespace").
class ClientError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One connection (one session) to a metrics server, used for every call.
//
// Not thread-safe: use one Client per thread, or lock around it.
// After a failure that leaves the stream out of step with the server (an I/O
// error, a timeout, a malformed answer) the Client drops its connection; the
// next call connects again. A server `error` answer keeps the connection.
class Client {
 public:
  // Connects to host:port (a name, an IPv4 or an IPv6 literal; every address
  // the name resolves to is tried). `timeout_seconds`, when given, bounds
  // every connect, send and receive; none means wait forever (a connect: as
  // long as the kernel retries the handshake, about two minutes by default).
  // Throws ClientError if the timeout is not positive or the connection fails.
  Client(std::string host, uint16_t port, std::optional<double> timeout_seconds = std::nullopt);

  // Stores `value` for `key` at `timestamp` (default: the current Unix time
  // in whole seconds). Returns once the server answered "ok\n\n". Throws
  // ClientError, before sending anything, if the key is empty, "*" or
  // contains whitespace, or the value is not finite; and on any other answer,
  // an I/O failure or a timeout.
  void put(std::string_view key, double value, std::optional<int64_t> timestamp = std::nullopt);

  // Fetches the samples of `key`, or of every key for "*": a map from key to
  // its samples sorted by ascending timestamp; empty if nothing matches.
  // Throws ClientError on an `error` answer, a malformed answer, an I/O
  // failure or a timeout, and before sending if the key is empty or contains
  // whitespace.
  std::map<std::string, std::vector<Sample>> get(std::string_view key);

  // Like get(), but keeps the keys in the order the server sent them (the
  // order in which each key was first stored).
  std::vector<Series> get_series(std::string_view key);

  // "HOST:PORT" as given to the constructor.
  const std::string& peer() const { return peer_; }

 private:
  void connect();
  // Sends one request line and returns its complete answer.
  std::string round_trip(std::string_view request);
  // Drops the connection after a failure and throws ClientError(message).
  [[noreturn]] void fail(const std::string& message);

  std::string host_;
  uint16_t port_;
  Timeout timeout_;
  std::string timeout_text_;  // "2s", for messages
  std::string peer_;
  Fd fd_;
  std::string buffer_;  // received bytes not yet consumed
};

}  // namespace metrics

#endif  // METRICS_CLIENT_HPP_
