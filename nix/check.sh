#!/usr/bin/env bash
# Offline checks of the Nix packaging (flake.nix, flake.lock, modules/, nix/,
# examples/). Needs only the `nix` command (Debian: nix-bin) and, for the
# evaluation tests, a checkout of nixpkgs' lib (nix-community/nixpkgs.lib,
# the commit matching nixos-25.05 for a Nix as old as 2.8): NIXPKGS_LIB when
# set, else ../shared/nixpkgs-lib beside the repository's root. No network, no
# binary cache: nothing is built.
#
# Prints one line per check: `ok: ...`, `FAIL: ...` or `skipped: ... (reason)`,
# details of a failure indented below it; exits 1 if anything failed.
#
#   bash nix/check.sh                      # from anywhere in the repo
#   NIXPKGS_LIB=/path/to/nixpkgs.lib bash nix/check.sh
#   GLOBOFS=target/debug/globofs bash nix/check.sh   # binary for `validate`
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

failures=0
ok() { echo "ok: $*"; }
fail() {
  echo "FAIL: $1"
  if [ -n "${2:-}" ]; then printf '%s\n' "$2" | sed 's/^/    /'; fi
  failures=$((failures + 1))
}
skip() { echo "skipped: $*"; }

# The pin flake.lock must hold (nixos-25.05, a real published revision).
pin_rev=40ee5e1944bebdd128f9fbada44faefddfde29bd
pin_nar=sha256-0MnuWoN+n1UYaGBIpqpPs9I9ZHW4kynits4mrnh1Pk4=
pin_modified=1767051569
pin_ref=nixos-25.05

if ! command -v nix-instantiate >/dev/null 2>&1 || ! command -v nix >/dev/null 2>&1; then
  skip "all Nix checks (no nix command: apt-get install nix-bin)"
  exit 0
fi

export NIX_CONFIG="${NIX_CONFIG:+$NIX_CONFIG
}experimental-features = nix-command flakes
substituters =
warn-dirty = false"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- nix itself and its store --------------------------------------------------------
# As root, nix creates /nix/store and its database on first use; a store that
# cannot be written shows up here rather than as odd failures further down.
if [ ! -d /nix/var/nix ] && [ "$(id -u)" = 0 ]; then
  nix-store --init >/dev/null 2>&1 || true
fi
if out=$(nix-instantiate --eval --expr 'builtins.nixVersion' 2>&1) \
  && out2=$(nix-instantiate --eval --expr 'builtins.toString (builtins.toFile "probe" "x")' 2>&1); then
  ok "nix ${out//\"/} evaluates and can write its store"
else
  fail "nix cannot evaluate or write its store" "$out ${out2:-}"
  exit 1
fi

# ---- every .nix file parses --------------------------------------------------------------
while IFS= read -r file; do
  if err=$(nix-instantiate --parse "$file" 2>&1 >/dev/null); then
    ok "parses: ${file#./}"
  else
    fail "parses: ${file#./}" "$err"
  fi
done < <(find . -name '*.nix' -not -path './.git/*' -not -path './target/*' -not -path './result*' | sort)

# ---- flake.lock --------------------------------------------------------------------------
expected_pin="[\"$pin_rev\",\"$pin_nar\",$pin_modified,\"$pin_ref\",\"NixOS\",\"nixpkgs\",\"github\",7]"
if pin=$(nix-instantiate --eval --strict --json --expr '
  let
    l = builtins.fromJSON (builtins.readFile ./flake.lock);
    n = l.nodes.${l.nodes.${l.root}.inputs.nixpkgs};
  in [ n.locked.rev n.locked.narHash n.locked.lastModified n.original.ref
       n.locked.owner n.locked.repo n.locked.type l.version ]' 2>&1) \
  && [ "$pin" = "$expected_pin" ]; then
  ok "flake.lock pins nixpkgs $pin_ref at ${pin_rev:0:12} (narHash, lastModified as published)"
else
  fail "flake.lock pins nixpkgs $pin_ref at $pin_rev" "expected $expected_pin
got      $pin"
fi

# `nix flake metadata` only reads flake.nix and flake.lock; a copy of the two
# as a path: flake keeps untracked or dirty files of the work tree out of it.
mkdir -p "$tmp/flake"
cp flake.nix flake.lock "$tmp/flake/"
if meta=$(nix flake metadata --offline --no-update-lock-file --json "path:$tmp/flake" 2>&1) \
  && [[ $meta == *"\"rev\":\"$pin_rev\""* ]] && [[ $meta == *"\"ref\":\"$pin_ref\""* ]]; then
  ok "flake.lock agrees with flake.nix (nix flake metadata --offline --no-update-lock-file)"
else
  fail "flake.lock agrees with flake.nix (nix flake metadata --offline --no-update-lock-file)" "$meta"
fi

# A git flake sees tracked files only: `nix build` from a clone needs these.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  untracked=()
  for f in flake.nix flake.lock modules/globofs.nix nix/package.nix nix/source.nix \
    nix/checks.nix nix/validate-specs.nix nix/vm-test.nix Cargo.toml Cargo.lock; do
    git ls-files --error-unmatch "$f" >/dev/null 2>&1 || untracked+=("$f")
  done
  if [ ${#untracked[@]} = 0 ]; then
    ok "the files the flake builds from are tracked by git (incl. Cargo.lock)"
  else
    fail "the files the flake builds from are tracked by git" "not tracked: ${untracked[*]}"
  fi
else
  skip "git-tracked files (not a git work tree)"
fi

# ---- nixpkgs lib ------------------------------------------------------------------------
lib_dir=
# Beside the repository's root, by name (dirname, not `..`): a clone reached
# through a symlink still finds the shared directory next to its link (CI
# clones into /var/tmp/ci-run beside /var/tmp/shared).
shared_lib="$(dirname "$repo")/shared/nixpkgs-lib"
candidate=${NIXPKGS_LIB:-}
if [ -z "$candidate" ] && [ -d "$shared_lib" ]; then
  candidate=$shared_lib
fi
if [ -n "$candidate" ]; then
  if [ -f "$candidate/lib/default.nix" ]; then
    lib_dir=$(cd "$candidate/lib" && pwd)
  elif [ -f "$candidate/default.nix" ] && [ -f "$candidate/modules.nix" ]; then
    lib_dir=$(cd "$candidate" && pwd)
  fi
fi

globofs_bin=
for c in "${GLOBOFS:-}" target/release/globofs target/debug/globofs "$(command -v globofs 2>/dev/null || true)"; do
  if [ -n "$c" ] && [ -x "$c" ]; then
    globofs_bin=$c
    break
  fi
done

if [ -z "$lib_dir" ] && [ -n "${NIXPKGS_LIB:-}" ]; then
  fail "NIXPKGS_LIB=$NIXPKGS_LIB holds no nixpkgs lib (neither lib/default.nix nor default.nix + modules.nix)"
elif [ -z "$lib_dir" ]; then
  reason="no nixpkgs lib: neither NIXPKGS_LIB nor $shared_lib"
  skip "module evaluation, two-node example ($reason)"
  skip "module rejects a wrong option type ($reason)"
  skip "module rejects an unknown option ($reason)"
  skip "module rejects a relative path, an upper-case node id, a settings conflict, an undeclared peer ($reason)"
  skip "flake outputs evaluate with a stub nixpkgs ($reason)"
  skip "generated specs pass globofs validate ($reason)"
elif ! libv=$(nix-instantiate --eval --strict --expr \
  "let lib = import \"$lib_dir\"; in lib.version + (if lib.fileset.toList ./flake.nix == [] then \"\" else \"\")" 2>&1); then
  fail "nixpkgs lib at $lib_dir works with this nix (a lib newer than 25.05 needs nix >= 2.18)" "$libv"
else
  ok "nixpkgs lib ${libv//\"/} from $lib_dir"

  eval_test() { # file, then extra nix-instantiate arguments
    local file=$1
    shift
    # read-write: the tests read the scripts a unit runs (builtins.toFile)
    nix-instantiate --read-write-mode --eval --strict --json "$file" --argstr libPath "$lib_dir" "$@"
  }

  # Positive: the two-node example, its unit, spec, assertions.
  if out=$(eval_test nix/eval-module-test.nix 2>&1) && [[ $out == *'"failures":[]'* ]]; then
    [[ $out =~ \"checked\":([0-9]+) ]]
    ok "module evaluates: ${BASH_REMATCH[1]} checks (two-node example: unit, spec, hardening, assertions; peers over sshfs/nfs/path: fileSystems, owners, sshd jail; paths with spaces, % and \$; mkDefault fuse, cross build, reload on a new spec (reloadTriggers, ExecReload), restartIfChanged; ownership and the root's owner/group/mode; README.md's snippet for alpha and beta)"
  else
    fail "module evaluates: two-node example" "$out"
  fi

  # Negative: each case must fail to evaluate, with the expected error.
  expect_failure() { # label, case, expected error text
    local label=$1 case=$2 pattern=$3 err
    if err=$(eval_test nix/eval-module-test.nix --argstr case "$case" 2>&1 >/dev/null); then
      fail "module rejects $label: it evaluated"
    elif [[ $err == *"$pattern"* ]]; then
      ok "module rejects $label ($( (grep -m1 -o "error: ..*" <<<"$err" || grep -m1 -F -- "$pattern" <<<"$err") | sed 's/^ *//' | cut -c1-110)...)"
    else
      fail "module rejects $label: it failed, but not with \"$pattern\"" "$err"
    fi
  }
  expect_failure "a wrong option type (major = \"high\")" wrong-type "is not of type"
  expect_failure "an unknown option (nodeID)" unknown-option "does not exist"
  expect_failure "a relative volume path" relative-path "is not of type \`absolute path"
  expect_failure "an upper-case node id" bad-node-id "is not of type \`lower-case UUID"
  expect_failure "settings overriding a typed option" settings-conflict "has conflicting definition values"
  expect_failure "a volume naming an undeclared peer (as nixos-rebuild reports assertions)" wrong-peer \
    'services.globofs.volumes.shared.peers: "gamma" is not declared in services.globofs.peers'


  if out=$(eval_test nix/eval-flake-test.nix 2>&1) && [[ $out == *'"failures":[]'* ]]; then
    [[ $out =~ \"checked\":([0-9]+) ]]
    ok "flake outputs evaluate with a stub nixpkgs: ${BASH_REMATCH[1]} checks (packages, apps, module, lib, checks, devShells, source filter)"
  else
    fail "flake outputs evaluate with a stub nixpkgs" "$out"
  fi

  # The module's YAML is this JSON (pkgs.formats.yaml writes it with the same
  # keys; JSON is YAML): the real binary must accept it.
  if [ -z "$globofs_bin" ]; then
    skip "generated specs pass globofs validate (no globofs binary: cargo build, or set GLOBOFS)"
  else
    bad=
    for node in alpha beta peers readme-alpha readme-beta; do
      if eval_test nix/eval-module-test.nix -A "specs.$node" >"$tmp/$node.yaml" 2>"$tmp/err" \
        && "$globofs_bin" validate "$tmp/$node.yaml" >"$tmp/out" 2>&1; then
        :
      else
        bad+="$node: $(cat "$tmp/err" "$tmp/out")"$'\n'
      fi
    done
    if [ -z "$bad" ]; then
      ok "the module's generated specs (alpha, beta, named peers with owners, README's for alpha and beta) pass $globofs_bin validate"
    else
      fail "the module's generated specs pass $globofs_bin validate" "$bad"
    fi
  fi
fi

# ---- example specs ----------------------------------------------------------------------
shopt -s nullglob
examples=(examples/*.yaml examples/*.yml)
if [ ${#examples[@]} = 0 ]; then
  fail "examples/*.yaml exist (checks.examples validates them)"
elif [ -z "$globofs_bin" ]; then
  skip "examples pass globofs validate (no globofs binary: cargo build, or set GLOBOFS)"
elif out=$("$globofs_bin" validate "${examples[@]}" 2>&1); then
  ok "examples pass $globofs_bin validate: ${examples[*]}"
else
  fail "examples pass $globofs_bin validate" "$out"
fi

# ---- what needs nixpkgs itself ----------------------------------------------------------
skip "nix build .#default, clippy, fmt, checks.examples (need the nixpkgs source and a binary cache; none reachable here)"
skip "checks.<system>.vm-two-nodes NixOS VM test (needs nixpkgs, a binary cache and KVM)"

if [ "$failures" != 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
