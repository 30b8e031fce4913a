# Sourced by the benchmarks (bench-everyday.sh, bench-space.sh): the generated
# tree of issue 18, packed as a tarball.
#
# tree_tarball WORKDIR ENTRIES -> prints the path of WORKDIR/tree-ENTRIES.tar,
# made once and reused. The tree is deterministic (seed 18): ENTRIES entries,
# one directory per 13, file sizes log-uniform from 8 bytes to 4 MiB (most
# small; about 15 KiB a file on average, ~300 MB at 20,000 entries).
tree_tarball() {
  local work=$1 entries=$2
  local tarball=$work/tree-$entries.tar
  if [ ! -f "$tarball" ]; then
    rm -rf "$work/tree-src"
    python3 - "$work/tree-src" "$entries" <<'EOF'
import os, random, sys
root, entries = sys.argv[1], int(sys.argv[2])
rng = random.Random(18)
dirs = [root]
os.makedirs(root, exist_ok=True)
made = 0
while made < entries:
    if made % 13 == 0:
        d = os.path.join(rng.choice(dirs), "d%05d" % made)
        os.mkdir(d)
        dirs.append(d)
    else:
        size = int(8 * ((4 << 20) / 8) ** (rng.random() ** 3))
        with open(os.path.join(rng.choice(dirs), "f%05d.txt" % made), "wb") as f:
            f.write(rng.randbytes(min(size, 4096)) * (size // 4096) + rng.randbytes(size % 4096))
    made += 1
EOF
    tar -C "$work/tree-src" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$work/tree-src"
  fi
  echo "$tarball"
}

# tree_files TARBALL -> the number of regular files in it
tree_files() {
  tar -tf "$1" | grep -vc '/$'
}
