// metrics-server [HOST] [PORT] [options]: serves the metrics protocol over
// one in-memory Storage until SIGINT or SIGTERM; with --data-file, every put
// is also logged to a file that is replayed at the next start (wal.hpp).
#include <signal.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <string>

#include "metrics/server.hpp"
#include "metrics/service.hpp"
#include "metrics/storage.hpp"
#include "metrics/version.hpp"
#include "metrics/wal.hpp"

namespace {

// Descriptors the process needs besides its sessions (stdio, the listener,
// the wake pipe, slack).
constexpr rlim_t kReservedDescriptors = 16;

// Each session thread's stack: the 16 KiB read buffer plus a few frames.
constexpr std::size_t kSessionStackBytes = 256 * 1024;

// ThreadSanitizer's pthread_create fails with EINVAL for a thread started
// without attributes (as std::thread starts them) once the process-wide
// default stack size has been changed, so a TSan build keeps the default.
#if defined(__SANITIZE_THREAD__)
constexpr bool kSmallSessionStacks = false;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool kSmallSessionStacks = false;
#else
constexpr bool kSmallSessionStacks = true;
#endif
#else
constexpr bool kSmallSessionStacks = true;
#endif

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
      ->capture_default_str();
  app.add_option("port", options.port, "TCP port; 0 picks a free one")->capture_default_str();
  app.add_option("--max-line-bytes", options.max_line_bytes,
                 "Longest request line accepted; a longer one is answered 'wrong command'")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-connections", options.max_connections,
                 "Connections served at once; more are answered 'too many connections'")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--idle-timeout", options.idle_timeout_seconds,
                 "Close a session that completes no request for this many seconds; 0 = never")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_flag("-q,--quiet", options.quiet,
               "Log nothing but the 'listening on' line and fatal errors");
  app.add_option("--data-file", wal_options.path,
                 "Log every put to this file and replay it at start; without it, metrics live "
                 "in memory only");
  app.add_option("--fsync", fsync_policy,
                 "When the log is synced to disk: always (before each ok), everysec, or no")
      ->capture_default_str()
      ->check(CLI::IsMember({"always", "everysec", "no"}));
  app.add_flag("--repair", wal_options.repair,
               "Start even if the data file is damaged in the middle: drop the damaged bytes, "
               "keep every valid record, and rewrite the file");
  app.add_option("--compact-min-bytes", wal_options.compact_min_bytes,
                 "Rewrite the log compactly once it is this large and holds more than twice "
                 "the live samples")
      ->capture_default_str();
  app.set_version_flag("--version", std::string("metrics-server ") + metrics::kVersion);
  CLI11_PARSE(app, argc, argv);

  // Before any thread starts (the log's threads included): SIGINT and SIGTERM
  // are then taken by run_until_stop_signal's thread alone.
  metrics::block_stop_signals();
  // A file-size limit (RLIMIT_FSIZE) must fail the write with EFBIG, which
  // the log handles like a full disk, instead of killing the server.
  ::signal(SIGXFSZ, SIG_IGN);

  try {
    if (kSmallSessionStacks) metrics::set_default_thread_stack_size(kSessionStackBytes);
    check_descriptor_limit(options);
    metrics::Storage storage;
    std::unique_ptr<metrics::Wal> wal;
    if (!wal_options.path.empty()) {
      // Replayed before listening: no client sees a half-restored store.
      metrics::parse_fsync_policy(fsync_policy, &wal_options.fsync);
      wal_options.quiet = options.quiet;
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
