#!/usr/bin/env bash
# `make test-busy`: prove the suite passes on a busy machine (docs/testing.md).
#
# Clones this checkout's HEAD into a temporary directory, starts a gateway there
# with `make run` (on its default ports: what tests must never collide with),
# keeps one core busy with `stress-ng --cpu 1`, and runs `make test` RUNS times in
# a row (default 3), printing each run's duration and result. Exits non-zero if
# any run failed. TEST_BUSY_CMD replaces `make test` (e.g. a quick dry run:
# TEST_BUSY_CMD="make lint" RUNS=1). Everything it started is stopped at exit.
set -uo pipefail

RUNS=${RUNS:-3}
CMD=${TEST_BUSY_CMD:-make test}
SRC=$(git rev-parse --show-toplevel)

if ! command -v stress-ng >/dev/null 2>&1; then
  sudo=; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  { $sudo apt-get update -qq && \
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng >/dev/null; } \
    || { echo "test-busy: stress-ng is missing and could not be installed (apt-get install stress-ng)"; exit 2; }
fi

# The clone lives in a temporary directory with no ../shared beside it: point the
# real-Asterisk suite (and its builds) at this checkout's, so it runs rather than skips.
if [ -z "${MEDIASTREAM_SHARED:-}" ] && [ -d "$SRC/../shared" ]; then
  MEDIASTREAM_SHARED=$(cd "$SRC/../shared" && pwd)
  export MEDIASTREAM_SHARED
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "test-busy: cloning $(git -C "$SRC" rev-parse --short HEAD) into $work/clone"
git clone -q "$SRC" "$work/clone" || exit 2
cd "$work/clone" || exit 2
make -s setup >/dev/null || exit 2

# The gateway a developer runs beside the suite, on its default ports.
setsid make -s run >"$work/run.log" 2>&1 &
run_pid=$!
pids+=("$run_pid")
for _ in $(seq 120); do
  grep -q "serving" "$work/run.log" && break
  kill -0 "$run_pid" 2>/dev/null || break  # it exited: a default port taken?
  sleep 1
done
grep -q "serving" "$work/run.log" \
  || { echo "test-busy: 'make run' did not come up:"; cat "$work/run.log"; exit 2; }
echo "test-busy: gateway from 'make run' is serving ($(grep -m1 'gateway ready' "$work/run.log"))"

# One core taken by other work.
setsid stress-ng --cpu 1 --quiet &
pids+=($!)
echo "test-busy: stress-ng --cpu 1 running; $RUNS x '$CMD'"

failed=0
for i in $(seq "$RUNS"); do
  start=$(date +%s)
  if $CMD >"$work/run-$i.log" 2>&1; then result=pass; else result=FAIL; failed=1; fi
  took=$(( $(date +%s) - start ))
  printf 'test-busy: run %d/%d: %s in %dm%02ds\n' "$i" "$RUNS" "$result" $((took / 60)) $((took % 60))
  if [ "$result" = FAIL ]; then
    cp "$work/run-$i.log" "$SRC/out/test-busy-run-$i.log" 2>/dev/null \
      || { mkdir -p "$SRC/out" && cp "$work/run-$i.log" "$SRC/out/test-busy-run-$i.log"; }
    tail -40 "$work/run-$i.log"
    echo "test-busy: full log in out/test-busy-run-$i.log"
  fi
done
[ "$failed" = 0 ] && echo "test-busy: all $RUNS runs passed" || echo "test-busy: some runs failed"
exit "$failed"
