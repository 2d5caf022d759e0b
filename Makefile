# metrics-server: `make` builds, `make run` serves on 127.0.0.1:8888,
# `make test` runs every test. Missing Debian packages are installed first.

CXX      ?= g++
BUILD    ?= build
CXXFLAGS ?= -O2 -g
SANFLAGS ?=
override CXXFLAGS += -std=c++17 -Wall -Wextra -Werror -pthread -MMD -MP -Iinclude -Isrc $(SANFLAGS)
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

.PHONY: all run test asan tsan bench install clean deps soak fuzz fuzz-deps readme-check
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

# Every program first, in parallel, so that `build/metrics-cli` is there for
# the README's next step in another terminal.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
run:
	@$(MAKE) --no-print-directory -j$(JOBS) all
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

# UBSan's vptr check is left out: on each type-cache miss it opens a pipe to
# probe memory, so in a server out of descriptors (a state the hardening
# tests provoke and the server must survive) it reports a false
# "invalid vptr" and aborts.
asan:
	$(MAKE) BUILD=build/asan SANFLAGS="-fsanitize=address,undefined -fno-sanitize=vptr -fno-omit-frame-pointer -fno-sanitize-recover=all" test

tsan:
	$(MAKE) BUILD=build/tsan SANFLAGS="-fsanitize=thread" test

# The soak (tests/soak/, docs/operations.md): N connections of random
# traffic against a metrics-server it starts itself; e.g.
# `make soak SOAK_ARGS="-n 1000 -t 5"` (the default is 10,000 for 60 s).
SOAK      := $(BUILD)/metrics-soak
SOAK_ARGS ?=
$(SOAK): $(call obj,tests/soak/soak.cpp) $(LIB)
	$(CXX) $^ -o $@ $(LDFLAGS)

soak: $(SOAK) $(SERVER)
	$(SOAK) --server $(SERVER) $(SOAK_ARGS)

# libFuzzer targets (tests/fuzz/), built with clang; `make fuzz` runs each for
# FUZZ_SECONDS from its seed corpus. A crash stops the run and leaves the
# input in $(FUZZ_BUILD).
FUZZ_CXX      ?= clang++
FUZZ_SECONDS  ?= 60
FUZZ_BUILD    ?= build/fuzz
FUZZ_TARGETS  := parse_request line_splitter answer
FUZZ_PACKAGES := clang-14 libclang-rt-14-dev
FUZZ_FLAGS    := -std=c++17 -O1 -g -Wall -Wextra -Werror -Iinclude -Isrc \
                 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

$(FUZZ_BUILD)/%_fuzz: tests/fuzz/%_fuzz.cpp src/protocol.cpp include/metrics/protocol.hpp \
                      include/metrics/sample.hpp src/line_splitter.hpp src/buffer.hpp | fuzz-deps
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_FLAGS) $< src/protocol.cpp -o $@

fuzz-deps:
	@$(MAKE) --no-print-directory deps PACKAGES="$(FUZZ_PACKAGES)"

fuzz: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%_fuzz)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  $(FUZZ_BUILD)/$${t}_fuzz -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/$$t- $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t; \
	done

# The README's quick start walked on a fresh clone of the committed tree
# (tests/readme_check.sh): `make run`, then every `$ command` it shows, with
# the output it shows. Needs 127.0.0.1:8888 free; installs nc for the session.
readme-check:
	@$(MAKE) --no-print-directory deps PACKAGES=netcat-openbsd
	tests/readme_check.sh

install: $(PROGRAMS) $(LIB)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/metrics
	install -m 755 $(PROGRAMS) $(DESTDIR)$(PREFIX)/bin
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib
	install -m 644 include/metrics/*.hpp $(DESTDIR)$(PREFIX)/include/metrics

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
