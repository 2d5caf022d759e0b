// The metrics text protocol as pure functions: no sockets, no storage.
//
// Every rule here is a row of docs/protocol.md:
// splitting a byte stream into bounded lines, parsing a request line,
// printing values exactly like Python's repr(float), formatting answers, and
// parsing an answer on the client's side. All functions are thread-safe (they
// touch no shared state); a LineSplitter belongs to one session.
#ifndef METRICS_PROTOCOL_HPP_
#define METRICS_PROTOCOL_HPP_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/sample.hpp"

namespace metrics {

// The default cap on a request line's length (bytes before the '\n').
inline constexpr std::size_t kDefaultMaxLineBytes = 65536;

// The fixed answers.
inline constexpr std::string_view kOkAnswer = "ok\n\n";
inline constexpr std::string_view kWrongCommandAnswer = "error\nwrong command\n\n";
inline constexpr std::string_view kTooManyConnectionsAnswer =
    "error\ntoo many connections\n\n";
// A put the server could not make durable (its log write failed).
inline constexpr std::string_view kStorageFailureAnswer = "error\nstorage failure\n\n";

// ---------------------------------------------------------------------------
// Requests

enum class RequestKind {
  kEmpty,    // blank line: gets no answer at all
  kPut,      // put <key> <value> <timestamp>
  kGet,      // get <key>   (key may be "*")
  kInvalid,  // anything else: answered kWrongCommandAnswer
};

// A parsed request. `key` points into the line passed to parse_request and is
// valid only as long as that line is.
struct Request {
  RequestKind kind = RequestKind::kInvalid;
  std::string_view key;
  double value = 0;
  int64_t timestamp = 0;
};

// Parses one request line: the bytes before its '\n' (a single trailing '\r'
// is ignored). Never throws; anything not valid per docs/protocol.md is kInvalid.
Request parse_request(std::string_view line);

// The two paths parse_request takes, exposed so that tests can hold one
// against the other. Both take the line without its trailing '\r'.
//
// The fast path, for the request a monitoring agent sends all day: `put`,
// a key, a plain decimal value without exponent (Clinger's fast path: at most
// 2^53 as an integer, at most 22 fraction digits) and a timestamp of at most
// 18 digits, in one pass. Returns true and fills `request` only for such a
// put; false decides nothing (the line may still be valid).
bool parse_common_put(std::string_view line, Request* request);
// The general path: every rule of docs/protocol.md.
Request parse_any_request(std::string_view line);

// Parses a value per docs/protocol.md: a finite decimal number with optional sign,
// fraction and exponent; underflow rounds (to 0 or a subnormal), overflow,
// nan, inf, hex and any other text are rejected. Returns false on rejection.
bool parse_value(std::string_view text, double* out);

// Parses a timestamp: a decimal integer with optional sign that fits in
// int64_t. Returns false on rejection.
bool parse_timestamp(std::string_view text, int64_t* out);

// Checks a key for a put, as the client and the CLI do before sending:
// returns an empty string when valid, else why not ("key is empty", "key '*'
// is reserved for get", "key contains whitespace"). Whitespace means what
// the protocol treats as such: space, tab, '\r' and '\n'; any other byte
// is an ordinary key byte, exactly as the server stores it.
std::string check_put_key(std::string_view key);

// Checks a key for a get: not empty and without space, tab, '\r' or '\n'.
std::string check_get_key(std::string_view key);

// ---------------------------------------------------------------------------
// Formatting

// Appends `value` exactly as Python 3's repr(float) prints it: the shortest
// text that reads back to the same double, fixed notation (with at least one
// digit after the point) when the decimal exponent is in [-4, 16), else
// scientific with a signed exponent of at least two digits.
void append_value(std::string* out, double value);
std::string format_value(double value);

// Appends a timestamp in canonical decimal form.
void append_timestamp(std::string* out, int64_t timestamp);

// Appends one answer line "<key> <value> <timestamp>\n".
void append_sample_line(std::string* out, std::string_view key, const Sample& s);

// "error\n<reason>\n\n".
std::string error_answer(std::string_view reason);

// The request line a client sends, including its '\n'.
std::string format_put_request(std::string_view key, double value, int64_t timestamp);
std::string format_get_request(std::string_view key);

// ---------------------------------------------------------------------------
// Answers, as the client reads them

// Returns the length of the first complete answer in `buffer` (through its
// terminating "\n\n"), or 0 if no answer is complete yet. `scan_from` lets a
// caller that appends to `buffer` skip bytes it has already searched.
std::size_t find_answer_end(std::string_view buffer, std::size_t scan_from = 0);

enum class AnswerKind {
  kOk,         // "ok\n" ... "\n": `series` holds the samples
  kError,      // "error\n<reason>\n\n": `detail` is the reason
  kMalformed,  // anything else: `detail` says what was wrong
};

struct Answer {
  AnswerKind kind = AnswerKind::kMalformed;
  std::string detail;
  // Keys in the order the answer first names them; each key's samples sorted
  // by ascending timestamp.
  std::vector<Series> series;
};

// Parses one complete answer, including its final "\n\n" (as delimited by
// find_answer_end). Never throws on bad input: it returns kMalformed.
Answer parse_answer(std::string_view answer);

}  // namespace metrics

#endif  // METRICS_PROTOCOL_HPP_
