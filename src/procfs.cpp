#include "procfs.hpp"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <system_error>

namespace metrics {

long proc_status_field(long pid, std::string_view name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string prefix(name);
  prefix.push_back(':');
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, prefix.size(), prefix) == 0) {
      try {
        return std::stol(line.substr(prefix.size()));
      } catch (const std::exception&) {
        return -1;
      }
    }
  }
  return -1;
}

long proc_threads_named(long pid, std::string_view name) {
  std::error_code error;
  long count = 0;
  for (std::filesystem::directory_iterator task("/proc/" + std::to_string(pid) + "/task", error);
       !error && task != std::filesystem::directory_iterator(); task.increment(error)) {
    // A thread that ends meanwhile has no comm left: it is not counted.
    std::ifstream in(task->path() / "comm");
    std::string comm;
    if (std::getline(in, comm) && comm == name) ++count;
  }
  return error ? -1 : count;
}

double proc_cpu_seconds(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name, in parentheses, may hold spaces: fields are counted
  // after its ')'. State is field 3, utime field 14, stime field 15 (ticks).
  std::size_t paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 > text.size()) return -1;
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  unsigned long long utime = 0;
  unsigned long long stime = 0;
  int i = 3;
  for (; i <= 15 && fields >> field; ++i) {
    try {
      if (i == 14) utime = std::stoull(field);
      if (i == 15) stime = std::stoull(field);
    } catch (const std::exception&) {
      return -1;
    }
  }
  if (i <= 15) return -1;
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace metrics
