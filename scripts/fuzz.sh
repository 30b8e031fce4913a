#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS_PER_TARGET (default 10; the
# FUZZ_SECONDS environment variable sets it for longer runs on demand), each
# starting from its committed seeds (fuzz/seeds/<target>/) and what earlier runs
# found (fuzz/corpus/<target>/, not committed). Fails on a crash and prints the
# input's path (fuzz/artifacts/<target>/...): make it a regression test in the
# main crate. Needs a nightly toolchain and cargo-fuzz (installed into
# target/tools when missing); without them it prints `skipped:` and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-${FUZZ_SECONDS:-10}}
case $seconds in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]" >&2; exit 2 ;;
esac

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "skipped: fuzzing: no nightly toolchain (rustup toolchain install nightly)"
  exit 0
fi
tools=$PWD/target/tools
export PATH=$tools/bin:$PATH
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (crates.io) into $tools"
  if ! cargo install cargo-fuzz --locked --root "$tools" --quiet; then
    echo "skipped: fuzzing: cargo-fuzz did not install"
    exit 0
  fi
fi

# No sanitizer: the targets are safe Rust, so a panic is what a crash is here;
# libFuzzer's coverage guidance is kept, and builds and runs are much faster.
fuzz=(cargo +nightly fuzz)
opts=(--sanitizer none)
targets=$("${fuzz[@]}" list)
start=$SECONDS
echo "== building fuzz targets: $(echo $targets)"
"${fuzz[@]}" build "${opts[@]}"
echo "   built in $((SECONDS - start)) s"

failed=()
for target in $targets; do
  corpus=fuzz/corpus/$target
  artifacts=fuzz/artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  log=$(mktemp)
  echo "== fuzz $target for ${seconds}s"
  if "${fuzz[@]}" run "${opts[@]}" "$target" "$corpus" "fuzz/seeds/$target" -- \
      -max_total_time="$seconds" -artifact_prefix="$artifacts/" -print_final_stats=1 \
      >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "   $target: ${runs:-?} executions, no crash"
  else
    tail -40 "$log"
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    echo "FAILED: fuzz target $target crashed; input: ${crash:-see the log above}"
    echo "   replay: cargo +nightly fuzz run ${opts[*]} $target ${crash:-<input>}"
    failed+=("$target")
  fi
  rm -f "$log"
done
echo "== fuzzing took $((SECONDS - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets that crashed: ${failed[*]}" >&2
  exit 1
fi
