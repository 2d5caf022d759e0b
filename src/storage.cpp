#include "metrics/storage.hpp"

#include <algorithm>

namespace metrics {

void Storage::insert_sample(std::vector<Sample>* samples, int64_t timestamp, double value) {
  // Monitoring data mostly arrives in time order: append without a search.
  if (samples->empty() || samples->back().timestamp < timestamp) {
    samples->push_back(Sample{timestamp, value});
    return;
  }
  auto it = std::lower_bound(
      samples->begin(), samples->end(), timestamp,
      [](const Sample& s, int64_t ts) { return s.timestamp < ts; });
  if (it != samples->end() && it->timestamp == timestamp) {
    it->value = value;
  } else {
    samples->insert(it, Sample{timestamp, value});
  }
}

void Storage::put(std::string_view key, int64_t timestamp, double value) {
  std::lock_guard<std::mutex> lock(mu_);
  put_locked(key, timestamp, value);
}

bool Storage::put(std::string_view key, int64_t timestamp, double value, PutLog& log,
                  uint64_t* ticket) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!log.log_put(key, timestamp, value, ticket)) return false;
  put_locked(key, timestamp, value);
  return true;
}

void Storage::put_many(const std::vector<KeyedSample>& puts) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry* entry = nullptr;
  for (const KeyedSample& p : puts) {
    if (entry == nullptr || entry->key != p.key) entry = find_or_add_locked(p.key);
    std::size_t before = entry->samples.size();
    insert_sample(&entry->samples, p.timestamp, p.value);
    sample_count_ += entry->samples.size() - before;
  }
}

Storage::Entry* Storage::find_or_add_locked(std::string_view key) {
  auto found = index_.find(key);
  if (found != index_.end()) return &entries_[found->second];
  Entry* entry = &entries_.emplace_back(Entry{std::string(key), {}});
  index_.emplace(std::string_view(entry->key), entries_.size() - 1);
  return entry;
}

void Storage::put_locked(std::string_view key, int64_t timestamp, double value) {
  Entry* entry = find_or_add_locked(key);
  std::size_t before = entry->samples.size();
  insert_sample(&entry->samples, timestamp, value);
  sample_count_ += entry->samples.size() - before;
}

std::size_t Storage::key_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

std::size_t Storage::sample_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sample_count_;
}

bool Storage::copy_series(std::size_t index, std::string* key,
                          std::vector<Sample>* samples) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (index >= entries_.size()) return false;
  const Entry& entry = entries_[index];
  key->assign(entry.key);
  samples->assign(entry.samples.begin(), entry.samples.end());
  return true;
}

bool Storage::copy_series(std::string_view key, std::vector<Sample>* samples) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto found = index_.find(key);
  if (found == index_.end()) {
    samples->clear();
    return false;
  }
  const Entry& entry = entries_[found->second];
  samples->assign(entry.samples.begin(), entry.samples.end());
  return true;
}

}  // namespace metrics
