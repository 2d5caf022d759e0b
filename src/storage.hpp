// The in-memory metrics store: one instance per server process, shared by
// every session thread.
#ifndef METRICS_STORAGE_HPP_
#define METRICS_STORAGE_HPP_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/sample.hpp"
#include "series.hpp"

namespace metrics {

// Keys in the order each was first stored; each key's samples in a compact
// sorted array (SampleSeries), at most one sample per (key, timestamp).
//
// Thread-safe, and built so that sessions putting to different keys share
// no written memory (docs/architecture.md, "Storage"):
// - each key has its own lock (a std::mutex), which guards its samples;
// - keys are found through an insert-only open-addressing index that is
//   read without any lock (atomic slots; a full table is replaced by a
//   larger copy, and old tables live as long as the Storage);
// - creating a key takes the key-order lock, which fixes its place in
//   `get *` and serialises every change to the index.
// Readers copy what they need under a key's lock and format it after
// releasing it, so a large `get *` never holds a lock for long: it walks the
// keys one at a time, and each key's samples a bounded piece at a time (see
// open_series and copy_piece).
//
// Lock order: order_mu_, then a key's lock. Nothing holds order_mu_ while it
// waits for a key's lock: a busy key holds up only its own readers and
// writers, never the creation of keys or a walk over them.
class Storage {
  struct Entry;

 public:
  Storage();
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  // Stores `value` at (key, timestamp), replacing a value already stored
  // there. A new key is placed after every existing key.
  void put(std::string_view key, int64_t timestamp, double value);

  // One put of a batch; `key` must stay valid for the put_many call.
  struct KeyedSample {
    std::string_view key;
    int64_t timestamp;
    double value;
  };

  // Applies `puts` in order, as put() one at a time would. For bulk loading
  // (the log's replay).
  void put_many(const std::vector<KeyedSample>& puts) { put_many(puts.data(), puts.size()); }

  // Applies `n` puts at `puts` in order, as put() one at a time would.
  // Looks keys up a few puts ahead, so that the cache misses of several puts
  // overlap: a session's batch of puts goes through here.
  void put_many(const KeyedSample* puts, std::size_t n);

  // Number of distinct keys stored so far. Keys are never removed, so indexes
  // below this stay valid.
  std::size_t key_count() const;

  // Total number of samples under the keys stored when the count began.
  // Walks those keys as `get *` does, taking order_mu_ only to find each one
  // and then that key's lock (while puts run, a count from between them):
  // not for hot paths.
  std::size_t sample_count() const;

  // Copies the key at `index` (0 = first stored) and its samples into `key`
  // and `samples` (replacing their contents). Returns false if there is no
  // such index.
  bool copy_series(std::size_t index, std::string* key, std::vector<Sample>* samples) const;

  // Copies the samples of `key` into `samples` (replacing their contents).
  // Returns false, leaving `samples` empty, if the key is not stored.
  bool copy_series(std::string_view key, std::vector<Sample>* samples) const;

  // A copy of one key's samples made a piece at a time (open_series, then
  // copy_piece until it returns false), so that whoever sends them needs
  // memory for one piece, not for the whole series. A default-constructed
  // cursor copies nothing. Cheap to copy; valid as long as its Storage.
  class SeriesCursor {
   private:
    friend class Storage;
    const Entry* entry_ = nullptr;  // null: nothing (more) to copy
    int64_t next_ = 0;              // the lowest timestamp not yet copied
    int64_t until_ = 0;             // the key's highest timestamp at open_series
  };

  // Starts a piecewise copy of `key`'s samples in `*cursor`. Returns false
  // (the cursor then copies nothing) if the key is not stored.
  bool open_series(std::string_view key, SeriesCursor* cursor) const;

  // Likewise for the key at `index` in key order (0 = first stored), whose
  // name is copied into `key`. Returns false if there is no such index.
  bool open_series(std::size_t index, std::string* key, SeriesCursor* cursor) const;

  // Replaces the contents of `samples` with the next piece of the cursor's
  // copy: at most `max_samples` (at least 1) samples, copied under the key's
  // lock, which is held for this piece only. Returns false, with `samples`
  // empty, once the copy is complete.
  //
  // Consistency, with puts to the key running between pieces: the pieces
  // concatenate to samples in ascending timestamp order, each timestamp at
  // most once, none after the key's highest timestamp when the copy was
  // opened. Each piece is a snapshot of its range of timestamps when it was
  // copied. So the copy holds every sample the key had when it was opened
  // (with the value it had when its piece was copied) and, of the samples
  // put meanwhile, those at timestamps the copy had not yet passed, up to
  // that highest timestamp; a replaced value is not sent again. Samples put
  // after the opening's highest timestamp are left to a later get, so the
  // copy ends however fast new samples arrive. (copy_series, in contrast,
  // is a single snapshot of the whole series.)
  bool copy_piece(SeriesCursor* cursor, std::size_t max_samples,
                  std::vector<Sample>* samples) const;

 private:
  // One key. Over-aligned so that two keys written by different sessions
  // never share a cache line.
  struct alignas(64) Entry {
    Entry(std::string_view k, std::size_t h) : key(k), hash(h) {}
    const std::string key;  // immutable once published
    const std::size_t hash;
    mutable std::mutex mu;
    SampleSeries samples;  // guarded by mu
  };

  // The index: a power-of-two array of entry pointers, linear probing, at
  // most half full. Slots only ever go from null to an entry.
  struct Table {
    explicit Table(std::size_t size);
    // Stores `entry` in the first free slot of its probe sequence.
    // REQUIRES: order_mu_ held; a free slot exists.
    void place(Entry* entry, std::memory_order order);
    std::size_t mask;
    std::unique_ptr<std::atomic<Entry*>[]> slots;
  };

  // Lets tests hold a key's lock (tests/storage_test.cpp).
  friend struct StorageTestPeer;

  static std::size_t hash_key(std::string_view key);

  // The entry of `key` in the current index, or null. Lock-free; a null
  // answer is only final under order_mu_.
  Entry* find(std::string_view key, std::size_t hash) const;

  // The entry of `key`, or null if it is not stored (retrying under
  // order_mu_ before concluding so).
  const Entry* find_stored(std::string_view key) const;

  // Points `cursor` at the whole of `entry`'s samples as they end now.
  static void open_entry(const Entry* entry, SeriesCursor* cursor);

  // put(), with the key's hash given.
  void apply(std::string_view key, std::size_t hash, int64_t timestamp, double value);

  // Creates the entry of a key that is not stored, after every existing key,
  // holding its first sample. Published to readers only once complete.
  // REQUIRES: order_mu_ held.
  void add_locked(std::string_view key, std::size_t hash, int64_t timestamp, double value);

  // The entry at `index` in key order, or null. Takes order_mu_.
  const Entry* entry_at(std::size_t index) const;

  std::atomic<Table*> table_;  // the current index; written under order_mu_

  mutable std::mutex order_mu_;
  std::deque<Entry> entries_;                  // guarded by order_mu_ (its structure)
  std::vector<std::unique_ptr<Table>> tables_;  // guarded by order_mu_: current and retired
};

}  // namespace metrics

#endif  // METRICS_STORAGE_HPP_
