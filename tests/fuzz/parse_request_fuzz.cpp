// libFuzzer target: parse_request on arbitrary bytes (one request line).
//
// Besides "never crashes, never throws" and "the fast path for common puts
// agrees with the general parser", it checks what docs/protocol.md promises
// of an accepted request: a put's key is a non-empty token other than "*"
// and its value is finite; and a put written back by format_put_request
// parses to the same key, value and timestamp (the client and the server
// agree on every request the server accepts).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "metrics/protocol.hpp"

namespace {

bool is_token(std::string_view key) {
  return !key.empty() && key.find_first_of(" \t\r\n") == std::string_view::npos;
}

void check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  // The server hands parse_request the bytes before a '\n', never one.
  if (line.find('\n') != std::string_view::npos) return 0;
  metrics::Request request = metrics::parse_request(line);
  // The fast path for common puts, when it is taken, gives what the general
  // parser gives.
  std::string_view stripped = line;
  if (!stripped.empty() && stripped.back() == '\r') stripped.remove_suffix(1);
  metrics::Request general = metrics::parse_any_request(stripped);
  check(general.kind == request.kind && general.key == request.key &&
        general.timestamp == request.timestamp &&
        std::signbit(general.value) == std::signbit(request.value) &&
        general.value == request.value);
  switch (request.kind) {
    case metrics::RequestKind::kEmpty:
      // Only spaces and tabs, then at most the one ignored '\r'.
      check(line.find_first_not_of(" \t") == std::string_view::npos ||
            (line.find_first_not_of(" \t") == line.size() - 1 && line.back() == '\r'));
      break;
    case metrics::RequestKind::kInvalid:
      break;
    case metrics::RequestKind::kGet:
      check(is_token(request.key));
      check(metrics::check_get_key(request.key).empty());
      break;
    case metrics::RequestKind::kPut: {
      check(is_token(request.key) && request.key != "*");
      // Every key the server stores, the client can put too.
      check(metrics::check_put_key(request.key).empty());
      check(std::isfinite(request.value));
      std::string again = metrics::format_put_request(request.key, request.value, request.timestamp);
      check(!again.empty() && again.back() == '\n');
      again.pop_back();
      metrics::Request reparsed = metrics::parse_request(again);
      check(reparsed.kind == metrics::RequestKind::kPut);
      check(reparsed.key == request.key);
      // Bitwise equal, so -0.0 stays -0.0.
      check(std::signbit(reparsed.value) == std::signbit(request.value) &&
            reparsed.value == request.value);
      check(reparsed.timestamp == request.timestamp);
      break;
    }
  }
  return 0;
}
