# Sourced by the benchmarks (bench-everyday.sh, bench-space.sh): the generated
# tree of issue 18, packed as a tarball.
#
# tree_tarball WORKDIR ENTRIES -> prints the path of WORKDIR/tree-ENTRIES.tar,
# made once and reused. The tree is deterministic (seed 18): ENTRIES entries,
# one directory per 13, file sizes 8 * 2^(19 u^3) bytes for u uniform in
# [0, 1): 8 bytes to 4 MiB, median ~40 bytes, mean ~110 KB (18,461 files and
# 1.96 GB of tar at 20,000 entries). A file's content repeats one random 4 KiB
# page, so its aligned blocks of 4 KiB or more are all the same: the store
# dedupes them within a file, a native filesystem does not.
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
