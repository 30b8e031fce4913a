#!/usr/bin/env bash
# A file saved 2,000 times through a mount (open for writing, write, close,
# stat): prints the time of the first 200 saves and of the last 200. With every
# commit reading the path's whole history, the last ones are slower by the
# history's length; docs/PERFORMANCE.md records the figures.
#
# Then the past (issue 16): PAST_FILES files (default 100,000) in one
# directory, each put PAST_ROUNDS times (default 10); prints the time of a
# listing with attributes (`ls -l`) of the current directory and of the same
# directory in `.globofs/at/<a time after half the rounds>/`, each from a
# fresh mount (nothing cached), and how long each mount took to start.
#
# Usage (as root): bash scripts/bench-history.sh [WORKDIR] [BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d /var/tmp/globofs-history.XXXXXX)}
bin=${2:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=$PWD/target/release/globofs
fi
[ "$work" != / ] || { echo "refusing to use / as the work dir" >&2; exit 2; }
rm -rf "$work"; mkdir -p "$work/mnt"
printf 'volume: %s/vol\nnode:\n  id: 11111111-2222-4333-8444-555555555602\nblock_size: 4KiB\nmount:\n  path: %s/mnt\n' "$work" "$work" > "$work/spec.yaml"
"$bin" --spec "$work/spec.yaml" reconcile >/dev/null
pid=
trap '[ -z "$pid" ] || { kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; }; rm -rf "$work"' EXIT
start_mount() {
  local t0; t0=$(date +%s.%N)
  "$bin" --spec "$work/spec.yaml" mount 2>>"$work/mount.log" &
  pid=$!
  for _ in $(seq 600); do mountpoint -q "$work/mnt" && break; sleep 0.05; done
  echo "mount start-up: $(echo "$(date +%s.%N) - $t0" | bc) s"
}
stop_mount() {
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=
}
start_mount
python3 - "$work/mnt" <<'PY'
import os, sys, time
mnt = sys.argv[1]
def saves(n):
    start = time.time()
    for i in range(n):
        with open(f"{mnt}/notes.txt", "w") as f:
            f.write(f"save {i}\n" * 10)
        os.stat(f"{mnt}/notes.txt")
    return time.time() - start
print("first 200 saves: %.3f s" % saves(200))
saves(1600)
print("last 200 saves (history of 1,800+): %.3f s" % saves(200))
PY
stop_mount

files=${PAST_FILES:-100000}
rounds=${PAST_ROUNDS:-10}
mkdir -p "$work/src/big"
half=
for round in $(seq "$rounds"); do
  python3 - "$work/src/big" "$files" "$round" <<'PY'
import sys
d, n, r = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(n):
    with open(f"{d}/f{i:06d}", "w") as f:
        f.write(f"file {i} round {r}\n")
PY
  "$bin" --spec "$work/spec.yaml" put "$work/src/big" /big
  if [ "$round" -eq $(( (rounds + 1) / 2 )) ]; then
    sleep 1; half=$(date -u +%Y-%m-%dT%H:%M:%SZ); sleep 1
  fi
done
echo "$files files x $rounds versions; the past at $half"
list() {
  python3 - "$1" <<'PY'
import os, sys, time
start = time.time()
n = sum(1 for e in os.scandir(sys.argv[1]) if e.stat(follow_symlinks=False))
print("  %d entries in %.3f s" % (n, time.time() - start))
PY
}
start_mount
echo "ls -l of the current /big:"
list "$work/mnt/big"
stop_mount
start_mount
echo "ls -l of .globofs/at/$half/big:"
list "$work/mnt/.globofs/at/$half/big"
stop_mount
