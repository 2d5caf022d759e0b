// libFuzzer target: the client's side of an answer, find_answer_end and
// parse_answer, on arbitrary bytes arriving in arbitrary pieces.
//
// find_answer_end with an incremental scan (as Client reads) must find the
// same ends as a scan from the start; parse_answer must classify every
// complete answer without crashing, and an "ok" answer's samples come out
// per key in ascending timestamp order with well-formed keys.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "metrics/protocol.hpp"

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

void check_answer(std::string_view text) {
  metrics::Answer answer = metrics::parse_answer(text);
  if (answer.kind == metrics::AnswerKind::kOk) {
    check(text.compare(0, 3, "ok\n") == 0);
    for (const metrics::Series& series : answer.series) {
      check(!series.key.empty());
      check(series.key.find_first_of(" \t\n") == std::string::npos);
      check(!series.samples.empty());
      for (std::size_t i = 1; i < series.samples.size(); ++i) {
        check(series.samples[i - 1].timestamp <= series.samples[i].timestamp);
      }
    }
  } else if (answer.kind == metrics::AnswerKind::kError) {
    check(text.compare(0, 6, "error\n") == 0);
    check(answer.series.empty());
  } else {
    check(!answer.detail.empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t piece = 1 + data[0] % 16;
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

  // The whole input as an answer, ended or not.
  check_answer(input);

  // As a stream read in pieces: each answer found is parsed, then dropped.
  std::string buffer;
  std::size_t scanned = 0;
  for (std::size_t offset = 0; offset < input.size(); offset += piece) {
    buffer.append(input.substr(offset, piece));
    for (;;) {
      std::size_t end = metrics::find_answer_end(buffer, scanned);
      check(end == metrics::find_answer_end(buffer));
      if (end == 0) {
        scanned = buffer.size();
        break;
      }
      check(end >= 2 && end <= buffer.size() && buffer.compare(end - 2, 2, "\n\n") == 0);
      check_answer(std::string_view(buffer).substr(0, end));
      buffer.erase(0, end);
      scanned = 0;
    }
  }
  return 0;
}
