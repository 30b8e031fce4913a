#!/usr/bin/env bash
# Store benchmarks: each one measures globofs and a reference tool side by side,
# in one run, on the same disk, and prints the median of RUNS runs and the ratio.
#
#   scripts/bench-store.sh [WORKDIR]      (default /var/tmp/globofs-bench)
#   RUNS=5 SIZE_MIB=1024 SMALL_FILES=10000 scripts/bench-store.sh
#   GLOBOFS_BIN=/path/to/an/older/globofs scripts/bench-store.sh   (another build)
#
# Both sides of a timed pair end with `sync`; page caches are dropped before each
# timed command that reads or writes the disk (needs root; otherwise a warning is
# printed and caches stay warm). Results and targets: docs/PERFORMANCE.md.
set -euo pipefail

cd "$(dirname "$0")/.."
WORK=${1:-/var/tmp/globofs-bench}
RUNS=${RUNS:-5}
SIZE_MIB=${SIZE_MIB:-1024}
SMALL_FILES=${SMALL_FILES:-10000}

cargo build --release --quiet --bin globofs --example hash_speed
# GLOBOFS_BIN: measure that binary instead of this tree's (an earlier build,
# side by side with this one).
BIN=${GLOBOFS_BIN:-$PWD/target/release/globofs}
HASH=$PWD/target/release/examples/hash_speed

rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT

CAN_DROP=1
if ! (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
    CAN_DROP=0
    echo "warning: cannot drop page caches (not root?); read figures are warm-cache" >&2
fi
drop() { sync; if [ "$CAN_DROP" = 1 ]; then echo 3 >/proc/sys/vm/drop_caches; fi; }
now() { date +%s.%N; }
# median of the numbers given as arguments
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
# elapsed seconds of a shell snippet (run with bash -c); the snippet ends with sync
timed() { local t0 t1; t0=$(now); bash -c "$1"; t1=$(now); awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b-a}'; }

SPEC=$WORK/spec.yaml
fresh_store() {
    rm -rf "$WORK/vol"
    "$BIN" init --volume "$WORK/vol" --block-size 1MiB >"$SPEC"
    "$BIN" --spec "$SPEC" reconcile >/dev/null
}
STORE() { echo "$WORK/vol/$(readlink "$WORK/vol/self")"; }
export GLOBOFS_SPEC=$SPEC

echo "== machine: $(nproc) cores, $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | sed 's/^ *//'), $(df -hT "$WORK" | awk 'NR==2 {print $2 " on " $1}'), $(date -u +%Y-%m-%d)"

# A 1 GiB file of incompressible bytes (AES-CTR keystream: fast to make).
SRC=$WORK/src.bin
(openssl enc -aes-128-ctr -pass pass:globofs -nosalt -pbkdf2 </dev/zero 2>/dev/null || true) |
    head -c $((SIZE_MIB << 20)) >"$SRC"
BYTES=$((SIZE_MIB << 20))

echo
echo "== put ${SIZE_MIB} MiB vs cp (target >= 0.6x cp throughput)"
cp_t=(); put_t=(); ratios=(); put_rss=0
for run in $(seq "$RUNS"); do
    rm -f "$WORK/copy.bin"; drop
    t_cp=$(timed "cp '$SRC' '$WORK/copy.bin' && sync")
    rm -f "$WORK/copy.bin"; fresh_store; drop
    t_put=$(timed "/usr/bin/time -f %M -o '$WORK/rss' '$BIN' put '$SRC' /big && sync")
    rss=$(cat "$WORK/rss"); [ "$rss" -gt "$put_rss" ] && put_rss=$rss
    cp_t+=("$t_cp"); put_t+=("$t_put"); ratios+=("$(div "$t_cp" "$t_put")")
    echo "run $run: cp ${t_cp}s, put ${t_put}s, ratio $(div "$t_cp" "$t_put")"
done
m_cp=$(median "${cp_t[@]}"); m_put=$(median "${put_t[@]}")
echo "median: cp ${m_cp}s ($(div "$BYTES" "$(awk -v t="$m_cp" 'BEGIN{print t*1e6}')") MB/s), put ${m_put}s ($(div "$BYTES" "$(awk -v t="$m_put" 'BEGIN{print t*1e6}')") MB/s)"
echo "RESULT put/cp throughput: $(median "${ratios[@]}")x (median of $RUNS ratios; target 0.6x)"

echo
echo "== get ${SIZE_MIB} MiB vs cat (target >= 0.8x cat throughput)"
cat_t=(); get_t=(); ratios=(); get_rss=0
for run in $(seq "$RUNS"); do
    drop
    t_cat=$(timed "cat '$SRC' >/dev/null && sync")
    drop
    t_get=$(timed "/usr/bin/time -f %M -o '$WORK/rss' '$BIN' get /big - >/dev/null && sync")
    rss=$(cat "$WORK/rss"); [ "$rss" -gt "$get_rss" ] && get_rss=$rss
    cat_t+=("$t_cat"); get_t+=("$t_get"); ratios+=("$(div "$t_cat" "$t_get")")
    echo "run $run: cat ${t_cat}s, get ${t_get}s, ratio $(div "$t_cat" "$t_get")"
done
echo "median: cat $(median "${cat_t[@]}")s, get $(median "${get_t[@]}")s"
"$BIN" get /big - | cmp - "$SRC" && echo "get output is byte-identical"
echo "RESULT get/cat throughput: $(median "${ratios[@]}")x (target 0.8x)"

echo
echo "== peak memory (max RSS, /usr/bin/time) of put and get of ${SIZE_MIB} MiB (target <= 64 MiB)"
echo "RESULT peak RSS: put $((put_rss / 1024)) MiB, get $((get_rss / 1024)) MiB"

echo
echo "== second put of the same ${SIZE_MIB} MiB at another path (dedup)"
hashes_before=$(find "$(STORE)/hashes" -type f | wc -l)
du_before=$(du -s --block-size=1 "$(STORE)" | cut -f1)
inodes_before=$(find "$(STORE)" | wc -l)
dirs_before=$(find "$(STORE)" -type d | wc -l)
drop
t_dedup=$(timed "'$BIN' put '$SRC' /big-again && sync")
hashes_after=$(find "$(STORE)/hashes" -type f | wc -l)
du_after=$(du -s --block-size=1 "$(STORE)" | cut -f1)
inodes_after=$(find "$(STORE)" | wc -l)
dirs_after=$(find "$(STORE)" -type d | wc -l)
blocks=$(( (BYTES + (1 << 20) - 1) >> 20 ))
links=$(find "$(STORE)/root/big-again/hashes" -type f | wc -l)
echo "time ${t_dedup}s; block files before $hashes_before, after $hashes_after (new: $((hashes_after - hashes_before)))"
echo "per-path links: $links for $blocks blocks; new directories: $((dirs_after - dirs_before)); new directory entries: $((inodes_after - inodes_before))"
echo "RESULT dedup: $((hashes_after - hashes_before)) new block files; $((du_after - du_before)) bytes of directories and metadata = $(( (du_after - du_before) / blocks )) bytes per block, $((du_after - du_before)) bytes for the one file"

echo
echo "== SHA-256 as the store does it (1 MiB blocks, 1 core) vs openssl speed -evp sha256 -bytes 1048576 (target >= 0.9x)"
ours=(); theirs=(); ratios=()
for run in $(seq "$RUNS"); do
    o=$("$HASH" $((1 << 30)) $((1 << 20)) | awk '{print $1}')
    # openssl prints kB/s (1000 bytes) in its last column
    s=$(openssl speed -evp sha256 -bytes 1048576 -seconds 2 2>/dev/null | awk '/^sha256/ {v=$NF; sub("k","",v); print v/1000}')
    ours+=("$o"); theirs+=("$s"); ratios+=("$(div "$o" "$s")")
    echo "run $run: globofs ${o} MB/s, openssl ${s} MB/s, ratio $(div "$o" "$s")"
done
echo "RESULT hashing: $(median "${ratios[@]}")x openssl (globofs $(median "${ours[@]}") MB/s, openssl $(median "${theirs[@]}") MB/s; target 0.9x)"

echo
echo "== put of $SMALL_FILES small files vs cp -r (report; aim 0.5x)"
TREE=$WORK/tree
mkdir -p "$TREE"
dirs=$(( (SMALL_FILES + 99) / 100 ))
n=0
for d in $(seq "$dirs"); do
    mkdir -p "$TREE/d$d"
    for f in $(seq 100); do
        [ "$n" -ge "$SMALL_FILES" ] && break
        head -c $(( (n * 7919) % 8192 + 1 )) "$SRC" >"$TREE/d$d/f$f"
        n=$((n + 1))
    done
done
cpr_t=(); putr_t=(); ratios=()
for run in $(seq "$RUNS"); do
    rm -rf "$WORK/tree-copy"; drop
    t_cpr=$(timed "cp -r '$TREE' '$WORK/tree-copy' && sync")
    rm -rf "$WORK/tree-copy"; fresh_store; drop
    t_putr=$(timed "'$BIN' put '$TREE' /tree && sync")
    cpr_t+=("$t_cpr"); putr_t+=("$t_putr"); ratios+=("$(div "$t_cpr" "$t_putr")")
    echo "run $run: cp -r ${t_cpr}s, put ${t_putr}s, ratio $(div "$t_cpr" "$t_putr")"
done
echo "median: cp -r $(median "${cpr_t[@]}")s, put $(median "${putr_t[@]}")s ($(div "$SMALL_FILES" "$(median "${putr_t[@]}")") files/s)"
echo "RESULT small files put/cp -r: $(median "${ratios[@]}")x (aim 0.5x)"
