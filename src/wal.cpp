#include "metrics/wal.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <deque>
#include <vector>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace metrics {

namespace {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// CRC32C

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

// ---------------------------------------------------------------------------
// Fixed-width little-endian coding

void encode32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}

void encode64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}

uint32_t decode32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

uint64_t decode64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

// ---------------------------------------------------------------------------
// File helpers

std::runtime_error file_error(const std::string& what, int err) {
  return std::runtime_error(errno_message(what, err));
}

// Writes all of `data` at `offset`, retrying on EINTR and short writes.
// Returns false with errno set on failure.
bool pwrite_all(int fd, std::string_view data, uint64_t offset) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return true;
}

// Reads exactly `n` bytes at `offset`. Returns false with errno set on
// failure (EIO for an unexpected end of file).
bool pread_all(int fd, char* buf, std::size_t n, uint64_t offset) {
  while (n > 0) {
    ssize_t got = ::pread(fd, buf, n, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (got == 0) {
      errno = EIO;
      return false;
    }
    buf += got;
    n -= static_cast<std::size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return true;
}

std::string directory_of(const std::string& path) {
  std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Makes a rename or a file creation in `path`'s directory durable. Returns
// false with errno set on failure.
bool sync_directory(const std::string& path) {
  Fd dir(::open(directory_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return false;
  return ::fsync(dir.get()) == 0;
}

// A read-only mapping of a whole file, unmapped on destruction.
class Mapping {
 public:
  Mapping(int fd, std::size_t size) : size_(size) {
    if (size == 0) return;
    // MAP_POPULATE maps every page in one call instead of one fault each.
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) throw_errno("mmap");
    data_ = p;
    ::madvise(data_, size, MADV_SEQUENTIAL);
  }
  ~Mapping() {
    if (data_ != nullptr) ::munmap(data_, size_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  std::string_view bytes() const {
    return data_ == nullptr ? std::string_view() : std::string_view(static_cast<char*>(data_), size_);
  }

 private:
  void* data_ = nullptr;
  std::size_t size_;
};

std::string format_seconds(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3f", seconds);
  return text;
}

}  // namespace

// ---------------------------------------------------------------------------
// Record format

uint32_t crc32c(const void* data, std::size_t n, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
#if defined(__x86_64__)
  if (kHaveSse42) return ~crc32c_sse42(p, n, crc);
#endif
  return ~crc32c_portable(p, n, crc);
}

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

std::size_t decode_log_record(std::string_view bytes, LogRecord* record) {
  if (bytes.size() < kLogRecordHeaderBytes) return 0;
  const char* p = bytes.data();
  uint32_t key_size = decode32(p + 4);
  if (key_size == 0 || key_size > kMaxLogKeyBytes) return 0;
  if (key_size > bytes.size() - kLogRecordHeaderBytes) return 0;
  std::size_t size = kLogRecordHeaderBytes + key_size;
  if (crc32c(p + 4, size - 4) != decode32(p)) return 0;
  uint64_t bits = decode64(p + 16);
  record->timestamp = static_cast<int64_t>(decode64(p + 8));
  std::memcpy(&record->value, &bits, sizeof bits);
  record->key = bytes.substr(kLogRecordHeaderBytes, key_size);
  return size;
}

std::size_t find_next_log_record(std::string_view file, std::size_t from) {
  LogRecord record;
  for (std::size_t pos = from; pos + kLogRecordHeaderBytes <= file.size(); ++pos) {
    if (decode_log_record(file.substr(pos), &record) != 0) return pos;
  }
  return std::string_view::npos;
}

bool parse_fsync_policy(std::string_view text, FsyncPolicy* policy) {
  if (text == "always") {
    *policy = FsyncPolicy::kAlways;
  } else if (text == "everysec") {
    *policy = FsyncPolicy::kEverySec;
  } else if (text == "no") {
    *policy = FsyncPolicy::kNo;
  } else {
    return false;
  }
  return true;
}

std::string_view fsync_policy_name(FsyncPolicy policy) {
  switch (policy) {
    case FsyncPolicy::kAlways:
      return "always";
    case FsyncPolicy::kEverySec:
      return "everysec";
    case FsyncPolicy::kNo:
      return "no";
  }
  return "?";
}

// ---------------------------------------------------------------------------
// Wal

Wal::Wal(WalOptions options, Storage& storage)
    : options_(std::move(options)), storage_(storage), tmp_path_(options_.path + ".rewrite") {
  open_and_lock();
  replay();
  syncer_ = std::thread(&Wal::syncer_loop, this);
  compactor_ = std::thread(&Wal::compactor_loop, this);
}

Wal::~Wal() {
  {
    std::lock_guard<AdaptiveMutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  syncer_.join();
  compactor_.join();
  // Sessions have all ended: write and sync what they left (retrying once
  // if the log was failing).
  std::lock_guard<std::mutex> io(io_mu_);
  write_pending_locked(/*sync=*/true, /*retry=*/true);
}

void Wal::log(const std::string& line, bool info) const {
  if (info && options_.quiet) return;
  std::lock_guard<std::mutex> lock(log_mu_);
  if (options_.log) {
    options_.log(line);
    return;
  }
  std::string text = line + "\n";
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

void Wal::open_and_lock() {
  const std::string& path = options_.path;
  // A compaction by a previous owner may replace the file between our open
  // and our flock; then the lock is on an unlinked file and we start over.
  for (int attempt = 0;; ++attempt) {
    Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!fd) throw file_error("open data file " + path, errno);
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) {
        throw std::runtime_error("data file " + path +
                                 " is locked: another metrics-server is using it");
      }
      throw file_error("lock data file " + path, errno);
    }
    struct stat opened {};
    struct stat named {};
    if (::fstat(fd.get(), &opened) != 0) throw file_error("stat data file " + path, errno);
    if (::stat(path.c_str(), &named) == 0 && named.st_ino == opened.st_ino &&
        named.st_dev == opened.st_dev) {
      file_ = std::make_shared<Fd>(std::move(fd));
      break;
    }
    if (attempt == 100) throw std::runtime_error("data file " + path + " keeps being replaced");
  }
  // A rewrite interrupted by a crash left its unfinished file; only the
  // owner of the lock ever writes it.
  ::unlink(tmp_path_.c_str());
}

void Wal::replay() {
  const std::string& path = options_.path;
  const int fd = file_->get();
  auto start = Clock::now();
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw file_error("stat data file " + path, errno);
  const auto size = static_cast<std::size_t>(st.st_size);
  LogScan scan;
  {
    Mapping mapping(fd, size);
    // A second thread checks and decodes the records while this one applies
    // them, in batches (Storage::put_many): on two cores a replay costs
    // about what applying alone costs. The batches'
    // keys point into the mapping, which outlives both threads.
    constexpr std::size_t kBatch = 4096;
    constexpr std::size_t kInFlight = 8;
    using Batch = std::vector<Storage::KeyedSample>;
    std::mutex queue_mu;
    std::condition_variable queue_cv;
    std::deque<Batch> full;    // guarded by queue_mu
    std::vector<Batch> spare;  // guarded by queue_mu
    bool scanned = false;      // guarded by queue_mu
    bool abandoned = false;    // guarded by queue_mu
    std::thread scanner([&] {
      Batch batch;
      batch.reserve(kBatch);
      auto hand_over = [&] {
        std::unique_lock<std::mutex> lock(queue_mu);
        queue_cv.wait(lock, [&] { return full.size() < kInFlight || abandoned; });
        if (!abandoned) {
          full.push_back(std::move(batch));
          batch = Batch();
          if (!spare.empty()) {
            batch.swap(spare.back());
            spare.pop_back();
          }
          queue_cv.notify_all();
        }
        batch.clear();
        batch.reserve(kBatch);
      };
      scan = scan_log(mapping.bytes(), options_.repair, [&](const LogRecord& r) {
        batch.push_back(Storage::KeyedSample{r.key, r.timestamp, r.value});
        if (batch.size() == kBatch) hand_over();
      });
      if (!batch.empty()) hand_over();
      std::lock_guard<std::mutex> lock(queue_mu);
      scanned = true;
      queue_cv.notify_all();
    });
    try {
      for (;;) {
        Batch batch;
        {
          std::unique_lock<std::mutex> lock(queue_mu);
          queue_cv.wait(lock, [&] { return !full.empty() || scanned; });
          if (full.empty()) break;
          batch = std::move(full.front());
          full.pop_front();
          queue_cv.notify_all();
        }
        storage_.put_many(batch);
        batch.clear();
        std::lock_guard<std::mutex> lock(queue_mu);
        spare.push_back(std::move(batch));
      }
    } catch (...) {
      {
        std::lock_guard<std::mutex> lock(queue_mu);
        abandoned = true;
      }
      queue_cv.notify_all();
      scanner.join();
      throw;
    }
    scanner.join();
  }
  if (!scan.header_ok) {
    throw std::runtime_error("data file " + path +
                             " is not a metrics-server log (its header is not " +
                             std::string(kLogMagic) + "); refusing to touch it");
  }
  if (scan.corrupt_offset != std::string_view::npos && !options_.repair) {
    throw std::runtime_error(
        "data file " + path + " is corrupt at byte offset " + std::to_string(scan.corrupt_offset) +
        " (a damaged record followed by valid ones); start with --repair to drop the damaged "
        "bytes and keep every valid record, or restore a backup");
  }
  if (scan.end < kLogMagic.size()) {
    // A new file, or one whose creation was cut short: write the header.
    if (size > 0) log("data file " + path + ": rewriting an incomplete header");
    if (::ftruncate(fd, 0) != 0 || !pwrite_all(fd, kLogMagic, 0) || ::fdatasync(fd) != 0 ||
        !sync_directory(path)) {
      throw file_error("initialise data file " + path, errno);
    }
    file_size_ = kLogMagic.size();
  } else if (scan.torn_bytes > 0) {
    log("data file " + path + ": warning: truncating a torn record of " +
        std::to_string(scan.torn_bytes) + " bytes at offset " + std::to_string(scan.end) +
        " (the end of a write cut short by a crash)");
    if (::ftruncate(fd, static_cast<off_t>(scan.end)) != 0 || ::fdatasync(fd) != 0) {
      throw file_error("truncate data file " + path, errno);
    }
    file_size_ = scan.end;
  } else {
    file_size_ = size;
  }
  records_in_file_ = scan.records;
  replay_.records = scan.records;
  replay_.samples = storage_.sample_count();
  replay_.bytes = size;
  replay_.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::string rate;
  if (replay_.seconds > 0 && replay_.records > 0) {
    rate = ", " + std::to_string(static_cast<uint64_t>(replay_.records / replay_.seconds)) +
           " records/s";
  }
  log("data file " + path + ": restored " + std::to_string(replay_.samples) + " samples from " +
          std::to_string(replay_.records) + " records (" + std::to_string(size) + " bytes) in " +
          format_seconds(replay_.seconds) + " s" + rate + "; fsync " +
          std::string(fsync_policy_name(options_.fsync)),
      /*info=*/true);
  if (scan.skipped_bytes > 0) {
    log("data file " + path + ": repair: dropped " + std::to_string(scan.skipped_bytes) +
        " damaged bytes, the first at offset " + std::to_string(scan.corrupt_offset) +
        "; rewriting the file without them");
    if (!compact()) throw std::runtime_error("data file " + path + ": repair could not rewrite it");
  }
}

bool Wal::log_put(std::string_view key, int64_t timestamp, double value, uint64_t* ticket) {
  // Encoded and checksummed before taking mu_, which every session's puts
  // share: under it, only a copy. Short keys stay on the stack.
  constexpr std::size_t kStackKeyBytes = 232;
  std::string record;
  std::string_view bytes;
  char stack[kLogRecordHeaderBytes + kStackKeyBytes];
  if (key.size() <= kStackKeyBytes) {
    encode_log_record(stack, key, timestamp, value);
    bytes = std::string_view(stack, kLogRecordHeaderBytes + key.size());
  } else {
    append_log_record(&record, key, timestamp, value);
    bytes = record;
  }
  std::lock_guard<AdaptiveMutex> lock(mu_);
  if (failed_) return false;
  buffer_.append(bytes);
  ++records_in_file_;
  *ticket = ++appended_seq_;
  return true;
}

bool Wal::failed() const {
  std::lock_guard<AdaptiveMutex> lock(mu_);
  return failed_;
}

uint64_t Wal::commit(uint64_t ticket) {
  // Group commit: one session at a time leads a write of everything
  // buffered; the others wait on a condition variable, all woken at once
  // when it ends, and most find their record already written. (Queueing on
  // io_mu_ instead would hand the lock from waiter to waiter, one context
  // switch each.)
  std::unique_lock<AdaptiveMutex> lock(mu_);
  for (;;) {
    if (durable_seq_ >= ticket || failed_) return durable_seq_;
    if (!leading_) break;
    written_.wait(lock);
  }
  leading_ = true;
  lock.unlock();
  {
    std::lock_guard<std::mutex> io(io_mu_);
    write_pending_locked(options_.fsync == FsyncPolicy::kAlways, /*retry=*/false);
  }
  lock.lock();
  leading_ = false;
  written_.notify_all();
  return durable_seq_;
}

bool Wal::write_pending_locked(bool sync, bool retry, uint64_t* held_seq) {
  std::string& batch = spare_;
  batch.clear();
  uint64_t batch_end;
  uint64_t offset;
  std::shared_ptr<Fd> file;
  {
    std::lock_guard<AdaptiveMutex> lock(mu_);
    if (failed_ && !retry) return false;
    batch.swap(buffer_);
    batch_end = appended_seq_;
    offset = file_size_;
    file = file_;
  }
  const int fd = file->get();
  int err = 0;
  // A failed write may have left part of a record behind: cut it off first.
  if (retry && ::ftruncate(fd, static_cast<off_t>(offset)) != 0) err = errno;
  if (err == 0 && !pwrite_all(fd, batch, offset)) err = errno;
  if (err == 0 && sync && ::fdatasync(fd) != 0) err = errno;
  if (err == 0) {
    bool recovered = false;
    {
      std::lock_guard<AdaptiveMutex> lock(mu_);
      file_size_ = offset + batch.size();
      if (held_seq != nullptr) {
        *held_seq = batch_end;
      } else {
        durable_seq_ = batch_end;
      }
      if (!sync && !batch.empty()) dirty_ = true;
      if (failed_) {
        failed_ = false;
        recovered = true;
      }
    }
    batch.clear();
    if (recovered) {
      log("data file " + options_.path + ": writable again; accepting puts");
    }
    return true;
  }
  // Nothing of this batch counts as written: cut off what did reach the
  // file and keep the records, in order, for the retry.
  [[maybe_unused]] int ignored = ::ftruncate(fd, static_cast<off_t>(offset));
  bool first = false;
  {
    std::lock_guard<AdaptiveMutex> lock(mu_);
    batch.append(buffer_);
    buffer_.swap(batch);
    first = !failed_;
    failed_ = true;
  }
  batch.clear();
  if (first) {
    log(errno_message("data file " + options_.path + ": write failed", err) +
        "; refusing puts until it can be written again (retrying every second)");
  }
  return false;
}

void Wal::syncer_loop() {
  std::unique_lock<AdaptiveMutex> lock(mu_);
  for (;;) {
    wake_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; });
    if (stop_) return;
    const bool failed = failed_;
    const bool sync = dirty_ && options_.fsync == FsyncPolicy::kEverySec;
    if (sync) dirty_ = false;
    std::shared_ptr<Fd> file = file_;
    lock.unlock();
    if (failed) {
      std::lock_guard<std::mutex> io(io_mu_);
      write_pending_locked(/*sync=*/true, /*retry=*/true);
    } else if (sync && ::fdatasync(file->get()) != 0) {
      // The kernel may have dropped the unsynced pages: refuse puts until a
      // retry writes and syncs again.
      int err = errno;
      log(errno_message("data file " + options_.path + ": fdatasync failed", err) +
          "; refusing puts until it can be written again");
      std::lock_guard<AdaptiveMutex> relock(mu_);
      failed_ = true;
    }
    lock.lock();
  }
}

void Wal::compactor_loop() {
  std::unique_lock<AdaptiveMutex> lock(mu_);
  for (;;) {
    wake_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stop_; });
    if (stop_) return;
    lock.unlock();
    if (should_compact()) compact();
    lock.lock();
  }
}

bool Wal::should_compact() {
  uint64_t records;
  {
    std::lock_guard<AdaptiveMutex> lock(mu_);
    if (failed_ || Clock::now() < next_compact_try_) return false;
    if (file_size_ + buffer_.size() < options_.compact_min_bytes) return false;
    records = records_in_file_;
    // Samples are never removed, so while the log holds at most twice the
    // samples last counted it cannot hold twice the samples stored now: the
    // count (a walk over every key) is taken again only when it might.
    if (records <= 2 * samples_counted_) return false;
  }
  // Outside mu_: storage locks are always taken before mu_, never after.
  const uint64_t samples = storage_.sample_count();
  std::lock_guard<AdaptiveMutex> lock(mu_);
  samples_counted_ = samples;
  return records > 2 * samples;
}

bool Wal::compact() {
  std::lock_guard<std::mutex> one_at_a_time(compact_mu_);
  const std::string& path = options_.path;
  auto start = Clock::now();
  auto give_up = [&](const std::string& why) {
    log("data file " + path + ": compaction failed: " + why + "; keeping the current log");
    ::unlink(tmp_path_.c_str());
    std::lock_guard<AdaptiveMutex> lock(mu_);
    next_compact_try_ = Clock::now() + std::chrono::minutes(1);
    return false;
  };

  Fd tmp(::open(tmp_path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!tmp) return give_up(errno_message("open " + tmp_path_, errno));
  // Locked before the rename, so the file is never under `path` unlocked.
  if (::flock(tmp.get(), LOCK_EX | LOCK_NB) != 0) {
    return give_up(errno_message("lock " + tmp_path_, errno));
  }

  // The cut: every record before `copied` is reflected in the snapshot
  // below, since storage already holds it; records after it are copied from
  // the old file afterwards. Replaying a put twice is harmless (the last one
  // processed still wins), so the snapshot may also hold later puts.
  uint64_t copied;
  uint64_t cut_records;
  uint64_t old_size;
  std::shared_ptr<Fd> old;
  {
    std::lock_guard<AdaptiveMutex> lock(mu_);
    copied = file_size_ + buffer_.size();
    cut_records = records_in_file_;
    old_size = file_size_;
    old = file_;
  }
  log("data file " + path + ": compaction started (" + std::to_string(cut_records) +
          " records, " + std::to_string(old_size) + " bytes)",
      /*info=*/true);

  uint64_t written = 0;
  uint64_t snapshot_records = 0;
  std::string chunk(kLogMagic);
  constexpr std::size_t kChunkBytes = 1 << 20;
  std::string key;
  std::vector<Sample> samples;
  const std::size_t keys = storage_.key_count();
  for (std::size_t i = 0; i < keys; ++i) {
    storage_.copy_series(i, &key, &samples);
    for (const Sample& s : samples) append_log_record(&chunk, key, s.timestamp, s.value);
    snapshot_records += samples.size();
    if (chunk.size() >= kChunkBytes || i + 1 == keys) {
      if (!pwrite_all(tmp.get(), chunk, written)) return give_up(errno_message("write", errno));
      written += chunk.size();
      chunk.clear();
    }
  }
  if (keys == 0) {
    if (!pwrite_all(tmp.get(), chunk, 0)) return give_up(errno_message("write", errno));
    written = chunk.size();
  }

  // Copies the old file's bytes [copied, end) to the end of the new file.
  std::vector<char> buf;
  auto copy_tail = [&](uint64_t end) {
    while (copied < end) {
      std::size_t n = static_cast<std::size_t>(std::min<uint64_t>(end - copied, kChunkBytes));
      buf.resize(n);
      if (!pread_all(old->get(), buf.data(), n, copied) ||
          !pwrite_all(tmp.get(), std::string_view(buf.data(), n), written)) {
        return false;
      }
      copied += n;
      written += n;
    }
    return true;
  };
  // Catch up without blocking anyone, then sync the bulk of the new file.
  for (int round = 0; round < 3; ++round) {
    uint64_t end;
    {
      std::lock_guard<AdaptiveMutex> lock(mu_);
      end = file_size_;
    }
    if (end <= copied) break;
    if (!copy_tail(end)) return give_up(errno_message("copy", errno));
  }
  if (::fdatasync(tmp.get()) != 0) return give_up(errno_message("fdatasync", errno));

  // The switch: writers wait (their puts still go on into the buffer) while
  // the last few records are copied and the new file replaces the old one.
  std::lock_guard<std::mutex> io(io_mu_);
  auto pause = Clock::now();
  uint64_t held_seq = 0;
  if (!write_pending_locked(/*sync=*/false, /*retry=*/false, &held_seq)) {
    return give_up("the log could not be written");
  }
  uint64_t end;
  {
    std::lock_guard<AdaptiveMutex> lock(mu_);
    end = file_size_;
  }
  if (!copy_tail(end)) return give_up(errno_message("copy", errno));
  if (::fdatasync(tmp.get()) != 0) return give_up(errno_message("fdatasync", errno));
  if (::rename(tmp_path_.c_str(), path.c_str()) != 0) {
    return give_up(errno_message("rename " + tmp_path_, errno));
  }
  if (!sync_directory(path)) {
    // The new file is complete and synced under either name; only the
    // rename itself might not survive a power loss.
    log(errno_message("data file " + path + ": fsync of its directory failed", errno));
  }
  uint64_t records;
  {
    std::lock_guard<AdaptiveMutex> lock(mu_);
    file_ = std::make_shared<Fd>(std::move(tmp));
    file_size_ = written;
    records_in_file_ = snapshot_records + (records_in_file_ - cut_records);
    records = records_in_file_;
    if (held_seq > durable_seq_) durable_seq_ = held_seq;
    dirty_ = false;
  }
  auto done = Clock::now();
  ++compactions_;
  log("data file " + path + ": compaction finished: " + std::to_string(old_size) + " -> " +
          std::to_string(written) + " bytes, " + std::to_string(records) + " records, in " +
          format_seconds(std::chrono::duration<double>(done - start).count()) +
          " s (writers paused " +
          format_seconds(std::chrono::duration<double>(done - pause).count()) + " s)",
      /*info=*/true);
  return true;
}

}  // namespace metrics
