// The value types shared by storage, the protocol code and the client.
#ifndef METRICS_SAMPLE_HPP_
#define METRICS_SAMPLE_HPP_

#include <cstdint>
#include <string>
#include <vector>

namespace metrics {

// One measurement: a value at a Unix time in whole seconds. 16 bytes, so a
// series of them is a compact array.
struct Sample {
  int64_t timestamp;
  double value;

  friend bool operator==(const Sample& a, const Sample& b) {
    return a.timestamp == b.timestamp && a.value == b.value;
  }
  friend bool operator!=(const Sample& a, const Sample& b) { return !(a == b); }
};

// A key and its samples, ordered by ascending timestamp.
struct Series {
  std::string key;
  std::vector<Sample> samples;
};

}  // namespace metrics

#endif  // METRICS_SAMPLE_HPP_
