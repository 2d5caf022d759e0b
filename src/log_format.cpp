// The record format's encoding, decoding and resynchronisation after damage
// (log_format.hpp).
#include "log_format.hpp"

#include <cstring>

#include "coding.hpp"
#include "crc32c.hpp"

namespace metrics {

void append_log_record(std::string* out, std::string_view key, int64_t timestamp, double value) {
  std::size_t start = out->size();
  out->resize(start + kLogRecordHeaderBytes + key.size());
  encode_log_record(&(*out)[start], key, timestamp, value);
}

void encode_log_record(char* p, std::string_view key, int64_t timestamp, double value) {
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  encode32(p + 4, static_cast<uint32_t>(key.size()));
  encode64(p + 8, static_cast<uint64_t>(timestamp));
  encode64(p + 16, bits);
  std::memcpy(p + kLogRecordHeaderBytes, key.data(), key.size());
  encode32(p, crc32c(p + 4, kLogRecordHeaderBytes - 4 + key.size()));
}

std::size_t decode_log_record(std::string_view bytes, LogRecord* record,
                              std::size_t max_key_bytes) {
  if (bytes.size() < kLogRecordHeaderBytes) return 0;
  const char* p = bytes.data();
  uint32_t key_size = decode32(p + 4);
  if (key_size == 0 || key_size > std::min<std::size_t>(max_key_bytes, kMaxLogKeyBytes)) return 0;
  if (key_size > bytes.size() - kLogRecordHeaderBytes) return 0;
  std::size_t size = kLogRecordHeaderBytes + key_size;
  if (crc32c(p + 4, size - 4) != decode32(p)) return 0;
  uint64_t bits = decode64(p + 16);
  record->timestamp = static_cast<int64_t>(decode64(p + 8));
  std::memcpy(&record->value, &bits, sizeof bits);
  record->key = bytes.substr(kLogRecordHeaderBytes, key_size);
  return size;
}

std::size_t find_next_log_record(std::string_view file, std::size_t from,
                                 std::size_t max_key_bytes) {
  LogRecord record;
  for (std::size_t pos = from; pos + kLogRecordHeaderBytes <= file.size(); ++pos) {
    if (decode_log_record(file.substr(pos), &record, max_key_bytes) != 0) return pos;
  }
  return std::string_view::npos;
}

}  // namespace metrics
