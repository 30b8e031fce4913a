#!/usr/bin/env bash
# Mount benchmarks: globofs against native ext4 and bindfs (a C passthrough FUSE
# filesystem), same data, same disk, side by side in one run. Each figure is the
# median of RUNS runs (hyperfine), read figures both warm and cold (page cache
# dropped before every run). Prints ratios; docs/PERFORMANCE.md records them.
#
# Usage (as root): bash scripts/bench-mount.sh [WORKDIR]   (RUNS=5 FILES=100000 by default;
# ONLY="read write create find" picks sections, all by default; GLOBOFS_BIN=PATH
# measures another build)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
FILES=${FILES:-100000}
work=${1:-$(mktemp -d /var/tmp/globofs-bench.XXXXXX)}
mkdir -p "$work"
for tool in hyperfine bindfs fusermount3; do
  command -v $tool >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine bindfs fuse3 >/dev/null; break; }
done
# GLOBOFS_BIN: measure that binary instead of this tree's (an earlier build,
# side by side with this one).
if [ -n "${GLOBOFS_BIN:-}" ]; then bin=$GLOBOFS_BIN; else
  cargo build --release --quiet
  bin=$PWD/target/release/globofs
fi
node=5e1f0000-0000-4000-8000-00000000bec4

native=$work/native          # plain ext4 directory
bsrc=$work/bindfs-src        # what bindfs serves
bmnt=$work/bindfs-mnt
gmnt=$work/globofs-mnt
mkdir -p "$native" "$bsrc" "$bmnt" "$gmnt"
cat > "$work/spec.yaml" <<EOF
volume: $work/volume
node:
  id: $node
block_size: 1MiB
mount:
  path: $gmnt
EOF

cleanup() {
  fusermount3 -uz "$bmnt" 2>/dev/null || true
  [ -n "${gpid:-}" ] && kill -TERM "$gpid" 2>/dev/null && wait "$gpid" 2>/dev/null || true
  fusermount3 -uz "$gmnt" 2>/dev/null || true
}
trap cleanup EXIT

"$bin" --spec "$work/spec.yaml" reconcile >/dev/null
bindfs "$bsrc" "$bmnt"
"$bin" --spec "$work/spec.yaml" mount 2>"$work/mount.log" &
gpid=$!
for _ in $(seq 100); do mountpoint -q "$gmnt" && break; sleep 0.1; done
mountpoint -q "$gmnt" || { cat "$work/mount.log"; exit 1; }
grep -o "FUSE passthrough: [a-z]*" "$work/mount.log" || true

drop='sync; echo 3 > /proc/sys/vm/drop_caches'
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
median() { python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results']; print(' '.join('%.4f' % x['median'] for x in r))" "$1"; }
# bench NAME PREPARE CMD_NATIVE CMD_BINDFS CMD_GLOBOFS -> prints medians
bench() {
  local name=$1 prepare=$2; shift 2
  hyperfine --style none --runs "$RUNS" --prepare "$prepare" --export-json "$work/$name.json" \
    -n native "$1" -n bindfs "$2" -n globofs "$3" >/dev/null
  read -r n b g < <(median "$work/$name.json")
  python3 - "$name" "$n" "$b" "$g" <<'PY'
import sys
name, n, b, g = sys.argv[1], *map(float, sys.argv[2:])
print(f"{name:32s} native {n:8.3f}s  bindfs {b:8.3f}s  globofs {g:8.3f}s   "
      f"globofs/native speed {n/g:5.2f}x   globofs/bindfs speed {b/g:5.2f}x")
PY
}

echo "== data"
# 200 files of 512 KiB (each fits in one 1 MiB block): 100 MiB.
head -c $((512 * 1024 * 200)) /dev/urandom > "$work/small.src"
mkdir -p "$native/small" "$bsrc/small" "$gmnt/small"
for i in $(seq 200); do
  for d in "$native/small" "$bsrc/small" "$gmnt/small"; do
    dd if="$work/small.src" of="$d/f$i" bs=512K skip=$((i - 1)) count=1 status=none
  done
done
head -c $((1 << 30)) /dev/urandom > /dev/shm/globofs-bench-1g
cp /dev/shm/globofs-bench-1g "$native/big"; cp /dev/shm/globofs-bench-1g "$bsrc/big"; cp /dev/shm/globofs-bench-1g "$gmnt/big"
sync

if want read; then
echo "== sequential read, single-block files (200 x 512 KiB)"
bench read-small-warm "cat $native/small/* $bsrc/small/* $gmnt/small/* >/dev/null" \
  "cat $native/small/* >/dev/null" "cat $bmnt/small/* >/dev/null" "cat $gmnt/small/* >/dev/null"
bench read-small-cold "$drop" \
  "cat $native/small/* >/dev/null" "cat $bmnt/small/* >/dev/null" "cat $gmnt/small/* >/dev/null"

echo "== sequential read, one 1 GiB multi-block file"
bench read-big-warm "cat $native/big $bmnt/big $gmnt/big >/dev/null" \
  "dd if=$native/big of=/dev/null bs=1M status=none" "dd if=$bmnt/big of=/dev/null bs=1M status=none" "dd if=$gmnt/big of=/dev/null bs=1M status=none"
bench read-big-cold "$drop" \
  "dd if=$native/big of=/dev/null bs=1M status=none" "dd if=$bmnt/big of=/dev/null bs=1M status=none" "dd if=$gmnt/big of=/dev/null bs=1M status=none"

fi

if want write; then
echo "== sequential write of 1 GiB (random data from /dev/shm), close commits, then sync"
bench write-big "rm -f $native/w $bsrc/w $gmnt/w; sync" \
  "dd if=/dev/shm/globofs-bench-1g of=$native/w bs=1M status=none; sync" \
  "dd if=/dev/shm/globofs-bench-1g of=$bmnt/w bs=1M status=none; sync" \
  "dd if=/dev/shm/globofs-bench-1g of=$gmnt/w bs=1M status=none; sync"

fi

if want create; then
echo "== create 10,000 small files (each closed, not fsynced)"
create='import os,sys
d=sys.argv[1]
os.makedirs(d, exist_ok=True)
for i in range(10000):
    with open(f"{d}/f{i}", "wb") as f: f.write(b"x" * 100)'
echo "$create" > "$work/create.py"
bench create-10k "rm -rf $native/c $bsrc/c $gmnt/c; sync" \
  "python3 $work/create.py $native/c" "python3 $work/create.py $bmnt/c" "python3 $work/create.py $gmnt/c"

fi

if want find; then
echo "== find + stat over $FILES files"
python3 - "$FILES" "$native/tree" "$bsrc/tree" <<'PY'
import os, sys
n = int(sys.argv[1])
for root in sys.argv[2:]:
    for i in range(n):
        d = f"{root}/d{i // 1000:03d}"
        if i % 1000 == 0:
            os.makedirs(d, exist_ok=True)
        with open(f"{d}/f{i}", "wb") as f:
            f.write(b"y" * (i % 200))
PY
start=$(date +%s.%N)
"$bin" --spec "$work/spec.yaml" put "$native/tree" /tree
echo "globofs put of the $FILES-file tree: $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
bench find-stat-warm "find $native/tree $bmnt/tree $gmnt/tree -printf '%s %m\n' >/dev/null" \
  "find $native/tree -printf '%s %m\n' >/dev/null" "find $bmnt/tree -printf '%s %m\n' >/dev/null" "find $gmnt/tree -printf '%s %m\n' >/dev/null"
bench find-stat-cold "$drop" \
  "find $native/tree -printf '%s %m\n' >/dev/null" "find $bmnt/tree -printf '%s %m\n' >/dev/null" "find $gmnt/tree -printf '%s %m\n' >/dev/null"

echo "== mount memory with a $FILES-file volume"
# The mount serves from its worker process (a child of the one started).
worker=$(pgrep -P "$gpid" | head -1)
grep -E "VmHWM|VmRSS" "/proc/${worker:-$gpid}/status"
fi

rm -f /dev/shm/globofs-bench-1g
echo "work dir: $work (remove it when done)"
