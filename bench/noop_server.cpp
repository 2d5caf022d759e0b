// noop-server [HOST] [PORT]: the limit of metrics-server's design. It runs the
// server's own socket loop (metrics::Server: one thread per connection,
// buffered reads, one write per batch of answers) with a handler that answers
// "ok\n\n" to every line without parsing or storing anything. Whatever
// metrics-server does beyond this is the cost of its real work. A benchmark
// tool only: `make bench` builds it, `make install` does not install it.

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "line_service.hpp"
#include "metrics/protocol.hpp"
#include "server.hpp"

namespace {

// Answers every line, blank ones included, with "ok\n\n".
class NoopHandler : public metrics::LineHandler {
 public:
  void handle_line(std::string_view /*line*/, metrics::Output& out) override {
    out.buffer().append(metrics::kOkAnswer);
  }
};

class NoopService : public metrics::Service {
 public:
  std::unique_ptr<metrics::LineHandler> open_session() override {
    return std::make_unique<NoopHandler>();
  }
};

}  // namespace

int main(int argc, char** argv) {
  metrics::ServerOptions options;
  options.quiet = true;
  CLI::App app{"noop-server: metrics-server's socket loop answering ok to every line."};
  app.add_option("host", options.host, "Address to listen on")->capture_default_str();
  app.add_option("port", options.port, "TCP port; 0 picks a free one")->capture_default_str();
  // Accepted so that scripts start both servers alike; the log is always quiet.
  app.add_flag("-q,--quiet", options.quiet, "Log only the 'listening on' line (the default)");
  CLI11_PARSE(app, argc, argv);

  metrics::block_stop_signals();

  try {
    // The same session stacks as metrics-server, so that the two differ only
    // in their handler.
    metrics::use_small_session_stacks();
    NoopService service;
    metrics::Server server(options, service);
    server.listen();
    metrics::run_until_stop_signal(server);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "noop-server: %s\n", e.what());
    return 1;
  }
  return 0;
}
