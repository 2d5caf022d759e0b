// The test runner: Catch2's own main, plus the closing line CI reads,
// "N passed, M failed", counted in test cases.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

namespace {

int g_passed = 0;
int g_failed = 0;

class CountingListener : public Catch::TestEventListenerBase {
 public:
  using TestEventListenerBase::TestEventListenerBase;
  void testCaseEnded(const Catch::TestCaseStats& stats) override {
    if (stats.totals.assertions.allOk()) {
      ++g_passed;
    } else {
      ++g_failed;
    }
  }
};

}  // namespace

CATCH_REGISTER_LISTENER(CountingListener)

int main(int argc, char* argv[]) {
  Catch::Session session;
  int rc = session.run(argc, argv);
  std::fflush(stdout);
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return rc;
}
