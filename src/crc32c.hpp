// CRC32C (Castagnoli), the checksum of the log's records: a table-driven
// portable version and, where the CPU has it, the SSE4.2 instruction.
#ifndef METRICS_CRC32C_HPP_
#define METRICS_CRC32C_HPP_

#include <cstddef>
#include <cstdint>

namespace metrics {

// CRC32C (Castagnoli) of `n` bytes, continuing from `crc` (0 to start).
// Uses the SSE4.2 instruction when the CPU has it. Thread-safe.
uint32_t crc32c(const void* data, std::size_t n, uint32_t crc = 0);

}  // namespace metrics

#endif  // METRICS_CRC32C_HPP_
