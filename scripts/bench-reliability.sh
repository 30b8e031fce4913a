#!/usr/bin/env bash
# What the reliability work costs on the hot paths, side by side with an older
# build, in one run: `put` of many small files (each commit now writes an intent
# line), a `sync` pass with nothing new (it now refreshes digests and looks for
# dead writers' intent files), and a `sync --full` with nothing different
# (one digest read per peer).
#
#   scripts/bench-reliability.sh OLD_BIN NEW_BIN [WORKDIR]
#   RUNS=5 FILES=2000 scripts/bench-reliability.sh ...
#
# OLD_BIN and NEW_BIN are two `globofs` binaries (e.g. release builds of two
# commits). Prints the median of RUNS runs of each and the ratio new/old.
set -euo pipefail

OLD=${1:?old globofs binary}
NEW=${2:?new globofs binary}
WORK=${3:-/var/tmp/globofs-bench-rel}
RUNS=${RUNS:-5}
FILES=${FILES:-2000}

rm -rf "$WORK"
mkdir -p "$WORK/src"
trap 'rm -rf "$WORK"' EXIT
for i in $(seq 1 "$FILES"); do
    d=$WORK/src/d$((i % 20))
    mkdir -p "$d"
    printf 'file %s of the benchmark\n' "$i" > "$d/f$i"
done

# Two nodes whose peers are plain directories, made by BIN in DIR.
setup() {
    local bin=$1 dir=$2
    rm -rf "$dir"
    mkdir -p "$dir"
    local a=11111111-1111-4111-8111-111111111111 b=22222222-2222-4222-8222-222222222222
    cat > "$dir/a.yaml" <<EOF
volume: $dir/va
node: {id: $a}
block_size: 64KiB
peers: [{id: $b, path: $dir/vb/$b}]
EOF
    cat > "$dir/b.yaml" <<EOF
volume: $dir/vb
node: {id: $b}
block_size: 64KiB
peers: [{id: $a, path: $dir/va/$a}]
EOF
    "$bin" --spec "$dir/a.yaml" reconcile > /dev/null
    "$bin" --spec "$dir/b.yaml" reconcile > /dev/null
}

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A T
for run in $(seq 1 "$RUNS"); do
    for side in old new; do
        bin=$OLD; [ "$side" = new ] && bin=$NEW
        dir=$WORK/$side
        setup "$bin" "$dir"
        sync
        t0=$(now); "$bin" --spec "$dir/a.yaml" put "$WORK/src" /tree > /dev/null; sync; t1=$(now)
        T[$side,put]+="$(echo "$t1 - $t0" | bc) "
        "$bin" --spec "$dir/a.yaml" sync > /dev/null
        "$bin" --spec "$dir/b.yaml" sync > /dev/null
        "$bin" --spec "$dir/a.yaml" sync > /dev/null
        t0=$(now); for _ in 1 2 3 4 5 6 7 8 9 10; do "$bin" --spec "$dir/b.yaml" sync > /dev/null; done; t1=$(now)
        T[$side,idle]+="$(echo "($t1 - $t0) / 10" | bc -l) "
        if [ "$side" = new ]; then
            t0=$(now); "$bin" --spec "$dir/b.yaml" sync --full > /dev/null; t1=$(now)
            T[new,full]+="$(echo "$t1 - $t0" | bc) "
        fi
    done
done

report() {
    local name=$1 what=$2
    local old new
    old=$(tr ' ' '\n' <<< "${T[old,$what]}" | grep . | median)
    new=$(tr ' ' '\n' <<< "${T[new,$what]}" | grep . | median)
    printf '%-40s old %8.3f s   new %8.3f s   new/old %.2fx\n' "$name" "$old" "$new" "$(echo "$new / $old" | bc -l)"
}
echo "medians of $RUNS runs, $FILES files"
report "put of $FILES small files (+ sync)" put
report "sync pass, nothing new (B)" idle
full=$(tr ' ' '\n' <<< "${T[new,full]}" | grep . | median)
printf '%-40s new %8.3f s\n' "sync --full, nothing different (B)" "$full"
