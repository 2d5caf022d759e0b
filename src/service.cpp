#include "metrics/service.hpp"

#include <string>
#include <vector>

#include "metrics/protocol.hpp"

namespace metrics {

void MetricsService::handle_line(std::string_view line, Output& out) {
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
      uint64_t ticket;
      if (storage_.put(request.key, request.timestamp, request.value, *wal_, &ticket)) {
        out.append_provisional(kOkAnswer, kStorageFailureAnswer, ticket);
      } else {
        // The log is failing: the put is refused without touching memory.
        out.buffer().append(kStorageFailureAnswer);
      }
      return;
    case RequestKind::kGet:
      answer_get(request.key, out);
      return;
  }
}

uint64_t MetricsService::settle(uint64_t ticket) {
  return wal_ == nullptr ? ticket : wal_->commit(ticket);
}

void MetricsService::answer_get(std::string_view key, Output& out) {
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
