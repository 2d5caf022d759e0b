// A process's figures from Linux's /proc, for the programs that watch a
// server from outside: metrics-bench, the soak tool and the tests.
// Thread-safe (no shared state).
#ifndef METRICS_PROCFS_HPP_
#define METRICS_PROCFS_HPP_

#include <string_view>

namespace metrics {

// One "Name:   value" field of /proc/PID/status as a number (kB for the
// memory fields, e.g. "VmRSS"; a count for "Threads"), or -1 if the process
// or the field cannot be read.
long proc_status_field(long pid, std::string_view name);

// How many threads of process `pid` are named `name` (their
// /proc/PID/task/TID/comm), or -1 if the process cannot be read.
long proc_threads_named(long pid, std::string_view name);

// User plus system CPU time of process `pid` (all its threads), in seconds,
// from /proc/PID/stat; -1 if it cannot be read.
double proc_cpu_seconds(long pid);

}  // namespace metrics

#endif  // METRICS_PROCFS_HPP_
