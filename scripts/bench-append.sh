#!/usr/bin/env bash
# What a program appending many small records pays through the mount: the
# same loop of COUNT write(2)s of 100 bytes into a new file opened O_TRUNC
# (the mount attaches its cache for FUSE passthrough: the kernel writes it
# directly) and O_APPEND (never attached, so appends can move onto another
# mount's version: docs/POSIX.md), alternating, RUNS runs each; prints the
# medians and the ratio. docs/PERFORMANCE.md "Appends no longer go by
# passthrough".
#
# Usage (as root): bash scripts/bench-append.sh [WORKDIR]
#   COUNT=50000            writes per run
#   RUNS=5                 runs per open mode
#   GLOBOFS_BIN=PATH       measure another build (default: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-50000}
RUNS=${RUNS:-5}
work=${1:-$(mktemp -d /var/tmp/globofs-append.XXXXXX)}
mkdir -p "$work"
if [ -n "${GLOBOFS_BIN:-}" ]; then bin=$GLOBOFS_BIN; else
  cargo build --release --quiet
  bin=$PWD/target/release/globofs
fi
mnt=$work/mnt
mkdir -p "$mnt"
gpid=
stop_mount() {
  if [ -n "$gpid" ]; then
    kill -TERM "$gpid" 2>/dev/null || true
    wait "$gpid" 2>/dev/null || true
    gpid=
  fi
  fusermount3 -uz "$mnt" 2>/dev/null || true
}
trap stop_mount EXIT
"$bin" init --volume "$work/volume" --mount "$mnt" >"$work/spec.yaml"
"$bin" --spec "$work/spec.yaml" reconcile >/dev/null
"$bin" --spec "$work/spec.yaml" mount "$mnt" >"$work/mount.log" 2>&1 &
gpid=$!
for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.1; done
mountpoint -q "$mnt" || { echo "the mount did not come up: $work/mount.log" >&2; exit 1; }
python3 - "$mnt" "$COUNT" "$RUNS" <<'PY'
import os, statistics, sys, time
mnt, count, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
record = b"x" * 99 + b"\n"
def run(flag, name):
    start = time.perf_counter()
    fd = os.open(os.path.join(mnt, name), os.O_WRONLY | os.O_CREAT | flag, 0o644)
    for _ in range(count):
        os.write(fd, record)
    os.close(fd)
    took = time.perf_counter() - start
    if os.path.getsize(os.path.join(mnt, name)) != count * len(record):
        sys.exit(f"{name}: wrong size")
    return took
times = {"O_TRUNC": [], "O_APPEND": []}
for r in range(runs):
    times["O_TRUNC"].append(run(os.O_TRUNC, f"t{r}"))
    times["O_APPEND"].append(run(os.O_APPEND, f"a{r}"))
med = {k: statistics.median(v) for k, v in times.items()}
for k, v in times.items():
    print(f"{k:9} median {med[k]:.3f} s ({med[k] / count * 1e6:.1f} us per write); runs {' '.join(f'{x:.3f}' for x in v)}")
print(f"O_APPEND / O_TRUNC: {med['O_APPEND'] / med['O_TRUNC']:.2f}x")
PY
