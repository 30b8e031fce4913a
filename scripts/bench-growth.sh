#!/usr/bin/env bash
# Does the mount's cost per file stay flat as the tree grows (issue 18,
# "growth")? For each size in SIZES: a fresh store and mount, `tar xf` of a
# tree of that many small files (1-4 KiB, 100 per directory; small so the
# run measures per-file work, not bytes) + a flush of the store's file
# system, then a warm `find | wc -l` (median of RUNS) and what the mount's
# resident memory (VmRSS of both of its processes) grew by over both. ext4's own
# `tar xf` into the same file system is timed next to each, as the
# baseline the ratio is read against. Prints per-file figures per size and
# the ratio of the largest size's to the smallest's (target: within +-20%).
#
# Usage (as root): bash scripts/bench-growth.sh [WORKDIR]
#   SIZES="20000 200000"   files per tree
#   RUNS=5                 runs of the warm find
#   BLOCK_SIZE=1MiB        the volume's block size
#   GLOBOFS_BIN=PATH       measure another build (default: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"20000 200000"}
RUNS=${RUNS:-5}
BLOCK_SIZE=${BLOCK_SIZE:-1MiB}
work=${1:-$(mktemp -d /var/tmp/globofs-growth.XXXXXX)}
mkdir -p "$work"
if [ -n "${GLOBOFS_BIN:-}" ]; then bin=$GLOBOFS_BIN; else
  cargo build --release --quiet
  bin=$PWD/target/release/globofs
fi
node=5e1f0000-0000-4000-8000-0000000e7e16
gmnt=$work/mnt
store=$work/volume/$node
gpid=
stop_mount() {
  if [ -n "$gpid" ]; then
    kill -TERM "$gpid" 2>/dev/null || true
    wait "$gpid" 2>/dev/null || true
    gpid=
  fi
  fusermount3 -uz "$gmnt" 2>/dev/null || true
}
trap stop_mount EXIT
now() { date +%s.%N; }
# The mount's resident memory: the parent and its worker, in bytes.
rss() {
  local total=0 kb
  for pid in "$gpid" $(pgrep -P "$gpid" || true); do
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${kb:-0} * 1024))
  done
  echo "$total"
}

results=$work/growth.tsv
: >"$results"
for n in $SIZES; do
  tarball=$work/tree-$n.tar
  if [ ! -s "$tarball" ]; then
    python3 - "$work/src-$n" "$n" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(n)
for i in range(n):
    d = os.path.join(root, "d%05d" % (i // 100))
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%07d" % i), "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 4096)))
EOF
    tar -C "$work/src-$n" -cf "$tarball" .
    rm -rf "$work/src-$n"
  fi
  # ext4 on the same file system: the baseline.
  rm -rf "$work/native"; mkdir -p "$work/native"; sync
  t0=$(now); tar -C "$work/native" -xf "$tarball"; sync -f "$work/native"; t1=$(now)
  native=$(python3 -c "print($t1 - $t0)")
  rm -rf "$work/native"
  # A fresh store and mount.
  stop_mount
  rm -rf "$work/volume"; mkdir -p "$gmnt"
  cat >"$work/spec.yaml" <<EOF
volume: $work/volume
node:
  id: $node
block_size: $BLOCK_SIZE
mount:
  path: $gmnt
EOF
  "$bin" --spec "$work/spec.yaml" reconcile >/dev/null
  "$bin" --spec "$work/spec.yaml" mount 2>"$work/mount-$n.log" &
  gpid=$!
  for _ in $(seq 100); do mountpoint -q "$gmnt" && break; sleep 0.1; done
  mountpoint -q "$gmnt" || { cat "$work/mount-$n.log"; exit 1; }
  sync
  mem0=$(rss)
  t0=$(now); tar -C "$gmnt" -xf "$tarball"; sync -f "$store"; t1=$(now)
  tarred=$(python3 -c "print($t1 - $t0)")
  entries=$(find "$gmnt" | wc -l)
  times=()
  for _ in $(seq "$RUNS"); do
    t0=$(now); find "$gmnt" | wc -l >/dev/null; t1=$(now)
    times+=("$(python3 -c "print($t1 - $t0)")")
  done
  found=$(python3 -c "import statistics,sys; print(statistics.median(map(float, sys.argv[1:])))" "${times[@]}")
  mem=$(($(rss) - mem0))
  stop_mount
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$entries" "$native" "$tarred" "$found" "$mem" >>"$results"
  python3 - "$n" "$entries" "$native" "$tarred" "$found" "$mem" <<'EOF'
import sys
n, entries = int(sys.argv[1]), int(sys.argv[2])
native, tarred, found, mem = map(float, sys.argv[3:])
print(f"{n} files ({entries} entries): tar xf + flush {tarred:.1f}s ({tarred / n * 1e6:.0f} us/file; "
      f"ext4 {native:.1f}s, {tarred / native:.1f}x), warm find {found:.3f}s ({found / entries * 1e6:.2f} us/entry), "
      f"mount RSS +{mem / 2**20:.0f} MiB ({mem / n:.0f} B/file)")
EOF
  rm -rf "$work/volume"
done

python3 - "$results" <<'EOF'
import sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
rows = [(int(n), int(e), float(a), float(t), float(f), float(m)) for n, e, a, t, f, m in rows]
print()
print("| files | tar xf + flush, us/file | ext4, us/file | warm find, us/entry | mount RSS growth, B/file |")
print("| --- | --- | --- | --- | --- |")
for n, e, a, t, f, m in rows:
    print(f"| {n} | {t / n * 1e6:.0f} | {a / n * 1e6:.0f} | {f / e * 1e6:.2f} | {m / n:.0f} |")
if len(rows) >= 2:
    (n0, e0, a0, t0, f0, m0), (n1, e1, a1, t1, f1, m1) = rows[0], rows[-1]
    def verdict(ratio):
        return "PASS" if 0.8 <= ratio <= 1.2 else "MISS"
    for name, small, big in [
        ("tar xf per file", t0 / n0, t1 / n1),
        ("warm find per entry", f0 / e0, f1 / e1),
        ("mount memory per file", m0 / n0, m1 / n1),
    ]:
        ratio = big / small
        print(f"{name}: {n1} against {n0}: {ratio:.2f}x ({verdict(ratio)}, target within +-20%)")
EOF
