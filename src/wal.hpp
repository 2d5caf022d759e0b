// Durability: an append-only log of puts (a write-ahead log, like Redis's
// AOF), replayed into the Storage at start.
//
// Memory stays the store that answers `get`; the log only makes puts survive
// a restart or a crash. The file holds one record per put, in the order the
// puts were applied; src/log_format.hpp documents the format, and what
// opening does with a torn tail or damage in the middle.
#ifndef METRICS_WAL_HPP_
#define METRICS_WAL_HPP_

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "logger.hpp"
#include "metrics/protocol.hpp"
#include "metrics/socket.hpp"
#include "storage.hpp"

namespace metrics {

enum class FsyncPolicy {
  kAlways,    // fdatasync before a put is acknowledged (group commit)
  kEverySec,  // write before acknowledging; fdatasync once a second
  kNo,        // write before acknowledging; the OS decides when to sync
};

// "always", "everysec", "no" <-> FsyncPolicy. parse returns false on other text.
bool parse_fsync_policy(std::string_view text, FsyncPolicy* policy);
std::string_view fsync_policy_name(FsyncPolicy policy);

struct WalOptions {
  std::string path;
  FsyncPolicy fsync = FsyncPolicy::kEverySec;
  // Skip damaged records in the middle of the file instead of refusing to
  // start, then rewrite the file without them.
  bool repair = false;
  // Rewrite the log in the background once it holds more than twice as many
  // records as there are samples stored and is at least this large.
  uint64_t compact_min_bytes = 16 * 1024 * 1024;
  // Receives one line per notable event (restore, truncation, write failure,
  // compaction). Empty: lines go to stderr. Called from several threads,
  // serialised by the Wal.
  std::function<void(std::string_view)> log;
  // Silences the restore and compaction lines; warnings and errors are
  // still logged.
  bool quiet = false;
  // The longest key a put can carry (the server sets it from
  // --max-line-bytes). Bounds the search for the next valid record after a
  // damaged one, at start: a record with a longer key is replayed in
  // sequence, but not found after damage. Clamped to kMaxLogKeyBytes
  // (1 GiB, the longest key a record holds: src/log_format.hpp).
  std::size_t max_key_bytes = kDefaultMaxLineBytes;
};

// What opening the log restored.
struct ReplayStats {
  std::size_t records = 0;
  std::size_t samples = 0;  // samples in storage afterwards
  uint64_t bytes = 0;
  double seconds = 0;
};

// Where records are appended: the end of the log file (src/log_file.hpp).
class LogTail;

// The write-ahead log of one server. Owns the data file (locked with flock
// for the Wal's lifetime) and two threads: a syncer (fdatasync once a second
// with kEverySec; retries after a failure) and a compactor.
//
// Logged puts go through the Wal (put, put_batch), which applies them to the
// storage and appends their records under one lock, so the log holds puts
// in the order they were applied and keys in the order they were created.
// A session's batch of puts takes that lock once. The records are copied
// through a shared mapping of the file's end, which is allocated ahead
// (posix_fallocate): once put returns, the record is in the kernel's page
// cache and survives the server being killed, with no system call per put.
// With kAlways a session then calls commit() before sending its answers;
// sessions committing at the same time share one fdatasync: group commit.
// With kEverySec and kNo, commit() returns at once.
//
// When space cannot be allocated (ENOSPC, EFBIG), the Wal refuses every new
// put (put returns false, changing nothing) until the syncer's retry (once a
// second) allocates and syncs again: as Redis refuses writes while its AOF
// cannot be written. Gets are never affected. The records appended before
// the failure sit in allocated space, so with kAlways commit() still syncs
// them and they are acknowledged. A failed sync (EIO) with kEverySec also
// makes the Wal refuse puts until a retry syncs. With kAlways a failed sync
// ends the process (one log line, then exit status 1), as PostgreSQL and
// Redis's `appendfsync always` do: the puts it covered are applied in memory
// but the kernel may have dropped their pages, and a later sync can report
// success without them, so neither acknowledging nor refusing them would be
// true. At the next start, replay restores what the file holds.
//
// Thread-safe.
class Wal {
 public:
  // Opens (creating it if needed) and locks options.path, replays it into
  // `storage` (which should be empty), truncates a torn tail, and starts the
  // background threads. Throws std::runtime_error with a message for the
  // operator: the file is locked by another process, is not a log, is
  // corrupt in the middle (naming the offset), or cannot be read or written.
  // `storage` must outlive the Wal.
  Wal(WalOptions options, Storage& storage);

  // Stops and joins the threads, cuts the file to the end of its records and
  // syncs it.
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Applies a put to the storage and appends its record to the log.
  // Returns false, changing nothing, while the log is failing or when the
  // key is one no record can hold (empty, or longer than kMaxLogKeyBytes);
  // otherwise sets `*ticket` to what commit() waits on before the put may
  // be acknowledged.
  bool put(std::string_view key, int64_t timestamp, double value, uint64_t* ticket);

  // Applies `puts` in order as put() would, taking the log's lock once for
  // all of them. Returns how many were applied: all, or a prefix when the
  // log failed part way or a put's key could not be logged (the rest changed
  // nothing). Their tickets are
  // consecutive, the last in `*last_ticket`.
  std::size_t put_batch(const Storage::KeyedSample* puts, std::size_t n, uint64_t* last_ticket);

  // Blocks until the records up to `ticket` are synced (kAlways; with the
  // other policies they already count once appended), also while the log is
  // refusing new puts. Returns the highest ticket that is acknowledgeable,
  // which is at least `ticket` when `ticket` came from put or put_batch.
  // With kAlways, a failed sync ends the process (see above).
  uint64_t commit(uint64_t ticket);

  // Rewrites the log from storage now, in the calling thread. Returns false
  // (after logging why) if it could not; the old log then stays in use.
  bool compact();

  const ReplayStats& replay_stats() const { return replay_; }
  // True while writes are failing and puts are refused.
  bool failed() const;
  // Compactions finished so far.
  uint64_t compactions() const { return compactions_.load(); }

 private:
  // Logs one line; an `info` line is dropped when options_.quiet.
  void log(const std::string& line, bool info = false) const;
  // Returns the opened and locked data file; sets file_path_ and tmp_path_.
  std::shared_ptr<Fd> open_and_lock();
  // Replays `file` and makes the tail that appends to it.
  void replay(std::shared_ptr<Fd> file);
  // Marks the log failed; logs `what` the first time. REQUIRES: mu_ held by
  // `lock`, which is released while logging.
  void fail_locked(std::unique_lock<std::mutex>& lock, const std::string& what, int err);
  // The syncer's attempt to make a failed log writable again.
  void retry();
  // Leads one group-commit sync of every record appended so far: marks
  // leading_, syncs with mu_ released, then updates durable_seq_ and wakes
  // the waiters. Returns 0 or the errno of the failed sync; with kAlways a
  // failed sync ends the process instead. REQUIRES: mu_ held by `lock`, no
  // other thread leading.
  int sync_leading(std::unique_lock<std::mutex>& lock);
  // With kAlways: logs that a sync of the log failed and ends the process
  // with status 1 (std::_Exit: no destructor runs, no answer is sent).
  [[noreturn]] void sync_failed_fatally(int err) const;
  void syncer_loop();
  void compactor_loop();
  bool should_compact();

  const WalOptions options_;
  Storage& storage_;
  // The file options_.path names, symlinks resolved: a compaction writes
  // tmp_path_ beside it and renames it over it, so that a symlinked path
  // stays a link to the rewritten file. Set while opening.
  std::string file_path_;
  std::string tmp_path_;
  ReplayStats replay_;

  const Logger logger_;  // options_.log and options_.quiet
  std::mutex compact_mu_;  // one compaction at a time

  // Guards the tail and the counters below. Logged puts are applied under
  // it, a batch at a time, so the log's order is the order puts were
  // applied in; it is taken before any storage lock, never after. Held
  // across I/O only to grow the file (rarely) and for a compaction's switch
  // to the new file.
  mutable std::mutex mu_;
  std::condition_variable wake_;              // threads' sleep; stop_
  std::condition_variable synced_;            // a leading commit() finished
  std::unique_ptr<LogTail> tail_;             // guarded by mu_
  bool leading_ = false;                      // guarded by mu_: a commit() is syncing
  uint64_t appended_seq_ = 0;                 // guarded by mu_: last ticket handed out
  uint64_t durable_seq_ = 0;                  // guarded by mu_: last acknowledgeable ticket
  uint64_t records_in_file_ = 0;              // guarded by mu_
  bool failed_ = false;                       // guarded by mu_
  bool dirty_ = false;                        // guarded by mu_: appended, not yet synced
  bool stop_ = false;                         // guarded by mu_
  std::chrono::steady_clock::time_point next_compact_try_{};  // guarded by mu_
  uint64_t samples_counted_ = 0;  // guarded by mu_: storage's sample count, last taken

  std::atomic<uint64_t> compactions_{0};

  // The background threads. Destroying it stops and joins every thread
  // started, so if the constructor throws after starting one (a thread
  // that cannot start throws std::system_error), the Wal's members are
  // destroyed with no joinable std::thread left, which would call
  // std::terminate. Declared last: destroyed first, while the members the
  // threads use still exist.
  class Threads {
   public:
    explicit Threads(Wal& wal) : wal_(wal) {}
    ~Threads() { stop_and_join(); }
    Threads(const Threads&) = delete;
    Threads& operator=(const Threads&) = delete;
    // Starts (wal.*loop)() in a new thread. Throws std::system_error if it
    // cannot start; the threads already started keep running.
    void start(void (Wal::*loop)());
    // Sets stop_, wakes and joins every thread started. Idempotent.
    void stop_and_join();

   private:
    Wal& wal_;
    std::array<std::thread, 2> threads_;  // the syncer and the compactor
    std::size_t started_ = 0;
  };
  Threads threads_{*this};
};

}  // namespace metrics

#endif  // METRICS_WAL_HPP_
