//! Anti-entropy (`src/sync/full_check.rs`): nothing depends on a journal line
//! having survived. Versions a journal never named, a damaged or deleted
//! inbound journal or spool, a garbage spool file: the nodes still converge,
//! and the damage is reported (a warning naming it), never silent.

#[path = "common/nodes.rs"]
mod nodes;

use std::fs;
use std::path::{Path, PathBuf};

use globofs::store::Store;
use globofs::sync::{SyncReport, Syncer};
use nodes::{Cluster, Node, assert_same_trees, data};

/// One pass on `node` (errors allowed), optionally with `--full`.
fn pass(node: &Node, full: bool) -> SyncReport {
    let spec = node.spec();
    let store = Store::open_spec(&spec).expect("open store");
    let mut syncer = Syncer::new(&spec);
    if full {
        syncer = syncer.full();
    }
    syncer.pass(&store).expect("sync pass")
}

fn warnings(report: &SyncReport) -> String {
    report
        .peers
        .iter()
        .flat_map(|peer| peer.warnings.iter().cloned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn errors(report: &SyncReport) -> Vec<String> {
    report
        .peers
        .iter()
        .flat_map(|peer| peer.errors.iter().cloned())
        .collect()
}

/// The latest segment of a journal directory.
fn latest_segment(dir: &Path) -> PathBuf {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .expect("journal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.len() == 16))
        .collect();
    names.sort();
    names.pop().expect("a segment")
}

/// A writes `count` files, pushes them into B's inbound spool; B has not applied.
fn pushed_not_applied(cluster: &Cluster, count: usize) {
    let a = cluster.node(0);
    for i in 0..count {
        a.put(&format!("/d/f{i:03}"), &data(100 + i, i as u64));
    }
    pass(a, false);
}

fn converges_with_warning(cluster: &Cluster, expect_in_warning: &str) {
    let (a, b) = (cluster.node(0), cluster.node(1));
    let mut said = String::new();
    for _ in 0..3 {
        let report = pass(b, false);
        said.push_str(&warnings(&report));
        said.push('\n');
        assert!(
            errors(&report).is_empty(),
            "B's pass should heal, not stop: {:?}",
            errors(&report)
        );
        pass(a, false);
    }
    assert_same_trees(&a.tree(), &b.tree(), "after the damage healed");
    assert!(
        said.contains(expect_in_warning),
        "the damage was not reported: expected a warning naming {expect_in_warning:?}, got:\n{said}"
    );
}

#[test]
fn a_zero_filled_journal_tail_heals_with_a_warning() {
    let cluster = Cluster::mesh(2);
    cluster.settle();
    pushed_not_applied(&cluster, 60);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let segment = latest_segment(&b.inbound(a).join("%journal"));
    let mut bytes = fs::read(&segment).expect("read segment");
    let len = bytes.len();
    for byte in &mut bytes[len - 500..] {
        *byte = 0;
    }
    fs::write(&segment, &bytes).expect("zero the tail");
    // A writes more after the damage, as a live peer would.
    a.put("/after", b"written after the damage");
    pass(a, false);
    converges_with_warning(&cluster, "%journal");
}

#[test]
fn a_journal_cut_mid_line_heals() {
    let cluster = Cluster::mesh(2);
    cluster.settle();
    pushed_not_applied(&cluster, 60);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let segment = latest_segment(&b.inbound(a).join("%journal"));
    let len = fs::metadata(&segment).expect("stat").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .and_then(|f| f.set_len(len * 2 / 3 + 7))
        .expect("cut the journal");
    a.put("/after", b"after the cut");
    pass(a, false);
    converges_with_warning(&cluster, "%journal");
}

#[test]
fn a_journal_truncated_below_the_readers_position_heals() {
    let cluster = Cluster::mesh(2);
    cluster.settle();
    pushed_not_applied(&cluster, 60);
    let (a, b) = (cluster.node(0), cluster.node(1));
    pass(b, false); // B applies all 60
    let segment = latest_segment(&b.inbound(a).join("%journal"));
    let text = fs::read(&segment).expect("read");
    // Cut at a line boundary 30 lines before the end (B's position).
    let ends: Vec<usize> = text
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    let cut = ends[ends.len() - 31];
    fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .and_then(|f| f.set_len(cut as u64))
        .expect("truncate");
    // A pushes 30 more: its lines land where B's position points into.
    for i in 0..30 {
        a.put(&format!("/e/g{i:02}"), &data(50 + i, 1000 + i as u64));
    }
    pass(a, false);
    converges_with_warning(&cluster, "%journal");
}

#[test]
fn a_garbage_version_file_in_the_spool_heals_from_the_peers_root() {
    let cluster = Cluster::mesh(2);
    cluster.settle();
    pushed_not_applied(&cluster, 10);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let versions = b.inbound(a).join("d/f004/versions");
    let file = fs::read_dir(&versions)
        .expect("spool versions")
        .map(|e| e.expect("entry").path())
        .find(|p| p.file_name().is_some_and(|n| n != "log"))
        .expect("a version file");
    fs::write(&file, b"this is not a version file\n").expect("garbage");
    converges_with_warning(&cluster, "f004");
    assert!(b.read("/d/f004").is_some(), "the damaged path arrived");
}

#[test]
fn a_deleted_inbound_spool_is_made_again_and_everything_arrives() {
    let cluster = Cluster::mesh(2);
    pushed_not_applied(&cluster, 10);
    let (a, b) = (cluster.node(0), cluster.node(1));
    pass(b, false);
    for i in 10..20 {
        a.put(&format!("/d/f{i:03}"), &data(100 + i, i as u64));
    }
    pass(a, false);
    fs::remove_dir_all(b.inbound(a)).expect("delete B's spool from A");
    // A's next push finds the spool gone while B's store lists it: made again.
    let report = pass(a, false);
    assert!(
        warnings(&report).contains("was missing"),
        "the pusher should say it made the spool again: {}",
        warnings(&report)
    );
    assert!(errors(&report).is_empty(), "{:?}", errors(&report));
    converges_with_warning(&cluster, "");
    assert_eq!(b.listing().len(), a.listing().len());
}

#[test]
fn versions_no_journal_names_are_found_by_a_full_check_in_both_directions() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/shared", b"one");
    cluster.settle();
    // Versions journals never name: A's journal loses its tail, B's as well.
    a.put("/only-a/x", b"a's version no journal names");
    b.put("/only-b/y", b"b's version no journal names");
    for node in [a, b] {
        let journal = node.store_dir().join("journal");
        let segment = latest_segment(&journal);
        let text = fs::read(&segment).expect("read journal");
        let keep = text[..text.len() - 1]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        fs::write(&segment, &text[..keep]).expect("drop the last line");
    }
    cluster.settle();
    assert!(
        b.read("/only-a/x").is_none(),
        "journals alone cannot deliver it"
    );
    // A full check digests its own root/ afresh, so on each side it finds
    // what its own journal lost and what it lacks from the peer.
    // B: A's digests (from A's journal) lack x; B's own walk finds y, which A lacks.
    let report = pass(b, true);
    assert!(
        warnings(&report)
            .contains("full check: took 0 version(s) we lacked from this peer and offered 1"),
        "{}",
        warnings(&report)
    );
    // A: its own walk finds x; y already came through B's push of the offer.
    let report = pass(a, true);
    assert!(
        warnings(&report).contains("offered 1"),
        "{}",
        warnings(&report)
    );
    cluster.settle();
    assert_same_trees(&a.tree(), &b.tree(), "after a full check");
    assert_eq!(
        a.read("/only-b/y").as_deref(),
        Some(&b"b's version no journal names"[..])
    );
    // status shows the check.
    let status = String::from_utf8_lossy(&b.cli(&["status", "--no-blocks"]).stdout).into_owned();
    assert!(status.contains("full check"), "status: {status}");
    assert!(status.contains("offered 1"), "status: {status}");
}

#[test]
fn a_full_check_with_nothing_different_reads_one_digest_and_changes_nothing() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    for i in 0..40 {
        a.put(&format!("/t/{}/f{i}", i % 5), &data(10, i));
    }
    cluster.settle();
    pass(a, false); // A's digests follow its journal
    let report = pass(b, true);
    let check = globofs::sync::full_check::FullCheck::load(&b.store(), a.id)
        .expect("load")
        .expect("a check ran");
    assert!(check.complete);
    assert_eq!((check.taken, check.offered), (0, 0), "{report:?}");
    assert_eq!(check.dirs, 1, "equal trees compare the root digest only");
    assert!(!check.walked);
}

#[test]
fn a_peer_without_digests_is_compared_by_listing() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/p/q", b"q");
    cluster.settle();
    a.put("/p/r", b"no journal line");
    let journal = a.store_dir().join("journal");
    let segment = latest_segment(&journal);
    let text = fs::read(&segment).expect("read journal");
    let keep = text[..text.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    fs::write(&segment, &text[..keep]).expect("drop the last line");
    // A keeps no digests, as an older release would.
    for file in walk(&a.store_dir().join("root")) {
        if file.file_name().is_some_and(|n| n == "%digest") {
            fs::remove_file(file).expect("remove digest");
        }
    }
    pass(b, true);
    let check = globofs::sync::full_check::FullCheck::load(&b.store(), a.id)
        .expect("load")
        .expect("ran");
    assert!(check.walked, "{check:?}");
    assert_eq!(check.taken, 1, "{check:?}");
    assert_eq!(b.read("/p/r").as_deref(), Some(&b"no journal line"[..]));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

#[test]
fn a_reader_stuck_at_a_bad_line_stays_stuck_until_sync_full_moves_past_it() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/ok1", b"one");
    cluster.settle();
    let segment = latest_segment(&b.inbound(a).join("%journal"));
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .expect("open");
    std::io::Write::write_all(&mut file, b"deadbeef 1795600000.000000001 zzz\n").expect("append");
    drop(file);
    a.put("/ok2", b"two");
    pass(a, false);
    // Plain passes: an error each time (exit 3 in the CLI), nothing skipped.
    for _ in 0..2 {
        let report = pass(b, false);
        assert!(
            errors(&report)
                .iter()
                .any(|e| e.contains("inbound journal stuck")),
            "{:?}",
            errors(&report)
        );
    }
    assert!(b.read("/ok2").is_none());
    // `sync --full`: the check takes /ok2 from A's root/ and moves past the line.
    let report = pass(b, true);
    assert!(errors(&report).is_empty(), "{:?}", errors(&report));
    assert!(
        warnings(&report).contains("skipped the damaged part"),
        "{}",
        warnings(&report)
    );
    assert_eq!(b.read("/ok2").as_deref(), Some(&b"two"[..]));
    // And what A pushes afterwards applies through the journal again.
    a.put("/ok3", b"three");
    pass(a, false);
    let report = pass(b, false);
    assert!(errors(&report).is_empty(), "{:?}", errors(&report));
    assert_eq!(b.read("/ok3").as_deref(), Some(&b"three"[..]));
}

fn conflict_copies(node: &Node) -> Vec<String> {
    node.listing()
        .into_keys()
        .filter(|path| path.contains(".sync-conflict-"))
        .collect()
}

/// Found by black-box testing: a version lost from a damaged spool, then its
/// child arriving, made a false conflict copy of the grandparent (one writer).
#[test]
fn a_version_lost_from_the_spool_then_its_child_makes_no_conflict_copy() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/f", b"v1");
    cluster.settle();
    a.put("/f", b"v2");
    pass(a, false);
    let segment = latest_segment(&b.inbound(a).join("%journal"));
    let len = fs::metadata(&segment).expect("stat").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .and_then(|f| f.set_len(len - 7))
        .expect("cut the last line");
    a.put("/f", b"v3");
    pass(a, false);
    for _ in 0..2 {
        pass(b, false);
        pass(a, false);
    }
    assert_eq!(b.read("/f").as_deref(), Some(&b"v3"[..]));
    assert_eq!(
        conflict_copies(b),
        Vec::<String>::new(),
        "B made a false conflict copy"
    );
    assert_eq!(
        conflict_copies(a),
        Vec::<String>::new(),
        "A got a false conflict copy"
    );
    assert_same_trees(&a.tree(), &b.tree(), "one writer");
}

/// Found by black-box testing: a valid version file of another path in the
/// spool was refused but started no full check, so B stayed behind.
#[test]
fn a_spool_version_file_of_another_path_heals_in_ordinary_passes() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    a.put("/a", b"a1");
    a.put("/b", b"b1");
    cluster.settle();
    a.put("/b", b"b2");
    pass(a, false);
    let version_of = |dir: &Path| {
        fs::read_dir(dir)
            .expect("versions")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.file_name().is_some_and(|n| n != "log"))
            .max()
            .expect("a version file")
    };
    let b_file = version_of(&b.inbound(a).join("b/versions"));
    let a_file = version_of(&a.store_dir().join("root/a/versions"));
    fs::copy(&a_file, &b_file).expect("put /a's version file in /b's place");
    converges_with_warning(&cluster, "says it is version");
    assert_eq!(b.read("/b").as_deref(), Some(&b"b2"[..]));
}

/// Found by black-box testing: a cut or zero tail of the latest segment with no
/// further push was waited on for ever, silently.
#[test]
fn an_incomplete_tail_that_does_not_change_is_damage() {
    let cluster = Cluster::mesh(2);
    pushed_not_applied(&cluster, 20);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let segment = latest_segment(&b.inbound(a).join("%journal"));
    let mut bytes = fs::read(&segment).expect("read segment");
    let len = bytes.len();
    for byte in &mut bytes[len - 300..] {
        *byte = 0;
    }
    fs::write(&segment, &bytes).expect("zero the tail");
    let first = pass(b, false);
    assert!(
        !warnings(&first).contains("has not changed"),
        "one look is no proof"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = pass(b, false);
    assert!(
        warnings(&second).contains("has not changed since an earlier pass"),
        "{}",
        warnings(&second)
    );
    assert_same_trees(&a.tree(), &b.tree(), "after the lingering tail");
    // Reported once per tail, not every pass.
    let third = pass(b, false);
    assert!(
        !warnings(&third).contains("has not changed"),
        "{}",
        warnings(&third)
    );
}

/// Found by black-box testing: a `%journal` replaced by a symlink was refused
/// every pass with no full check.
#[test]
fn a_journal_replaced_by_a_symlink_heals_from_the_peers_root() {
    let cluster = Cluster::mesh(2);
    pushed_not_applied(&cluster, 10);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let journal = b.inbound(a).join("%journal");
    let aside = cluster.root().join("journal-aside");
    fs::rename(&journal, &aside).expect("move the journal");
    std::os::unix::fs::symlink(&aside, &journal).expect("symlink");
    converges_with_warning(&cluster, "not a real directory");
}

#[test]
fn status_says_when_no_full_check_ran_yet() {
    let cluster = Cluster::mesh(2);
    let b = cluster.node(1);
    pass(b, false);
    let status = String::from_utf8_lossy(&b.cli(&["status", "--no-blocks"]).stdout).into_owned();
    assert!(status.contains("full check: none yet"), "{status}");
    assert!(!status.contains("complete"), "{status}");
}
