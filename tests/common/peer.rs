//! A second node for tests of a mount with peers: driven through the CLI
//! (`put`, `sync`, `ls`, `get`, or a mount of its own), its store a plain
//! directory that the mounted node sees (directly or over sshfs).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::mount::BIN;

/// A node driven through the CLI.
pub struct PeerNode {
    pub dir: tempfile::TempDir,
    pub spec: PathBuf,
    pub store: PathBuf,
    id: String,
}

impl PeerNode {
    /// Node `id`'s store, with no peers yet (the mounted node's spec needs
    /// this store's path before this node can name it).
    pub fn new(id: &str) -> PeerNode {
        let dir = tempfile::tempdir().unwrap();
        let node = PeerNode {
            store: dir.path().join("vol").join(id),
            spec: dir.path().join("spec.yaml"),
            dir,
            id: id.to_string(),
        };
        node.wire(None);
        node
    }

    /// This node's spec, with `a` (id, store path) as its peer when given; reconciled.
    pub fn wire(&self, a: Option<(&str, &Path)>) {
        let volume = self.store.parent().unwrap();
        let peers = a.map_or(String::new(), |(id, store)| {
            format!("peers:\n  - id: {id}\n    path: {}\n", store.display())
        });
        std::fs::write(
            &self.spec,
            format!(
                "volume: {}\nnode:\n  id: {}\nblock_size: 4KiB\n{peers}sync:\n  interval: 1s\n  timeout: 2s\n",
                volume.display(),
                self.id
            ),
        )
        .unwrap();
        self.run(&["reconcile"]);
    }

    /// Runs `globofs --spec SPEC ARGS...`, which must succeed; its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .arg("--spec")
            .arg(&self.spec)
            .args(args)
            .env_remove("GLOBOFS_SPEC")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A sync pass, then the names at the volume's top.
    pub fn files(&self) -> Vec<String> {
        self.run(&["sync"]);
        self.run(&["ls", "/"]).lines().map(str::to_string).collect()
    }
}

/// The node id a spec names.
pub fn node_id(spec: &Path) -> String {
    let text = std::fs::read_to_string(spec).unwrap();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("id: "))
        .unwrap()
        .to_string()
}

/// Waits until `check` holds (sync runs on its own schedule), at most 20 s.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
