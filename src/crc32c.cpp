// CRC32C: the portable table-driven loop and the SSE4.2 one, chosen once
// at start from what the CPU supports.
#include "crc32c.hpp"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace metrics {

namespace {

constexpr uint32_t kCrc32cPoly = 0x82f63b78;  // Castagnoli, reflected

std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? (c >> 1) ^ kCrc32cPoly : c >> 1;
    table[i] = c;
  }
  return table;
}

const std::array<uint32_t, 256> kCrcTable = make_crc_table();

uint32_t crc32c_portable(const unsigned char* p, std::size_t n, uint32_t crc) {
  for (std::size_t i = 0; i < n; ++i) crc = kCrcTable[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(const unsigned char* p, std::size_t n,
                                                        uint32_t crc) {
  uint64_t c = crc;
  while (n >= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c = _mm_crc32_u64(c, word);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  while (n > 0) {
    c32 = _mm_crc32_u8(c32, *p++);
    --n;
  }
  return c32;
}

bool have_sse42() {
  // This runs during static initialisation, possibly before the
  // compiler's own CPU-detection constructor.
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}

const bool kHaveSse42 = have_sse42();
#endif

}  // namespace

uint32_t crc32c(const void* data, std::size_t n, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
#if defined(__x86_64__)
  if (kHaveSse42) return ~crc32c_sse42(p, n, crc);
#endif
  return ~crc32c_portable(p, n, crc);
}

}  // namespace metrics
