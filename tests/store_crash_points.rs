//! A writer killed at each step of publishing a version (the crash points of
//! `src/failpoint.rs`) leaves nothing the nodes disagree on: the next writer or
//! sync pass of the node journals what the dead process published, so the peer
//! gets it, and no false conflict copy appears when the path is written again.

#[path = "common/nodes.rs"]
mod nodes;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use nodes::{Cluster, Node, assert_same_trees};

/// Runs `globofs put SRC DEST` on `node`, killed by SIGKILL at `point`.
fn put_killed_at(node: &Node, point: &str, src: &std::path::Path, dest: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_globofs"))
        .arg("--spec")
        .arg(&node.spec_path)
        .args(["put"])
        .arg(src)
        .arg(dest)
        .env("GLOBOFS_CRASH_AT", point)
        .env_remove("RUST_LOG")
        .output()
        .expect("run globofs put");
    assert_eq!(
        output.status.signal(),
        Some(9),
        "put with GLOBOFS_CRASH_AT={point} should die of SIGKILL; it exited {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn intent_files(node: &Node) -> usize {
    std::fs::read_dir(node.store_dir().join("state/intents"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// Whether a line of the node's own journal has exactly this payload.
fn journal_names(node: &Node, payload: &str) -> bool {
    let dir = node.store_dir().join("journal");
    let mut text = String::new();
    for entry in std::fs::read_dir(&dir).expect("journal dir") {
        text.push_str(&std::fs::read_to_string(entry.expect("entry").path()).unwrap_or_default());
    }
    text.lines().any(|line| {
        line.split_once(' ')
            .is_some_and(|(_, rest)| rest == payload)
    })
}

fn no_conflict_copies(node: &Node) {
    let copies: Vec<String> = node
        .listing()
        .into_keys()
        .filter(|path| path.contains(".sync-conflict-"))
        .collect();
    assert!(
        copies.is_empty(),
        "node {} made conflict copies although one node wrote: {copies:?}",
        node.index
    );
}

#[test]
fn a_put_killed_after_publishing_is_journaled_by_the_next_sync_and_reaches_the_peer() {
    for point in ["commit:published", "commit:logged"] {
        let cluster = Cluster::mesh(2);
        let (a, b) = (cluster.node(0), cluster.node(1));
        a.put("/d/f", b"first");
        cluster.settle();
        let src = cluster.root().join("src-f");
        std::fs::write(&src, b"second, killed mid-commit").expect("write src");
        put_killed_at(a, point, &src, "/d/f");
        // The version is in root/ (published), and the journal does not name it.
        assert_eq!(
            a.read("/d/f").as_deref(),
            Some(&b"second, killed mid-commit"[..]),
            "{point}: the killed put had published its version"
        );
        let published = a.listing()["/d/f"].clone();
        assert!(
            !journal_names(a, &format!("{published} d/f")),
            "{point}: the dead put cannot have journaled version {published}"
        );
        assert_eq!(
            intent_files(a),
            1,
            "{point}: the dead put leaves its intent file"
        );
        cluster.settle();
        assert_eq!(
            b.read("/d/f").as_deref(),
            Some(&b"second, killed mid-commit"[..]),
            "{point}: the peer never got the version the killed put published"
        );
        assert_same_trees(&a.tree(), &b.tree(), point);
        // Writing the path again on A is an ordinary edit on B, not a conflict.
        a.put("/d/f", b"third");
        cluster.settle();
        assert_eq!(b.read("/d/f").as_deref(), Some(&b"third"[..]), "{point}");
        no_conflict_copies(a);
        no_conflict_copies(b);
        let log =
            std::fs::read_to_string(a.store_dir().join("root/d/f/versions/log")).expect("read log");
        let current = a.listing()["/d/f"].clone();
        assert_eq!(
            log.lines().last(),
            Some(current.as_str()),
            "{point}: the log's last line names the current version"
        );
        assert_eq!(
            intent_files(a),
            0,
            "{point}: recovery removes the dead put's intent file"
        );
    }
}

#[test]
fn a_sync_killed_while_importing_journals_the_import_on_its_next_pass() {
    for point in ["import:published", "import:logged"] {
        // A line of three: B imports A's version and is killed; its next pass
        // must journal it so it is relayed to C, which cannot reach A.
        let cluster = Cluster::with_edges(3, &[(0, 1), (1, 2)], nodes::Options::default());
        let (a, b, c) = (cluster.node(0), cluster.node(1), cluster.node(2));
        a.put("/r", b"from a");
        a.sync(); // pushed into B's inbound spool
        let output = Command::new(env!("CARGO_BIN_EXE_globofs"))
            .arg("--spec")
            .arg(&b.spec_path)
            .arg("sync")
            .env("GLOBOFS_CRASH_AT", point)
            .env_remove("RUST_LOG")
            .output()
            .expect("run globofs sync");
        assert_eq!(
            output.status.signal(),
            Some(9),
            "{point}: sync should die of SIGKILL: {:?}",
            output.status
        );
        cluster.settle();
        assert_eq!(
            c.read("/r").as_deref(),
            Some(&b"from a"[..]),
            "{point}: the version B imported before it was killed never reached C"
        );
        assert_same_trees(&a.tree(), &c.tree(), point);
    }
}
