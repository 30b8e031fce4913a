#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need (Debian
# packages) when missing, then formatting, lints, the Rust tests (real FUSE
# mounts, a real sshd on 127.0.0.1 and sshfs peers) and the offline Nix checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v sshfs >/dev/null || need+=(sshfs)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v bindfs >/dev/null || need+=(bindfs)
command -v nix-instantiate >/dev/null || need+=(nix-bin)
command -v rsync >/dev/null || need+=(rsync)
command -v getfattr >/dev/null || need+=(attr)
command -v setfacl >/dev/null || need+=(acl)
command -v setpriv >/dev/null || need+=(util-linux)
command -v strace >/dev/null || need+=(strace)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need[*]} (run as root, or: sudo apt-get install -y ${need[*]})" >&2
    exit 1
  fi
  echo "== installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The external POSIX suite (tests/mount_pjdfstest.rs runs it over a mount).
tools=$PWD/target/tools
if [ ! -x "$tools/bin/pjdfstest" ]; then
  echo "== installing pjdfstest 0.2.2 (crates.io) into $tools"
  cargo install pjdfstest --version 0.2.2 --locked --root "$tools" --quiet \
    || echo "pjdfstest did not install; its test will say skipped"
fi
export PJDFSTEST=$tools/bin/pjdfstest

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast --test-threads 2
else
  cargo test --no-fail-fast
fi

echo "== fuzzing (short run; FUZZ_SECONDS=600 scripts/fuzz.sh for a longer one)"
bash scripts/fuzz.sh 5

if [ -f nix/check.sh ]; then
  echo "== nix checks"
  bash nix/check.sh
fi
