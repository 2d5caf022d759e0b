#include "metrics/service.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "metrics/protocol.hpp"

namespace metrics {

namespace {

// Gathering stops at this many key bytes too, so a batch's memory is bounded
// whatever the keys' length.
constexpr std::size_t kMaxBatchKeyBytes = 16 * 1024;

// Returns the memory of a container grown past `bytes` (by a long batch), so
// an idle session does not keep it.
template <typename Container>
void clear_and_trim(Container& c, std::size_t bytes) {
  if (c.capacity() * sizeof(typename Container::value_type) > bytes) {
    Container().swap(c);
  } else {
    c.clear();
  }
}

}  // namespace

void MetricsSession::handle_line(std::string_view line, Output& out) {
  Request request = parse_request(line);
  switch (request.kind) {
    case RequestKind::kEmpty:
      return;
    case RequestKind::kInvalid:
      out.buffer().append(kWrongCommandAnswer);
      return;
    case RequestKind::kPut:
      if (wal_ == nullptr) {
        storage_.put(request.key, request.timestamp, request.value);
        out.buffer().append(kOkAnswer);
        return;
      }
      pending_.push_back(PendingPut{request.key.size(), request.timestamp, request.value});
      keys_.append(request.key);
      out.append_provisional(kOkAnswer, kStorageFailureAnswer, ++next_ticket_);
      if (pending_.size() == kMaxBatch || keys_.size() >= kMaxBatchKeyBytes) apply_pending();
      return;
    case RequestKind::kGet:
      apply_pending();
      answer_get(request.key, out);
      return;
  }
}

void MetricsSession::apply_pending() {
  if (pending_.empty()) return;
  batch_.clear();
  std::string_view keys = keys_;
  for (const PendingPut& p : pending_) {
    batch_.push_back(Storage::KeyedSample{keys.substr(0, p.key_size), p.timestamp, p.value});
    keys.remove_prefix(p.key_size);
  }
  std::size_t applied = 0;
  uint64_t last = 0;
  if (!refused_) applied = wal_->put_batch(batch_.data(), batch_.size(), &last);
  // One batch's tickets are consecutive.
  for (std::size_t i = 0; i < applied; ++i) logged_.push_back(last - applied + 1 + i);
  if (applied < batch_.size()) refused_ = true;
  pending_.clear();
  batch_.clear();
  clear_and_trim(keys_, kMaxBatchKeyBytes);
}

uint64_t MetricsSession::settle(uint64_t ticket) {
  apply_pending();
  uint64_t succeeded = 0;
  if (!logged_.empty()) {
    const uint64_t durable = wal_->commit(logged_.back());
    succeeded = static_cast<uint64_t>(
        std::upper_bound(logged_.begin(), logged_.end(), durable) - logged_.begin());
  }
  const uint64_t last_good = settled_ + succeeded;
  settled_ = ticket;
  clear_and_trim(logged_, 4096);
  refused_ = false;
  return last_good;
}

void MetricsSession::answer_get(std::string_view key, Output& out) {
  std::vector<Sample> samples;
  out.buffer().append("ok\n");
  if (key != "*") {
    if (storage_.copy_series(key, &samples)) {
      for (const Sample& s : samples) append_sample_line(&out.buffer(), key, s);
    }
  } else {
    // The keys stored when the request arrived; each is copied under the
    // lock on its own, so puts from other sessions interleave freely.
    std::size_t keys = storage_.key_count();
    std::string name;
    for (std::size_t i = 0; i < keys && !out.failed(); ++i) {
      storage_.copy_series(i, &name, &samples);
      for (const Sample& s : samples) append_sample_line(&out.buffer(), name, s);
      out.flush_if_large();
    }
  }
  out.buffer().push_back('\n');
}

}  // namespace metrics
