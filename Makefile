# metrics-server: `make` builds, `make run` serves on 127.0.0.1:8888,
# `make test` runs every test. Missing Debian packages are installed first.

CXX      ?= g++
BUILD    ?= build
CXXFLAGS ?= -O2 -g
SANFLAGS ?=
override CXXFLAGS += -std=c++17 -Wall -Wextra -Werror -pthread -MMD -MP -Iinclude $(SANFLAGS)
override LDFLAGS  += -pthread $(SANFLAGS)
PREFIX   ?= /usr/local
DESTDIR  ?=

LIB_SRCS  := $(wildcard src/*.cpp)
LIB_SRCS  := $(filter-out src/server_main.cpp,$(LIB_SRCS))
TEST_SRCS := $(wildcard tests/*_test.cpp) tests/main.cpp tests/test_util.cpp

LIB     := $(BUILD)/libmetrics.a
SERVER  := $(BUILD)/metrics-server
CLI     := $(BUILD)/metrics-cli
TESTS   := $(BUILD)/metrics-tests
BENCH   := $(BUILD)/metrics-bench
# The no-op responder is a benchmark baseline only: never installed.
NOOP    := $(BUILD)/noop-server
PROGRAMS := $(SERVER) $(CLI) $(BENCH)

obj = $(patsubst %.cpp,$(BUILD)/obj/%.o,$(1))

.PHONY: all run test asan tsan bench install clean deps
all: $(PROGRAMS)

# Debian packages the build needs; installed with apt-get when missing.
PACKAGES := libcli11-dev catch2
deps:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing$$missing"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BUILD)/obj/%.o: %.cpp | deps
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(LIB): $(call obj,$(LIB_SRCS))
	@rm -f $@
	ar rcs $@ $^

$(SERVER): $(call obj,src/server_main.cpp) $(LIB)
	$(CXX) $^ -o $@ $(LDFLAGS)

$(CLI): $(call obj,tools/metrics_cli.cpp) $(LIB)
	$(CXX) $^ -o $@ $(LDFLAGS)

$(TESTS): $(call obj,$(TEST_SRCS)) $(LIB)
	$(CXX) $^ -o $@ $(LDFLAGS)

$(BENCH): $(call obj,tools/metrics_bench.cpp) $(LIB)
	$(CXX) $^ -o $@ $(LDFLAGS)

$(NOOP): $(call obj,bench/noop_server.cpp) $(LIB)
	$(CXX) $^ -o $@ $(LDFLAGS)

run: $(SERVER)
	$(SERVER) 127.0.0.1 8888

# The test binary finds the programs it runs through these variables; its
# last line is "N passed, M failed" (test cases).
test: $(TESTS) $(PROGRAMS)
	METRICS_SERVER_BIN=$(SERVER) METRICS_CLI_BIN=$(CLI) $(TESTS) $(TEST_ARGS)

# The standard scenarios (docs/performance.md) against freshly started
# servers, printed as one table. Redis joins the table when redis-server is
# installed; `make bench` does not install it.
bench: $(BENCH) $(NOOP) $(SERVER)
	BUILD=$(BUILD) bench/run.sh

asan:
	$(MAKE) BUILD=build/asan SANFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" test

tsan:
	$(MAKE) BUILD=build/tsan SANFLAGS="-fsanitize=thread" test

install: $(PROGRAMS) $(LIB)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/metrics
	install -m 755 $(PROGRAMS) $(DESTDIR)$(PREFIX)/bin
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib
	install -m 644 include/metrics/*.hpp $(DESTDIR)$(PREFIX)/include/metrics

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
