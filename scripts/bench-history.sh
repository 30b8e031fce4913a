#!/usr/bin/env bash
# A file saved 2,000 times through a mount (open for writing, write, close,
# stat): prints the time of the first 200 saves and of the last 200. With every
# commit reading the path's whole history, the last ones are slower by the
# history's length; docs/PERFORMANCE.md records the figures.
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
"$bin" --spec "$work/spec.yaml" mount 2>"$work/mount.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do mountpoint -q "$work/mnt" && break; sleep 0.1; done
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
