//! The fault suite's journal and spool part: the inbound side of a node is
//! damaged after its peer pushed versions and before (or while) it applied them
//! — a journal tail cut mid-line, a zero-filled tail, a segment truncated below
//! the reader's position, a garbage version file, a deleted inbound spool on
//! either side — and nothing may be lost silently: after ordinary `globofs sync`
//! passes (three on each node) and, when those leave a difference, one
//! `globofs sync --full` on each (the full comparison of version sets), both
//! nodes hold identical trees, a new change still travels the ordinary way, and
//! the damage was reported (a warning naming what was damaged, or `status`).
//!
//! Content and convergence are asserted strictly; the warning loosely (it must
//! name the damaged file, its directory or the journal), since its wording is
//! not fixed.

// The test calls libc directly (system calls the standard library does not wrap).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "common/faults.rs"]
mod faults;
#[path = "common/mount.rs"]
mod mount;
#[path = "common/nodes.rs"]
mod nodes;

use std::fs;
use std::path::{Path, PathBuf};

use faults::{Passes, cli, compare, make_writable, segments, status_backlog, sync_passes};
use nodes::{Cluster, Node};

/// Puts `count` files (`/j/f000`...) with content naming `tag` on `node`
/// through the CLI, so with the directory that is `count + 1` versions when new.
fn put_files(node: &Node, scratch: &Path, tag: &str, range: std::ops::Range<usize>) {
    let src = scratch.join(format!("src-{tag}"));
    fs::create_dir_all(&src).unwrap();
    for i in range {
        fs::write(
            src.join(format!("f{i:03}")),
            format!("{tag} f{i:03} {}\n", "x".repeat(i % 50)),
        )
        .unwrap();
    }
    cli(node, &["put", src.to_str().unwrap(), "/j"]).expect_ok();
    fs::remove_dir_all(&src).unwrap();
}

/// A pushes (one ordinary pass on A that must succeed).
fn push(node: &Node) {
    cli(node, &["sync"]).expect_ok();
}

/// Byte offsets where each line of a journal segment starts, and its length.
fn line_starts(segment: &Path) -> (Vec<usize>, usize) {
    let bytes = fs::read(segment).unwrap();
    let mut starts = vec![0];
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' && i + 1 < bytes.len() {
            starts.push(i + 1);
        }
    }
    (starts, bytes.len())
}

/// The latest segment of the journal A wrote into B's inbound spool.
fn inbound_segment(b: &Node, a: &Node) -> PathBuf {
    let journal = b.inbound(a).join("%journal");
    segments(&journal)
        .pop()
        .unwrap_or_else(|| panic!("no segment in {}", journal.display()))
}

fn truncate(path: &Path, len: usize) {
    make_writable(path);
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len as u64)
        .unwrap();
}

/// What a fault test saw.
struct Outcome {
    passes: Passes,
    /// Paths whose entry (`get /`) differed after the ordinary passes (before
    /// any `--full`).
    lost_after_ordinary: usize,
    /// Every status text printed while healing.
    status_text: String,
}

/// Ordinary passes (3 on each node, `first` starting), then, if the trees still
/// differ, `sync --full` on each and ordinary passes again; fails the test
/// unless both nodes then hold identical trees with no conflict copy, nothing
/// is queued, unapplied or stuck, and a new write on `writer` travels to the
/// other by ordinary passes. Returns what was printed, for the warning check.
#[track_caller]
fn heal(what: &str, writer: &Node, other: &Node, scratch: &Path) -> Outcome {
    let mut passes = Passes::default();
    let order = [("other", other), ("writer", writer)];
    for _ in 0..3 {
        sync_passes(&mut passes, &order, &[]);
    }
    let mut status_text = String::new();
    for node in [writer, other] {
        // The text form: its normal lines name no journal, segment or spool.
        status_text.push_str(&cli(node, &["status", "--no-blocks"]).stdout);
    }
    let first = compare(writer, other, scratch, true, false);
    let lost_after_ordinary = faults::tree_diff(&first.a.tree, &first.b.tree).len();
    if !first.problems.is_empty() {
        eprintln!(
            "{what}: after 3 ordinary passes on each node, {lost_after_ordinary} differences (exit codes {:?}):\n  {}",
            passes.runs.iter().map(|(_, r)| r.code).collect::<Vec<_>>(),
            first.problems.join("\n  ")
        );
        let mut full = Passes::default();
        sync_passes(&mut full, &order, &["--full"]);
        if let Some((_, run)) = full.runs.iter().find(|(_, run)| run.code == Some(2)) {
            panic!(
                "{what}: the nodes still differ after 3 ordinary sync passes on each (the damage lost {lost_after_ordinary} paths; warnings so far:\n{}), and `globofs sync --full` is not there to repair it: {}\n  {}",
                passes.stderr(),
                run.describe(),
                first.problems.join("\n  ")
            );
        }
        passes.runs.extend(full.runs);
        sync_passes(&mut passes, &order, &[]);
        sync_passes(&mut passes, &order, &[]);
    }
    let check = compare(writer, other, scratch, true, true);
    assert!(
        check.problems.is_empty(),
        "{what}: the nodes differ after healing ({lost_after_ordinary} differences after the ordinary passes):\n  {}\npasses:\n{}warnings:\n{}",
        check.problems.join("\n  "),
        passes.summary(),
        passes.stderr()
    );
    for node in [writer, other] {
        status_text.push_str(&cli(node, &["status", "--no-blocks"]).stdout);
    }
    // The ordinary path works again after the damage.
    let after = scratch.join("after");
    fs::write(&after, b"written after the damage\n").unwrap();
    cli(
        writer,
        &["put", after.to_str().unwrap(), "/after-the-damage"],
    )
    .expect_ok();
    let mut again = Passes::default();
    sync_passes(&mut again, &[("writer", writer), ("other", other)], &[]);
    let got = cli(other, &["get", "/after-the-damage", "-"]);
    assert!(
        got.ok() && got.stdout == "written after the damage\n",
        "{what}: a write after healing did not travel by an ordinary pass: {}\npasses:\n{}",
        got.describe(),
        again.summary()
    );
    passes.runs.extend(again.runs);
    Outcome {
        passes,
        lost_after_ordinary,
        status_text,
    }
}

/// Fails unless a warning (stderr of a pass) or `status` names one of
/// `needles`, or a warning names the peer whose journal or spool was damaged
/// (`peer`; its id is on every line of `sync`'s stdout and `status`, so only
/// a warning counts for it).
#[track_caller]
fn assert_reported(what: &str, outcome: &Outcome, needles: &[&str], peer: &Node) {
    let stderr = outcome.passes.stderr();
    let found = needles
        .iter()
        .any(|needle| stderr.contains(needle) || outcome.status_text.contains(needle));
    let peer_id = peer.id.to_string();
    let warned = stderr
        .lines()
        .any(|line| line.contains("WARN") && line.contains(&peer_id));
    assert!(
        found || warned,
        "{what}: the damage healed but was never reported: no warning or status names any of {needles:?}, no warning names the peer {peer_id}\n--- warnings:\n{stderr}\n--- status:\n{}",
        outcome.status_text
    );
    eprintln!(
        "{what}: healed; {} differences after the ordinary passes; reported",
        outcome.lost_after_ordinary
    );
}

/// Two nodes; A put 100 files (101 versions) and pushed them; B has applied
/// nothing yet.
fn pushed_not_applied() -> (Cluster, PathBuf) {
    let cluster = Cluster::mesh(2);
    let scratch = cluster.root().join("scratch");
    let (a, _) = (cluster.node(0), cluster.node(1));
    put_files(a, &scratch, "first", 0..100);
    push(a);
    (cluster, scratch)
}

#[test]
fn inbound_journal_tail_cut_mid_line_loses_nothing() {
    let (cluster, scratch) = pushed_not_applied();
    let (a, b) = (cluster.node(0), cluster.node(1));
    let segment = inbound_segment(b, a);
    let (starts, len) = line_starts(&segment);
    assert!(
        starts.len() > 90,
        "the journal names the pushed versions: {} lines",
        starts.len()
    );
    // Cut in the middle of the line 28 lines before the end: 28 versions' lines
    // go (one of them half).
    let line = starts.len() - 28;
    let end = starts.get(line + 1).copied().unwrap_or(len);
    let cut = starts[line] + (end - starts[line]) / 2;
    truncate(&segment, cut);
    let outcome = heal("journal tail cut mid-line", a, b, &scratch);
    let name = segment.file_name().unwrap().to_string_lossy().into_owned();
    assert_reported(
        "journal tail cut mid-line",
        &outcome,
        &[&name, "%journal"],
        a,
    );
}

#[test]
fn inbound_journal_zero_filled_tail_loses_nothing() {
    let (cluster, scratch) = pushed_not_applied();
    let (a, b) = (cluster.node(0), cluster.node(1));
    let segment = inbound_segment(b, a);
    let mut bytes = fs::read(&segment).unwrap();
    assert!(bytes.len() > 2000, "a journal of 101 versions");
    let len = bytes.len();
    bytes[len - 500..].fill(0);
    make_writable(&segment);
    fs::write(&segment, &bytes).unwrap();
    let outcome = heal("journal tail zero-filled", a, b, &scratch);
    let name = segment.file_name().unwrap().to_string_lossy().into_owned();
    assert_reported(
        "journal tail zero-filled",
        &outcome,
        &[&name, "%journal"],
        a,
    );
}

/// B's remembered position in A's journal: (segment, offset).
fn apply_position(b: &Node, a: &Node) -> (u64, usize) {
    let file = b.store_dir().join("state/apply").join(a.id.to_string());
    let text = fs::read_to_string(&file).unwrap_or_else(|err| panic!("{}: {err}", file.display()));
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{}: {text:?}", file.display());
    (fields[1].parse().unwrap(), fields[2].parse().unwrap())
}

#[test]
fn inbound_journal_truncated_below_the_readers_position_loses_nothing() {
    let cluster = Cluster::mesh(2);
    let scratch = cluster.root().join("scratch");
    let (a, b) = (cluster.node(0), cluster.node(1));
    put_files(a, &scratch, "first", 0..60);
    push(a);
    cli(b, &["sync"]).expect_ok();
    let (number, offset) = apply_position(b, a);
    let segment = b.inbound(a).join("%journal").join(format!("{number:016}"));
    let (starts, len) = line_starts(&segment);
    let at = starts
        .iter()
        .position(|&s| s >= offset)
        .unwrap_or(starts.len());
    assert!(
        at > 40 && offset <= len,
        "B applied the first pushes: position {offset} of {len}, line {at}"
    );
    // At a line boundary, 30 lines before where B stands.
    truncate(&segment, starts[at - 30]);
    // A goes on writing: new versions of the same files and 60 new ones.
    put_files(a, &scratch, "second", 30..120);
    push(a);
    let outcome = heal("journal truncated below the reader", a, b, &scratch);
    let name = segment.file_name().unwrap().to_string_lossy().into_owned();
    assert_reported(
        "journal truncated below the reader",
        &outcome,
        &[&name, "%journal"],
        a,
    );
}

#[test]
fn garbage_version_file_in_the_inbound_spool_loses_nothing() {
    let (cluster, scratch) = pushed_not_applied();
    let (a, b) = (cluster.node(0), cluster.node(1));
    let versions = b.inbound(a).join("j/f050/versions");
    let file = fs::read_dir(&versions)
        .unwrap_or_else(|err| panic!("{}: {err}", versions.display()))
        .map(|item| item.unwrap().path())
        .find(|path| {
            path.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .starts_with(|c: char| c.is_ascii_digit())
            })
        })
        .expect("the pushed version file of /j/f050");
    make_writable(&file);
    fs::write(
        &file,
        b"\x00\x17 not a version file \xff\xfe garbage garbage\n",
    )
    .unwrap();
    let id = file.file_name().unwrap().to_string_lossy().into_owned();
    let outcome = heal("garbage version file", a, b, &scratch);
    assert_reported("garbage version file", &outcome, &["f050", &id], a);
}

#[test]
fn deleted_inbound_spool_at_the_reader_loses_nothing() {
    let (cluster, scratch) = pushed_not_applied();
    let (a, b) = (cluster.node(0), cluster.node(1));
    let spool = b.inbound(a);
    fs::remove_dir_all(&spool).unwrap();
    let outcome = heal("inbound spool deleted at the reader", a, b, &scratch);
    assert!(
        spool.join("%nonce").exists(),
        "the spool {} was not recreated",
        spool.display()
    );
    let id = a.id.to_string();
    // The peer id is on every stdout line; only a warning or status naming
    // the spool counts.
    let needles = [format!("inbound/{id}"), "inbound".to_string()];
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    assert_reported("inbound spool deleted at the reader", &outcome, &needles, a);
}

/// From the pusher's side: B pushed to A; A's `spool/inbound/<B>/` is deleted
/// before A applied; B goes on writing. B must recreate the spool (A's store
/// still lists B) and resend what A lacks, saying what was wrong.
#[test]
fn deleted_inbound_spool_at_the_peer_is_recreated_and_resent_by_the_pusher() {
    let cluster = Cluster::mesh(2);
    let scratch = cluster.root().join("scratch");
    let (a, b) = (cluster.node(0), cluster.node(1));
    put_files(b, &scratch, "from-b", 0..50);
    push(b);
    let spool = a.inbound(b);
    fs::remove_dir_all(&spool).unwrap();
    put_files(b, &scratch, "from-b-later", 40..60);
    // B's next pass must not stall: it recreates the spool and pushes.
    let run = cli(b, &["sync"]);
    assert!(
        spool.join("%nonce").exists() && spool.join("%journal").is_dir(),
        "the pusher's first pass after the deletion did not recreate {}: {}",
        spool.display(),
        run.describe()
    );
    let outcome = heal("inbound spool deleted at the peer", b, a, &scratch);
    let mut with_first = outcome;
    with_first.passes.runs.insert(0, ("writer".into(), run));
    let needles = ["spool/inbound", "inbound"];
    assert_reported(
        "inbound spool deleted at the peer",
        &with_first,
        &needles,
        b,
    );
    assert!(status_backlog(&faults::status(b)).is_empty());
}
