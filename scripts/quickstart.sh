#!/usr/bin/env bash
# Builds globofs and runs the main job: a volume from SPEC (default: a spec it
# generates under ./demo), reconciled and mounted in the foreground.
# Usage: bash scripts/quickstart.sh [SPEC]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v fusermount3 >/dev/null && [ "$(id -u)" -eq 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
fi
cargo build --release --quiet
bin=target/release/globofs
spec=${1:-}
if [ -z "$spec" ]; then
  spec=demo/spec.yaml
  if [ ! -f "$spec" ]; then
    mkdir -p demo
    "$bin" init --volume "$PWD/demo/volume" --mount "$PWD/demo/mnt" > "$spec"
    echo "wrote $spec"
  fi
fi
"$bin" validate "$spec"
"$bin" --spec "$spec" reconcile
if "$bin" mount --help >/dev/null 2>&1; then
  mnt=$(sed -n 's/^  path: //p' "$spec" | head -1)
  mkdir -p "${mnt:-demo/mnt}"
  echo "mounting; stop with Ctrl-C"
  exec "$bin" --spec "$spec" mount
else
  echo "volume ready: $("$bin" --spec "$spec" ls -R | wc -l) entries; try: $bin --spec $spec put README.md /"
fi
