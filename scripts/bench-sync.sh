#!/usr/bin/env bash
# Sync benchmarks, each side by side with reference tools in one run; every
# figure is the median of RUNS runs. Results and targets: docs/PERFORMANCE.md.
#
#   scripts/bench-sync.sh [WORKDIR]          (as root; default /var/tmp/globofs-bench-sync)
#   RUNS=5 FILES=10000 APPLY_BIG=100000 APPLY_SMALL=1000 THREADS=16 scripts/bench-sync.sh
#   SMALL=1 scripts/bench-sync.sh            (quick check of the script: 500 files, 2 runs)
#   BENCH=mirror|apply|all                   (which part; default all)
#   REUSE=1                                  (apply: reuse volumes a previous run of it built)
#
# mirror: node A holds a FILES-file volume (100 B to 200 KB per file, about
#   640 MiB for 10,000 files, pseudo-random but deterministic content), put with
#   `globofs put`. Node B reaches A's volume directory through sshfs (a private
#   sshd on 127.0.0.1 with generated keys), has applied A's versions with
#   `globofs sync` (versions only, no blocks), and times `globofs mirror
#   --threads THREADS`. The references copy the same source tree, which lies in
#   A's volume directory, over the same sshfs mount into local files: `rsync -a`,
#   `rclone copy --transfers 8`, and `find -type f -print0 | xargs -0 -P16 -n 32
#   cp --parents` (directories made first; 16 cp processes at a time, 32 files each). Before every timed run:
#   the destination is reset, sshfs is remounted and page caches are dropped
#   (`sync; echo 3 > /proc/sys/vm/drop_caches`); every timed command ends with `sync`.
#
# apply: the time of `globofs sync` on B applying one new version pushed by A
#   (peers as plain local directories), with an APPLY_BIG-file volume and with an
#   APPLY_SMALL-file volume; RUNS alternating runs, each a new version of one file.
set -euo pipefail

cd "$(dirname "$0")/.."
WORK=${1:-/var/tmp/globofs-bench-sync}
BENCH=${BENCH:-all}
if [ "${SMALL:-0}" = 1 ]; then
    RUNS=${RUNS:-2}; FILES=${FILES:-500}; APPLY_BIG=${APPLY_BIG:-2000}; APPLY_SMALL=${APPLY_SMALL:-100}
fi
RUNS=${RUNS:-5}
FILES=${FILES:-10000}
APPLY_BIG=${APPLY_BIG:-100000}
APPLY_SMALL=${APPLY_SMALL:-1000}
THREADS=${THREADS:-16}

for tool in sshd sshfs rsync rclone fusermount3; do
    command -v $tool >/dev/null || [ -x /usr/sbin/$tool ] || { echo "error: $tool is not installed" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "error: run as root (drops page caches, sshd logs in as root)" >&2; exit 1; }

cargo build --release --quiet --bin globofs
BIN=$PWD/target/release/globofs

now() { date +%s.%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
# elapsed seconds of a shell snippet (run with bash -c); the snippet ends with sync
timed() { local t0 t1; t0=$(now); bash -c "$1" >"$WORK/last.out" 2>&1 || { cat "$WORK/last.out" >&2; return 1; }; t1=$(now); awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b-a}'; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

SSHD_PID=
MNT=$WORK/mnt-a
cleanup() {
    if mountpoint -q "$MNT" 2>/dev/null; then timeout 10 fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || true; fi
    if [ -n "$SSHD_PID" ]; then kill "$SSHD_PID" 2>/dev/null || true; wait "$SSHD_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# node SPEC VOLUME ID [PEER_ID=PATH...]: writes a spec and builds the volume
node() {
    local spec=$1 volume=$2 id=$3; shift 3
    local peers=()
    for p in "$@"; do peers+=(--peer "$p"); done
    "$BIN" init --volume "$volume" --node-id "$id" --block-size 1MiB "${peers[@]}" >"$spec"
    "$BIN" --spec "$spec" reconcile >/dev/null 2>&1   # (warns that the peer is not there yet)
}
A_ID=a0000000-0000-4000-8000-0000000000a1
B_ID=b0000000-0000-4000-8000-0000000000b2

echo "== machine: $(nproc) cores, $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | sed 's/^ *//'), $(df -hT /var/tmp | awk 'NR==2 {print $2 " on " $1}'), $(date -u '+%Y-%m-%d %H:%M UTC'), load:$(uptime | sed 's/.*load average://')"
echo "== $("$BIN" --version), rsync $(rsync --version | awk 'NR==1 {print $3}'), $(rclone version | head -1), $(sshfs --version 2>&1 | head -1)"

mkdir -p "$WORK"

bench_mirror() {
    local W=$WORK/mirror
    if mountpoint -q "$MNT"; then fusermount3 -uz "$MNT"; fi
    rm -rf "$W"; mkdir -p "$W" "$MNT"

    # sshd on a free port, with a generated host key and client key
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    ssh-keygen -q -t ed25519 -N '' -f "$W/host_key"
    ssh-keygen -q -t ed25519 -N '' -f "$W/client_key"
    cp "$W/client_key.pub" "$W/authorized_keys"
    mkdir -p /run/sshd
    cat >"$W/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $W/host_key
AuthorizedKeysFile $W/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
PidFile $W/sshd.pid
Subsystem sftp internal-sftp
MaxStartups 100
MaxSessions 100
EOF
    /usr/sbin/sshd -D -e -f "$W/sshd_config" 2>"$W/sshd.log" &
    SSHD_PID=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    remount() {
        if mountpoint -q "$MNT"; then timeout 20 fusermount3 -u "$MNT" || fusermount3 -uz "$MNT"; fi
        sshfs "root@127.0.0.1:$W/a" "$MNT" -o "port=$port,IdentityFile=$W/client_key,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,LogLevel=ERROR,BatchMode=yes"
        mountpoint -q "$MNT" || { echo "error: sshfs did not mount $MNT" >&2; return 1; }
    }

    # the tree: FILES files in directories of 100, sizes 100 + (204800 - 100) * u^2
    # (u uniform in [0,1), fixed seed), content cut from one AES-CTR keystream
    local src=$W/a/tree
    python3 - "$src" "$FILES" <<'PY'
import os, random, subprocess, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(5)
sizes = [100 + int((204800 - 100) * rng.random() ** 2) for _ in range(n)]
stream = subprocess.Popen(
    "openssl enc -aes-128-ctr -pass pass:globofs-sync -nosalt -pbkdf2 </dev/zero 2>/dev/null",
    shell=True, stdout=subprocess.PIPE)
for i, size in enumerate(sizes):
    d = f"{root}/d{i // 100:03d}"
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:05d}", "wb") as f:
        f.write(stream.stdout.read(size))
stream.kill()
print(f"tree: {n} files, {sum(sizes)} bytes ({sum(sizes) / 2**20:.0f} MiB), {min(sizes)}..{max(sizes)} bytes")
PY
    local bytes
    bytes=$(du -sb --apparent-size "$src" | cut -f1)

    # A holds the volume; A pushes to B directly, B reaches A through sshfs
    node "$W/a.yaml" "$W/a" "$A_ID" "$B_ID=$W/b/$B_ID"
    node "$W/b.yaml" "$W/b" "$B_ID" "$A_ID=$MNT/$A_ID"
    local t0; t0=$(now)
    "$BIN" --spec "$W/a.yaml" put "$src" /tree >/dev/null
    echo "set-up: globofs put of the tree on A: $(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.1f", b-a}') s"
    remount
    "$BIN" --spec "$W/a.yaml" sync | tail -1
    t0=$(now)
    "$BIN" --spec "$W/b.yaml" sync | tail -1
    echo "set-up: B applies A's versions: $(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.1f", b-a}') s"
    cp -a "$W/b" "$W/b.applied"
    local dest=$W/copy
    echo
    echo "== mirror of $FILES files ($((bytes >> 20)) MiB) over sshfs: globofs mirror --threads $THREADS vs rsync -a, rclone copy --transfers 8, xargs -P16 cp"
    local g=() r=() c=() p=() rg=() rp=()
    for run in $(seq "$RUNS"); do
        rm -rf "$dest"; mkdir -p "$dest"; remount; drop
        local t_rsync t_rclone t_par t_glob
        t_rsync=$(timed "rsync -a '$MNT/tree/' '$dest/' && sync")
        rm -rf "$dest"; mkdir -p "$dest"; remount; drop
        t_rclone=$(timed "rclone copy --transfers 8 '$MNT/tree' '$dest' && sync")
        rm -rf "$dest"; mkdir -p "$dest"; remount; drop
        t_par=$(timed "cd '$MNT/tree' && find . -type d -print0 | (cd '$dest' && xargs -0 mkdir -p) && find . -type f -print0 | xargs -0 -P16 -n 32 cp --parents -t '$dest' && sync")
        [ "$(du -sb --apparent-size "$dest" | cut -f1)" -ge "$bytes" ] || { echo "error: parallel copy is incomplete" >&2; exit 1; }
        rm -rf "$dest" "$W/b"; cp -a "$W/b.applied" "$W/b"; remount; drop
        t_glob=$(timed "'$BIN' --spec '$W/b.yaml' mirror --threads $THREADS && sync")
        local fetched; fetched=$(grep -o '[0-9]* fetched' "$WORK/last.out" | cut -d' ' -f1)
        [ "$fetched" = "$FILES" ] || { echo "error: mirror fetched $fetched blocks, not $FILES" >&2; cat "$WORK/last.out" >&2; exit 1; }
        g+=("$t_glob"); r+=("$t_rsync"); c+=("$t_rclone"); p+=("$t_par")
        rg+=("$(div "$t_glob" "$t_rclone")"); rp+=("$(div "$t_glob" "$t_par")")
        echo "run $run: rsync ${t_rsync}s, rclone ${t_rclone}s, xargs-cp ${t_par}s, globofs mirror ${t_glob}s; mirror/rclone $(div "$t_glob" "$t_rclone"), mirror/xargs-cp $(div "$t_glob" "$t_par")"
    done
    # the mirrored volume reads back identical (blocks are local now)
    timeout 20 fusermount3 -u "$MNT"
    "$BIN" --spec "$W/b.yaml" get /tree "$W/check" >/dev/null 2>&1
    diff -r "$src" "$W/check" >/dev/null && echo "mirrored tree is identical to the source (read with the peer unmounted)"
    rm -rf "$W/check"
    echo "median: rsync $(median "${r[@]}")s, rclone $(median "${c[@]}")s, xargs-cp $(median "${p[@]}")s, globofs mirror $(median "${g[@]}")s"
    echo "RESULT mirror time / rclone time: $(median "${rg[@]}")x (median of $RUNS ratios; target < 1)"
    echo "RESULT mirror time / 16-thread copy time: $(median "${rp[@]}")x (target <= 1.2)"
    kill "$SSHD_PID" 2>/dev/null || true; wait "$SSHD_PID" 2>/dev/null || true; SSHD_PID=
}

# apply_volume NAME N: A puts N tiny files, pushes them, B applies them.
apply_volume() {
    local W=$WORK/apply-$1 n=$2
    if [ "${REUSE:-0}" = 1 ] && [ "$(cat "$W/ready" 2>/dev/null)" = "$n" ]; then
        echo "set-up: reusing the $n-file volumes in $W (REUSE=1)"; return
    fi
    rm -rf "$W"; mkdir -p "$W"
    python3 - "$W/tree" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = f"{root}/d{i // 1000:03d}"
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:06d}", "wb") as f:
        f.write(b"%d\n" % i)
PY
    node "$W/a.yaml" "$W/a" "$A_ID" "$B_ID=$W/b/$B_ID"
    node "$W/b.yaml" "$W/b" "$B_ID" "$A_ID=$W/a/$A_ID"
    local t0; t0=$(now)
    "$BIN" --spec "$W/a.yaml" put "$W/tree" /tree >/dev/null
    "$BIN" --spec "$W/a.yaml" sync >/dev/null
    "$BIN" --spec "$W/b.yaml" sync >/dev/null
    "$BIN" --spec "$W/b.yaml" sync >/dev/null   # B's own pass settles (nothing to relay)
    "$BIN" --spec "$W/a.yaml" sync >/dev/null
    rm -rf "$W/tree"
    echo "$n" >"$W/ready"
    echo "set-up: $n-file volume on A and B: $(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.1f", b-a}') s"
}

# one run: A writes a new version of one file and pushes it; time B's sync
apply_once() {
    local W=$WORK/apply-$1 run=$2
    printf 'changed %s\n' "$run" >"$W/one"
    "$BIN" --spec "$W/a.yaml" put "$W/one" /tree/d000/f000007 >/dev/null
    "$BIN" --spec "$W/a.yaml" sync >/dev/null
    drop
    local t
    t=$(timed "'$BIN' --spec '$W/b.yaml' sync && sync")
    grep -q "applied 1," "$WORK/last.out" || { echo "error: B did not apply exactly one version" >&2; cat "$WORK/last.out" >&2; exit 1; }
    [ "$("$BIN" --spec "$W/b.yaml" get /tree/d000/f000007 -)" = "changed $run" ] || { echo "error: B does not read the new content" >&2; exit 1; }
    echo "$t"
}

bench_apply() {
    echo
    echo "== apply one changed file: globofs sync on B with a $APPLY_BIG-file volume vs a $APPLY_SMALL-file volume (peers as local directories)"
    apply_volume small "$APPLY_SMALL"
    apply_volume big "$APPLY_BIG"
    local s=() b=() q=()
    for run in $(seq "$RUNS"); do
        local ts tb
        ts=$(apply_once small "$run")
        tb=$(apply_once big "$run")
        s+=("$ts"); b+=("$tb"); q+=("$(div "$tb" "$ts")")
        echo "run $run: $APPLY_SMALL files ${ts}s, $APPLY_BIG files ${tb}s, ratio $(div "$tb" "$ts")"
    done
    echo "median: $APPLY_SMALL files $(median "${s[@]}")s, $APPLY_BIG files $(median "${b[@]}")s"
    echo "RESULT apply time $APPLY_BIG-file / $APPLY_SMALL-file volume: $(median "${q[@]}")x (median of $RUNS ratios; target <= 1.5)"
}

case $BENCH in
    mirror) bench_mirror ;;
    apply) bench_apply ;;
    all) bench_mirror; bench_apply ;;
    *) echo "error: BENCH must be mirror, apply or all" >&2; exit 2 ;;
esac
echo "load after: $(uptime | sed 's/.*load average://')"
echo "work dir: $WORK (remove it when done)"
