#include "storage.hpp"

#include <algorithm>
#include <limits>

namespace metrics {

namespace {
constexpr std::size_t kFirstTableSize = 64;
}  // namespace

Storage::Table::Table(std::size_t size)
    : mask(size - 1), slots(new std::atomic<Entry*>[size]) {
  for (std::size_t i = 0; i < size; ++i) slots[i].store(nullptr, std::memory_order_relaxed);
}

Storage::Storage() {
  tables_.push_back(std::make_unique<Table>(kFirstTableSize));
  table_.store(tables_.back().get(), std::memory_order_release);
}

Storage::~Storage() = default;

std::size_t Storage::hash_key(std::string_view key) { return std::hash<std::string_view>()(key); }

Storage::Entry* Storage::find(std::string_view key, std::size_t hash) const {
  const Table* table = table_.load(std::memory_order_acquire);
  for (std::size_t i = hash & table->mask;; i = (i + 1) & table->mask) {
    Entry* entry = table->slots[i].load(std::memory_order_acquire);
    if (entry == nullptr) return nullptr;  // the table is never full
    if (entry->hash == hash && entry->key == key) return entry;
  }
}

void Storage::Table::place(Entry* entry, std::memory_order order) {
  std::size_t i = entry->hash & mask;
  while (slots[i].load(std::memory_order_relaxed) != nullptr) i = (i + 1) & mask;
  slots[i].store(entry, order);
}

void Storage::add_locked(std::string_view key, std::size_t hash, int64_t timestamp,
                         double value) {
  Entry* entry = &entries_.emplace_back(key, hash);
  // Nobody can reach the entry yet: get * walks entries_ under order_mu_,
  // and the index publishes it below.
  entry->samples.insert(timestamp, value);

  Table* table = table_.load(std::memory_order_relaxed);
  if (2 * entries_.size() > table->mask + 1) {
    // Keep the table at most half full: move to one twice as large. Readers
    // still probing the old one find every key it had; one that misses a
    // newer key retries under order_mu_.
    auto bigger = std::make_unique<Table>(2 * (table->mask + 1));
    // Unpublished until table_ is stored below: relaxed stores suffice.
    for (std::size_t i = 0; i <= table->mask; ++i) {
      Entry* e = table->slots[i].load(std::memory_order_relaxed);
      if (e != nullptr) bigger->place(e, std::memory_order_relaxed);
    }
    table = bigger.get();
    tables_.push_back(std::move(bigger));
    table_.store(table, std::memory_order_release);
  }
  table->place(entry, std::memory_order_release);
}

void Storage::put(std::string_view key, int64_t timestamp, double value) {
  apply(key, hash_key(key), timestamp, value);
}

void Storage::put_many(const KeyedSample* puts, std::size_t n) {
  // In groups: hash every key and prefetch its index slot; then read each
  // slot's entry pointer and prefetch the entry (its key, lock and series
  // header fill its two cache lines); then apply. A put's misses otherwise
  // wait one after another.
  constexpr std::size_t kGroup = 16;
  std::size_t hashes[kGroup];
  for (std::size_t base = 0; base < n; base += kGroup) {
    const std::size_t m = std::min(kGroup, n - base);
    const Table* table = table_.load(std::memory_order_acquire);
    for (std::size_t j = 0; j < m; ++j) {
      hashes[j] = hash_key(puts[base + j].key);
      __builtin_prefetch(&table->slots[hashes[j] & table->mask]);
    }
    for (std::size_t j = 0; j < m; ++j) {
      const Entry* first = table->slots[hashes[j] & table->mask].load(std::memory_order_acquire);
      if (first != nullptr) {
        __builtin_prefetch(first);
        __builtin_prefetch(reinterpret_cast<const char*>(first) + 64);
      }
    }
    for (std::size_t j = 0; j < m; ++j) {
      const KeyedSample& p = puts[base + j];
      apply(p.key, hashes[j], p.timestamp, p.value);
    }
  }
}

void Storage::apply(std::string_view key, std::size_t hash, int64_t timestamp, double value) {
  Entry* entry = find(key, hash);
  if (entry == nullptr) {
    std::lock_guard<std::mutex> order(order_mu_);
    entry = find(key, hash);
    if (entry == nullptr) {
      add_locked(key, hash, timestamp, value);
      return;
    }
  }
  std::lock_guard<std::mutex> lock(entry->mu);
  entry->samples.insert(timestamp, value);
}

std::size_t Storage::key_count() const {
  std::lock_guard<std::mutex> lock(order_mu_);
  return entries_.size();
}

std::size_t Storage::sample_count() const {
  // Never waits for a key's lock while holding order_mu_: the compactor
  // counts while sessions serve, and a key held by a long copy would
  // otherwise stall every new key and every `get *` behind the count.
  const std::size_t keys = key_count();
  std::size_t total = 0;
  for (std::size_t i = 0; i < keys; ++i) {
    const Entry* entry = entry_at(i);
    std::lock_guard<std::mutex> lock(entry->mu);
    total += entry->samples.size();
  }
  return total;
}

const Storage::Entry* Storage::entry_at(std::size_t index) const {
  std::lock_guard<std::mutex> lock(order_mu_);
  return index < entries_.size() ? &entries_[index] : nullptr;
}

bool Storage::copy_series(std::size_t index, std::string* key,
                          std::vector<Sample>* samples) const {
  const Entry* entry = entry_at(index);
  if (entry == nullptr) return false;
  key->assign(entry->key);  // immutable: no lock needed
  std::lock_guard<std::mutex> lock(entry->mu);
  samples->clear();
  entry->samples.append_to(samples);
  return true;
}

const Storage::Entry* Storage::find_stored(std::string_view key) const {
  const std::size_t hash = hash_key(key);
  const Entry* entry = find(key, hash);
  if (entry != nullptr) return entry;
  std::lock_guard<std::mutex> order(order_mu_);
  return find(key, hash);
}

bool Storage::copy_series(std::string_view key, std::vector<Sample>* samples) const {
  const Entry* entry = find_stored(key);
  if (entry == nullptr) {
    samples->clear();
    return false;
  }
  std::lock_guard<std::mutex> lock(entry->mu);
  samples->clear();
  entry->samples.append_to(samples);
  return true;
}

void Storage::open_entry(const Entry* entry, SeriesCursor* cursor) {
  cursor->entry_ = entry;
  cursor->next_ = std::numeric_limits<int64_t>::min();
  std::lock_guard<std::mutex> lock(entry->mu);
  // Every entry holds at least its first sample.
  cursor->until_ = entry->samples.last_timestamp();
}

bool Storage::open_series(std::string_view key, SeriesCursor* cursor) const {
  const Entry* entry = find_stored(key);
  if (entry == nullptr) {
    *cursor = SeriesCursor();
    return false;
  }
  open_entry(entry, cursor);
  return true;
}

bool Storage::open_series(std::size_t index, std::string* key, SeriesCursor* cursor) const {
  const Entry* entry = entry_at(index);
  if (entry == nullptr) {
    *cursor = SeriesCursor();
    return false;
  }
  key->assign(entry->key);  // immutable: no lock needed
  open_entry(entry, cursor);
  return true;
}

bool Storage::copy_piece(SeriesCursor* cursor, std::size_t max_samples,
                         std::vector<Sample>* samples) const {
  samples->clear();
  if (cursor->entry_ == nullptr) return false;
  {
    std::lock_guard<std::mutex> lock(cursor->entry_->mu);
    cursor->entry_->samples.append_range(cursor->next_, cursor->until_,
                                         std::max<std::size_t>(max_samples, 1), samples);
  }
  // A short piece reached the end of the range as it stood. Otherwise the
  // copy goes on after the last timestamp copied, unless that ends the range
  // (which also keeps next_ from overflowing).
  const bool short_piece = samples->size() < std::max<std::size_t>(max_samples, 1);
  if (short_piece || samples->back().timestamp >= cursor->until_) {
    cursor->entry_ = nullptr;
  } else {
    cursor->next_ = samples->back().timestamp + 1;
  }
  return !samples->empty();
}

}  // namespace metrics
