//! Sync between nodes on one machine (peers as plain directories): versions
//! travel, trees converge, conflicts resolve the same way everywhere, blocks
//! are read through peers.

#[path = "common/nodes.rs"]
mod nodes;

use std::fs;
use std::os::unix::fs::MetadataExt;

use globofs::store::Kind;
use nodes::{Cluster, Item, Options, data, stdout, vp};

#[test]
fn two_nodes_converge_and_read_bytes_through_the_peer() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let bytes = data(3 * nodes::BS + 100, 1);
    let version = a.put("/docs/a.txt", &bytes);

    let pushed = a.sync();
    assert_eq!(pushed.peer(b.id).unwrap().pushed, 2, "the dir and the file");
    let applied = b.sync();
    assert_eq!(applied.peer(a.id).unwrap().applied, 2);
    assert_eq!(applied.conflicts(), 0);

    // B holds the version under its own id, rewritten by B (not a link).
    let store = b.store();
    let current = store.live(&vp("/docs/a.txt")).unwrap().unwrap();
    assert_eq!(current, version);
    let ours = store
        .path_dir(&vp("/docs/a.txt"))
        .join("versions")
        .join(version.id.to_string());
    let spooled = b
        .inbound(a)
        .join("docs/a.txt/versions")
        .join(version.id.to_string());
    assert!(spooled.exists());
    assert_ne!(
        fs::metadata(&ours).unwrap().ino(),
        fs::metadata(&spooled).unwrap().ino(),
        "an inbound version is copied in, never linked"
    );
    let log = fs::read_to_string(ours.parent().unwrap().join("log")).unwrap();
    assert_eq!(log.lines().last(), Some(version.id.to_string().as_str()));

    // No block is local on B yet: reading pulls them from A.
    assert!(store.blocks().locate(&version.hashes[0], None).is_none());
    assert_eq!(b.read("/docs/a.txt").unwrap(), bytes);
    assert!(
        b.store()
            .blocks()
            .locate(&version.hashes[0], None)
            .is_some(),
        "pulled blocks stay"
    );

    // Nothing new: a second pass does nothing.
    let again = b.sync();
    assert_eq!(again.pushed() + again.applied(), 0);
    let again = a.sync();
    assert_eq!(again.pushed() + again.applied(), 0);
    assert_eq!(a.tree(), b.tree());
}

#[test]
fn the_cli_syncs_mirrors_and_reports() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let bytes = data(2 * nodes::BS + 7, 2);
    a.put("/m/one", &bytes);
    a.put("/m/two", &data(5000, 3));

    let out = a.cli(&["sync"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("total: pushed 3, applied 0, conflicts 0, unreachable 0"),
        "{text}"
    );
    let out = b.cli(&["status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["peers"][0]["unapplied_inbound"], 3);
    assert_eq!(status["peers"][0]["reachable"], true);

    let out = b.cli(&["sync"]);
    assert!(stdout(&out).contains("applied 3"), "{out:?}");
    let out = b.cli(&["status", "--prometheus"]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "globofs_peer_unapplied_inbound{{node=\"{}\",peer=\"{}\"}} 0",
            b.id, a.id
        )),
        "{text}"
    );
    assert!(text.contains("# TYPE globofs_peer_reachable gauge"));
    let out = b.cli(&["status"]);
    assert!(stdout(&out).contains("reachable"), "{out:?}");

    let out = b.cli(&["mirror", "/m"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("fetched"), "{out:?}");
    // Everything is local now: `get` works with A gone.
    fs::remove_dir_all(&a.volume).unwrap();
    let out = b.cli(&["get", "/m/one", "-"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, bytes);
    let out = b.cli(&["mirror"]);
    assert!(
        out.status.success(),
        "a second mirror has nothing to do: {out:?}"
    );
}

#[test]
fn deletes_renames_directories_and_symlinks_propagate() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/keep/file", b"kept");
    a.put("/gone", b"to delete");
    a.put("/old/name.txt", b"moving");
    a.put("/versions", b"a user file named like the layout");
    cluster.settle();

    let store = a.store();
    store.remove(&vp("/gone")).unwrap();
    store.mkdir(&vp("/empty"), 0o750).unwrap();
    store.mkdir(&vp("/new"), 0o755).unwrap();
    store
        .rename(&vp("/old/name.txt"), &vp("/new/name.txt"), false)
        .unwrap();
    store.remove(&vp("/old")).unwrap();
    store.symlink(&vp("/link"), b"keep/file").unwrap();
    store
        .set_attrs(&vp("/keep/file"), Some(0o600), None)
        .unwrap();
    drop(store);
    cluster.settle();

    let tree = b.tree();
    assert_eq!(tree, a.tree());
    assert!(!tree.contains_key("/gone"));
    assert!(!tree.contains_key("/old"));
    assert_eq!(tree["/empty"], Item::Dir { mode: 0o750 });
    assert_eq!(
        tree["/new/name.txt"],
        Item::File {
            mode: 0o644,
            bytes: b"moving".to_vec()
        }
    );
    assert_eq!(
        tree["/link"],
        Item::Symlink {
            target: b"keep/file".to_vec()
        }
    );
    assert!(matches!(tree["/keep/file"], Item::File { mode: 0o600, .. }));
    assert!(tree.contains_key("/%76ersions"), "{tree:?}");
}

#[test]
fn concurrent_edits_pick_one_winner_and_identical_conflict_copies() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/doc.txt", b"base");
    cluster.settle();

    let from_a = a.put("/doc.txt", b"edit on A");
    let from_b = b.put("/doc.txt", b"edit on B");
    let report_a = a.sync();
    let report_b = b.sync();
    assert_eq!(report_b.conflicts(), 1, "B sees the conflict");
    a.sync();
    let _ = report_a;
    cluster.settle();

    let (winner, loser) = if from_a.id > from_b.id {
        (&from_a, &from_b)
    } else {
        (&from_b, &from_a)
    };
    let tree = a.tree();
    assert_eq!(tree, b.tree(), "both nodes see the same tree");
    let copies: Vec<&String> = tree
        .keys()
        .filter(|path| path.contains(".sync-conflict-"))
        .collect();
    assert_eq!(copies.len(), 1, "{tree:?}");
    let copy = copies[0].clone();
    assert!(copy.starts_with("/doc.sync-conflict-"), "{copy}");
    assert!(copy.ends_with(&format!("-{}.txt", &loser.node.to_string()[..8])));
    let winner_bytes = if winner.id == from_a.id {
        &b"edit on A"[..]
    } else {
        &b"edit on B"[..]
    };
    let loser_bytes = if winner.id == from_a.id {
        &b"edit on B"[..]
    } else {
        &b"edit on A"[..]
    };
    assert!(matches!(&tree["/doc.txt"], Item::File { bytes, .. } if bytes == winner_bytes));
    assert!(matches!(&tree[&copy], Item::File { bytes, .. } if bytes == loser_bytes));
    // The same copy (same version, same content) on both nodes.
    let copy_a = a.store().live(&vp(&copy)).unwrap().unwrap();
    let copy_b = b.store().live(&vp(&copy)).unwrap().unwrap();
    assert_eq!(copy_a, copy_b);
    assert_eq!(copy_a.id, loser.id);
    assert_eq!(copy_a.conflict_of, Some((loser.id, vp("/doc.txt"))));
    // status counts the open conflict
    let status = globofs::sync::status(&a.store(), &a.spec()).unwrap();
    assert_eq!(status.open_conflicts, vec![copy.clone()]);

    // Editing after seeing both merges: no new conflict.
    a.put("/doc.txt", b"merged");
    cluster.settle();
    assert_eq!(b.read("/doc.txt").unwrap(), b"merged");
    assert_eq!(a.tree(), b.tree());
}

#[test]
fn an_edit_concurrent_with_a_delete_is_kept() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/notes", b"v1");
    cluster.settle();
    a.store().remove(&vp("/notes")).unwrap();
    b.put("/notes", b"v2 from B");
    cluster.sync_order(&[0, 1, 0]);
    cluster.settle();
    assert_eq!(a.read("/notes").unwrap(), b"v2 from B");
    assert_eq!(b.read("/notes").unwrap(), b"v2 from B");
    assert_eq!(a.tree(), b.tree());
}

#[test]
fn a_directory_deleted_while_a_peer_adds_to_it_comes_back() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/d/old", b"old");
    cluster.settle();
    let store = a.store();
    store.remove(&vp("/d/old")).unwrap();
    store.remove(&vp("/d")).unwrap();
    drop(store);
    b.put("/d/new", b"added concurrently");
    cluster.sync_order(&[1, 0, 1, 0]);
    cluster.settle();
    let tree = a.tree();
    assert_eq!(tree, b.tree());
    assert!(matches!(tree["/d"], Item::Dir { .. }), "{tree:?}");
    assert!(tree.contains_key("/d/new"));
    assert!(!tree.contains_key("/d/old"));
}

#[test]
fn three_nodes_in_a_line_relay_versions_and_blocks() {
    // A - B - C: A and C never see each other.
    let cluster = Cluster::with_edges(3, &[(0, 1), (1, 2)], Options::default());
    let (a, b, c) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let bytes = data(5 * nodes::BS, 9);
    let version = a.put("/far/away.bin", &bytes);
    cluster.sync_order(&[0, 1, 2]);
    assert_eq!(c.listing(), a.listing());
    // B pulled the blocks while applying, since it has another peer.
    assert!(
        b.store()
            .blocks()
            .locate(&version.hashes[4], None)
            .is_some()
    );

    // C edits; A gets it through B.
    c.put("/far/reply", b"from C");
    cluster.sync_order(&[2, 1, 0]);
    assert_eq!(a.read("/far/reply").unwrap(), b"from C");
    cluster.settle();
    assert_eq!(a.listing(), c.listing());
    assert_eq!(b.listing(), c.listing());

    // No loops or duplicates: each version arrived once per node.
    let current = c.store().live(&vp("/far/away.bin")).unwrap().unwrap();
    assert_eq!(current.id, version.id);
    assert_eq!(
        c.store().version_ids(&vp("/far/away.bin")).unwrap().len(),
        1
    );

    // A's store gone: C still reads A's bytes (from B).
    fs::remove_dir_all(&a.volume).unwrap();
    assert_eq!(c.read("/far/away.bin").unwrap(), bytes);
    let report = b.sync();
    assert_eq!(report.unreachable(), 1);
}

#[test]
fn replicate_pushes_blocks_eagerly() {
    let cluster = Cluster::with_edges(
        2,
        &[(0, 1)],
        Options {
            replicate: true,
            ..Options::default()
        },
    );
    let (a, b) = (cluster.node(0), cluster.node(1));
    let bytes = data(3 * nodes::BS, 4);
    let version = a.put("/r", &bytes);
    let report = a.sync();
    assert_eq!(report.peer(b.id).unwrap().blocks_replicated, 3);
    let report = b.sync();
    assert_eq!(report.peer(a.id).unwrap().blocks_received, 3);
    // A is gone, B has every block.
    fs::remove_dir_all(&a.volume).unwrap();
    assert!(
        b.store()
            .blocks()
            .locate(&version.hashes[2], None)
            .is_some()
    );
    assert_eq!(b.read("/r").unwrap(), bytes);
    let current = b.store().live(&vp("/r")).unwrap().unwrap();
    assert_eq!(current.kind, Kind::File);
}

#[test]
fn ignored_paths_stay_local() {
    let cluster = Cluster::with_edges(
        2,
        &[(0, 1)],
        Options {
            ignore: vec!["*.tmp"],
            ..Options::default()
        },
    );
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/work.tmp", b"scratch");
    a.put("/work.txt", b"shared");
    cluster.settle();
    let tree = b.tree();
    assert!(tree.contains_key("/work.txt"));
    assert!(!tree.contains_key("/work.tmp"));
}

#[test]
fn anchored_ignore_patterns_keep_paths_from_the_root_local() {
    let cluster = Cluster::with_edges(
        2,
        &[(0, 1)],
        Options {
            ignore: vec!["/secret", "/build/**", "/*.log"],
            ..Options::default()
        },
    );
    let (a, b) = (cluster.node(0), cluster.node(1));
    let spec = a.spec_path.to_str().unwrap().to_string();
    a.ok(&["validate", &spec]);
    a.put("/secret/key", b"local only");
    a.put("/build/o/p", b"local only");
    a.put("/run.log", b"local only");
    a.put(
        "/docs/secret",
        b"shared: anchored patterns match from the root",
    );
    a.put(
        "/docs/run.log",
        b"shared: `*` does not cross `/` in `/*.log`",
    );
    a.put("/builder", b"shared");
    cluster.settle();
    let paths: Vec<String> = b.tree().into_keys().collect();
    assert_eq!(
        paths,
        ["/builder", "/docs", "/docs/run.log", "/docs/secret"],
        "what B received"
    );
    // Nothing ignored waits in the outbound queue either.
    let status = a.ok(&["status", "--json", "--no-blocks"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["peers"][0]["queued_outbound"], 0, "{status}");
}

#[test]
fn a_conflict_on_a_name_with_a_long_extension_still_gets_a_copy() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    // 255 bytes, the extension 254 of them: no stem cut makes room for the marker.
    let name = format!("/a.{}", "b".repeat(253));
    a.put(&name, b"base");
    cluster.settle();
    let from_a = a.put(&name, b"edit on A");
    let from_b = b.put(&name, b"edit on B");
    let conflicts = a.sync().conflicts() + b.sync().conflicts();
    assert_eq!(conflicts, 1, "one node sees the conflict");
    cluster.settle();

    let loser = if from_a.id > from_b.id {
        &from_b
    } else {
        &from_a
    };
    let tree = a.tree();
    assert_eq!(tree, b.tree(), "both nodes see the same tree");
    let copies: Vec<&String> = tree.keys().filter(|path| *path != &name).collect();
    assert_eq!(copies.len(), 1, "one conflict copy: {:?}", tree.keys());
    let copy = copies[0];
    // The whole name is the stem, cut to leave room for the marker.
    let marker = format!("-{}", &loser.node.to_string()[..8]);
    assert!(copy.starts_with(&name[..217]), "{copy}");
    assert!(
        copy.contains(".sync-conflict-") && copy.ends_with(&marker),
        "{copy}"
    );
    assert_eq!(copy.len(), 1 + 255);
    let loser_bytes: &[u8] = if loser.id == from_a.id {
        b"edit on A"
    } else {
        b"edit on B"
    };
    assert!(matches!(&tree[copy], Item::File { bytes, .. } if bytes == loser_bytes));
    let copy_version = a.store().live(&vp(copy)).unwrap().unwrap();
    assert_eq!(copy_version.conflict_of, Some((loser.id, vp(&name))));
    for node in [a, b] {
        let status = globofs::sync::status(&node.store(), &node.spec()).unwrap();
        assert_eq!(status.open_conflicts.len(), 1);
    }
}

#[test]
fn status_does_not_count_ignored_paths_as_queued() {
    let cluster = Cluster::with_edges(
        2,
        &[(0, 1)],
        Options {
            ignore: vec!["*.swp"],
            ..Options::default()
        },
    );
    let (a, b) = (cluster.node(0), cluster.node(1));
    let queued = |node: &nodes::Node| {
        let status = node.ok(&["status", "--json", "--no-blocks"]);
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        status["peers"][0]["queued_outbound"].clone()
    };
    a.put("/a.swp", b"local");
    a.put("/b.swp", b"local");
    assert_eq!(queued(a), 0, "only ignored paths changed");
    a.put("/c.txt", b"shared");
    assert_eq!(queued(a), 1, "one version to push");
    let text = a.ok(&["status", "--no-blocks"]);
    assert!(text.contains("1 queued out"), "{text}");
    let metrics = a.ok(&["status", "--prometheus", "--no-blocks"]);
    assert!(
        metrics.contains(&format!(
            "globofs_peer_queued_outbound{{node=\"{}\",peer=\"{}\"}} 1\n",
            a.id, b.id
        )),
        "{metrics}"
    );
    a.sync();
    assert_eq!(queued(a), 0);
    b.sync();
    // What B applied from A (after its push in the pass) is not owed back to A.
    assert_eq!(b.read("/c.txt").unwrap(), b"shared");
    assert_eq!(queued(b), 0);
}

/// The same file written on two nodes before they sync (a tree unpacked on
/// both, a file copied to both) is no conflict: no `sync-conflict` copy on
/// either node, both hold one file (QA: every file of such a tree got a copy).
#[test]
fn the_same_bytes_written_on_two_nodes_make_no_conflict_copy() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let bytes = data(2 * nodes::BS + 7, 42);
    a.put("/same.bin", &bytes);
    b.put("/same.bin", &bytes);
    a.put("/differs.bin", b"from a");
    b.put("/differs.bin", b"from b");
    cluster.settle();
    for node in [a, b] {
        let names: Vec<String> = node.listing().keys().cloned().collect();
        let copies: Vec<&String> = names
            .iter()
            .filter(|n| n.contains("sync-conflict"))
            .collect();
        assert_eq!(copies.len(), 1, "{names:?}");
        assert!(copies[0].starts_with("/differs"), "{names:?}");
        assert_eq!(node.read("/same.bin").unwrap(), bytes);
    }
}

#[test]
fn coalesced_versions_never_make_peers_disagree() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    // One store, as one mount: durable rewrites (fsyncs) of one file.
    let store = a.store();
    let write = |n: u32| {
        store
            .write_file(
                &vp("/db"),
                &mut format!("row {n}").as_bytes(),
                globofs::store::Attrs::default(),
                true,
            )
            .unwrap()
    };
    for n in 0..5 {
        write(n);
    }
    cluster.settle();
    // A rewrites again after B got its last version.
    for n in 5..9 {
        write(n);
    }
    cluster.settle();
    assert_eq!(b.read("/db").unwrap(), b"row 8");
    nodes::assert_same_trees(&a.tree(), &b.tree(), "after coalesced rewrites");
    let names = b.listing();
    assert!(
        names.keys().all(|name| !name.contains("sync-conflict")),
        "{names:?}"
    );
    // A keeps its creation, the version B was sent, and its last one.
    let kept = a.store().version_ids(&vp("/db")).unwrap();
    assert_eq!(kept.len(), 3, "{kept:?}");
}
