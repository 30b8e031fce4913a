//! Property-style: random creates, writes, deletes, renames and mkdirs on 2-3
//! nodes, synced in random orders while random links between peers go away and
//! come back; afterwards every node has the same tree and bytes, and no edit that
//! nobody superseded is lost (it is current, or kept as a conflict copy). Peers
//! are plain directories (symlinks) or sshfs mounts of 127.0.0.1. Seeded, so a
//! failure names the seed that reproduces it.

#[path = "common/nodes.rs"]
mod nodes;
#[path = "common/sshfs.rs"]
mod sshfs;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use globofs::layout::VPath;
use globofs::store::resolve::{conflict_name, resolve};
use globofs::store::{Attrs, Kind, Mtime, Store};
use nodes::{Cluster, Options, mount_point, vp};

/// xorshift64*: small, seeded, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// Directory names and file names never overlap (a file and a directory at one
// path is a separate case, covered by the store's resolution tests).
const DIRS: [&str; 4] = ["/d0", "/d1", "/d0/sub", "/d1/sub"];
const FILE_NAMES: [&str; 3] = ["a.txt", "b", "c.dat"];

fn file_paths() -> Vec<String> {
    let mut out: Vec<String> = FILE_NAMES.iter().map(|n| format!("/{n}")).collect();
    for dir in DIRS {
        for name in FILE_NAMES {
            out.push(format!("{dir}/{name}"));
        }
    }
    out
}

fn live_kind(store: &Store, path: &VPath) -> Option<Kind> {
    store.live(path).unwrap().map(|v| v.kind)
}

/// One random operation on `store`; failures that a user would see as errors
/// (ENOTEMPTY, a missing source) are simply skipped.
fn random_op(rng: &mut Rng, store: &Store, tag: u64) {
    let files = file_paths();
    match rng.below(10) {
        0..=3 => {
            let path = vp(&files[rng.below(files.len())]);
            let bytes = format!("content {tag}\n").repeat(1 + rng.below(3000));
            let _ = store.write_file(
                &path,
                &mut bytes.as_bytes(),
                Attrs {
                    mode: 0o644,
                    mtime: Mtime {
                        secs: 1_700_000_000 + tag as i64,
                        nanos: 0,
                    },
                },
                false,
            );
        }
        4 | 5 => {
            let path = vp(&files[rng.below(files.len())]);
            if live_kind(store, &path) == Some(Kind::File) {
                store.remove(&path).unwrap();
            }
        }
        6 | 7 => {
            let src = vp(&files[rng.below(files.len())]);
            let dst = vp(&files[rng.below(files.len())]);
            if src != dst && live_kind(store, &src) == Some(Kind::File) {
                let _lock = store.writer_lock().unwrap();
                store.make_parents(&dst, Mtime::now()).unwrap();
                drop(_lock);
                store.rename(&src, &dst, false).unwrap();
            }
        }
        8 => {
            let dir = vp(DIRS[rng.below(DIRS.len())]);
            if live_kind(store, &dir).is_none() {
                let _lock = store.writer_lock().unwrap();
                store.make_parents(&dir, Mtime::now()).unwrap();
                drop(_lock);
                store.mkdir(&dir, 0o755).unwrap();
            }
        }
        _ => {
            let dir = vp(DIRS[rng.below(DIRS.len())]);
            if live_kind(store, &dir) == Some(Kind::Dir) && store.list_dir(&dir).unwrap().is_empty()
            {
                store.remove(&dir).unwrap();
            }
        }
    }
}

/// Every path with versions under `root/`, read from disk.
fn all_paths(store: &Store) -> BTreeSet<VPath> {
    let mut out = BTreeSet::new();
    let mut stack = vec![VPath::root()];
    while let Some(dir) = stack.pop() {
        let Ok(listing) = std::fs::read_dir(store.path_dir(&dir)) else {
            continue;
        };
        for item in listing.flatten() {
            if let Some(name) = globofs::layout::name_from_disk(&item.file_name()) {
                let child = dir.join(&name).unwrap();
                out.insert(child.clone());
                stack.push(child);
            }
        }
    }
    out
}

fn check_nothing_lost(cluster: &Cluster, seed: u64) {
    let stores: Vec<Store> = cluster.nodes.iter().map(|n| n.store()).collect();
    let paths = all_paths(&stores[0]);
    for store in &stores[1..] {
        assert_eq!(
            all_paths(store),
            paths,
            "seed {seed}: same paths everywhere"
        );
    }
    for path in &paths {
        let ids: Vec<_> = stores
            .iter()
            .map(|s| s.version_ids(path).unwrap())
            .collect();
        for other in &ids[1..] {
            assert_eq!(other, &ids[0], "seed {seed}: same versions of {path}");
        }
        let versions = stores[0].versions(path).unwrap();
        let resolution = resolve(&versions);
        let current = stores[0].current(path).unwrap();
        for head in &resolution.heads {
            if !head.kind.is_live() || head.kind == Kind::Dir {
                continue;
            }
            if current.as_ref().map(|c| c.id) == Some(head.id) {
                continue;
            }
            if let Some((original, at)) = &head.conflict_of {
                // A losing conflict copy gets no copy of its own (FORMAT §10.4):
                // what it preserves was replaced, at its own path, by a version
                // written after seeing it.
                let there = stores[0].versions(at).unwrap();
                let heads: Vec<_> = resolve(&there).heads.iter().map(|v| v.id).collect();
                assert!(
                    there.iter().any(|v| v.id == *original) && !heads.contains(original),
                    "seed {seed}: conflict copy {path} lost, and its original {original} of {at} was not superseded"
                );
                continue;
            }
            let copy = conflict_name(head).unwrap();
            let kept = stores[0].live(&copy).unwrap();
            assert!(
                kept.as_ref().is_some_and(|k| k.hashes == head.hashes),
                "seed {seed}: the concurrent edit {} of {path} is lost (no copy at {copy})",
                head.id
            );
        }
        // Whatever is live is reachable: every ancestor is a live directory.
        if stores[0].live(path).unwrap().is_some() {
            let mut parent = path.parent();
            while let Some(dir) = parent {
                assert!(
                    stores[0].is_dir(&dir).unwrap(),
                    "seed {seed}: {path} is live but hidden under {dir}"
                );
                parent = dir.parent();
            }
        }
    }
}

/// How each node reaches each peer: a symlink to the peer's store (a plain
/// directory) or an sshfs mount of it; a link can be cut (the path missing, or
/// an empty unmounted directory) and restored.
struct Wiring<'a> {
    root: PathBuf,
    server: Option<&'a sshfs::SshServer>,
    mounts: HashMap<(usize, usize), sshfs::SshfsMount>,
    up: BTreeSet<(usize, usize)>,
}

impl Wiring<'_> {
    fn connect(&mut self, cluster: &Cluster, from: usize, to: usize) {
        if !self.up.insert((from, to)) {
            return;
        }
        let point = mount_point(&self.root, from, to);
        let store = cluster.node(to).store_dir();
        match self.server {
            None => {
                std::fs::create_dir_all(point.parent().unwrap()).unwrap();
                let _ = std::fs::remove_file(&point);
                std::os::unix::fs::symlink(&store, &point).unwrap();
            }
            Some(server) => {
                self.mounts.insert((from, to), server.mount(&store, &point));
            }
        }
    }

    fn cut(&mut self, from: usize, to: usize) {
        if !self.up.remove(&(from, to)) {
            return;
        }
        match self.server {
            None => std::fs::remove_file(mount_point(&self.root, from, to)).unwrap(),
            Some(_) => drop(self.mounts.remove(&(from, to))), // unmounts
        }
    }
}

fn run(seed: u64, nodes: usize, steps: usize) {
    run_wired(seed, nodes, steps, None);
}

fn run_wired(seed: u64, nodes: usize, steps: usize, server: Option<&sshfs::SshServer>) {
    let mut edges = Vec::new();
    for a in 0..nodes {
        for b in a + 1..nodes {
            edges.push((a, b));
        }
    }
    let cluster = Cluster::with_edges(
        nodes,
        &edges,
        Options {
            timeout: "2s",
            ..Options::default()
        }
        .with_mount_points(),
    );
    let mut wiring = Wiring {
        root: cluster.root(),
        server,
        mounts: HashMap::new(),
        up: BTreeSet::new(),
    };
    for from in 0..nodes {
        for to in 0..nodes {
            if from != to {
                wiring.connect(&cluster, from, to);
            }
        }
    }
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    for step in 0..steps {
        let node = rng.below(nodes);
        match rng.below(12) {
            0..=2 => {
                cluster.node(node).sync();
            }
            3 => {
                // A link goes away or comes back (one direction only).
                let to = (node + 1 + rng.below(nodes - 1)) % nodes;
                if wiring.up.contains(&(node, to)) {
                    wiring.cut(node, to);
                } else {
                    wiring.connect(&cluster, node, to);
                }
            }
            _ => {
                let store = cluster.node(node).store();
                random_op(&mut rng, &store, step as u64);
            }
        }
    }
    for from in 0..nodes {
        for to in 0..nodes {
            if from != to {
                wiring.connect(&cluster, from, to);
            }
        }
    }
    cluster.settle();
    let trees: Vec<BTreeMap<String, nodes::Item>> =
        cluster.nodes.iter().map(|n| n.tree()).collect();
    for (index, tree) in trees.iter().enumerate().skip(1) {
        nodes::assert_same_trees(
            &trees[0],
            tree,
            &format!("seed {seed}: node 0 vs node {index}"),
        );
    }
    check_nothing_lost(&cluster, seed);
}

/// `GLOBOFS_SYNC_SEEDS=N` runs N more seeds (for a longer hunt).
fn extra_seeds() -> u64 {
    std::env::var("GLOBOFS_SYNC_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn random_histories_converge_on_two_nodes() {
    for seed in (1..=4).chain(1000..1000 + extra_seeds()) {
        run(seed, 2, 80);
    }
}

#[test]
fn random_histories_converge_on_three_nodes() {
    for seed in (11..=13).chain(2000..2000 + extra_seeds()) {
        run(seed, 3, 90);
    }
}

#[test]
fn random_histories_converge_over_sshfs() {
    let Some(server) = sshfs::SshServer::start() else {
        return;
    };
    for seed in (21..=22).chain(3000..3000 + extra_seeds()) {
        run_wired(seed, 2, 60, Some(&server));
    }
}
