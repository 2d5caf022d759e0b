// metrics-cli: put and get metrics from a shell script, over metrics::Client.
//
//   metrics-cli put palm.cpu 10.5            # timestamp: now
//   metrics-cli put palm.cpu 10.5 1501864247
//   metrics-cli get '*'                      # KEY VALUE TIMESTAMP lines
//
// Exit status: 0 success; 1 the server answered an error, the answer was
// malformed, or the connection failed or timed out; 2 a usage error (nothing
// is sent then). Failures print one line on stderr, with control bytes and
// backslashes in it escaped (see one_line()).
//
// Each connect, send and receive waits at most 10 s unless --timeout says
// otherwise (--timeout 0: no limit): a tool run from cron must not hang on a
// port where something else listens and never answers.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include "metrics/client.hpp"
#include "metrics/protocol.hpp"
#include "metrics/version.hpp"

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// The wait for each connect, send and receive when --timeout is not given.
constexpr double kDefaultTimeoutSeconds = 10;

struct ConnectionOptions {
  std::string host = "127.0.0.1";
  int port = 8888;
  double timeout_seconds = kDefaultTimeoutSeconds;  // 0: no limit

  // The Client's timeout: none for 0.
  std::optional<double> timeout() const {
    if (timeout_seconds > 0) return timeout_seconds;
    return std::nullopt;
  }
};

struct PutOptions {
  std::string key;
  std::string value;
  std::string timestamp;
  // Whether TIMESTAMP was given: only leaving it out means now; an empty
  // argument (an unset shell variable, say) is a usage error.
  bool timestamp_given = false;
};

struct GetOptions {
  std::string key;
};

// A usage error found after parsing: reported like CLI11's own.
struct UsageError {
  std::string message;
};

// `text` made safe to print as (part of) one line: a backslash becomes "\\",
// a line feed "\n", a carriage return "\r", a tab "\t", and any other
// control byte (below 0x20, or 0x7f) "\xHH". Every other byte, UTF-8
// included, is kept. Messages carry bytes from the server (an error reason,
// a malformed answer) and from the command line (a key), and a script
// reading stderr relies on one line per failure.
std::string one_line(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (byte < 0x20 || byte == 0x7f) {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

// Prints "metrics-cli: MESSAGE" as one line on stderr.
void print_error(std::string_view message) {
  std::fprintf(stderr, "metrics-cli: %s\n", one_line(message).c_str());
}

void setup_connection(CLI::App& app, ConnectionOptions& options) {
  if (const char* host = std::getenv("METRICS_HOST"); host != nullptr && *host != '\0') {
    options.host = host;
  }
  app.add_option("--host", options.host, "Server host: name, IPv4 or IPv6 literal [env METRICS_HOST]")
      ->capture_default_str();
  app.add_option("--port", options.port, "Server TCP port [env METRICS_PORT]")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  // Not CLI::NonNegativeNumber: its message spells out DBL_MAX in 300 digits.
  const CLI::Validator seconds_or_zero(
      [](std::string& text) -> std::string {
        double seconds = 0;
        if (!metrics::parse_value(text, &seconds) || !(seconds >= 0)) {
          return "'" + text + "' is not a number of seconds (0 or more)";
        }
        return {};
      },
      "SECONDS");
  app.add_option("--timeout", options.timeout_seconds,
                 "Seconds (fractions allowed) to wait for each connect, send and receive; "
                 "0 for no limit")
      ->default_str("10")
      ->check(seconds_or_zero);
}

// METRICS_PORT applies only when --port is not given, so a bad value in the
// environment does not stand in the way of an explicit --port.
void read_port_from_environment(ConnectionOptions& options) {
  const char* text = std::getenv("METRICS_PORT");
  if (text == nullptr || *text == '\0') return;
  int64_t port = 0;
  if (!metrics::parse_timestamp(text, &port) || port < 1 || port > 65535) {
    throw UsageError{"METRICS_PORT '" + std::string(text) + "' is not a port number (1-65535)"};
  }
  options.port = static_cast<int>(port);
}

CLI::App* setup_put(CLI::App& app, PutOptions& options) {
  CLI::App* put = app.add_subcommand("put", "Store VALUE for KEY at TIMESTAMP (default: now)");
  put->add_option("key", options.key, "Metric name, e.g. palm.cpu")->required();
  put->add_option("value", options.value, "A finite decimal number, e.g. 10.5 or -2e3")->required();
  put->add_option("timestamp", options.timestamp, "Unix time in whole seconds (default: now)");
  return put;
}

CLI::App* setup_get(CLI::App& app, GetOptions& options) {
  CLI::App* get = app.add_subcommand("get", "Print KEY's samples, or every key's for '*'");
  get->add_option("key", options.key, "Metric name, or '*' for all")->required();
  return get;
}

int run_put(const ConnectionOptions& connection, const PutOptions& options) {
  if (std::string why = metrics::check_put_key(options.key); !why.empty()) {
    throw UsageError{"invalid key '" + options.key + "': " + why};
  }
  double value = 0;
  if (!metrics::parse_value(options.value, &value)) {
    throw UsageError{"invalid value '" + options.value + "': not a finite decimal number"};
  }
  std::optional<int64_t> timestamp;
  if (options.timestamp_given) {
    int64_t ts = 0;
    if (!metrics::parse_timestamp(options.timestamp, &ts)) {
      throw UsageError{"invalid timestamp '" + options.timestamp +
                       "': not a whole number of seconds that fits in 64 bits"};
    }
    timestamp = ts;
  }
  metrics::Client client(connection.host, static_cast<uint16_t>(connection.port),
                         connection.timeout());
  client.put(options.key, value, timestamp);
  return 0;
}

int run_get(const ConnectionOptions& connection, const GetOptions& options) {
  if (std::string why = metrics::check_get_key(options.key); !why.empty()) {
    throw UsageError{"invalid key '" + options.key + "': " + why};
  }
  metrics::Client client(connection.host, static_cast<uint16_t>(connection.port),
                         connection.timeout());
  std::string text;
  for (const metrics::Series& series : client.get_series(options.key)) {
    for (const metrics::Sample& sample : series.samples) {
      metrics::append_sample_line(&text, series.key, sample);
    }
  }
  // Printed only once the whole answer is in: a failure prints nothing here.
  std::fwrite(text.data(), 1, text.size(), stdout);
  if (std::fflush(stdout) != 0) {
    print_error("cannot write the output");
    return kExitFailure;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"metrics-cli: put and get metrics on a metrics-server."};
  app.set_version_flag("--version", std::string("metrics-cli ") + metrics::kVersion);
  // Options may follow the subcommand: `metrics-cli get '*' --port 9000`.
  app.fallthrough();
  app.require_subcommand(1);

  ConnectionOptions connection;
  PutOptions put_options;
  GetOptions get_options;
  try {
    setup_connection(app, connection);
    CLI::App* put = setup_put(app, put_options);
    CLI::App* get = setup_get(app, get_options);
    try {
      app.parse(argc, argv);
    } catch (const CLI::Success& e) {
      return app.exit(e);  // --help, --version
    } catch (const CLI::ParseError& e) {
      print_error(std::string(e.what()) + " (see --help)");
      return kExitUsage;
    }
    if (app.get_option("--port")->count() == 0) read_port_from_environment(connection);
    if (put->parsed()) {
      put_options.timestamp_given = put->get_option("timestamp")->count() > 0;
      return run_put(connection, put_options);
    }
    if (get->parsed()) return run_get(connection, get_options);
    return kExitUsage;  // require_subcommand(1) makes this unreachable
  } catch (const UsageError& e) {
    print_error(e.message);
    return kExitUsage;
  } catch (const metrics::ClientError& e) {
    print_error(e.what());
    return kExitFailure;
  }
}
