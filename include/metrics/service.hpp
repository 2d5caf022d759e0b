// The metrics protocol served over a Storage: the LineHandler that
// metrics-server runs.
#ifndef METRICS_SERVICE_HPP_
#define METRICS_SERVICE_HPP_

#include <string_view>

#include "metrics/server.hpp"
#include "metrics/storage.hpp"

namespace metrics {

// Parses each line, applies it to the storage and appends the answer
// (PROTOCOL.md). Thread-safe: the only shared state is the Storage, which is.
// The storage must outlive the service.
class MetricsService : public LineHandler {
 public:
  explicit MetricsService(Storage& storage) : storage_(storage) {}

  void handle_line(std::string_view line, Output& out) override;

 private:
  // Appends the answer to `get key`: one key, or every key for "*". The
  // storage lock is held only while one key's samples are copied; formatting
  // and sending happen outside it.
  void answer_get(std::string_view key, Output& out);

  Storage& storage_;
};

}  // namespace metrics

#endif  // METRICS_SERVICE_HPP_
