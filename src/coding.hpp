// Fixed-width little-endian encoding of integers into bytes and back, the
// byte order of the log's records whatever the host's.
#ifndef METRICS_CODING_HPP_
#define METRICS_CODING_HPP_

#include <cstdint>

namespace metrics {

// encode32 and encode64 write `v` at `p` (4 or 8 bytes), least significant
// byte first; decode32 and decode64 read it back.
inline void encode32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}

inline void encode64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}

inline uint32_t decode32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

inline uint64_t decode64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

}  // namespace metrics

#endif  // METRICS_CODING_HPP_
