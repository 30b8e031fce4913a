#!/usr/bin/env bash
# Mixed releases on one volume: node A runs this build, node B an older one
# (OLD_BIN). A writes through its mount what only this release knows (hard
# links, a sparse file, xattrs and an ACL, a FIFO, owners); both sync; B's
# old binary must read every regular file byte for byte as A does; B edits
# and adds files; both sync again; A (this build) must read B's changes, and
# this build must read B's store, written by the old release, directly.
# Prints one line per check and exits 1 on the first difference.
#
# Usage (as root): OLD_BIN=/path/to/old/globofs bash scripts/mixed-release.sh [WORKDIR]
#   NEW_BIN=PATH   this build (default: target/release/globofs, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OLD_BIN:?set OLD_BIN to the globofs binary of the older release}"
NEW_BIN=${NEW_BIN:-$PWD/target/release/globofs}
[ -x "$NEW_BIN" ] || cargo build --release --quiet
work=${1:-$(mktemp -d /var/tmp/globofs-mixed.XXXXXX)}
mkdir -p "$work"
a=a0000000-0000-4000-8000-00000000000a
b=b0000000-0000-4000-8000-00000000000b
spec() { # node peer
  cat <<EOF
volume: $work/$1/vol
node:
  id: $2
block_size: 64KiB
peers:
  - id: $3
    path: $work/$4/vol/$3
mount:
  path: $work/$1/mnt
EOF
}
mkdir -p "$work/A/mnt" "$work/B/mnt"
spec A $a $b B > "$work/A/spec.yaml"
spec B $b $a A > "$work/B/spec.yaml"
"$NEW_BIN" --spec "$work/A/spec.yaml" reconcile >/dev/null
"$OLD_BIN" --spec "$work/B/spec.yaml" reconcile >/dev/null
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }

"$NEW_BIN" --spec "$work/A/spec.yaml" mount > "$work/A/mount.log" 2>&1 &
apid=$!
trap 'kill $apid 2>/dev/null; fusermount3 -uz "$work/A/mnt" 2>/dev/null || true' EXIT
for _ in $(seq 50); do mountpoint -q "$work/A/mnt" && break; sleep 0.1; done
m=$work/A/mnt
mkdir -p "$m/docs"
head -c 300000 /dev/urandom > "$m/docs/readme"
ln "$m/docs/readme" "$m/docs/readme-link"
truncate -s 10M "$m/docs/sparse"
printf 'end' | dd of="$m/docs/sparse" bs=1 seek=5000000 conv=notrunc status=none
echo tagged > "$m/docs/tagged"
setfattr -n user.color -v blue "$m/docs/tagged"
setfacl -m u:1234:r "$m/docs/tagged"
chown 1000:1000 "$m/docs/tagged"
mkfifo "$m/docs/pipe"
kill -TERM $apid; wait $apid || true
trap - EXIT

"$NEW_BIN" --spec "$work/A/spec.yaml" sync >/dev/null
"$OLD_BIN" --spec "$work/B/spec.yaml" sync >/dev/null
for f in docs/readme docs/readme-link docs/sparse docs/tagged; do
  cmp <("$NEW_BIN" --spec "$work/A/spec.yaml" get "/$f" -) \
      <("$OLD_BIN" --spec "$work/B/spec.yaml" get "/$f" -) \
    || fail "old release reads /$f differently"
  ok "old release reads /$f as written"
done
"$OLD_BIN" --spec "$work/B/spec.yaml" ls /docs | grep -qx pipe || fail "old release lists no /docs/pipe"
ok "old release lists the FIFO's entry"

echo "from the old release" > "$work/new-file"
"$OLD_BIN" --spec "$work/B/spec.yaml" put "$work/new-file" /docs/from-old >/dev/null
head -c 70000 /dev/urandom > "$work/edit"
"$OLD_BIN" --spec "$work/B/spec.yaml" put "$work/edit" /docs/readme-link >/dev/null
"$OLD_BIN" --spec "$work/B/spec.yaml" sync >/dev/null
"$NEW_BIN" --spec "$work/A/spec.yaml" sync >/dev/null
cmp <("$NEW_BIN" --spec "$work/A/spec.yaml" get /docs/from-old -) "$work/new-file" \
  || fail "this build reads the old release's new file differently"
ok "this build reads a file the old release wrote"
cmp <("$NEW_BIN" --spec "$work/A/spec.yaml" get /docs/readme-link -) "$work/edit" \
  || fail "this build reads the old release's edit of a linked name differently"
ok "this build reads the old release's edit of a linked name"
cmp <("$NEW_BIN" --spec "$work/A/spec.yaml" get /docs/readme -) \
    <("$OLD_BIN" --spec "$work/B/spec.yaml" get /docs/readme -) \
  || fail "/docs/readme differs between the nodes after the edit"
ok "the other name of the group is the same on both nodes"
# This build reads the store the old release wrote, directly.
for f in docs/from-old docs/readme-link docs/sparse; do
  cmp <("$NEW_BIN" --spec "$work/B/spec.yaml" get "/$f" -) \
      <("$OLD_BIN" --spec "$work/B/spec.yaml" get "/$f" -) \
    || fail "this build reads the old store's /$f differently"
done
ok "this build reads the old release's store"
"$NEW_BIN" --spec "$work/B/spec.yaml" verify >/dev/null || fail "this build's verify of the old store"
ok "this build verifies the old release's store"
echo "all checks passed ($work)"
