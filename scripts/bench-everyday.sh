#!/usr/bin/env bash
# Everyday work on the mount against ext4 on the same disk (issue 18): tar xf,
# rm -rf, find / du / ls -lR, git add + commit,
# SQLite single-row commits (DELETE and WAL journals), a 4 KiB overwrite +
# fsync in a 1 GiB file, `globofs put` against cp, and the store's bytes per
# file. Side by side in one run, each figure the median of RUNS runs
# (hyperfine); prints a markdown table of medians and globofs/ext4 ratios
# for docs/PERFORMANCE.md. tar, rm, git and the listings run on two more
# FUSE file systems too: bindfs, and examples/floorfs.rs (a pass-through with
# the globofs mount's kernel settings: what FUSE itself costs here).
#
# Usage (as root): bash scripts/bench-everyday.sh [WORKDIR]
#   RUNS=5             runs per figure
#   ENTRIES=20000      entries in the generated tree (scripts/tree.sh: sizes
#                      8 B to 4 MiB, median ~40 B, mean ~110 KB, 1.96 GB of tar
#                      at 20,000; 1 dir per 13 entries)
#   BLOCK_SIZE=1MiB    the mount's block size
#   ONLY="tar rm meta git sqlite fsync put space"   sections, all by default
#   GLOBOFS_BIN=PATH   measure another build (side by side with this one)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
ENTRIES=${ENTRIES:-20000}
BLOCK_SIZE=${BLOCK_SIZE:-1MiB}
work=${1:-$(mktemp -d /var/tmp/globofs-everyday.XXXXXX)}
mkdir -p "$work"
need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v bindfs >/dev/null || need+=(bindfs)
command -v git >/dev/null || need+=(git)
command -v sqlite3 >/dev/null || need+=(sqlite3)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ -n "${GLOBOFS_BIN:-}" ]; then bin=$GLOBOFS_BIN; else
  cargo build --release --quiet
  bin=$PWD/target/release/globofs
fi
cargo build --release --quiet --example floorfs
floorfs=$PWD/target/release/examples/floorfs
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

native=$work/ext4
bsrc=$work/bindfs-src
bmnt=$work/bindfs-mnt
fsrc=$work/floor-src
fmnt=$work/floor-mnt
gmnt=$work/globofs-mnt
mkdir -p "$native" "$bsrc" "$bmnt" "$gmnt" "$fsrc" "$fmnt"
node=5e1f0000-0000-4000-8000-0000000e7e12
cat > "$work/spec.yaml" <<EOF
volume: $work/volume
node:
  id: $node
block_size: $BLOCK_SIZE
mount:
  path: $gmnt
EOF
store=$work/volume/$node

cleanup() {
  fusermount3 -uz "$bmnt" 2>/dev/null || true
  fusermount3 -uz "$fmnt" 2>/dev/null || true
  [ -n "${gpid:-}" ] && kill -TERM "$gpid" 2>/dev/null && wait "$gpid" 2>/dev/null || true
  fusermount3 -uz "$gmnt" 2>/dev/null || true
}
trap cleanup EXIT
"$bin" --spec "$work/spec.yaml" reconcile >/dev/null
bindfs "$bsrc" "$bmnt"
"$floorfs" "$fsrc" "$fmnt" 2>"$work/floor.log" &
"$bin" --spec "$work/spec.yaml" mount 2>"$work/mount.log" &
gpid=$!
for _ in $(seq 100); do mountpoint -q "$gmnt" && break; sleep 0.1; done
mountpoint -q "$gmnt" || { cat "$work/mount.log"; exit 1; }
for _ in $(seq 100); do mountpoint -q "$fmnt" && break; sleep 0.1; done
mountpoint -q "$fmnt" || { cat "$work/floor.log"; exit 1; }

# The tree (scripts/tree.sh): deterministic, sizes log-uniform from 8 bytes to 4 MiB.
. scripts/tree.sh
tarball=$(tree_tarball "$work" "$ENTRIES")
files=$(tree_files "$tarball")
echo "tree: $ENTRIES entries, $files files, $(du -sh --apparent-size "$tarball" | cut -f1) (block size $BLOCK_SIZE)"

results=$work/results.tsv
: > "$results"
median() { python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results']; print(' '.join('%.4f' % x['median'] for x in r))" "$1"; }
# bench NAME PREPARE CMD_EXT4 CMD_GLOBOFS [CMD_BINDFS CMD_FLOOR] -> a row of
# medians and the ratios
bench() {
  local name=$1 prep=$2 a=$3 g=$4 b=${5:-} f=${6:-}
  local cmds=("$a" "$g")
  [ -n "$b" ] && cmds+=("$b" "$f")
  hyperfine --runs "$RUNS" --prepare "$prep" --export-json "$work/$name.json" "${cmds[@]}" >/dev/null
  read -r ta tg tb tf <<<"$(median "$work/$name.json")"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$ta" "$tg" "${tb:-}" "${tf:-}" >>"$results"
  printf '%-28s ext4 %8.3fs  globofs %8.3fs  %6.1fx%s\n' "$name" "$ta" "$tg" \
    "$(python3 -c "print($tg/$ta)")" \
    "${tb:+  bindfs ${tb}s  floor ${tf}s ($(python3 -c "print(round($tf/$ta,2))")x ext4)}"
}

if want tar; then
  # `sync -f` of the mount reaches no FUSE file system (the kernel sends
  # syncfs to virtiofs only): the store's own file system is what is
  # flushed for globofs, as ext4's is for ext4.
  bench tar-xf-sync "rm -rf $native/t $gmnt/t $bsrc/t $fsrc/t; mkdir -p $native/t $gmnt/t $bsrc/t $fsrc/t; sync" \
    "tar -C $native/t -xf $tarball && sync -f $native/t" \
    "tar -C $gmnt/t -xf $tarball && sync -f $store" \
    "tar -C $bmnt/t -xf $tarball && sync -f $bsrc" \
    "tar -C $fmnt/t -xf $tarball && sync -f $fsrc"
fi
# The tree in place on every side for what follows.
for d in "$native" "$gmnt" "$bsrc" "$fsrc"; do rm -rf "$d/t"; mkdir -p "$d/t"; tar -C "$d/t" -xf "$tarball"; done
sync
if want meta; then
  for pair in "find:find . | wc -l" "du:du -s ." "ls-lR:ls -lR . > /dev/null"; do
    name="warm-${pair%%:*}" tool=${pair#*:}
    bench "$name" "cd $native/t && $tool; cd $gmnt/t && $tool; cd $bmnt/t && $tool; cd $fmnt/t && $tool" \
      "cd $native/t && $tool" "cd $gmnt/t && $tool" "cd $bmnt/t && $tool" "cd $fmnt/t && $tool"
  done
fi
if want space; then
  before=$(du -s --block-size=1 "$store" | cut -f1)
  echo "space: store $before bytes after tar xf of $files files: $((before / files)) bytes per file"
  printf 'store-bytes-per-file\t%s\t\t\n' "$((before / files))" >>"$results"
fi
if want git; then
  mkdir -p "$native/g" "$gmnt/g" "$bmnt/g" "$fmnt/g"
  python3 - "$native/g/src" <<'EOF'
import os, sys
root = sys.argv[1]
os.makedirs(root, exist_ok=True)
for i in range(2000):
    d = os.path.join(root, "m%02d" % (i % 40))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "file%04d.rs" % i), "w") as f:
        f.write(("// module %d\nfn f%d() -> u32 { %d }\n" % (i, i, i)) * (1 + i % 30))
EOF
  for d in "$gmnt" "$bmnt" "$fmnt"; do rm -rf "$d/g/src"; cp -a "$native/g/src" "$d/g/src"; done
  gitprep="for d in $native/g/src $gmnt/g/src $bmnt/g/src $fmnt/g/src; do rm -rf \$d/.git; git -C \$d init -q; git -C \$d config user.email b@e; git -C \$d config user.name bench; done; sync"
  bench git-add-commit-2000 "$gitprep" \
    "cd $native/g/src && git add -A && git commit -qm x" \
    "cd $gmnt/g/src && git add -A && git commit -qm x" \
    "cd $bmnt/g/src && git add -A && git commit -qm x" \
    "cd $fmnt/g/src && git add -A && git commit -qm x"
fi
if want sqlite; then
  for mode in DELETE WAL; do
    sq="python3 -c \"import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('pragma journal_mode=$mode'); c.execute('create table if not exists t(x)'); [ (c.execute('insert into t values (?)', (i,)), c.commit()) for i in range(1000) ]\""
    bench "sqlite-1000-commits-$mode" "rm -f $native/db* $gmnt/db*" \
      "$sq $native/db" "$sq $gmnt/db"
  done
fi
if want fsync; then
  for d in "$native" "$gmnt"; do
    [ -f "$d/big" ] || { head -c 1G /dev/urandom > "$d/big.tmp" && mv "$d/big.tmp" "$d/big"; }
  done
  sync
  ow="python3 -c \"import os,sys,random; f=os.open(sys.argv[1], os.O_RDWR); r=random.Random(4); [ (os.pwrite(f, os.urandom(4096), r.randrange(0, 1<<30, 4096)), os.fsync(f)) for _ in range(10) ]; os.close(f)\""
  bench overwrite-4k-fsync-x10 "true" "$ow $native/big" "$ow $gmnt/big"
fi
if want put; then
  head -c 1G /dev/urandom > "$work/put-src"
  for bs in 64KiB 1MiB; do
    pnode=5e1f0000-0000-4000-8000-00000000b${bs:0:1}00
    pspec=$work/put-$bs.yaml
    printf 'volume: %s\nnode:\n  id: %s\nblock_size: %s\n' "$work/put-vol-$bs" "$pnode" "$bs" > "$pspec"
    "$bin" --spec "$pspec" reconcile >/dev/null
    # A fresh store each run: a second put of the same bytes would only dedupe.
    bench "put-1GiB-$bs" "rm -rf $native/put-copy $work/put-vol-$bs; $bin --spec $pspec reconcile >/dev/null; sync" \
      "cp $work/put-src $native/put-copy && sync -f $native" \
      "$bin --spec $pspec put $work/put-src /p"
  done
fi
if want rm; then
  # (bindfs's and the floor's copies are made beneath them: quicker, and
  # neither keeps anything of its own)
  bench rm-rf "for d in $native $gmnt $bsrc $fsrc; do rm -rf \$d/r; mkdir -p \$d/r; tar -C \$d/r -xf $tarball; done; sync" \
    "rm -rf $native/r && sync -f $native" "rm -rf $gmnt/r && sync -f $store" \
    "rm -rf $bmnt/r && sync -f $bsrc" "rm -rf $fmnt/r && sync -f $fsrc"
fi
echo
echo "| benchmark | ext4 (s) | globofs (s) | globofs/ext4 | bindfs (s) | floor (s) | floor/ext4 | globofs/floor |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
while IFS=$'\t' read -r name a g b f; do
  if [ -z "$g" ]; then echo "| $name | $a | | | | | | |"; continue; fi
  ratios=" | |"
  [ -n "$f" ] && ratios=" | $(python3 -c "print('%.2fx | %.2fx' % ($f/$a, $g/$f))") |"
  echo "| $name | $a | $g | $(python3 -c "print('%.2fx' % ($g/$a))") | ${b:-} | ${f:-}$ratios"
done < "$results"
