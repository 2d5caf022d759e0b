// The metrics protocol served over a Storage: the LineHandler that
// metrics-server runs.
#ifndef METRICS_SERVICE_HPP_
#define METRICS_SERVICE_HPP_

#include <string_view>

#include "metrics/server.hpp"
#include "metrics/storage.hpp"
#include "metrics/wal.hpp"

namespace metrics {

// Parses each line, applies it to the storage and appends the answer
// (PROTOCOL.md). Thread-safe: the only shared state is the Storage and the
// Wal, which are. Both must outlive the service.
//
// With a Wal, each put is logged in the order it is applied, and its "ok" is
// provisional until the session settles it: the record is then written (and,
// with FsyncPolicy::kAlways, synced), or the put is answered
// "error\nstorage failure\n\n". Without one, puts live in memory only.
class MetricsService : public LineHandler {
 public:
  explicit MetricsService(Storage& storage, Wal* wal = nullptr) : storage_(storage), wal_(wal) {}

  void handle_line(std::string_view line, Output& out) override;
  uint64_t settle(uint64_t ticket) override;

 private:
  // Appends the answer to `get key`: one key, or every key for "*". A key's
  // lock is held only while its samples are copied; formatting and sending
  // happen outside it.
  void answer_get(std::string_view key, Output& out);

  Storage& storage_;
  Wal* wal_;
};

}  // namespace metrics

#endif  // METRICS_SERVICE_HPP_
