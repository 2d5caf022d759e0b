#!/usr/bin/env bash
# The standard scenarios of docs/performance.md, each against a freshly
# started server on loopback: the no-op responder (the limit of the design),
# Redis (when redis-server is installed) and metrics-server. Prints one
# Markdown table, and keeps every raw CSV row in $BUILD/bench-results.csv.
#
#   BUILD=build bench/run.sh        (what `make bench` runs)
#   BENCH_REPEAT=5 BUILD=build bench/run.sh
#
# The machine is shared and noisy, so scenarios 1-3 run BENCH_REPEAT times
# (default 3), the servers taking turns within each round, and the table
# keeps each server's best run: ratios then compare like with like.
#
# Every server is started here and stopped here by its PID. Exit status 1
# if any run got a wrong or missing answer.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
BENCH=$BUILD/metrics-bench
NOOP=$BUILD/noop-server
SERVER=$BUILD/metrics-server
RESULTS=$BUILD/bench-results.csv
WORK=$(mktemp -d)
SERVER_PID=""
failures=0

cleanup() {
  if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

have_redis() { command -v redis-server >/dev/null && command -v redis-cli >/dev/null; }

# start_server KIND: starts noop, redis or metrics on 127.0.0.1 and sets
# SERVER_PID and SERVER_PORT.
start_server() {
  local kind=$1
  if [[ $kind == redis ]]; then
    # Redis cannot pick its own port (0 disables TCP): try random free ones.
    local attempt
    for attempt in 1 2 3 4 5 6 7 8; do
      SERVER_PORT=$((20000 + RANDOM % 20000))
      redis-server --bind 127.0.0.1 --port "$SERVER_PORT" --save '' --appendonly no \
        --daemonize no --logfile "$WORK/redis.log" --dir "$WORK" &
      SERVER_PID=$!
      local i
      for i in $(seq 100); do
        if redis-cli -p "$SERVER_PORT" ping 2>/dev/null | grep -q PONG; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
      done
      kill "$SERVER_PID" 2>/dev/null || true
      wait "$SERVER_PID" 2>/dev/null || true
      SERVER_PID=""
    done
    echo "bench: cannot start redis-server" >&2
    exit 1
  fi
  local program=$SERVER
  [[ $kind == noop ]] && program=$NOOP
  "$program" 127.0.0.1 0 -q 2>"$WORK/server.log" &
  SERVER_PID=$!
  local i
  for i in $(seq 200); do
    SERVER_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/server.log")
    [[ -n $SERVER_PORT ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "bench: $program did not start: $(cat "$WORK/server.log")" >&2
  exit 1
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# measure KEY KIND BENCH-ARGS...: one bench run against a fresh server; its
# CSV row is kept as ROW[KEY/KIND] if it is the fastest run of KEY/KIND yet.
declare -A ROW
measure() {
  local key=$1 kind=$2
  shift 2
  local protocol=metrics
  [[ $kind == redis ]] && protocol=redis
  start_server "$kind"
  local out
  if out=$("$BENCH" --port "$SERVER_PORT" --server-pid "$SERVER_PID" --protocol "$protocol" \
             --label "$key/$kind" --csv "$@" 2>"$WORK/bench.err"); then
    local row previous
    row=$(tail -n 1 <<<"$out")
    previous=${ROW[$key/$kind]:-}
    if [[ -z $previous ]] ||
       { [[ $previous != FAILED ]] && awk -v a="$(cut -d, -f10 <<<"$row")" \
           -v b="$(cut -d, -f10 <<<"$previous")" 'BEGIN { exit !(a > b) }'; }; then
      ROW[$key/$kind]=$row
    fi
    if [[ ! -s $RESULTS ]]; then head -n 1 <<<"$out" >"$RESULTS"; fi
    echo "$row" >>"$RESULTS"
  else
    failures=$((failures + 1))
    ROW[$key/$kind]="FAILED"
    echo "bench: $key/$kind failed: $(cat "$WORK/bench.err")" >&2
  fi
  stop_server
}

# field KEY/KIND N: column N of a kept CSV row, or empty.
field() {
  local row=${ROW[$1]:-}
  [[ -z $row || $row == FAILED ]] && return 0
  cut -d, -f"$2" <<<"$row"
}

# Formatting helpers for the table; an empty input prints "?".
fmt() { awk -v v="$1" -v f="$2" -v d="$3" 'BEGIN { if (v == "") print "?"; else printf f, v / d }'; }
rate() { fmt "$1" "%.0fk req/s" 1000; }
us() { fmt "$1" "%.2f µs" 1; }
ms() { fmt "$1" "%.2f ms" 1000; }
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "?"; else printf "%.2fx", a / b }'
}
cell() {  # cell KEY/KIND: throughput, server CPU per request, p99
  local key=$1
  if [[ ${ROW[$key]:-} == FAILED ]]; then echo "FAILED"; return; fi
  if [[ -z ${ROW[$key]:-} ]]; then echo "n/a"; return; fi
  echo "$(rate "$(field "$key" 10)"), $(us "$(field "$key" 16)") CPU/req, p99 $(ms "$(field "$key" 12)")"
}

kinds=(noop metrics)
if have_redis; then kinds=(noop redis metrics); fi

: >"$RESULTS"
echo "bench: $(nproc) CPU(s), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" >&2
for round in $(seq "${BENCH_REPEAT:-3}"); do
  echo "bench: round $round of scenarios 1-3 on ${kinds[*]}" >&2
  for kind in "${kinds[@]}"; do measure s1 "$kind" -c 50 -P 1 -n 100000; done
  for kind in "${kinds[@]}"; do measure s2 "$kind" -c 4 -P 64 -n 2000000; done
  for kind in "${kinds[@]}"; do measure s3 "$kind" -c 1 -P 1 -n 20000; done
done
echo "bench: idle connections on ${kinds[*]}" >&2
for kind in "${kinds[@]}"; do measure idle "$kind" --mode idle -c 1000; done
# Scenario 4 and 6 on Redis too (HGETALL of a 100-field hash; RSS after
# 10M HSETs); `get *` has no Redis counterpart.
later_kinds=(metrics)
if have_redis; then later_kinds=(redis metrics); fi
echo "bench: scenarios 4-6 on ${later_kinds[*]} (5 on metrics only)" >&2
for kind in "${later_kinds[@]}"; do
  measure s4 "$kind" --mode get --keys 1 --samples-per-key 100 -c 8 -n 20000
done
measure s5 metrics --mode get-all --keys 1000 --samples-per-key 1000 -c 1 -n 3 --background 4
for kind in "${later_kinds[@]}"; do measure s6 "$kind" -c 4 -P 64 -n 10000000 --keys 10000; done

redis_cell() { if have_redis; then cell "$1/redis"; else echo "not installed"; fi; }

echo
echo "| scenario | noop-server | Redis | metrics-server | vs noop | vs Redis |"
echo "|---|---|---|---|---|---|"
for s in s1 s2 s3; do
  case $s in
    s1) name="1. ping-pong puts, 50 conn, P=1" ;;
    s2) name="2. pipelined puts, 4 conn, P=64" ;;
    s3) name="3. latency, 1 conn, P=1" ;;
  esac
  echo "| $name | $(cell $s/noop) | $(redis_cell $s) | $(cell $s/metrics)" \
    "| $(ratio "$(field $s/metrics 10)" "$(field $s/noop 10)") throughput" \
    "| $(ratio "$(field $s/metrics 10)" "$(field $s/redis 10)") throughput |"
done
s4_redis=$(if have_redis; then echo "$(cell s4/redis), $(field s4/redis 14) MB/s"; else echo "not installed"; fi)
echo "| 4. get of 1 key x 100 samples, 8 conn | n/a | $s4_redis | $(cell s4/metrics)," \
  "$(field s4/metrics 14) MB/s | | $(ratio "$(field s4/metrics 10)" "$(field s4/redis 10)") throughput |"
echo "| 5. get * of 1,000,000 samples / 1,000 keys | n/a | n/a |" \
  "$(ms "$(field s5/metrics 11)") per get *, $(field s5/metrics 14) MB/s;" \
  "4 ping-pong putters meanwhile: p99 $(ms "$(field s5/metrics 21)") | | |"
s6_cell() { echo "$(field "s6/$1" 18) bytes RSS per sample, $(rate "$(field "s6/$1" 10)")"; }
s6_redis=$(if have_redis; then s6_cell redis; else echo "not installed"; fi)
echo "| 6. memory after 10,000,000 puts / 10,000 keys | n/a | $s6_redis | $(s6_cell metrics)" \
  "| | $(ratio "$(field s6/redis 18)" "$(field s6/metrics 18)") less memory per sample |"
idle_cell() {
  if [[ -z ${ROW[idle/$1]:-} || ${ROW[idle/$1]} == FAILED ]]; then cell "idle/$1"; return; fi
  awk -v v="$(field "idle/$1" 18)" 'BEGIN { printf "%.1f KiB RSS/conn", v / 1024 }'
}
redis_idle=$(if have_redis; then idle_cell redis; else echo "not installed"; fi)
echo "| idle connections (1,000, one put each) | $(idle_cell noop) | $redis_idle |" \
  "$(idle_cell metrics) | | |"
echo
echo "Raw rows: $RESULTS" >&2
if ((failures > 0)); then
  echo "bench: $failures run(s) got wrong or missing answers" >&2
  exit 1
fi
