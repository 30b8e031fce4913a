//! The fault suite's disk-full part, on a small real filesystem (a tmpfs with
//! `size=`, unmounted on drop): `put` into a full store fails with a "no space"
//! error naming the path, leaves every old file intact and readable, and works
//! again once space is freed; a peer whose spool filesystem is full keeps our
//! queue, and once it has space again the two nodes converge.

// The test calls libc directly (system calls the standard library does not wrap).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "common/faults.rs"]
mod faults;
#[path = "common/mount.rs"]
mod mount;
#[path = "common/nodes.rs"]
mod nodes;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use faults::{Passes, SmallFs, cli, compare, status, status_backlog, sync_passes};
use nodes::{Cluster, Node, Options, data};

/// Puts `files` (name, bytes) under volume path `dest` through the CLI.
fn put_tree(node: &Node, scratch: &Path, dest: &str, files: &[(String, Vec<u8>)]) -> faults::Run {
    let src = scratch.join("src");
    if src.exists() {
        fs::remove_dir_all(&src).unwrap();
    }
    fs::create_dir_all(&src).unwrap();
    for (name, bytes) in files {
        fs::write(src.join(name), bytes).unwrap();
    }
    let run = cli(node, &["put", src.to_str().unwrap(), dest]);
    fs::remove_dir_all(&src).unwrap();
    run
}

fn get(node: &Node, path: &str) -> faults::Run {
    cli(node, &["get", path, "-"])
}

#[track_caller]
fn assert_intact(node: &Node, files: &BTreeMap<String, Vec<u8>>, when: &str) {
    for (path, bytes) in files {
        let run = get(node, path);
        assert!(
            run.ok() && run.stdout_bytes == *bytes,
            "{when}: {path} is not intact: {}",
            if run.ok() {
                format!(
                    "{} bytes instead of {}",
                    run.stdout_bytes.len(),
                    bytes.len()
                )
            } else {
                run.describe()
            }
        );
    }
}

#[track_caller]
fn assert_no_space(run: &faults::Run) {
    assert_eq!(
        run.code,
        Some(3),
        "a put into a full store must fail as a failure while working: {}",
        run.describe()
    );
    let stderr = run.stderr.to_lowercase();
    assert!(
        stderr.contains("no space"),
        "the error does not say the disk is full: {}",
        run.describe()
    );
}

#[test]
fn put_into_a_full_store_fails_with_no_space_and_keeps_old_files() {
    let cluster = Cluster::with_edges(1, &[], Options::default());
    let node = cluster.node(0);
    let scratch = cluster.root().join("scratch");
    let small = SmallFs::under_volume(node, "6m");

    // Old files: a tree and a single file, several blocks each for some.
    let old: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("f{i:02}"), data(3000 + i * 700, i as u64)))
        .collect();
    put_tree(node, &scratch, "/old", &old).expect_ok();
    let mut kept: BTreeMap<String, Vec<u8>> = old
        .iter()
        .map(|(name, bytes)| (format!("/old/{name}"), bytes.clone()))
        .collect();
    let single = scratch.join("single");
    fs::create_dir_all(&scratch).unwrap();
    fs::write(&single, data(20_000, 99)).unwrap();
    cli(node, &["put", single.to_str().unwrap(), "/single"]).expect_ok();
    kept.insert("/single".into(), data(20_000, 99));
    assert_intact(node, &kept, "before the disk filled");

    let filler = small.fill("filler");
    assert!(small.free_bytes() < 64 * 1024, "the small fs is full");

    // A new file and a new version of an old one both fail, naming the path.
    let big = scratch.join("big");
    fs::write(&big, data(300_000, 7)).unwrap();
    let new_file = cli(node, &["put", big.to_str().unwrap(), "/new"]);
    assert_no_space(&new_file);
    let over = cli(node, &["put", big.to_str().unwrap(), "/old/f03"]);
    assert_no_space(&over);
    let tree = put_tree(
        node,
        &scratch,
        "/old",
        &[
            ("f05".into(), data(300_000, 8)),
            ("f99".into(), data(300_000, 9)),
        ],
    );
    assert_eq!(
        tree.code,
        Some(3),
        "a tree put into a full store: {}",
        tree.describe()
    );
    assert!(
        tree.stderr.to_lowercase().contains("no space"),
        "{}",
        tree.describe()
    );

    // Nothing half-written is visible; every old file reads back whole.
    assert_intact(node, &kept, "with the disk full");
    let listing = cli(node, &["ls", "-R", "/"]);
    listing.expect_ok();
    assert!(
        !listing.stdout.lines().any(|l| l == "/new"),
        "a failed put left /new visible: {}",
        listing.stdout
    );
    if listing.stdout.lines().any(|l| l == "/old/f99") {
        // A tree put commits file by file: f99 may be there only whole.
        let run = get(node, "/old/f99");
        assert!(
            run.ok() && run.stdout_bytes == data(300_000, 9),
            "{}",
            run.describe()
        );
        kept.insert("/old/f99".into(), data(300_000, 9));
    }

    // Space back: the same puts work, and nothing old was harmed.
    fs::remove_file(&filler).unwrap();
    cli(node, &["put", big.to_str().unwrap(), "/new"]).expect_ok();
    cli(node, &["put", big.to_str().unwrap(), "/old/f03"]).expect_ok();
    kept.insert("/new".into(), data(300_000, 7));
    kept.insert("/old/f03".into(), data(300_000, 7));
    assert_intact(node, &kept, "after space was freed");
    let verify = cli(node, &["verify"]);
    assert!(
        verify.ok(),
        "verify after the disk was full: {}",
        verify.describe()
    );
    drop(small);
}

#[test]
fn a_full_peer_spool_keeps_our_queue_and_the_nodes_converge_after() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let scratch = cluster.root().join("scratch");
    let small = SmallFs::under_volume(b, "4m");
    // Something B already holds, so B's inbound spool from A exists.
    put_tree(a, &scratch, "/early", &[("e".into(), data(100, 1))]).expect_ok();
    sync_passes(&mut Passes::default(), &[("A", a), ("B", b)], &[]);

    let filler = small.fill("filler");
    let files: Vec<(String, Vec<u8>)> = (0..60)
        .map(|i| (format!("f{i:02}"), data(5000 + i * 37, 100 + i as u64)))
        .collect();
    put_tree(a, &scratch, "/late", &files).expect_ok();
    let mut full = Passes::default();
    sync_passes(&mut full, &[("A", a), ("B", b), ("A", a)], &[]);
    let queued = status(a)["peers"][0]["queued_outbound"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        queued > 0,
        "with B's disk full A's queue must wait, but status shows {queued} queued:\n{}{}",
        full.summary(),
        full.stderr()
    );
    // Nothing undelivered may count as delivered: B must not see what it lacks
    // as applied, and A still holds every new file.
    let listing = cli(b, &["ls", "-R", "/"]);
    assert!(listing.ok(), "{}", listing.describe());

    fs::remove_file(&filler).unwrap();
    let mut after = Passes::default();
    sync_passes(&mut after, &[("A", a), ("B", b), ("A", a), ("B", b)], &[]);
    for (who, run) in &after.runs {
        assert!(
            run.ok(),
            "sync on {who} once B had space again: {}",
            run.describe()
        );
    }
    let check = compare(a, b, &scratch, true, true);
    assert!(
        check.problems.is_empty(),
        "after B got space back the nodes differ:\n  {}\nwhile full:\n{}{}after:\n{}{}",
        check.problems.join("\n  "),
        full.summary(),
        full.stderr(),
        after.summary(),
        after.stderr()
    );
    for (name, bytes) in &files {
        assert_eq!(
            check.b.tree.get(&format!("/late/{name}")),
            Some(&faults::Entry::File(bytes.clone())),
            "/late/{name} on B"
        );
    }
    assert!(status_backlog(&status(b)).is_empty());
    drop(small);
}

/// The error of a put into a full store says which file could not be stored:
/// the volume path (or the local source), not only a temp file of the store.
#[test]
fn a_no_space_error_names_the_path_being_put() {
    let cluster = Cluster::with_edges(1, &[], Options::default());
    let node = cluster.node(0);
    let scratch = cluster.root().join("scratch");
    let small = SmallFs::under_volume(node, "4m");
    put_tree(node, &scratch, "/old", &[("a".into(), data(3000, 1))]).expect_ok();
    let filler = small.fill("filler");
    fs::create_dir_all(&scratch).unwrap();
    let big = scratch.join("big");
    fs::write(&big, data(300_000, 7)).unwrap();
    let single = cli(node, &["put", big.to_str().unwrap(), "/new-file"]);
    assert_no_space(&single);
    let tree = put_tree(
        node,
        &scratch,
        "/tree",
        &[
            ("small".into(), data(10, 2)),
            ("large".into(), data(300_000, 3)),
        ],
    );
    assert_no_space(&tree);
    fs::remove_file(&filler).unwrap();
    drop(small);
    assert!(
        single.stderr.contains("/new-file") || single.stderr.contains(big.to_str().unwrap()),
        "the no-space error of `put {} /new-file` names neither the volume path nor the source: {}",
        big.display(),
        single.describe()
    );
    assert!(
        // The tree's root or one of its files, whichever the disk filled at.
        tree.stderr.contains("globofs: /tree") || tree.stderr.contains("src/"),
        "the no-space error of a tree put names no file of the tree: {}",
        tree.describe()
    );
}
