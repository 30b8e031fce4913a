#!/usr/bin/env bash
# The store's per-file space overhead on three local filesystems (issue 18):
# ext4, ext4 with `-O inline_data`, and XFS, each a sparse loop image made
# here. On each: the generated tree (scripts/tree.sh) extracted natively (the
# baseline), then `tar xf` of it into a globofs mount whose volume lives on
# that filesystem; store bytes (du and the loop filesystem's `df` used delta),
# inodes (`df -i` delta), both per file and against the native tree. Then
# `rm -rf` of the tree in the mount, the mount's own upkeep (prune + gc) with
# a short retention, and the store's size against its size before the tar
# (target: within 10%, PASS/MISS). Prints a markdown table per filesystem
# for docs/PERFORMANCE.md; `globofs du` and `du` of the store's top-level
# directories are printed too (and kept in WORKDIR/<fs>/).
#
# Usage (as root): bash scripts/bench-space.sh [WORKDIR]
#   ENTRIES=20000        entries in the generated tree (~300 MB at 20,000)
#   BLOCK_SIZE=1MiB      the volume's block size
#   IMAGE_SIZE=16G       each loop image (sparse; ext4 gets an inode per 16 KiB,
#                        and the store needs ~15 inodes a file)
#   FILESYSTEMS="ext4 ext4-inline xfs"   (ext4-inline-i4096 too: an inode
#                        per 4 KiB instead of 16 KiB, not run by default)
#   UPKEEP_WAIT=300      seconds to wait for the mount's own prune + gc after
#                        the rm -rf before running `globofs prune` + `gc` by hand
#   GLOBOFS_BIN=PATH     measure another build (default: cargo build --release)
#
# The mount runs with `retention.every: 1h` (as a default store would) while
# the tree goes in, so no upkeep runs during the tar; after the rm -rf the
# spec is rewritten with `retention: {keep_last: 1, keep_within: 1s,
# every: 2s}` and the mount re-reads it (SIGHUP), so its own upkeep collects.
set -euo pipefail
cd "$(dirname "$0")/.."
ENTRIES=${ENTRIES:-20000}
BLOCK_SIZE=${BLOCK_SIZE:-1MiB}
IMAGE_SIZE=${IMAGE_SIZE:-16G}
FILESYSTEMS=${FILESYSTEMS:-ext4 ext4-inline xfs}
UPKEEP_WAIT=${UPKEEP_WAIT:-300}
work=${1:-$(mktemp -d /var/tmp/globofs-space.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
need=()
command -v mkfs.xfs >/dev/null || need+=(xfsprogs)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ -n "${GLOBOFS_BIN:-}" ]; then bin=$GLOBOFS_BIN; else
  cargo build --release --quiet
  bin=$PWD/target/release/globofs
fi

. scripts/tree.sh
tarball=$(tree_tarball "$work" "$ENTRIES")
files=$(tree_files "$tarball")
echo "tree: $ENTRIES entries, $files files, $(du -b "$tarball" | cut -f1) bytes of tar (block size $BLOCK_SIZE, $("$bin" --version))"

gpid=
mounted=()
cleanup() {
  if [ -n "$gpid" ]; then kill -TERM "$gpid" 2>/dev/null && wait "$gpid" 2>/dev/null || true; fi
  local m
  for m in "${mounted[@]}"; do
    if [ -d "$m/g" ]; then fusermount3 -uz "$m/g" 2>/dev/null || true; fi
    if mountpoint -q "$m/fs"; then
      local dev
      dev=$(findmnt -no SOURCE "$m/fs" || true)
      umount "$m/fs" || umount -l "$m/fs" || true
      case "$dev" in /dev/loop*) losetup -d "$dev" 2>/dev/null || true ;; esac
    fi
  done
}
trap cleanup EXIT

# df of a mounted filesystem: "used-bytes used-inodes"
dfu() { df -B1 --output=used,iused "$1" | tail -1 | awk '{print $1, $2}'; }
dub() { du -s --block-size=1 "$1" | cut -f1; }
per() { python3 -c "import sys; print(round($1 / $2))"; }
ratio() { python3 -c "print('%.2fx' % ($1 / $2) if $2 else '-')"; }
pct() { python3 -c "print('%+.1f%%' % (100.0 * ($1 - $2) / $2))"; }
# upkeeps logged so far by the mount (each line is a finished prune + gc)
upkeeps() { grep -c 'retention upkeep' "$1" || true; }
spec() { # spec FILE VOLUME MOUNTPOINT EVERY
  cat > "$1" <<EOF
volume: $2
node:
  id: 5e1f0000-0000-4000-8000-00000005ace0
block_size: $BLOCK_SIZE
mount:
  path: $3
retention:
  keep_last: 1
  keep_within: 1s
  every: $4
EOF
}
node=5e1f0000-0000-4000-8000-00000005ace0

tables=$work/tables.md
: > "$tables"
for fs in $FILESYSTEMS; do
  d=$work/$fs
  rm -rf "$d"; mkdir -p "$d/fs" "$d/g"
  img=$d.img
  rm -f "$img"; truncate -s "$IMAGE_SIZE" "$img"
  case $fs in
    ext4) mkfs.ext4 -q -F "$img"; label="ext4 (mkfs.ext4 defaults)" ;;
    ext4-inline) mkfs.ext4 -q -F -O inline_data "$img"; label="ext4 -O inline_data" ;;
    ext4-inline-i4096) mkfs.ext4 -q -F -O inline_data -i 4096 "$img"; label="ext4 -O inline_data -i 4096" ;;
    xfs) mkfs.xfs -q -f "$img"; label="XFS (mkfs.xfs defaults)" ;;
    *) echo "unknown filesystem $fs" >&2; exit 2 ;;
  esac
  mount -o loop "$img" "$d/fs"
  mounted+=("$d")
  echo
  echo "== $label: $(findmnt -no SOURCE,FSTYPE,OPTIONS "$d/fs")"

  # The baseline: the tree extracted natively on this filesystem.
  sync
  read -r u0 i0 <<<"$(dfu "$d/fs")"
  mkdir "$d/fs/native"
  t0=$(date +%s.%N)
  tar -C "$d/fs/native" -xf "$tarball"
  sync
  t_native=$(python3 -c "print('%.1f' % ($(date +%s.%N) - $t0))")
  read -r u1 i1 <<<"$(dfu "$d/fs")"
  n_du=$(dub "$d/fs/native") n_df=$((u1 - u0)) n_in=$((i1 - i0))
  rm -rf "$d/fs/native"
  sync
  echo "native: du $n_du B, df +$n_df B, +$n_in inodes, tar xf + sync ${t_native}s"

  # The store on this filesystem.
  vol=$d/fs/volume store=$d/fs/volume/$node
  spec "$d/spec.yaml" "$vol" "$d/g" 1h
  "$bin" --spec "$d/spec.yaml" reconcile >/dev/null
  sync
  read -r u0 i0 <<<"$(dfu "$d/fs")"
  s_before=$(dub "$store")
  "$bin" -v --spec "$d/spec.yaml" mount 2>"$d/mount.log" &
  gpid=$!
  for _ in $(seq 300); do mountpoint -q "$d/g" && break; sleep 0.1; done
  mountpoint -q "$d/g" || { cat "$d/mount.log"; exit 1; }
  t0=$(date +%s.%N)
  tar -C "$d/g" -xf "$tarball"
  sync -f "$d/g"
  sync
  t_store=$(python3 -c "print('%.1f' % ($(date +%s.%N) - $t0))")
  read -r u1 i1 <<<"$(dfu "$d/fs")"
  s_du=$(dub "$store") s_df=$((u1 - u0)) s_in=$((i1 - i0))
  s_added=$((s_du - s_before))
  echo "store: du $s_du B ($s_before before), df +$s_df B, +$s_in inodes, tar xf + sync ${t_store}s"
  "$bin" --spec "$d/spec.yaml" du > "$d/du-after-tar.txt"
  (cd "$store" && du -s --block-size=1 -- * | sort -rn) > "$d/top-after-tar.txt"
  echo "-- globofs du after tar xf:"; cat "$d/du-after-tar.txt"
  echo "-- du of the store's top-level directories (bytes):"; cat "$d/top-after-tar.txt"

  # Delete the tree, let the mount's own upkeep prune and collect.
  t0=$(date +%s.%N)
  rm -rf "${d:?}"/g/.[!.]* "$d"/g/*
  sync -f "$d/g"
  t_rm=$(python3 -c "print('%.1f' % ($(date +%s.%N) - $t0))")
  spec "$d/spec.yaml" "$vol" "$d/g" 2s
  seen=$(upkeeps "$d/mount.log")
  kill -HUP "$gpid"
  # A whole upkeep that started after the tombstones were older than
  # keep_within (1s): the second one logged from here on.
  sleep 2
  seen=$(upkeeps "$d/mount.log")
  how=
  waited=0
  while [ "$waited" -lt "$UPKEEP_WAIT" ]; do
    if [ "$(upkeeps "$d/mount.log")" -ge $((seen + 2)) ]; then how=automatic; break; fi
    sleep 1; waited=$((waited + 1))
  done
  if [ -n "$how" ]; then
    how="the mount's own upkeep (prune + gc), within ${waited}s"
    echo "upkeep: $(grep 'retention upkeep' "$d/mount.log" | tail -2 | head -1 | sed 's/\x1b\[[0-9;]*m//g')"
  else
    echo "upkeep: none logged within ${UPKEEP_WAIT}s; running globofs prune + gc by hand"
    "$bin" --spec "$d/spec.yaml" prune
    "$bin" --spec "$d/spec.yaml" gc
    how="\`globofs prune\` + \`gc\` by hand (no automatic upkeep within ${UPKEEP_WAIT}s)"
  fi
  sync
  read -r u2 i2 <<<"$(dfu "$d/fs")"
  s_after=$(dub "$store")
  "$bin" --spec "$d/spec.yaml" du > "$d/du-after-gc.txt"
  (cd "$store" && du -s --block-size=1 -- * | sort -rn) > "$d/top-after-gc.txt"
  echo "-- globofs du after rm -rf + prune + gc:"; cat "$d/du-after-gc.txt"
  echo "-- du of the store's top-level directories (bytes):"; cat "$d/top-after-gc.txt"
  kill -TERM "$gpid"; wait "$gpid" 2>/dev/null || true; gpid=
  fusermount3 -uz "$d/g" 2>/dev/null || true

  # A store back within 10% of its size before the tar (du of the store).
  limit=$(python3 -c "print(int($s_before * 1.10))")
  if [ "$s_after" -le "$limit" ]; then verdict=PASS; else verdict=MISS; fi
  {
    echo "### $label"
    echo
    echo "$files files ($ENTRIES entries), block size $BLOCK_SIZE; \`tar xf\` + \`sync\`: ${t_native}s native, ${t_store}s into the mount; \`rm -rf\` ${t_rm}s."
    echo
    echo "| after \`tar xf\` | native tree | globofs store | store/native |"
    echo "| --- | --- | --- | --- |"
    echo "| bytes (du --block-size=1) | $n_du | $s_added | $(ratio "$s_added" "$n_du") |"
    echo "| bytes (df used delta) | $n_df | $s_df | $(ratio "$s_df" "$n_df") |"
    echo "| inodes (df -i delta) | $n_in | $s_in | $(ratio "$s_in" "$n_in") |"
    echo "| bytes per file (du) | $(per "$n_du" "$files") | $(per "$s_added" "$files") | |"
    echo "| bytes per file (df) | $(per "$n_df" "$files") | $(per "$s_df" "$files") | |"
    echo "| inodes per file | $(python3 -c "print('%.2f' % ($n_in / $files))") | $(python3 -c "print('%.2f' % ($s_in / $files))") | |"
    echo
    echo "| store (du --block-size=1) | bytes | against before |"
    echo "| --- | --- | --- |"
    echo "| before \`tar xf\` (reconciled) | $s_before | |"
    echo "| after \`tar xf\` | $s_du | $(pct "$s_du" "$s_before") |"
    echo "| after \`rm -rf\` + prune + gc | $s_after | $(pct "$s_after" "$s_before"): **$verdict** (target within 10%) |"
    echo "| left behind per deleted entry (du) | $(per "$((s_after - s_before))" "$ENTRIES") | |"
    echo "| loop fs df used, after against before the tar | $((u2 - u0)) B, $((i2 - i0)) inodes | |"
    echo
    echo "Collected by $how."
    echo
  } >> "$tables"
  umount "$d/fs"
  mounted=("${mounted[@]:0:${#mounted[@]}-1}")
  losetup -j "$img" | cut -d: -f1 | xargs -r losetup -d
  rm -f "$img"
done
echo
cat "$tables"
