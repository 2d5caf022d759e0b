#include "metrics/protocol.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <iterator>
#include <system_error>
#include <unordered_map>

namespace metrics {

namespace {

bool is_separator(char c) { return c == ' ' || c == '\t'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Splits `line` on runs of spaces and tabs into at most `max` tokens. Returns
// the number of tokens found, or max + 1 if there are more than `max`.
std::size_t tokenize(std::string_view line, std::string_view* tokens, std::size_t max) {
  std::size_t count = 0;
  std::size_t i = 0;
  const std::size_t n = line.size();
  for (;;) {
    while (i < n && is_separator(line[i])) ++i;
    if (i == n) return count;
    std::size_t start = i;
    while (i < n && !is_separator(line[i])) ++i;
    if (count == max) return max + 1;
    tokens[count++] = line.substr(start, i - start);
  }
}

bool has_byte(std::string_view s, char c) { return s.find(c) != std::string_view::npos; }

// True if `text` matches [+-]? (D+ (. D*)? | . D+) ([eE] [+-]? D+)?
bool is_decimal_literal(std::string_view text) {
  std::size_t i = 0;
  const std::size_t n = text.size();
  if (i < n && (text[i] == '+' || text[i] == '-')) ++i;
  std::size_t int_digits = 0;
  while (i < n && is_digit(text[i])) ++i, ++int_digits;
  std::size_t frac_digits = 0;
  if (i < n && text[i] == '.') {
    ++i;
    while (i < n && is_digit(text[i])) ++i, ++frac_digits;
  }
  if (int_digits + frac_digits == 0) return false;
  if (i < n && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < n && (text[i] == '+' || text[i] == '-')) ++i;
    std::size_t exp_digits = 0;
    while (i < n && is_digit(text[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == n;
}

// Exact powers of ten: every 10^k up to 10^22 is a double.
constexpr double kExactPowersOfTen[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                        1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                        1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

// The common case of a value, `[+-]? D* (. D*)?` without an exponent, by
// Clinger's fast path: when the digits read as one integer are at most 2^53
// and at most 22 of them follow the point, the value is that integer (exact
// as a double) divided by an exact power of ten: one IEEE operation, so
// correctly rounded, the same double from_chars gives. Returns false, having
// decided nothing, for anything else (which may still be valid).
bool parse_simple_value(std::string_view text, double* out) {
  constexpr uint64_t kMaxExact = uint64_t{1} << 53;
  std::size_t i = 0;
  const std::size_t n = text.size();
  bool negative = false;
  if (i < n && (text[i] == '+' || text[i] == '-')) negative = text[i++] == '-';
  uint64_t mantissa = 0;
  bool digits = false;
  bool point = false;
  std::size_t fraction_digits = 0;
  for (; i < n; ++i) {
    const char c = text[i];
    if (is_digit(c)) {
      if (mantissa > kMaxExact / 10) return false;
      mantissa = mantissa * 10 + static_cast<uint64_t>(c - '0');
      digits = true;
      if (point) ++fraction_digits;
    } else if (c == '.' && !point) {
      point = true;
    } else {
      return false;
    }
  }
  if (!digits || mantissa > kMaxExact || fraction_digits >= std::size(kExactPowersOfTen)) {
    return false;
  }
  double value = static_cast<double>(mantissa) / kExactPowersOfTen[fraction_digits];
  *out = negative ? -value : value;
  return true;
}

}  // namespace

bool parse_common_put(std::string_view line, Request* request) {
  const char* p = line.data();
  const char* const end = p + line.size();
  auto skip_separators = [&] {
    while (p < end && is_separator(*p)) ++p;
  };
  // The next token; empty at the end of the line.
  auto next_token = [&] {
    const char* start = p;
    while (p < end && !is_separator(*p)) ++p;
    return std::string_view(start, static_cast<std::size_t>(p - start));
  };
  if (line.size() < 4 || line.compare(0, 3, "put") != 0 || !is_separator(line[3])) return false;
  p += 4;
  skip_separators();
  const std::string_view key = next_token();
  if (key.empty() || key == "*" || has_byte(key, '\r')) return false;
  skip_separators();
  if (!parse_simple_value(next_token(), &request->value)) return false;
  skip_separators();
  // A timestamp of at most 18 digits cannot overflow int64_t.
  bool negative = false;
  if (p < end && (*p == '+' || *p == '-')) negative = *p++ == '-';
  const char* digits = p;
  uint64_t timestamp = 0;
  while (p < end && is_digit(*p)) timestamp = timestamp * 10 + static_cast<uint64_t>(*p++ - '0');
  if (p == digits || p - digits > 18) return false;
  skip_separators();
  if (p != end) return false;
  request->timestamp =
      negative ? -static_cast<int64_t>(timestamp) : static_cast<int64_t>(timestamp);
  request->kind = RequestKind::kPut;
  request->key = key;
  return true;
}

bool parse_value(std::string_view text, double* out) {
  if (parse_simple_value(text, out)) return true;
  if (!is_decimal_literal(text)) return false;
  // std::from_chars takes no '+'; the grammar check above guarantees that a
  // '+' is followed by a digit or a point, never by another sign.
  std::string_view body = text;
  if (body.front() == '+') body.remove_prefix(1);
  double value = 0;
  auto [ptr, ec] = std::from_chars(body.data(), body.data() + body.size(), value);
  if (ec == std::errc() && ptr == body.data() + body.size()) {
    *out = value;
    return true;
  }
  if (ec != std::errc::result_out_of_range) return false;
  // from_chars reports underflow and overflow alike and leaves `value` unset.
  // strtod tells them apart: it returns the correctly rounded result
  // (0 or a subnormal) on underflow and HUGE_VAL on overflow.
  std::string copy(body);
  value = std::strtod(copy.c_str(), nullptr);
  if (!std::isfinite(value)) return false;
  *out = value;
  return true;
}

bool parse_timestamp(std::string_view text, int64_t* out) {
  // At most one sign, and a digit right after it: "+-5", "-+5", "-" and "+"
  // are rejected. from_chars takes a '-' itself but no '+', so a '+' is
  // dropped only once the digit after it is known.
  if (text.empty()) return false;
  std::size_t first_digit = (text.front() == '+' || text.front() == '-') ? 1 : 0;
  if (first_digit >= text.size() || !is_digit(text[first_digit])) return false;
  std::string_view body = text;
  if (body.front() == '+') body.remove_prefix(1);
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(body.data(), body.data() + body.size(), value);
  if (ec != std::errc() || ptr != body.data() + body.size()) return false;
  *out = value;
  return true;
}

Request parse_request(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  Request request;
  if (parse_common_put(line, &request)) return request;
  return parse_any_request(line);
}

Request parse_any_request(std::string_view line) {
  std::string_view tokens[4];
  std::size_t count = tokenize(line, tokens, 4);
  Request request;
  if (count == 0) {
    request.kind = RequestKind::kEmpty;
    return request;
  }
  std::string_view command = tokens[0];
  if (command == "put" && count == 4) {
    std::string_view key = tokens[1];
    if (key == "*" || has_byte(key, '\r')) return request;
    if (!parse_value(tokens[2], &request.value)) return request;
    if (!parse_timestamp(tokens[3], &request.timestamp)) return request;
    request.kind = RequestKind::kPut;
    request.key = key;
    return request;
  }
  if (command == "get" && count == 2) {
    std::string_view key = tokens[1];
    if (has_byte(key, '\r')) return request;
    request.kind = RequestKind::kGet;
    request.key = key;
    return request;
  }
  return request;
}

std::string check_get_key(std::string_view key) {
  if (key.empty()) return "key is empty";
  for (char c : key) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') return "key contains whitespace";
  }
  return {};
}

std::string check_put_key(std::string_view key) {
  if (key == "*") return "key '*' is reserved for get";
  return check_get_key(key);
}

void append_value(std::string* out, double value) {
  // The common case first, in one pass: Python uses fixed notation exactly
  // when the decimal exponent of the shortest digits is in [-4, 16), that is
  // for zero and for 1e-4 <= |value| < 1e16 (1e16 is a double, so no value
  // below it has shortest digits reaching it; values at the lower boundary
  // compare against the double nearest 1e-4, whose shortest digits are
  // "0.0001"). There the shortest fixed form has the same digits, and lacks
  // only the ".0" of a whole number. Answering a large get is mostly this.
  const double magnitude = std::fabs(value);
  if (magnitude == 0 || (magnitude >= 1e-4 && magnitude < 1e16)) {
    char fixed[64];
    auto end = std::to_chars(fixed, fixed + sizeof fixed, value, std::chars_format::fixed).ptr;
    std::string_view text(fixed, static_cast<std::size_t>(end - fixed));
    out->append(text);
    if (text.find('.') == std::string_view::npos) out->append(".0");
    return;
  }
  // Shortest round-trip digits in scientific form, e.g. "1.2345e+17",
  // "-5e-324", "0e+00". Python's repr uses the same digits and only chooses
  // between fixed and scientific layout by the decimal exponent.
  char buf[64];
  auto result = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<std::size_t>(result.ptr - buf));
  std::size_t e_pos = sci.find('e');
  int exponent = 0;
  std::from_chars(sci.data() + e_pos + 1 + (sci[e_pos + 1] == '+' ? 1 : 0),
                  sci.data() + sci.size(), exponent);
  if (exponent < -4 || exponent >= 16) {
    out->append(sci);  // to_chars already writes "e+16", "e-05": Python's form.
    return;
  }
  std::string_view mantissa = sci.substr(0, e_pos);
  if (mantissa.front() == '-') {
    out->push_back('-');
    mantissa.remove_prefix(1);
  }
  // The significant digits without the point.
  char digits[32];
  std::size_t n = 0;
  for (char c : mantissa) {
    if (c != '.') digits[n++] = c;
  }
  if (exponent >= 0) {
    std::size_t int_len = static_cast<std::size_t>(exponent) + 1;
    if (n <= int_len) {
      out->append(digits, n);
      out->append(int_len - n, '0');
      out->append(".0");
    } else {
      out->append(digits, int_len);
      out->push_back('.');
      out->append(digits + int_len, n - int_len);
    }
  } else {
    out->append("0.");
    out->append(static_cast<std::size_t>(-exponent - 1), '0');
    out->append(digits, n);
  }
}

std::string format_value(double value) {
  std::string out;
  append_value(&out, value);
  return out;
}

void append_timestamp(std::string* out, int64_t timestamp) {
  char buf[24];
  auto result = std::to_chars(buf, buf + sizeof buf, timestamp);
  out->append(buf, static_cast<std::size_t>(result.ptr - buf));
}

void append_sample_line(std::string* out, std::string_view key, const Sample& s) {
  out->append(key);
  out->push_back(' ');
  append_value(out, s.value);
  out->push_back(' ');
  append_timestamp(out, s.timestamp);
  out->push_back('\n');
}

std::string error_answer(std::string_view reason) {
  std::string out = "error\n";
  out.append(reason);
  out.append("\n\n");
  return out;
}

std::string format_put_request(std::string_view key, double value, int64_t timestamp) {
  std::string out = "put ";
  append_sample_line(&out, key, Sample{timestamp, value});
  return out;
}

std::string format_get_request(std::string_view key) {
  std::string out = "get ";
  out.append(key);
  out.push_back('\n');
  return out;
}

std::size_t find_answer_end(std::string_view buffer, std::size_t scan_from) {
  // "\n\n" can start one byte before the unsearched part.
  std::size_t from = scan_from > 0 ? scan_from - 1 : 0;
  std::size_t pos = buffer.find("\n\n", from);
  return pos == std::string_view::npos ? 0 : pos + 2;
}

namespace {

// Makes a message quoting at most 40 bytes of an offending line.
std::string quote(std::string_view line) {
  std::string out = "'";
  out.append(line.substr(0, 40));
  if (line.size() > 40) out.append("...");
  out.push_back('\'');
  return out;
}

Answer malformed(std::string detail) {
  Answer answer;
  answer.kind = AnswerKind::kMalformed;
  answer.detail = std::move(detail);
  return answer;
}

}  // namespace

Answer parse_answer(std::string_view text) {
  if (text.size() < 2 || text.substr(text.size() - 2) != "\n\n") {
    return malformed("answer does not end with an empty line");
  }
  std::size_t status_end = text.find('\n');
  std::string_view status = text.substr(0, status_end);
  // The lines between the status line and the final empty line.
  std::string_view body = text.substr(status_end + 1, text.size() - status_end - 2);
  if (status == "error") {
    if (body.empty()) return malformed("error answer without a reason");
    Answer answer;
    answer.kind = AnswerKind::kError;
    answer.detail.assign(body.substr(0, body.size() - 1));
    return answer;
  }
  if (status != "ok") return malformed("unknown status " + quote(status));

  Answer answer;
  answer.kind = AnswerKind::kOk;
  std::unordered_map<std::string_view, std::size_t> index;
  while (!body.empty()) {
    std::size_t nl = body.find('\n');
    std::string_view line = body.substr(0, nl);
    body.remove_prefix(nl + 1);
    std::string_view fields[3];
    if (tokenize(line, fields, 3) != 3) {
      return malformed("line without exactly three fields: " + quote(line));
    }
    Sample sample{};
    if (!parse_value(fields[1], &sample.value)) {
      return malformed("bad value in line " + quote(line));
    }
    if (!parse_timestamp(fields[2], &sample.timestamp)) {
      return malformed("bad timestamp in line " + quote(line));
    }
    auto [it, inserted] = index.try_emplace(fields[0], answer.series.size());
    if (inserted) answer.series.push_back(Series{std::string(fields[0]), {}});
    answer.series[it->second].samples.push_back(sample);
  }
  for (Series& series : answer.series) {
    std::stable_sort(series.samples.begin(), series.samples.end(),
                     [](const Sample& a, const Sample& b) { return a.timestamp < b.timestamp; });
  }
  return answer;
}

}  // namespace metrics
