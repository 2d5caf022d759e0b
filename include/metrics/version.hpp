#ifndef METRICS_VERSION_HPP_
#define METRICS_VERSION_HPP_

namespace metrics {

// The version of the project: the programs print it for --version.
inline constexpr const char* kVersion = "0.1.0";

}  // namespace metrics

#endif  // METRICS_VERSION_HPP_
