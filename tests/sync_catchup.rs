//! A peer that comes back after 10,000 changes catches up in one pass: one
//! `globofs sync` on the node that made them (pushes the whole queue), one on
//! the returning node (applies it all), and the two trees are equal. Then the
//! pruning node sees the returning node's ack and may prune.

#[path = "common/nodes.rs"]
mod nodes;

use std::fs;
use std::time::Instant;

use nodes::{Cluster, Node};

/// 10 rounds of rewriting 1,000 files: 10,000 file versions (plus the
/// directories). Rewrites rather than 10,000 new paths keep the number of
/// directories on disk (per-path block links, spools) and the test's time down
/// (creating and removing them is most of it).
const DIRS: usize = 10;
const FILES_PER_DIR: usize = 100;
const ROUNDS: usize = 10;

/// `globofs sync --json` on `node`: (pushed, applied) summed over peers.
#[track_caller]
fn sync(node: &Node) -> (u64, u64) {
    let report: serde_json::Value =
        serde_json::from_str(&node.ok(&["sync", "--json"])).expect("sync --json output");
    let mut totals = (0, 0);
    for peer in report["peers"].as_array().unwrap() {
        assert_eq!(peer["errors"].as_array().unwrap().len(), 0, "{peer}");
        assert_eq!(peer["refused"].as_array().unwrap().len(), 0, "{peer}");
        totals.0 += peer["pushed"].as_u64().unwrap();
        totals.1 += peer["applied"].as_u64().unwrap();
    }
    totals
}

/// How many changes A's journal holds (its store journal names each version).
fn journal_lines(node: &Node) -> usize {
    let dir = node.store_dir().join("journal");
    let mut lines = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let text = fs::read_to_string(entry.unwrap().path()).unwrap();
        // Minus each segment's header line.
        lines += text.lines().count() - 1;
    }
    lines
}

/// A file's content in a round: two variants taking turns, so every round
/// changes every file while each path only ever names two blocks (fewer
/// per-path block links on disk; the sync work per version is the same).
fn content(round: usize, dir: usize, file: usize) -> String {
    let turn = if round % 2 == 0 { "even" } else { "odd" };
    format!("{turn} round: file {file} of directory {dir}\n")
}

#[test]
fn a_peer_back_after_10000_changes_catches_up_in_one_pass() {
    let t0 = Instant::now();
    let step = |what: &str| println!("{:>8.1?} {what}", t0.elapsed());
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let tree = cluster.root().join("tree");
    // B is away while A makes the changes.
    let moved = b.volume.with_extension("away");
    fs::rename(&b.volume, &moved).unwrap();
    let started = Instant::now();
    for round in 0..ROUNDS {
        for dir in 0..DIRS {
            let path = tree.join(format!("d{dir:02}"));
            fs::create_dir_all(&path).unwrap();
            for file in 0..FILES_PER_DIR {
                fs::write(path.join(format!("f{file:03}")), content(round, dir, file)).unwrap();
            }
        }
        a.ok(&["put", tree.to_str().unwrap(), "/tree"]);
    }
    let put_took = started.elapsed();
    step("put");
    let versions =
        |node: &Node, path: &str| node.store().version_ids(&nodes::vp(path)).unwrap().len();
    assert_eq!(versions(a, "/tree/d03/f042"), ROUNDS);
    let listing = a.ok(&["ls", "-R", "/"]);
    assert_eq!(listing.lines().count(), 1 + DIRS + DIRS * FILES_PER_DIR);
    let changes = journal_lines(a);
    assert!(
        changes >= ROUNDS * DIRS * FILES_PER_DIR,
        "{changes} changes"
    );
    step("ls A");
    assert_eq!(sync(a), (0, 0), "B is away");

    // B returns: one pass on A pushes everything, one on B applies everything.
    fs::rename(&moved, &b.volume).unwrap();
    let started = Instant::now();
    let (pushed, _) = sync(a);
    let push_took = started.elapsed();
    assert_eq!(pushed, changes as u64);
    let started = Instant::now();
    let (_, applied) = sync(b);
    let apply_took = started.elapsed();
    assert_eq!(applied, changes as u64);
    println!(
        "{changes} changes: put {put_took:?}, one push pass {push_took:?}, one apply pass {apply_took:?}"
    );

    assert_eq!(b.ok(&["ls", "-R", "/"]), listing);
    step("ls B");
    // Every version arrived, and the contents of a sample read on B (blocks
    // pulled from A on demand) are the last round's.
    assert_eq!(versions(b, "/tree/d03/f042"), ROUNDS);
    for (dir, file) in [(0, 0), (3, 57), (9, 99), (7, 42)] {
        let path = format!("/tree/d{dir:02}/f{file:03}");
        assert_eq!(
            b.ok(&["get", &path, "-"]),
            content(ROUNDS - 1, dir, file),
            "{path}"
        );
    }
    step("get");
    // Nothing was left for a second pass.
    assert_eq!(sync(a), (0, 0));
    assert_eq!(sync(b), (0, 0));
    step("second passes");
    drop(cluster);
    step("temp dir removed");
}
