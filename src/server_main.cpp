// metrics-server [HOST] [PORT] [options]: serves the metrics protocol over
// one in-memory Storage until SIGINT or SIGTERM; with --data-file, every put
// is also logged to a file that is replayed at the next start (wal.hpp).
//
// Exit status: 0 after a stop signal, --help or --version; 1 a failure to
// start (bind, a damaged data file, ...); 2 a usage error (an unknown option
// or a value out of its range, reported in one line on stderr).
#include <signal.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>

#include "log_format.hpp"
#include "metrics/protocol.hpp"
#include "server.hpp"
#include "service.hpp"
#include "storage.hpp"
#include "metrics/version.hpp"
#include "wal.hpp"

namespace {

// Descriptors the process needs besides its sessions (stdio, the listener,
// the wake pipe, slack).
constexpr rlim_t kReservedDescriptors = 16;

constexpr int kExitUsage = 2;

// The ranges of the numeric options. Each bound keeps the value meaningful
// and every computation on it in range; they are spelled out in --help.
constexpr uint64_t kMaxPort = 65535;
// A request line of at most this many bytes cannot carry a key longer than
// the data file can replay, so no put the log cannot read back is answered ok.
constexpr uint64_t kMaxLineBytesLimit = metrics::kMaxLogKeyBytes;
// Each connection is a thread and a descriptor; a million is past what any
// Linux default (kernel.threads-max, fs.nr_open) allows anyway.
constexpr uint64_t kMaxConnectionsLimit = 1000000;
// About 11.6 days. Shorter than a millisecond would be a zero timeval, which
// SO_RCVTIMEO reads as no timeout at all.
constexpr double kMinIdleSeconds = 0.001;
constexpr double kMaxIdleSeconds = 1000000;
// 1 TiB: larger only postpones compaction past any file this server writes.
constexpr uint64_t kMaxCompactMinBytes = uint64_t{1} << 40;

// A whole number from `min` to `max`, in decimal digits only. CLI11's own
// conversion (strtoull, base 0) would take "-5" for 2^64 - 5 and "010" for
// 8, so the text is checked here and rewritten in canonical decimal before
// CLI11 converts it. Use with Option::transform, which keeps the rewrite.
CLI::Validator whole_number(uint64_t min, uint64_t max) {
  return CLI::Validator(
      [min, max](std::string& text) -> std::string {
        const std::string range = std::to_string(min) + " to " + std::to_string(max);
        uint64_t value = 0;
        bool ok = !text.empty();
        for (char c : text) {
          if (c < '0' || c > '9') {
            ok = false;
            break;
          }
          const uint64_t digit = static_cast<uint64_t>(c - '0');
          if (digit > max || value > (max - digit) / 10) {  // value * 10 + digit > max
            return "'" + text + "' is out of range: " + range;
          }
          value = value * 10 + digit;
        }
        if (!ok) return "'" + text + "' is not a whole number from " + range;
        if (value < min) return "'" + text + "' is out of range: " + range;
        text = std::to_string(value);
        return {};
      },
      "");
}

// The idle timeout: 0 (never) or a decimal number of seconds from
// kMinIdleSeconds to kMaxIdleSeconds. Not CLI::NonNegativeNumber: that takes
// "inf" and "1e10" (which overflows the session's clock arithmetic) and its
// message spells out DBL_MAX in 300 digits.
CLI::Validator idle_seconds() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        double seconds = 0;
        if (!metrics::parse_value(text, &seconds) || !std::isfinite(seconds) ||
            (seconds != 0 && !(seconds >= kMinIdleSeconds && seconds <= kMaxIdleSeconds))) {
          return "'" + text + "' is not 0 (never) or a number of seconds from 0.001 to 1000000";
        }
        char canonical[64];
        std::snprintf(canonical, sizeof canonical, "%.17g", seconds == 0 ? 0.0 : seconds);
        text = canonical;
        return {};
      },
      "");
}

// Text that must not be empty (an empty --data-file would silently mean
// "memory only", an empty host cannot be listened on).
CLI::Validator non_empty() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        return text.empty() ? std::string("must not be empty") : std::string();
      },
      "");
}

void log_line(const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); }

// Raises the soft descriptor limit to the hard one and says how many
// connections that allows.
void check_descriptor_limit(const metrics::ServerOptions& options) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  rlim_t usable = limit.rlim_cur > kReservedDescriptors ? limit.rlim_cur - kReservedDescriptors : 0;
  if (options.quiet) return;
  std::string line = "connection limit " + std::to_string(options.max_connections) +
                     "; descriptor limit (ulimit -n) " + std::to_string(limit.rlim_cur);
  if (usable < options.max_connections) {
    line += ": only about " + std::to_string(usable) +
            " connections fit; beyond that accept backs off until descriptors free up";
  }
  log_line(line);
}

}  // namespace

int main(int argc, char** argv) {
  metrics::ServerOptions options;
  metrics::WalOptions wal_options;
  std::string fsync_policy = "everysec";
  CLI::App app{"metrics-server: stores metrics sent with put and answers get, over TCP."};
  app.add_option("host", options.host, "Address to listen on: a name, IPv4 or IPv6 literal")
      ->capture_default_str()
      ->check(non_empty());
  app.add_option("port", options.port, "TCP port, 0 to 65535; 0 picks a free one")
      ->capture_default_str()
      ->transform(whole_number(0, kMaxPort));
  app.add_option("--max-line-bytes", options.max_line_bytes,
                 "Longest request line accepted, 1 to 1073741824 (1 GiB, the longest key the "
                 "data file can hold); a longer one is answered 'wrong command'")
      ->capture_default_str()
      ->transform(whole_number(1, kMaxLineBytesLimit));
  app.add_option("--max-connections", options.max_connections,
                 "Connections served at once, 1 to 1000000; more are answered 'too many "
                 "connections'")
      ->capture_default_str()
      ->transform(whole_number(1, kMaxConnectionsLimit));
  app.add_option("--idle-timeout", options.idle_timeout_seconds,
                 "Close a session that completes no request for this many seconds, 0.001 to "
                 "1000000; 0 = never")
      ->capture_default_str()
      ->transform(idle_seconds());
  app.add_flag("-q,--quiet", options.quiet,
               "Log nothing but the 'listening on' line and fatal errors");
  app.add_option("--data-file", wal_options.path,
                 "Log every put to this file and replay it at start; without it, metrics live "
                 "in memory only")
      ->check(non_empty());
  app.add_option("--fsync", fsync_policy,
                 "When the log is synced to disk: always (before each ok), everysec, or no")
      ->capture_default_str()
      ->check(CLI::IsMember({"always", "everysec", "no"}));
  app.add_flag("--repair", wal_options.repair,
               "Start even if the data file is damaged in the middle: drop the damaged bytes, "
               "keep every valid record, and rewrite the file");
  app.add_option("--compact-min-bytes", wal_options.compact_min_bytes,
                 "Rewrite the log compactly once it is this large, 0 to 1099511627776 (1 TiB), "
                 "and holds more than twice the live samples")
      ->capture_default_str()
      ->transform(whole_number(0, kMaxCompactMinBytes));
  app.set_version_flag("--version", std::string("metrics-server ") + metrics::kVersion);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version
  } catch (const CLI::ParseError& e) {
    // One line and exit status 2, like metrics-cli, instead of CLI11's
    // per-error codes (104, 105, 109, ...) and its "Run with --help" line.
    std::fprintf(stderr, "metrics-server: %s (see --help)\n", e.what());
    return kExitUsage;
  }

  // Before any thread starts (the log's threads included): SIGINT and SIGTERM
  // are then taken by run_until_stop_signal's thread alone.
  metrics::block_stop_signals();
  // A file-size limit (RLIMIT_FSIZE) must fail the write with EFBIG, which
  // the log handles like a full disk, instead of killing the server.
  ::signal(SIGXFSZ, SIG_IGN);
  // SIGHUP (a closed terminal, or an operator's habit of "reload") and the
  // user signals mean nothing to this server: ignored, as Redis ignores
  // SIGHUP, rather than killing it with its default action.
  ::signal(SIGHUP, SIG_IGN);
  ::signal(SIGUSR1, SIG_IGN);
  ::signal(SIGUSR2, SIG_IGN);

  try {
    metrics::use_small_session_stacks();
    check_descriptor_limit(options);
    metrics::Storage storage;
    std::unique_ptr<metrics::Wal> wal;
    if (!wal_options.path.empty()) {
      // Replayed before listening: no client sees a half-restored store.
      metrics::parse_fsync_policy(fsync_policy, &wal_options.fsync);
      wal_options.quiet = options.quiet;
      // No key can be longer than a request line: what a resync after damage
      // looks for.
      wal_options.max_key_bytes = options.max_line_bytes;
      wal_options.log = [](std::string_view line) { log_line(std::string(line)); };
      wal = std::make_unique<metrics::Wal>(wal_options, storage);
    }
    metrics::MetricsService service(storage, wal.get());
    metrics::Server server(options, service);
    server.listen();

    metrics::run_until_stop_signal(server);
  } catch (const std::exception& e) {
    log_line(std::string("metrics-server: ") + e.what());
    return 1;
  }
  return 0;
}
