#include "service.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "buffer.hpp"
#include "metrics/protocol.hpp"

namespace metrics {

namespace {

// Gathering stops at this many key bytes too, so a batch's memory is bounded
// whatever the keys' length.
constexpr std::size_t kMaxBatchKeyBytes = 16 * 1024;

// What a session keeps of each batch buffer's capacity between reads.
constexpr std::size_t kKeepBatchBytes = 4096;

// A get's answer is copied and formatted a piece of a key's samples at a
// time: about this many bytes of answer lines a piece. With Output's
// streaming (kStreamBytes), a session blocked sending holds at most one
// piece and about 100 KiB of answer, however large the key.
constexpr std::size_t kPieceBytes = 32 * 1024;

// An answer line's bytes besides its key, at most: a space, a value (up to
// 24 characters), a space, a timestamp (up to 20) and the newline.
constexpr std::size_t kSampleLineBytes = 47;

}  // namespace

void ProvisionalAnswers::append(std::string& buffer, std::string_view answer,
                                std::string_view if_failed, uint64_t ticket) {
  answers_.push_back(Answer{buffer.size(), answer.size(), if_failed, ticket});
  buffer.append(answer);
}

void ProvisionalAnswers::settle(std::string& buffer, uint64_t last_good) {
  if (!answers_.empty() && last_good < answers_.back().ticket) {
    std::string rewritten;
    rewritten.reserve(buffer.size());
    std::size_t copied = 0;
    for (const Answer& a : answers_) {
      if (a.ticket <= last_good) continue;
      rewritten.append(buffer, copied, a.offset - copied);
      rewritten.append(a.if_failed);
      copied = a.offset + a.length;
    }
    rewritten.append(buffer, copied, std::string::npos);
    buffer.swap(rewritten);
  }
  answers_.clear();
}

void MetricsSession::handle_line(std::string_view line, Output& out) {
  Request request = parse_request(line);
  switch (request.kind) {
    case RequestKind::kEmpty:
      return;
    case RequestKind::kInvalid:
      out.buffer().append(kWrongCommandAnswer);
      return;
    case RequestKind::kPut:
      pending_.push_back(PendingPut{request.key.size(), request.timestamp, request.value});
      keys_.append(request.key);
      provisional_.append(out.buffer(), kOkAnswer, kStorageFailureAnswer, ++next_ticket_);
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
  if (wal_ == nullptr) {
    storage_.put_many(batch_.data(), batch_.size());
    applied_ += batch_.size();
  } else if (!refused_) {
    uint64_t last = 0;
    const std::size_t logged = wal_->put_batch(batch_.data(), batch_.size(), &last);
    // One batch's tickets are consecutive.
    for (std::size_t i = 0; i < logged; ++i) logged_.push_back(last - logged + 1 + i);
    applied_ += logged;
    if (logged < batch_.size()) refused_ = true;
  }
  pending_.clear();
  batch_.clear();
  clear_and_trim(keys_, kMaxBatchKeyBytes);
}

void MetricsSession::before_send(std::string& buffer) {
  if (provisional_.empty()) return;
  provisional_.settle(buffer, settle(provisional_.last_ticket()));
}

uint64_t MetricsSession::settle(uint64_t ticket) {
  apply_pending();
  // The puts that succeeded are the first ones since the last settle: the
  // ones applied, and with a log, of those the ones whose records are as
  // durable as the policy asks (with kAlways, synced).
  uint64_t succeeded = applied_;
  if (!logged_.empty()) {
    const uint64_t durable = wal_->commit(logged_.back());
    succeeded = static_cast<uint64_t>(
        std::upper_bound(logged_.begin(), logged_.end(), durable) - logged_.begin());
  }
  const uint64_t last_good = settled_ + succeeded;
  settled_ = ticket;
  applied_ = 0;
  refused_ = false;
  // Between reads a session keeps at most a few KiB for its next batch.
  clear_and_trim(logged_, kKeepBatchBytes);
  clear_and_trim(pending_, kKeepBatchBytes);
  clear_and_trim(batch_, kKeepBatchBytes);
  clear_and_trim(keys_, kKeepBatchBytes);
  return last_good;
}

void MetricsSession::answer_get(std::string_view key, Output& out) {
  out.buffer().append("ok\n");
  Storage::SeriesCursor cursor;
  if (key != "*") {
    if (storage_.open_series(key, &cursor)) answer_series(key, &cursor, out);
  } else {
    // The keys stored when the request arrived; each is copied under the
    // lock on its own, so puts from other sessions interleave freely.
    const std::size_t keys = storage_.key_count();
    std::string name;
    for (std::size_t i = 0; i < keys && !out.failed(); ++i) {
      storage_.open_series(i, &name, &cursor);
      answer_series(name, &cursor, out);
    }
  }
  out.buffer().push_back('\n');
}

void MetricsSession::answer_series(std::string_view key, Storage::SeriesCursor* cursor,
                                   Output& out) {
  // A long key gets fewer samples a piece, so a piece's answer stays about
  // kPieceBytes (one line at least).
  const std::size_t piece = std::max<std::size_t>(1, kPieceBytes / (key.size() + kSampleLineBytes));
  while (!out.failed() && storage_.copy_piece(cursor, piece, &piece_)) {
    for (const Sample& s : piece_) append_sample_line(&out.buffer(), key, s);
    // Blocks while the client does not read: with one piece in hand.
    out.flush_if_large();
  }
}

}  // namespace metrics
