// The metrics protocol served over a Storage: the Service that metrics-server
// runs.
#ifndef METRICS_SERVICE_HPP_
#define METRICS_SERVICE_HPP_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "line_service.hpp"
#include "storage.hpp"
#include "wal.hpp"

namespace metrics {

// The answers a session has appended to its Output's buffer that are not
// final yet, e.g. a put's "ok" that waits for its log record to be written:
// where each one is in the buffer and the ticket it waits on. Offsets count
// from the start of the buffer, which the session loop empties after each
// send, so settle() must be called before every send
// (LineHandler::before_send). Not thread-safe: belongs to one session.
class ProvisionalAnswers {
 public:
  // Appends `answer` to `buffer`; if `ticket` fails (settle), it is replaced
  // by `if_failed`, which must outlive this object (a literal). The tickets
  // appended between two settles never decrease.
  void append(std::string& buffer, std::string_view answer, std::string_view if_failed,
              uint64_t ticket);

  bool empty() const { return answers_.empty(); }

  // The ticket of the answer appended last. Only when !empty().
  uint64_t last_ticket() const { return answers_.back().ticket; }

  // Makes the answers in `buffer` final: each whose ticket is above
  // `last_good` is replaced, in its place, by its `if_failed`. Then forgets
  // them all.
  void settle(std::string& buffer, uint64_t last_good);

 private:
  struct Answer {
    std::size_t offset;
    std::size_t length;
    std::string_view if_failed;
    uint64_t ticket;
  };

  std::vector<Answer> answers_;
};

// One session of the metrics protocol: parses each line, applies it to the
// storage and appends the answer (docs/protocol.md).
//
// The session gathers the puts of a batch (the lines of one read) and
// applies them together: when a get comes (so it sees them), when 256 are
// waiting, or when the session settles its answers before sending them.
// Each put's "ok" is provisional until then. Together, the storage looks the
// keys up a few puts ahead (Storage::put_many), and with a Wal the log's lock
// is taken once for all of them (Wal::put_batch). Without a Wal, puts live in
// memory only and always succeed; with one, a put the log refused, or whose
// record could not be synced (FsyncPolicy::kAlways), is answered
// "error\nstorage failure\n\n" instead.
class MetricsSession : public LineHandler {
 public:
  MetricsSession(Storage& storage, Wal* wal) : storage_(storage), wal_(wal) {}

  void handle_line(std::string_view line, Output& out) override;

  // Settles the buffer's provisional answers (the puts' "ok"), one settle
  // for all of them, rewriting the failed ones as
  // "error\nstorage failure\n\n".
  void before_send(std::string& buffer) override;

 private:
  static constexpr std::size_t kMaxBatch = 256;

  struct PendingPut {
    std::size_t key_size;  // the key is the next key_size bytes of keys_
    int64_t timestamp;
    double value;
  };

  // Applies the gathered puts, in order.
  void apply_pending();

  // Applies the gathered puts and waits until the work behind every put with
  // a session ticket up to `ticket` is done; returns the highest ticket that
  // succeeded (the puts after it failed).
  uint64_t settle(uint64_t ticket);

  // Appends the answer to `get key`: one key, or every key for "*", a piece
  // of a key's samples at a time (Storage::copy_piece, whose consistency the
  // answer has). A key's lock is held only while a piece is copied;
  // formatting and sending happen outside it, and the answer is sent as it
  // grows (Output::flush_if_large), so a session whose client does not read
  // holds one piece and about 100 KiB of answer, whatever the key's size.
  void answer_get(std::string_view key, Output& out);

  // Appends the answer lines of the copy at `cursor`, of `key`'s samples.
  void answer_series(std::string_view key, Storage::SeriesCursor* cursor, Output& out);

  Storage& storage_;
  Wal* wal_;

  // The puts gathered and not yet applied, and their keys back to back.
  std::vector<PendingPut> pending_;
  std::string keys_;
  std::vector<Storage::KeyedSample> batch_;  // reused by apply_pending
  // The samples of the piece being answered: a few KiB at most (reused by
  // answer_series).
  std::vector<Sample> piece_;

  // The answers in the Output's buffer that wait for their puts.
  ProvisionalAnswers provisional_;
  // A put's provisional answer carries a session ticket: 1, 2, 3, ...
  uint64_t next_ticket_ = 0;  // the last one handed out
  uint64_t settled_ = 0;      // the last one settled
  // Puts applied since the last settle: those with session tickets
  // settled_ + 1 .. settled_ + applied_. Once the log refuses a put, the
  // rest until the next settle are refused too, so the puts that succeed
  // are always the first ones.
  std::size_t applied_ = 0;
  bool refused_ = false;
  // With a Wal: the log's tickets of those puts, in order.
  std::vector<uint64_t> logged_;
};

// Serves the metrics protocol over one Storage (and Wal, if any), which must
// outlive it. Thread-safe.
class MetricsService : public Service {
 public:
  explicit MetricsService(Storage& storage, Wal* wal = nullptr) : storage_(storage), wal_(wal) {}

  std::unique_ptr<LineHandler> open_session() override {
    return std::make_unique<MetricsSession>(storage_, wal_);
  }

 private:
  Storage& storage_;
  Wal* wal_;
};

}  // namespace metrics

#endif  // METRICS_SERVICE_HPP_
