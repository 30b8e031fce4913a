//! Fixtures for the sync tests (`tests/sync_*.rs`): several nodes on one machine,
//! each with its own volume directory and spec, peers as plain directories.
//!
//! Include with `#[path = "common/nodes.rs"] mod nodes;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use globofs::ids::NodeId;
use globofs::layout::VPath;
use globofs::spec::Spec;
use globofs::store::{Attrs, Kind, Mtime, Store, Version};
use globofs::sync::{PeerFetcher, SyncReport, sync_once};

pub const BS: usize = 4096;

/// A node id that is easy to recognise in output: `0000000N-...`.
pub fn node_id(index: usize) -> NodeId {
    format!("{:08x}-0000-4000-8000-{:012x}", index + 1, index + 1)
        .parse()
        .expect("a valid node id")
}

pub fn vp(text: &str) -> VPath {
    VPath::parse(std::ffi::OsStr::new(text)).expect("a valid volume path")
}

/// Some bytes that differ by `seed`.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// One node: a volume directory, a spec file, and the store in it.
pub struct Node {
    pub index: usize,
    pub id: NodeId,
    pub volume: PathBuf,
    pub spec_path: PathBuf,
}

/// Nodes in one temp dir.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
}

/// How a cluster is built.
pub struct Options {
    pub timeout: &'static str,
    pub replicate: bool,
    pub ignore: Vec<&'static str>,
    /// Peers are reached through mount points `<root>/mnt/<node>-<peer>`
    /// (for the test to mount, e.g. with sshfs) instead of directly.
    pub mount_points: bool,
}

impl Options {
    pub fn with_mount_points(self) -> Options {
        Options {
            mount_points: true,
            ..self
        }
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            timeout: "3s",
            replicate: false,
            ignore: Vec::new(),
            mount_points: false,
        }
    }
}

impl Cluster {
    /// `count` nodes, each a peer of every other.
    pub fn mesh(count: usize) -> Cluster {
        let mut edges = Vec::new();
        for a in 0..count {
            for b in a + 1..count {
                edges.push((a, b));
            }
        }
        Cluster::with_edges(count, &edges, Options::default())
    }

    /// `count` nodes; each edge makes its two ends peers of each other.
    pub fn with_edges(count: usize, edges: &[(usize, usize)], options: Options) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().canonicalize().expect("canonical temp dir");
        let volume = |index: usize| root.join(format!("node{index}"));
        let mut nodes = Vec::new();
        for index in 0..count {
            let id = node_id(index);
            let mut yaml = format!(
                "volume: {}\nnode:\n  id: {id}\nblock_size: 4KiB\nsync:\n  interval: 30s\n  timeout: {}\n",
                volume(index).display(),
                options.timeout
            );
            let peers: Vec<usize> = edges
                .iter()
                .filter_map(|&(a, b)| {
                    if a == index {
                        Some(b)
                    } else if b == index {
                        Some(a)
                    } else {
                        None
                    }
                })
                .collect();
            if !peers.is_empty() {
                yaml.push_str("peers:\n");
                for peer in peers {
                    let path = if options.mount_points {
                        mount_point(&root, index, peer)
                    } else {
                        volume(peer).join(node_id(peer).to_string())
                    };
                    yaml.push_str(&format!(
                        "  - id: {}\n    path: {}\n",
                        node_id(peer),
                        path.display()
                    ));
                    if options.replicate {
                        yaml.push_str("    replicate: true\n");
                    }
                }
            }
            if !options.ignore.is_empty() {
                yaml.push_str("ignore:\n");
                for pattern in &options.ignore {
                    yaml.push_str(&format!("  - \"{pattern}\"\n"));
                }
            }
            let spec_path = root.join(format!("node{index}.yaml"));
            fs::write(&spec_path, yaml).expect("write spec");
            let node = Node {
                index,
                id,
                volume: volume(index),
                spec_path,
            };
            globofs::reconcile::reconcile(&node.spec(), false).expect("reconcile");
            nodes.push(node);
        }
        Cluster { dir, nodes }
    }
}

/// Where node `index` reaches `peer` with `mount_points`.
pub fn mount_point(root: &Path, index: usize, peer: usize) -> PathBuf {
    root.join("mnt").join(format!("{index}-{peer}"))
}

impl Cluster {
    /// The temp dir's canonical path.
    pub fn root(&self) -> PathBuf {
        self.dir.path().canonicalize().expect("canonical temp dir")
    }

    /// Syncs nodes in this order.
    pub fn sync_order(&self, order: &[usize]) {
        for &index in order {
            self.nodes[index].sync();
        }
    }

    /// Syncs every node, round after round, until a round changes nothing.
    pub fn settle(&self) {
        for _ in 0..10 {
            let mut moved = 0;
            for node in &self.nodes {
                let report = node.sync();
                moved += report.pushed() + report.applied();
            }
            if moved == 0 {
                return;
            }
        }
        panic!("the cluster did not settle in 10 rounds");
    }

    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }
}

/// What a path is, for comparing trees across nodes.
#[derive(Clone, PartialEq, Eq)]
pub enum Item {
    Dir { mode: u32 },
    File { mode: u32, bytes: Vec<u8> },
    Symlink { target: Vec<u8> },
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Dir { mode } => write!(f, "dir {mode:o}"),
            Item::File { mode, bytes } => write!(
                f,
                "file {mode:o} {} bytes {:?}...",
                bytes.len(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(16)])
            ),
            Item::Symlink { target } => write!(f, "symlink -> {}", String::from_utf8_lossy(target)),
        }
    }
}

/// Fails with the paths that differ between two trees.
#[track_caller]
pub fn assert_same_trees(
    left: &BTreeMap<String, Item>,
    right: &BTreeMap<String, Item>,
    what: &str,
) {
    if left == right {
        return;
    }
    let mut diff = String::new();
    for key in left
        .keys()
        .chain(right.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (l, r) = (left.get(key), right.get(key));
        if l != r {
            diff.push_str(&format!("  {key}: {l:?} vs {r:?}\n"));
        }
    }
    panic!("{what}: trees differ:\n{diff}");
}

impl Node {
    pub fn spec(&self) -> Spec {
        Spec::load(&self.spec_path).expect("load spec")
    }

    /// The store alone (reading missing blocks fails).
    pub fn store(&self) -> Store {
        Store::open_spec(&self.spec()).expect("open store")
    }

    /// The store with a peer fetcher (as the mount and `get` use it).
    pub fn reader(&self) -> Store {
        let spec = self.spec();
        let mut store = Store::open_spec(&spec).expect("open store");
        store.set_fetcher(Arc::new(PeerFetcher::new(&spec)));
        store
    }

    pub fn store_dir(&self) -> PathBuf {
        self.volume.join(self.id.to_string())
    }

    pub fn sync(&self) -> SyncReport {
        let spec = self.spec();
        let store = Store::open_spec(&spec).expect("open store");
        let report = sync_once(&store, &spec).expect("sync pass");
        for peer in &report.peers {
            assert!(
                peer.errors.is_empty(),
                "node {} sync errors with {}: {:?}",
                self.index,
                peer.peer,
                peer.errors
            );
        }
        report
    }

    pub fn put(&self, path: &str, bytes: &[u8]) -> Version {
        let store = self.store();
        store
            .write_file(
                &vp(path),
                &mut &bytes[..],
                Attrs {
                    mode: 0o644,
                    mtime: Mtime {
                        secs: 1_700_000_000,
                        nanos: 0,
                    },
                },
                false,
            )
            .expect("write file")
    }

    /// The file's current bytes (pulling blocks from peers), or None if not live.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        let store = self.reader();
        let version = store.live(&vp(path)).expect("read version")?;
        assert_eq!(version.kind, Kind::File, "{path} is not a file");
        let mut out = Vec::new();
        store.copy_to(&version, &mut out).expect("read file");
        Some(out)
    }

    /// Every live path with what it is (bytes read, pulling from peers).
    pub fn tree(&self) -> BTreeMap<String, Item> {
        let store = self.reader();
        let mut out = BTreeMap::new();
        for (path, version) in store.walk(&VPath::root()).expect("walk") {
            let item = match version.kind {
                Kind::Dir => Item::Dir { mode: version.mode },
                Kind::Symlink => Item::Symlink {
                    target: version.target.clone().unwrap_or_default(),
                },
                Kind::File => {
                    let mut bytes = Vec::new();
                    store.copy_to(&version, &mut bytes).expect("read file");
                    Item::File {
                        mode: version.mode,
                        bytes,
                    }
                }
                Kind::Tombstone => continue,
            };
            out.insert(path.display(), item);
        }
        out
    }

    /// Every live path with its current version id (no block reads).
    pub fn listing(&self) -> BTreeMap<String, String> {
        self.store()
            .walk(&VPath::root())
            .expect("walk")
            .into_iter()
            .map(|(path, version)| (path.display(), version.id.to_string()))
            .collect()
    }

    /// Runs the `globofs` binary with this node's spec.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_globofs"))
            .arg("--spec")
            .arg(&self.spec_path)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .expect("run globofs")
    }

    /// Runs `globofs ARGS` for this node; fails the test unless it succeeds.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && !stderr.contains("panicked"),
            "globofs {args:?} failed ({:?})\n--- stdout:\n{}\n--- stderr:\n{stderr}",
            output.status,
            stdout(&output)
        );
        stdout(&output)
    }

    /// Our inbound spool from `peer` (what `peer` pushed to us).
    pub fn inbound(&self, peer: &Node) -> PathBuf {
        self.store_dir()
            .join("spool")
            .join("inbound")
            .join(peer.id.to_string())
    }
}

/// The raw text of a command's stdout.
pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Removes a directory tree if present.
pub fn remove_tree(path: &Path) {
    if path.exists() {
        fs::remove_dir_all(path).expect("remove tree");
    }
}
