// Log files built in memory for the tests of the record format and of the
// Wal: the puts they hold, and their bytes.
#ifndef METRICS_TESTS_LOG_RECORDS_HPP_
#define METRICS_TESTS_LOG_RECORDS_HPP_

#include <cstdint>
#include <string>
#include <vector>

#include "log_format.hpp"

namespace metrics::test {

struct Put {
  std::string key;
  int64_t timestamp;
  double value;
};

// A whole log file (header and records) holding `puts` in order.
inline std::string log_of(const std::vector<Put>& puts) {
  std::string file(kLogMagic);
  for (const Put& p : puts) append_log_record(&file, p.key, p.timestamp, p.value);
  return file;
}

}  // namespace metrics::test

#endif  // METRICS_TESTS_LOG_RECORDS_HPP_
