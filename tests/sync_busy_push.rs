//! `globofs sync` while another process of the node (the mount's sync loop)
//! is pushing to a peer: the run says so instead of a bare "pushed 0", and
//! the queue is pushed by the next run once that process is done.

// The test calls libc directly (system calls the standard library does not wrap).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "common/nodes.rs"]
mod nodes;

use std::os::fd::AsRawFd;

use nodes::{Cluster, stdout};

/// Holds `state/locks/push-<peer>.run` of a node, as a pushing process does.
struct Pushing {
    _lock: std::fs::File,
}

impl Pushing {
    fn hold(node: &nodes::Node, peer: &nodes::Node) -> Pushing {
        let path = node
            .store_dir()
            .join("state/locks")
            .join(format!("push-{}.run", peer.id));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .expect("open the push lock");
        // SAFETY: flock on a descriptor this struct owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, 0, "take the push lock");
        Pushing { _lock: file }
    }
}

#[test]
fn a_sync_while_another_process_pushes_says_so_and_the_next_run_pushes() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/queued", b"waiting for the push lock");
    let busy = Pushing::hold(a, b);
    let out = a.cli(&["sync"]);
    let text = stdout(&out);
    assert!(out.status.success(), "sync: {text}");
    let line = text
        .lines()
        .position(|l| l.starts_with(&format!("peer {}:", b.id)))
        .expect("a line for the peer");
    let below: Vec<&str> = text
        .lines()
        .skip(line + 1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(
        below
            .iter()
            .any(|l| l.contains("another process of this node")
                && l.contains("is pushing to this peer")
                && l.contains("nothing pushed by this run")),
        "the run says why it pushed nothing: {text}"
    );
    assert!(text.contains("pushed 0"), "{text}");
    // The JSON report carries the same note.
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&a.cli(&["sync", "--json"]))).expect("JSON report");
    let notes = json["peers"][0]["notes"].to_string();
    assert!(notes.contains("is pushing to this peer"), "{json}");
    assert_eq!(b.read("/queued"), None, "nothing reached B meanwhile");

    drop(busy);
    let text = stdout(&a.cli(&["sync"]));
    assert!(
        text.contains("pushed 1"),
        "the next run pushes the queue: {text}"
    );
    assert!(!text.contains("is pushing to this peer"), "{text}");
    b.sync();
    assert_eq!(
        b.read("/queued").as_deref(),
        Some(&b"waiting for the push lock"[..])
    );
}
