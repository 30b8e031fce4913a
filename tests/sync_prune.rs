//! Prune and peers: old versions and tombstones go only once every peer has
//! applied past them (read from the peer's `ack/<our id>`), so a peer that was
//! away cannot bring a deleted file back, and a copy a peer sends again after
//! the prune is not taken back. Nodes on one machine, peers as plain
//! directories, `prune` / `rm` / `ls` through the `globofs` binary.

#[path = "common/nodes.rs"]
mod nodes;

use std::fs;

use globofs::ids::VersionId;
use nodes::{Cluster, Node, Options, data, vp};

/// `globofs prune --json` on `node`.
#[track_caller]
fn prune(node: &Node) -> serde_json::Value {
    serde_json::from_str(&node.ok(&["prune", "--json"])).expect("prune --json output")
}

/// Adds a `retention` rule to the node's spec.
fn retention(node: &Node, rule: &str) {
    let mut text = fs::read_to_string(&node.spec_path).unwrap();
    text.push_str(&format!("retention:\n  {rule}\n"));
    fs::write(&node.spec_path, text).unwrap();
}

fn ids(node: &Node, path: &str) -> Vec<VersionId> {
    node.store().version_ids(&vp(path)).unwrap()
}

/// The peers `prune` says versions wait for, with counts.
fn waiting_for(report: &serde_json::Value) -> Vec<(String, u64)> {
    report["waiting_for"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["peer"].as_str().unwrap().to_string(),
                w["versions"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Moves a node's volume away (its peers see a missing directory) and back.
fn away(node: &Node) -> std::path::PathBuf {
    let moved = node.volume.with_extension("away");
    fs::rename(&node.volume, &moved).unwrap();
    moved
}

#[test]
fn old_versions_wait_until_the_peer_has_applied_them() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    retention(a, "keep_last: 1");
    for i in 0..3 {
        a.put("/f", &data(100, i));
    }
    let all = ids(a, "/f");
    assert_eq!(all.len(), 3);

    // B has seen nothing: nothing goes, and the report says who is waited for.
    let report = prune(a);
    assert_eq!(report["versions_removed"], 0, "{report}");
    assert_eq!(report["versions_waiting"], 2, "{report}");
    assert_eq!(waiting_for(&report), vec![(b.id.to_string(), 2)]);
    assert_eq!(ids(a, "/f"), all);
    let text = a.ok(&["prune"]);
    assert!(
        text.contains("2 versions wait") && text.contains(&b.id.to_string()),
        "{text}"
    );

    // Pushed but not yet applied by B: still nothing.
    a.sync();
    let report = prune(a);
    assert_eq!(report["versions_removed"], 0, "{report}");
    assert_eq!(ids(a, "/f"), all);
    assert!(b.store().version_ids(&vp("/f")).unwrap().is_empty());

    // B applies (and acks): now the two old versions go, and B holds them all.
    b.sync();
    let report = prune(a);
    assert_eq!(report["versions_removed"], 2, "{report}");
    assert_eq!(report["versions_waiting"], 0, "{report}");
    assert_eq!(ids(a, "/f"), all[2..].to_vec());
    assert_eq!(ids(b, "/f"), all);
    assert_eq!(a.read("/f").unwrap(), data(100, 2));
    assert_eq!(b.read("/f").unwrap(), data(100, 2));
    // Nothing is left to wait for.
    assert!(!a.store_dir().join("state/prune-pending").exists());

    // The peer's progress is kept across passes: a new edit waits again, and
    // an A pass after B's ack (B away at prune time) is enough.
    a.put("/f", &data(100, 3));
    a.sync();
    b.sync();
    a.sync();
    let moved = away(b);
    let report = prune(a);
    assert_eq!(report["versions_removed"], 1, "{report}");
    fs::rename(&moved, &b.volume).unwrap();
}

#[test]
fn a_pruned_tombstone_does_not_bring_the_file_back() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    // Deleted paths go whole once their tombstone is older than keep_within.
    retention(a, "keep_within: 0s");
    // B writes the file, A deletes it.
    b.put("/gone", b"written on B");
    b.put("/kept", b"stays");
    b.sync();
    a.sync();
    a.ok(&["rm", "/gone"]);
    let before = ids(a, "/gone");
    assert_eq!(before.len(), 2);

    // B has not applied the delete: the tombstone and the version stay.
    let report = prune(a);
    assert_eq!(report["versions_removed"], 0, "{report}");
    assert_eq!(report["versions_waiting"], 2, "{report}");
    assert_eq!(ids(a, "/gone"), before);

    a.sync();
    b.sync();
    assert!(b.read("/gone").is_none(), "B applied the delete");
    let report = prune(a);
    assert_eq!(report["versions_removed"], 2, "{report}");
    assert_eq!(report["tombstones_removed"], 1, "{report}");
    assert_eq!(report["paths_emptied"], 1, "{report}");
    assert!(ids(a, "/gone").is_empty());
    let pruned = fs::read_to_string(a.store_dir().join("root/gone/versions/pruned")).unwrap();
    for id in &before {
        assert!(pruned.contains(&id.to_string()), "{pruned}");
    }
    assert_eq!(a.ok(&["ls", "-R", "/"]), "/kept\n");

    // B syncs again, and even sends its own version of the file again (its
    // push position lost): A does not take it back, nothing comes back on B.
    fs::remove_file(b.store_dir().join(format!("state/push/{}", a.id))).unwrap();
    let report = b.sync();
    assert!(
        report.pushed() >= 1,
        "B pushed its versions again: {report:?}"
    );
    let report = a.sync();
    assert_eq!(report.applied(), 0, "{report:?}");
    assert!(ids(a, "/gone").is_empty());
    b.sync();
    assert_eq!(a.ok(&["ls", "-R", "/"]), "/kept\n");
    assert_eq!(b.ok(&["ls", "-R", "/"]), "/kept\n");
    assert_eq!(a.tree(), b.tree());
}

#[test]
fn a_peer_away_during_the_delete_cannot_bring_the_file_back() {
    // A star: B and C reach each other only through A, so C learns of the
    // delete from A alone.
    let cluster = Cluster::with_edges(3, &[(0, 1), (0, 2)], Options::default());
    let (a, b, c) = (cluster.node(0), cluster.node(1), cluster.node(2));
    retention(a, "keep_within: 0s");
    a.put("/doc", b"shared");
    a.put("/other", b"other");
    cluster.settle();
    assert_eq!(c.read("/doc").unwrap(), b"shared");

    let moved = away(c);
    a.ok(&["rm", "/doc"]);
    a.sync();
    b.sync();
    a.sync();
    assert!(b.read("/doc").is_none());
    // B has applied the delete, C has not: everything waits for C alone.
    let report = prune(a);
    assert_eq!(report["versions_removed"], 0, "{report}");
    assert_eq!(waiting_for(&report), vec![(c.id.to_string(), 2)]);
    let away = &report["peers_away"];
    assert_eq!(away[0]["peer"], c.id.to_string(), "{report}");
    assert_eq!(away.as_array().unwrap().len(), 1, "{report}");
    let text = a.ok(&["prune"]);
    assert!(text.contains("away"), "{text}");
    assert_eq!(ids(a, "/doc").len(), 2);

    // C returns: it gets the delete, acks, and only then does A prune.
    fs::rename(&moved, &c.volume).unwrap();
    c.sync();
    a.sync();
    let report = prune(a);
    assert_eq!(
        report["versions_removed"], 0,
        "C has not applied yet: {report}"
    );
    c.sync();
    assert!(c.read("/doc").is_none(), "C applied the delete");
    let report = prune(a);
    assert_eq!(report["versions_removed"], 2, "{report}");
    assert!(ids(a, "/doc").is_empty());

    cluster.settle();
    for node in [a, b, c] {
        assert_eq!(
            node.ok(&["ls", "-R", "/"]),
            "/other\n",
            "node {}",
            node.index
        );
    }
    assert_eq!(a.tree(), c.tree());
    assert_eq!(b.tree(), c.tree());
}

/// A node alone prunes a tree's early versions, then deletes the tree; a
/// peer that joins afterwards must not bring the tree back. (QA: the
/// directory's first version was pruned, so in the journal the file's kept
/// version came before any version of its directory; the new peer made the
/// directory anew for it, and that directory, newer than the tombstone,
/// came back on both nodes.)
#[test]
fn a_tree_deleted_after_a_prune_stays_deleted_for_a_peer_that_joins_later() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let with_peers = fs::read_to_string(&a.spec_path).unwrap();
    let mut alone = String::new();
    let mut in_peers = false;
    for line in with_peers.lines() {
        in_peers = line == "peers:" || (in_peers && line.starts_with(' '));
        if !in_peers {
            alone.push_str(line);
            alone.push('\n');
        }
    }
    alone.push_str("retention:\n  keep_last: 1\n  keep_within: 0s\n");
    fs::write(&a.spec_path, &alone).unwrap();

    a.put("/t/d/f", &data(100, 1));
    // A second version of the directory, after the file's.
    a.store().set_attrs(&vp("/t/d"), Some(0o700), None).unwrap();
    assert!(ids(a, "/t/d").len() >= 2, "the directory has two versions");
    prune(a);
    assert_eq!(ids(a, "/t/d").len(), 1, "its first version is pruned");
    a.ok(&["rm", "-r", "/t"]);
    assert!(a.listing().is_empty(), "{:?}", a.listing());

    // B joins: both specs name each other now.
    fs::write(
        &a.spec_path,
        with_peers + "retention:\n  keep_last: 1\n  keep_within: 0s\n",
    )
    .unwrap();
    a.ok(&["reconcile"]);
    b.ok(&["reconcile"]);
    b.sync();
    a.sync();
    b.sync();
    a.sync();
    assert!(b.listing().is_empty(), "B brought back {:?}", b.listing());
    assert!(a.listing().is_empty(), "A got back {:?}", a.listing());
}
