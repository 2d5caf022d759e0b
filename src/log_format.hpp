// The log's record format, as pure functions (thread-safe: no shared state).
//
// A log file is a header followed by one record per put, in the order the
// puts were applied:
//
//   header  8 bytes   "MTRCLOG1"
//   record  4 bytes   CRC32C of the rest of the record (little-endian)
//           4 bytes   key length, 1 .. kMaxLogKeyBytes
//           8 bytes   timestamp, two's complement
//           8 bytes   value, IEEE 754 bits
//           N bytes   key
//
// While a server has the file open, zeros follow the records: space
// allocated ahead (LogTail, log_file.hpp), cut when it closes. Zeros alone
// after the last record are therefore a clean end, cut silently at the next
// start. A record that fails its checksum or runs past the end of the file,
// with no valid record after it, is a torn tail (a crash mid-write): it is
// truncated with a warning. One with a valid record after it is corruption
// in the middle: opening refuses, naming the byte offset, unless `repair` is
// set, which skips the damaged bytes and rewrites the file. Looking for the
// next valid record after a damaged one considers only keys a put can carry
// (WalOptions::max_key_bytes, wal.hpp), so that each damaged offset costs at
// most a checksum over that many bytes, never over a gigabyte that a garbage
// length field claims.
#ifndef METRICS_LOG_FORMAT_HPP_
#define METRICS_LOG_FORMAT_HPP_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace metrics {

inline constexpr std::string_view kLogMagic = "MTRCLOG1";
inline constexpr std::size_t kLogRecordHeaderBytes = 24;
// The longest key a record may hold: a larger length field is corruption,
// and the Wal refuses a put with a longer key (the server also caps
// --max-line-bytes here), so every record written can be replayed.
inline constexpr uint32_t kMaxLogKeyBytes = 1u << 30;

// Appends the record of one put to `out`.
void append_log_record(std::string* out, std::string_view key, int64_t timestamp, double value);

// Writes the record of one put at `p`, which must have room for
// kLogRecordHeaderBytes + key.size() bytes.
void encode_log_record(char* p, std::string_view key, int64_t timestamp, double value);

// One decoded record. `key` points into the bytes it was decoded from.
struct LogRecord {
  std::string_view key;
  int64_t timestamp = 0;
  double value = 0;
};

// Decodes the record at the start of `bytes`. Returns its length, or 0 if
// `bytes` does not start with a whole valid record whose key is at most
// `max_key_bytes` (clamped to kMaxLogKeyBytes) long. A longer length field
// is rejected before any checksum is computed.
std::size_t decode_log_record(std::string_view bytes, LogRecord* record,
                              std::size_t max_key_bytes = kMaxLogKeyBytes);

// What scan_log found.
struct LogScan {
  bool header_ok = false;  // false: not a log (nothing else is meaningful)
  std::size_t records = 0;  // valid records handed to the callback
  // Where the valid log ends: the file should be truncated here when it is
  // shorter than the data (a torn tail).
  std::size_t end = 0;
  std::size_t torn_bytes = 0;  // bytes after `end`: the torn tail
  // How many of the torn_bytes are zeros at the very end of the file. The
  // log allocates space ahead of its records, so a server that was killed
  // leaves zeros there: when every torn byte is zero (zero_bytes ==
  // torn_bytes), the log simply ended cleanly.
  std::size_t zero_bytes = 0;
  // Offset of the first damaged record followed by valid ones (or by more
  // bytes than one record can be: see scan_log), or npos.
  std::size_t corrupt_offset = std::string_view::npos;
  std::size_t skipped_bytes = 0;  // bytes skipped (only with repair)
};

// Finds the first offset at or after `from` where a valid record with a key
// of at most `max_key_bytes` starts, or npos. Each offset costs at most a
// checksum over kLogRecordHeaderBytes + max_key_bytes bytes.
std::size_t find_next_log_record(std::string_view file, std::size_t from,
                                 std::size_t max_key_bytes = kMaxLogKeyBytes);

// Scans a whole log file (header included), calling on_record(const
// LogRecord&) for each valid record in order. A file shorter than the header
// that is a prefix of it (a crash while creating the file) is an empty log
// with a torn tail. Records read in sequence may have keys up to
// kMaxLogKeyBytes; after a damaged record, the search for the next valid one
// considers only keys up to `resync_max_key_bytes` (the longest key a put
// can carry), which bounds its cost. Damage with no such record after it is
// a torn tail when the bytes after it (zeros at the end aside) fit in one
// record of that size; otherwise it is damage in the middle too, never cut
// as a tail. Corruption in the middle stops the scan at corrupt_offset,
// unless `repair`, which skips to the next valid record (or to the zeros at
// the end) and goes on (skipped_bytes counts what was lost).
template <typename OnRecord>
LogScan scan_log(std::string_view file, bool repair, OnRecord&& on_record,
                 std::size_t resync_max_key_bytes = kMaxLogKeyBytes) {
  LogScan scan;
  if (file.size() < kLogMagic.size()) {
    scan.header_ok = kLogMagic.substr(0, file.size()) == file;
    scan.torn_bytes = file.size();
    return scan;
  }
  if (file.substr(0, kLogMagic.size()) != kLogMagic) return scan;
  scan.header_ok = true;
  resync_max_key_bytes = std::min<std::size_t>(resync_max_key_bytes, kMaxLogKeyBytes);
  const std::size_t last = file.find_last_not_of('\0');
  const std::size_t data_end = last == std::string_view::npos ? 0 : last + 1;
  std::size_t pos = kLogMagic.size();
  LogRecord record;
  while (pos < file.size()) {
    std::size_t n = decode_log_record(file.substr(pos), &record);
    if (n != 0) {
      on_record(static_cast<const LogRecord&>(record));
      ++scan.records;
      pos += n;
      continue;
    }
    std::size_t next = find_next_log_record(file, pos + 1, resync_max_key_bytes);
    if (next == std::string_view::npos) {
      // A write cut short leaves at most one record, then zeros allocated
      // ahead. More than that is damage (or records with longer keys than
      // the resync considers, from a larger line limit): cutting it as a
      // tail could drop valid records without a word.
      if (data_end <= pos || data_end - pos <= kLogRecordHeaderBytes + resync_max_key_bytes) {
        break;  // a torn tail
      }
      next = data_end;
    }
    if (scan.corrupt_offset == std::string_view::npos) scan.corrupt_offset = pos;
    if (!repair) {
      scan.end = pos;
      return scan;
    }
    scan.skipped_bytes += next - pos;
    pos = next;
  }
  scan.end = pos;
  scan.torn_bytes = file.size() - pos;
  scan.zero_bytes = file.size() - std::max(data_end, pos);
  return scan;
}

}  // namespace metrics

#endif  // METRICS_LOG_FORMAT_HPP_
