// libFuzzer target: LineSplitter fed one byte stream in arbitrary chunks.
//
// The first input byte picks the line limit (1..64, small so over-long lines
// are common) and the next ones the chunk sizes; the rest is the stream.
// Checked after every chunk: pending bytes never exceed the limit, handed-out
// lines hold no '\n' and are within the limit. Checked at the end: the
// events equal those of a simple reference that splits the whole stream at
// once (every complete line in order, over-long ones reported as such), so
// chunking never changes what the server answers.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "line_splitter.hpp"
#include "metrics/protocol.hpp"

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

constexpr std::size_t kChunkSizeBytes = 8;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size < 1 + kChunkSizeBytes) return 0;
  const std::size_t limit = 1 + data[0] % 64;
  const uint8_t* chunk_sizes = data + 1;
  std::string_view stream(reinterpret_cast<const char*>(data + 1 + kChunkSizeBytes),
                          size - 1 - kChunkSizeBytes);

  // Events: a line's bytes, or "\n" standing for "too long" (a real line
  // never contains '\n', so the marker cannot collide).
  std::vector<std::string> events;
  metrics::LineSplitter splitter(limit);
  std::size_t offset = 0;
  for (std::size_t i = 0; offset < stream.size(); ++i) {
    std::size_t n = 1 + chunk_sizes[i % kChunkSizeBytes] % 32;
    std::string_view chunk = stream.substr(offset, n);
    offset += chunk.size();
    splitter.feed(
        chunk,
        [&](std::string_view line) {
          check(line.size() <= limit);
          check(line.find('\n') == std::string_view::npos);
          events.emplace_back(line);
        },
        [&] { events.emplace_back("\n"); });
    check(splitter.pending_bytes() <= limit);
    check(!splitter.discarding() || splitter.pending_bytes() == 0);
  }

  std::vector<std::string> expected;
  std::string_view rest = stream;
  for (std::size_t nl = rest.find('\n'); nl != std::string_view::npos; nl = rest.find('\n')) {
    std::string_view line = rest.substr(0, nl);
    expected.emplace_back(line.size() > limit ? std::string("\n") : std::string(line));
    rest.remove_prefix(nl + 1);
  }
  check(events == expected);
  // The unterminated tail is held only when it fits the limit.
  if (rest.size() <= limit) {
    check(splitter.pending_bytes() == rest.size() && !splitter.discarding());
  } else {
    check(splitter.pending_bytes() == 0 && splitter.discarding());
  }
  return 0;
}
