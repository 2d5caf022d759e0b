#!/usr/bin/env bash
# Walks the README's quick start as a new user would, on a fresh clone of the
# committed tree: `make run` (which must build every program the README then
# uses), then every `$ COMMAND` of the README's ```sh blocks, in order, with
# its output compared to the lines the README shows under it. A `$ nc HOST
# PORT` block is a typed session: its request lines are sent and the other
# lines are the expected answers. Usage: tests/readme_check.sh [REPO] (the
# current checkout by default). Prints "readme: N passed, M failed".
set -uo pipefail

repo=$(cd "${1:-$(dirname "$0")/..}" && pwd)
work=$(mktemp -d)
server_pid=""
cleanup() {
  # `make run` leads its own process group (setsid): stop the whole group.
  if [ -n "$server_pid" ]; then kill -TERM -- "-$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT

git clone -q "$repo" "$work/fresh" || exit 1
cd "$work/fresh" || exit 1

# The port the README uses must be free, or the walk would talk to a stranger.
if (exec 3<>/dev/tcp/127.0.0.1/8888) 2>/dev/null; then
  echo "readme: 127.0.0.1:8888 is already in use; stop what listens there first" >&2
  exit 1
fi

setsid make run >"$work/run.log" 2>&1 </dev/null &
server_pid=$!
# A fresh clone builds first: allow it ten minutes.
for _ in $(seq 1 1200); do
  grep -q "listening on 127.0.0.1:8888" "$work/run.log" && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.5
done
if ! grep -q "listening on 127.0.0.1:8888" "$work/run.log"; then
  echo "readme: 'make run' did not start the server:" >&2
  tail -n 20 "$work/run.log" >&2
  exit 1
fi

passed=0
failed=0
check() {  # check COMMAND EXPECTED ACTUAL
  if [ "$2" == "$3" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    printf 'readme: FAILED: $ %s\n--- README shows:\n%s\n--- got:\n%s\n' "$1" "$2" "$3" >&2
  fi
}

run_block() {  # the lines of one ```sh block on stdin
  local cmd="" expected="" line
  finish() {
    [ -n "$cmd" ] || return 0
    if [[ "$cmd" == nc\ * ]]; then
      # The typed requests are the lines that start with a command word.
      local input output
      input=$(printf '%s\n' "$expected" | grep -E '^(put|get|got) ' || true)
      output=$(printf '%s\n' "$input" | timeout 10 $cmd -N 2>&1)
      check "$cmd" "$(printf '%s\n' "$expected" | grep -vE '^(put|get|got) ')" "$output"
    else
      # $(...) drops trailing newlines on both sides alike.
      check "$cmd" "$(printf '%s\n' "$expected")" "$(timeout 30 bash -c "$cmd" 2>&1)"
    fi
    cmd=""
    expected=""
  }
  while IFS= read -r line; do
    if [[ "$line" == '$ '* ]]; then
      finish
      cmd=${line#\$ }
    elif [ -n "$cmd" ]; then
      expected+="${expected:+$'\n'}$line"
    fi
  done
  finish
}

# Each ```sh block that has "$ " prompts, in README order.
block=""
in_block=0
while IFS= read -r line; do
  if [ $in_block = 0 ] && [ "$line" = '```sh' ]; then
    in_block=1
    block=""
  elif [ $in_block = 1 ] && [ "$line" = '```' ]; then
    in_block=0
    if grep -q '^\$ ' <<<"$block"; then run_block <<<"$block"; fi
  elif [ $in_block = 1 ]; then
    block+="$line"$'\n'
  fi
done <README.md

echo "readme: $passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
