// The write-ahead log itself (wal.hpp): opening and locking the file,
// replay, appending a batch of puts and applying it, group commit, the
// syncer's retries and compaction. The record format is log_format.hpp's;
// the file primitives are log_file.hpp's.
#include "wal.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <vector>

#include "log_file.hpp"
#include "log_format.hpp"
#include "buffer.hpp"

namespace metrics {

namespace {

using Clock = std::chrono::steady_clock;

std::runtime_error file_error(const std::string& what, int err) {
  return std::runtime_error(errno_message(what, err));
}

std::string format_seconds(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3f", seconds);
  return text;
}

}  // namespace

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
    : options_(std::move(options)),
      storage_(storage),
      logger_(options_.log, options_.quiet) {
  replay(open_and_lock());
  // If the compactor cannot start, threads_'s destruction stops and joins
  // the syncer.
  threads_.start(&Wal::syncer_loop);
  threads_.start(&Wal::compactor_loop);
}

void Wal::Threads::start(void (Wal::*loop)()) {
  // Assigned only once it has started: a failed start leaves nothing to join.
  threads_.at(started_) = std::thread(loop, &wal_);
  ++started_;
}

void Wal::Threads::stop_and_join() {
  {
    std::lock_guard<std::mutex> lock(wal_.mu_);
    wal_.stop_ = true;
  }
  wal_.wake_.notify_all();
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
}

Wal::~Wal() {
  threads_.stop_and_join();
  // Sessions have all ended: drop the space allocated ahead and sync.
  std::lock_guard<std::mutex> lock(mu_);
  if (int err = tail_->truncate(); err != 0) {
    log(errno_message("data file " + options_.path + ": cutting it to its records on close", err) +
        " (the next start does)");
  }
  if (::fdatasync(tail_->file()->get()) != 0) {
    log(errno_message("data file " + options_.path + ": fdatasync on close", errno));
  }
}

void Wal::log(const std::string& line, bool info) const { logger_.line(line, info); }

std::shared_ptr<Fd> Wal::open_and_lock() {
  const std::string& path = options_.path;
  std::shared_ptr<Fd> file;
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
      // The file itself, symlinks resolved: what a compaction replaces.
      std::unique_ptr<char, decltype(&std::free)> resolved(::realpath(path.c_str(), nullptr),
                                                           &std::free);
      if (!resolved) throw file_error("resolve the path of data file " + path, errno);
      struct stat target {};
      if (::stat(resolved.get(), &target) == 0 && target.st_ino == opened.st_ino &&
          target.st_dev == opened.st_dev) {
        file_path_ = resolved.get();
        file = std::make_shared<Fd>(std::move(fd));
        break;
      }
    }
    if (attempt == 100) throw std::runtime_error("data file " + path + " keeps being replaced");
  }
  tmp_path_ = file_path_ + ".rewrite";
  // A rewrite interrupted by a crash left its unfinished file; only the
  // owner of the lock ever writes it.
  ::unlink(tmp_path_.c_str());
  return file;
}

void Wal::replay(std::shared_ptr<Fd> file) {
  const std::string& path = options_.path;
  const int fd = file->get();
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
    // Runs in the scanner thread.
    auto scan_records = [&] {
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
      scan = scan_log(
          mapping.bytes(), options_.repair,
          [&](const LogRecord& r) {
            batch.push_back(Storage::KeyedSample{r.key, r.timestamp, r.value});
            if (batch.size() == kBatch) hand_over();
          },
          options_.max_key_bytes);
      if (!batch.empty()) hand_over();
    };
    // What the scanner threw (say bad_alloc): rethrown here once it is
    // joined, instead of ending the process from the scanner's thread.
    std::exception_ptr scan_error;
    std::thread scanner([&] {
      try {
        scan_records();
      } catch (...) {
        scan_error = std::current_exception();
      }
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
    if (scan_error) std::rethrow_exception(scan_error);
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
  uint64_t end = size;
  if (scan.end < kLogMagic.size()) {
    // A new file, or one whose creation was cut short: write the header.
    if (size > 0) log("data file " + path + ": rewriting an incomplete header");
    if (::ftruncate(fd, 0) != 0 || !pwrite_all(fd, kLogMagic, 0) || ::fdatasync(fd) != 0 ||
        !sync_directory(path)) {
      throw file_error("initialise data file " + path, errno);
    }
    end = kLogMagic.size();
  } else if (scan.torn_bytes > 0) {
    // Zeros alone are the space a killed server had allocated ahead: the
    // log ended cleanly before them.
    if (scan.zero_bytes < scan.torn_bytes) {
      log("data file " + path + ": warning: truncating a torn record at offset " +
          std::to_string(scan.end) + " (" + std::to_string(scan.torn_bytes) +
          " bytes cut, with any space allocated after it: the end of a write cut short by a "
          "crash)");
    }
    if (::ftruncate(fd, static_cast<off_t>(scan.end)) != 0 || ::fdatasync(fd) != 0) {
      throw file_error("truncate data file " + path, errno);
    }
    end = scan.end;
  }
  tail_ = std::make_unique<LogTail>(std::move(file), end);
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

bool Wal::put(std::string_view key, int64_t timestamp, double value, uint64_t* ticket) {
  const Storage::KeyedSample one{key, timestamp, value};
  return put_batch(&one, 1, ticket) == 1;
}

std::size_t Wal::put_batch(const Storage::KeyedSample* puts, std::size_t n, uint64_t* last_ticket) {
  // Replay rejects a record with an empty key or one longer than
  // kMaxLogKeyBytes as damage: such a put (and the rest of the batch) is
  // refused here rather than acknowledged and lost. The server's line limit
  // keeps keys shorter; this is a defence.
  for (std::size_t i = 0; i < n; ++i) {
    if (puts[i].key.empty() || puts[i].key.size() > kMaxLogKeyBytes) {
      n = i;
      break;
    }
  }
  if (n == 0) return 0;
  // Encoded and checksummed before taking mu_, which every session's puts
  // share: under it, only a copy per record.
  thread_local std::string records;
  records.clear();
  for (std::size_t i = 0; i < n; ++i) {
    append_log_record(&records, puts[i].key, puts[i].timestamp, puts[i].value);
  }
  std::size_t appended = 0;
  {
    std::unique_lock<std::mutex> lock(mu_);
    // Whole records, one at a time, until the tail refuses one: the puts
    // whose records were appended (a prefix of the batch) are then applied,
    // and the rest change nothing. A record is appended before its put is
    // applied, both under mu_, so the log's order is the order of applying.
    int err = 0;
    if (!failed_) {
      std::string_view rest = records;
      for (; appended < n; ++appended) {
        const std::size_t size = kLogRecordHeaderBytes + puts[appended].key.size();
        if ((err = tail_->append(rest.substr(0, size))) != 0) break;
        rest.remove_prefix(size);
      }
    }
    if (appended > 0) {
      records_in_file_ += appended;
      appended_seq_ += appended;
      *last_ticket = appended_seq_;
      // Without kAlways, a record in the page cache is as durable as promised.
      if (options_.fsync != FsyncPolicy::kAlways) durable_seq_ = appended_seq_;
      dirty_ = true;
      storage_.put_many(puts, appended);
    }
    if (err != 0) fail_locked(lock, "write failed", err);
  }
  // A session's thread keeps at most 16 KiB of it between batches (a batch
  // of long keys can need more), so an idle session holds little.
  clear_and_trim(records, 16 * 1024);
  return appended;
}

bool Wal::failed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failed_;
}

void Wal::fail_locked(std::unique_lock<std::mutex>& lock, const std::string& what, int err) {
  const bool first = !failed_;
  failed_ = true;
  lock.unlock();
  if (first) {
    log(errno_message("data file " + options_.path + ": " + what, err) +
        "; refusing puts until it can be written again (retrying every second)");
  }
  lock.lock();
}

uint64_t Wal::commit(uint64_t ticket) {
  // Group commit: one session at a time leads an fdatasync of everything
  // appended so far; the others wait on a condition variable, all woken at
  // once when it ends, and most find their record synced.
  //
  // Also while the log refuses new puts (failed_): the records appended
  // before the failure are whole, in allocated space, and applied, so they
  // are synced and acknowledged like any others. (Refusing them would leave
  // puts answered with an error in memory and in the file.)
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (durable_seq_ >= ticket) return durable_seq_;
    if (!leading_) break;
    synced_.wait(lock);
  }
  if (const int err = sync_leading(lock); err != 0) fail_locked(lock, "fdatasync failed", err);
  return durable_seq_;
}

int Wal::sync_leading(std::unique_lock<std::mutex>& lock) {
  leading_ = true;
  const uint64_t target = appended_seq_;
  const std::shared_ptr<Fd> file = tail_->file();
  lock.unlock();
  // A compaction may switch files meanwhile: it syncs the new file, holding
  // every record appended before the switch, before anything else is
  // appended to it.
  const int err = ::fdatasync(file->get()) == 0 ? 0 : errno;
  lock.lock();
  // Still leading, and holding mu_: no other sync can report success (the
  // kernel reports a write-back error once) before the process ends.
  if (err != 0 && options_.fsync == FsyncPolicy::kAlways) sync_failed_fatally(err);
  leading_ = false;
  if (err == 0) durable_seq_ = std::max(durable_seq_, target);
  synced_.notify_all();
  return err;
}

void Wal::sync_failed_fatally(int err) const {
  log(errno_message("data file " + options_.path + ": fdatasync failed", err) +
      "; with --fsync always the puts it covered can be neither acknowledged nor refused, so "
      "the server exits (at the next start, replay restores what the file holds)");
  std::_Exit(EXIT_FAILURE);
}

void Wal::retry() {
  // Writable again means: space for the next record, and a sync that
  // succeeds. (With kEverySec, pages a failed sync could not write may be
  // missing from the file, as with any write-back after EIO; the next
  // compaction rewrites the log from memory.)
  std::unique_lock<std::mutex> lock(mu_);
  if (tail_->reserve(1) != 0) return;
  if (options_.fsync == FsyncPolicy::kAlways) {
    // Through the group commit's lead, so that its sync and a commit's never
    // run at once: only one of them would see a write-back error. A failure
    // ends the process.
    while (leading_) synced_.wait(lock);
    sync_leading(lock);
  } else {
    const std::shared_ptr<Fd> file = tail_->file();
    lock.unlock();
    if (::fdatasync(file->get()) != 0) return;
    lock.lock();
  }
  if (!failed_) return;
  failed_ = false;
  dirty_ = false;
  lock.unlock();
  log("data file " + options_.path + ": writable again; accepting puts");
}

void Wal::syncer_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; });
    if (stop_) return;
    if (failed_) {
      lock.unlock();
      retry();
      lock.lock();
      continue;
    }
    if (!dirty_ || options_.fsync != FsyncPolicy::kEverySec) continue;
    dirty_ = false;
    const std::shared_ptr<Fd> file = tail_->file();
    lock.unlock();
    const int err = ::fdatasync(file->get()) == 0 ? 0 : errno;
    lock.lock();
    // The kernel may have dropped the unsynced pages: refuse puts until a
    // retry syncs again.
    if (err != 0) fail_locked(lock, "fdatasync failed", err);
  }
}

void Wal::compactor_loop() {
  std::unique_lock<std::mutex> lock(mu_);
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
    std::lock_guard<std::mutex> lock(mu_);
    if (failed_ || Clock::now() < next_compact_try_) return false;
    if (tail_->end() < options_.compact_min_bytes) return false;
    records = records_in_file_;
    // Samples are never removed, so while the log holds at most twice the
    // samples last counted it cannot hold twice the samples stored now: the
    // count (a walk over every key) is taken again only when it might.
    if (records <= 2 * samples_counted_) return false;
  }
  // Outside mu_: storage locks are always taken before mu_, never after.
  const uint64_t samples = storage_.sample_count();
  std::lock_guard<std::mutex> lock(mu_);
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
    std::lock_guard<std::mutex> lock(mu_);
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
    std::lock_guard<std::mutex> lock(mu_);
    copied = tail_->end();
    cut_records = records_in_file_;
    old_size = copied;
    old = tail_->file();
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
  // (pread sees what the tail copied into its mapping: both are the page
  // cache.)
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
      std::lock_guard<std::mutex> lock(mu_);
      end = tail_->end();
    }
    if (end <= copied) break;
    if (!copy_tail(end)) return give_up(errno_message("copy", errno));
  }
  if (::fdatasync(tmp.get()) != 0) return give_up(errno_message("fdatasync", errno));

  // The switch: puts wait while the last few records are copied, the new
  // file is synced and takes the old one's name, and appends move to it. The
  // sync comes first so that a record synced in the old file is never
  // replaced by an unsynced copy.
  std::unique_lock<std::mutex> lock(mu_);
  auto pause = Clock::now();
  std::string failure;
  if (!copy_tail(tail_->end())) {
    failure = errno_message("copy", errno);
  } else if (::fdatasync(tmp.get()) != 0) {
    failure = errno_message("fdatasync", errno);
  } else if (::rename(tmp_path_.c_str(), file_path_.c_str()) != 0) {
    failure = errno_message("rename " + tmp_path_, errno);
  }
  if (!failure.empty()) {
    lock.unlock();
    return give_up(failure);
  }
  const bool dir_synced = sync_directory(file_path_);
  const int dir_err = errno;
  tail_ = std::make_unique<LogTail>(std::make_shared<Fd>(std::move(tmp)), written);
  records_in_file_ = snapshot_records + (records_in_file_ - cut_records);
  const uint64_t records = records_in_file_;
  // Every record appended so far is in the new file, synced.
  durable_seq_ = appended_seq_;
  dirty_ = false;
  lock.unlock();
  if (!dir_synced) {
    // The new file is complete and synced under either name; only the
    // rename itself might not survive a power loss.
    log(errno_message("data file " + path + ": fsync of its directory failed", dir_err));
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
