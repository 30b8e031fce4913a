//! `copies: N` across three nodes on one machine (peers as plain directories):
//! a sync pass copies every block of the current tree into peers' spools
//! until N nodes hold it (the blocks of one file to one peer); the writer's
//! store can then be lost and every file still reads on the others; `drop`
//! and `cache.max_size` never take a block below N; `status` and `verify`
//! count exactly what the stores' `hashes/` and `%blocks/` trees show, and
//! never a peer that is away.

#[path = "common/nodes.rs"]
mod nodes;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::Path;

use globofs::ids::BlockHash;
use globofs::layout::VPath;
use nodes::{BS, Cluster, Node, data, stdout};

/// Adds `copies: N` to a node's spec.
fn set_copies(node: &Node, copies: u32) {
    let mut spec = fs::read_to_string(&node.spec_path).expect("read spec");
    spec.push_str(&format!("copies: {copies}\n"));
    fs::write(&node.spec_path, spec).expect("write spec");
}

fn cluster(copies: u32) -> Cluster {
    let cluster = Cluster::mesh(3);
    for node in &cluster.nodes {
        set_copies(node, copies);
    }
    cluster
}

/// The files the tests write: two top-level directories and a file in the
/// root; `/docs/b` shares its first block with `/docs/a`.
fn files() -> Vec<(&'static str, Vec<u8>)> {
    let a = data(3 * BS + 100, 1);
    let mut b = a[..BS].to_vec();
    b.extend(data(BS, 2));
    vec![
        ("/docs/a", a),
        ("/docs/b", b),
        ("/photos/moon/c", data(5 * BS, 3)),
        ("/top", data(BS / 2, 4)),
    ]
}

fn write_all(node: &Node) -> Vec<(&'static str, Vec<u8>)> {
    let files = files();
    for (path, bytes) in &files {
        node.put(path, bytes);
    }
    files
}

/// Every block file a store shows, by hash hex: its `hashes/` (raw or
/// `.zst`) and the `%blocks/` of each of its inbound spools. Walked here
/// from the directories, not asked of globofs.
fn shown_by(node: &Node) -> HashSet<String> {
    let store = node.store_dir();
    let mut roots = vec![store.join("hashes")];
    if let Ok(spools) = fs::read_dir(store.join("spool").join("inbound")) {
        for spool in spools.flatten() {
            roots.push(spool.path().join("%blocks"));
        }
    }
    let mut found = HashSet::new();
    for root in roots {
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(listing) = fs::read_dir(&dir) else {
                continue;
            };
            for item in listing.flatten() {
                let path = item.path();
                if item.file_type().unwrap().is_dir() {
                    stack.push(path);
                    continue;
                }
                let rel = path.strip_prefix(&root).unwrap().to_string_lossy();
                let hex: String = rel.trim_end_matches(".zst").replace('/', "");
                if hex.len() == 64 {
                    found.insert(hex);
                }
            }
        }
    }
    found
}

/// The current tree's files as the writer's store lists them, with their
/// distinct blocks (hash, length).
fn tree_blocks(node: &Node) -> Vec<(String, Vec<(BlockHash, u64)>)> {
    let store = node.store();
    store
        .walk(&VPath::root())
        .unwrap()
        .into_iter()
        .filter(|(_, version)| version.kind == globofs::store::Kind::File)
        .map(|(path, version)| {
            let mut seen = HashSet::new();
            let blocks = version
                .hashes
                .iter()
                .enumerate()
                .filter(|(_, hash)| seen.insert(**hash))
                .map(|(at, hash)| (*hash, version.block_len(at) as u64))
                .collect();
            (path.display(), blocks)
        })
        .collect()
}

/// What falls short of `copies` among the nodes `counted`, computed from the
/// stores' trees: (distinct blocks, bytes, per top-level prefix (blocks, bytes)).
fn shortfall_from_stores(
    tree: &[(String, Vec<(BlockHash, u64)>)],
    counted: &[&Node],
    copies: usize,
) -> (u64, u64, BTreeMap<String, (u64, u64)>) {
    let shown: Vec<HashSet<String>> = counted.iter().map(|node| shown_by(node)).collect();
    let holders = |hash: &BlockHash| {
        shown
            .iter()
            .filter(|s| s.contains(&hash.to_string()))
            .count()
    };
    let mut all = BTreeSet::new();
    let mut bytes = 0;
    let mut prefixes: BTreeMap<String, (BTreeSet<BlockHash>, u64)> = BTreeMap::new();
    for (path, blocks) in tree {
        let prefix = match path[1..].split_once('/') {
            Some((top, _)) => format!("/{top}"),
            None => "/".to_string(),
        };
        for (hash, len) in blocks {
            if holders(hash) >= copies {
                continue;
            }
            if all.insert(*hash) {
                bytes += len;
            }
            let entry = prefixes.entry(prefix.clone()).or_default();
            if entry.0.insert(*hash) {
                entry.1 += len;
            }
        }
    }
    let prefixes = prefixes
        .into_iter()
        .map(|(prefix, (set, bytes))| (prefix, (set.len() as u64, bytes)))
        .collect();
    (all.len() as u64, bytes, prefixes)
}

#[track_caller]
fn json(node: &Node, args: &[&str]) -> serde_json::Value {
    let text = node.ok(args);
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{args:?}: {err}: {text}"))
}

/// `status --json`'s copies figures: (blocks, bytes, per prefix).
fn status_shortfall(node: &Node) -> (u64, u64, BTreeMap<String, (u64, u64)>, serde_json::Value) {
    let status = json(node, &["status", "--json"]);
    let short = &status["copies"]["under_replicated"];
    let prefixes = short["prefixes"]
        .as_array()
        .unwrap_or_else(|| panic!("no copies in status: {status}"))
        .iter()
        .map(|p| {
            (
                p["prefix"].as_str().unwrap().to_string(),
                (p["blocks"].as_u64().unwrap(), p["bytes"].as_u64().unwrap()),
            )
        })
        .collect();
    (
        short["blocks"].as_u64().unwrap(),
        short["bytes"].as_u64().unwrap(),
        prefixes,
        status,
    )
}

/// Moves a node's store aside (its peers find it away), and back.
fn away(node: &Node) -> std::path::PathBuf {
    let moved = node.store_dir().with_extension("away");
    fs::rename(node.store_dir(), &moved).unwrap();
    moved
}

fn back(node: &Node, moved: &Path) {
    fs::rename(moved, node.store_dir()).unwrap();
}

#[test]
fn three_nodes_with_copies_2_survive_the_loss_of_the_writers_store() {
    let cluster = cluster(2);
    let (a, b, c) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let files = write_all(a);
    let tree = tree_blocks(a);
    let distinct: HashSet<BlockHash> = tree
        .iter()
        .flat_map(|(_, blocks)| blocks.iter().map(|(h, _)| *h))
        .collect();
    // Only A has synced: what B and C hold is what A's pass copied to them.
    let report = a.sync();
    let copies = report.copies.as_ref().expect("a copies report");
    assert_eq!(copies.wanted, 2);
    assert_eq!(copies.blocks, distinct.len() as u64);
    assert_eq!(copies.short_before, distinct.len() as u64, "{copies:?}");
    assert_eq!(copies.copied, distinct.len() as u64, "{copies:?}");
    assert_eq!(copies.short_after, 0, "{copies:?}");
    let (short, _, _) = shortfall_from_stores(&tree, &[a, b, c], 2);
    assert_eq!(short, 0, "the stores show every block on two nodes");
    // The blocks of one file went to one peer (neighbours together).
    let (on_b, on_c) = (shown_by(b), shown_by(c));
    for (path, blocks) in &tree {
        let holders: BTreeSet<&str> = blocks
            .iter()
            .flat_map(|(hash, _)| {
                let hex = hash.to_string();
                [("b", on_b.contains(&hex)), ("c", on_c.contains(&hex))]
                    .into_iter()
                    .filter_map(|(name, held)| held.then_some(name))
            })
            .collect();
        assert_eq!(holders.len(), 1, "{path}: its blocks are on {holders:?}");
    }
    // The files did not all land on one peer: with no neighbours to follow,
    // a file goes to the peer given less so far.
    assert!(!on_b.is_empty() && !on_c.is_empty());
    // A second pass has nothing to copy.
    let again = a.sync();
    assert_eq!(again.copies.as_ref().map(|c| c.copied), Some(0));
    // The writer's store is lost for good.
    fs::remove_dir_all(a.store_dir()).unwrap();
    b.sync();
    c.sync();
    for node in [b, c] {
        for (path, bytes) in &files {
            let out = node.cli(&["get", path, "-"]);
            assert!(
                out.status.success(),
                "node {}: get {path}: {}",
                node.index,
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(&out.stdout, bytes, "node {}: {path}", node.index);
        }
    }
}

/// The control for the test above: without `copies` the same loss leaves
/// files that no surviving node can read (so the copies made the difference).
#[test]
fn without_copies_the_same_loss_leaves_files_unreadable() {
    let cluster = cluster(1);
    let (a, b, c) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let files = write_all(a);
    let report = a.sync();
    assert!(report.copies.is_none(), "copies: 1 makes no copies report");
    fs::remove_dir_all(a.store_dir()).unwrap();
    b.sync();
    c.sync();
    for (path, _) in &files {
        let out = c.cli(&["get", path, "-"]);
        assert_eq!(out.status.code(), Some(3), "{path}: {}", stdout(&out));
    }
}

#[test]
fn drop_and_cache_eviction_never_take_a_block_below_copies() {
    let cluster = cluster(2);
    let (a, b, c) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let files = write_all(a);
    let tree = tree_blocks(a);
    let distinct: HashSet<BlockHash> = tree
        .iter()
        .flat_map(|(_, blocks)| blocks.iter().map(|(h, _)| *h))
        .collect();
    a.sync();
    // B takes in what A copied and pulls the rest (a relay): A and B hold
    // every block in `hashes/`; C holds some in its spool only (not applied).
    b.sync();
    assert!(
        distinct
            .iter()
            .all(|h| shown_by(b).contains(&h.to_string()))
    );
    // Evicting on A would leave one node (B): refused, naming hash and path.
    let text = a.ok(&["drop"]);
    assert!(
        text.contains("0 evicted")
            && text.contains(&format!("{} kept", distinct.len()))
            && text.contains("`copies: 2`"),
        "{text}"
    );
    let (path, blocks) = &tree[0];
    assert!(
        text.contains(&format!("kept: block {} of {path}", blocks[0].0)),
        "{text}"
    );
    let report = json(a, &["drop", "--json"]);
    assert_eq!(report["evicted"], 0, "{report}");
    assert_eq!(report["kept_too_few_copies"], distinct.len(), "{report}");
    // cache.max_size, applied after a sync pass: nothing evicted either.
    let mut spec = fs::read_to_string(&a.spec_path).unwrap();
    spec.push_str("cache:\n  max_size: 4KiB\n");
    fs::write(&a.spec_path, spec).unwrap();
    let sync = json(a, &["sync", "--json"]);
    assert_eq!(sync["cache"]["evicted"], 0, "{sync}");
    assert!(
        distinct
            .iter()
            .all(|h| shown_by(a).contains(&h.to_string()))
    );
    // Once C holds them too, A may let its copies go: two nodes still do.
    c.sync();
    let report = json(a, &["drop", "--json"]);
    assert_eq!(report["evicted"], distinct.len(), "{report}");
    let (short, _, _) = shortfall_from_stores(&tree, &[a, b, c], 2);
    assert_eq!(short, 0);
    // And B (counting only C, whose id sorts after its own) keeps its copies.
    let report = json(b, &["drop", "--json"]);
    assert_eq!(report["evicted"], 0, "{report}");
    // prune + gc on B and C never touch blocks of the current tree.
    for node in [b, c] {
        node.ok(&["prune"]);
        node.ok(&["gc"]);
    }
    let (short, _, _) = shortfall_from_stores(&tree, &[b, c], 2);
    assert_eq!(short, 0, "prune + gc kept every current block on B and C");
    for (path, bytes) in &files {
        assert_eq!(&a.ok_bytes(path), bytes);
    }
}

trait GetBytes {
    fn ok_bytes(&self, path: &str) -> Vec<u8>;
}

impl GetBytes for Node {
    fn ok_bytes(&self, path: &str) -> Vec<u8> {
        let out = self.cli(&["get", path, "-"]);
        assert!(
            out.status.success(),
            "get {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

#[test]
fn status_and_verify_count_what_the_stores_show_and_never_an_away_peer() {
    let cluster = cluster(3);
    let (a, b, c) = (cluster.node(0), cluster.node(1), cluster.node(2));
    write_all(a);
    let tree = tree_blocks(a);
    // C is away while A syncs: A's pass copies to B only.
    let moved = away(c);
    let report = a.sync();
    let copies = report.copies.as_ref().expect("a copies report");
    assert!(copies.short_after > 0, "{copies:?}");
    assert!(copies.too_few_peers > 0, "{copies:?}");
    let expected = shortfall_from_stores(&tree, &[a, b], 3);
    assert!(expected.0 > 0);
    assert_eq!(expected.2.len(), 3, "/, /docs and /photos: {expected:?}");
    let (blocks, bytes, prefixes, status) = status_shortfall(a);
    assert_eq!(
        (blocks, bytes, &prefixes),
        (expected.0, expected.1, &expected.2),
        "{status}"
    );
    let not_counted = status["copies"]["not_counted"].to_string();
    assert!(not_counted.contains(&c.id.to_string()), "{status}");
    // C is back, holding nothing: the same figures, now counting C.
    back(c, &moved);
    assert_eq!(
        {
            let (blocks, bytes, prefixes, _) = status_shortfall(a);
            (blocks, bytes, prefixes)
        },
        shortfall_from_stores(&tree, &[a, b, c], 3)
    );
    // A pass reaches C: every block on three nodes.
    a.sync();
    b.sync();
    c.sync();
    assert_eq!(shortfall_from_stores(&tree, &[a, b, c], 3).0, 0);
    let (blocks, bytes, prefixes, status) = status_shortfall(a);
    assert_eq!((blocks, bytes, prefixes.len()), (0, 0, 0), "{status}");
    let text = a.ok(&["status"]);
    assert!(text.contains("copies: 3 wanted; 0 of "), "{text}");
    // verify reads every copy: three good ones per block.
    let distinct: HashSet<BlockHash> = tree
        .iter()
        .flat_map(|(_, blocks)| blocks.iter().map(|(h, _)| *h))
        .collect();
    let verify = json(a, &["verify", "--json"]);
    assert_eq!(
        verify["copies"]["copies_checked"],
        3 * distinct.len(),
        "{verify}"
    );
    assert_eq!(
        verify["copies"]["under_replicated"]["blocks"], 0,
        "{verify}"
    );
    // A damaged copy on C is not a good copy for verify (status only stats).
    let (_, blocks) = &tree[0];
    let damaged = c
        .store_dir()
        .join("hashes")
        .join(blocks[0].0.relative_path());
    let mut bytes = fs::read(&damaged).unwrap();
    bytes[0] ^= 1;
    fs::write(&damaged, bytes).unwrap();
    let verify = json(a, &["verify", "--json"]);
    assert_eq!(
        verify["copies"]["copies_checked"],
        3 * distinct.len() - 1,
        "{verify}"
    );
    assert_eq!(
        verify["copies"]["under_replicated"]["blocks"], 1,
        "{verify}"
    );
    // B away: not counted, so every block is short again, as the walk says.
    let moved = away(b);
    let (blocks, bytes, prefixes, status) = status_shortfall(a);
    assert_eq!(
        (blocks, bytes, prefixes),
        shortfall_from_stores(&tree, &[a, c], 3),
        "{status}"
    );
    assert_eq!(blocks, distinct.len() as u64);
    assert!(
        status["copies"]["not_counted"]
            .to_string()
            .contains(&b.id.to_string()),
        "{status}"
    );
    back(b, &moved);
}

/// Blocks in a peer's `hashes/` only, walked from the directory.
fn in_hashes(node: &Node) -> HashSet<String> {
    let root = node.store_dir().join("hashes");
    let mut found = HashSet::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for item in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if item.file_type().unwrap().is_dir() {
                stack.push(item.path());
            } else {
                let rel = item
                    .path()
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                found.insert(rel.trim_end_matches(".zst").replace('/', ""));
            }
        }
    }
    found
}

/// `copies` turned on after the peer had applied the versions (without their
/// blocks: two nodes, no relay): the next pass copies the blocks and names the
/// versions again, so the peer's apply takes the blocks into its `hashes/`.
#[test]
fn copies_turned_on_later_reach_a_peer_that_applied_the_versions_before() {
    let cluster = Cluster::mesh(2);
    let (a, b) = (cluster.node(0), cluster.node(1));
    let files = write_all(a);
    let tree = tree_blocks(a);
    cluster.settle();
    assert!(in_hashes(b).is_empty(), "two nodes: B pulled nothing");
    for node in [a, b] {
        set_copies(node, 2);
    }
    let report = a.sync();
    let copies = report.copies.as_ref().expect("a copies report");
    assert_eq!(copies.short_after, 0, "{copies:?}");
    assert!(copies.copied > 0);
    b.sync();
    let on_b = in_hashes(b);
    for (path, blocks) in &tree {
        for (hash, _) in blocks {
            assert!(
                on_b.contains(&hash.to_string()),
                "{path}: {hash} not in B's hashes/"
            );
        }
    }
    assert!(
        in_hashes_spool_empty(b, a),
        "B took the blocks out of its spool"
    );
    fs::remove_dir_all(a.store_dir()).unwrap();
    for (path, bytes) in &files {
        assert_eq!(&b.ok_bytes(path), bytes, "{path}");
    }
}

/// No block files left under B's inbound `%blocks/` from A (directories may stay).
fn in_hashes_spool_empty(b: &Node, a: &Node) -> bool {
    let mut stack = vec![b.inbound(a).join("%blocks")];
    while let Some(dir) = stack.pop() {
        for item in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if item.file_type().unwrap().is_dir() {
                stack.push(item.path());
            } else {
                return false;
            }
        }
    }
    true
}

/// A syncer kept from pass to pass (as the mount keeps one) counts the whole
/// tree once, then only what its journal names since and what was still
/// short; a pass with neither counts nothing. A peer coming back is a change
/// of the reachable peers: the whole tree is counted again.
#[test]
fn a_kept_syncer_counts_only_what_changed_and_what_was_short() {
    let cluster = cluster(2);
    let (a, c) = (cluster.node(0), cluster.node(2));
    let spec = a.spec();
    let store = a.store();
    let syncer = globofs::sync::Syncer::new(&spec);
    write_all(a);
    let first = syncer.pass(&store).unwrap();
    let first = first.copies.expect("a first census");
    assert!(
        first.whole_tree && first.copied > 0 && first.short_after == 0,
        "{first:?}"
    );
    let none = syncer.pass(&store).unwrap();
    assert!(none.copies.is_none(), "nothing changed: {:?}", none.copies);
    // One new file: only its blocks are counted and copied.
    let new = nodes::data(2 * BS, 9);
    a.put("/late", &new);
    let second = syncer
        .pass(&store)
        .unwrap()
        .copies
        .expect("a census of the change");
    assert!(!second.whole_tree, "{second:?}");
    assert_eq!(
        (second.blocks, second.copied, second.short_after),
        (2, 2, 0),
        "{second:?}"
    );
    // C away, and copies: 3 wanted of a fresh syncer: the short files are
    // looked at again in every pass until C is back.
    let moved = away(c);
    let mut three = spec.clone();
    three.copies = 3;
    let syncer = globofs::sync::Syncer::new(&three);
    let short = syncer.pass(&store).unwrap().copies.expect("a census");
    assert!(short.whole_tree && short.short_after > 0, "{short:?}");
    let again = syncer
        .pass(&store)
        .unwrap()
        .copies
        .expect("the short files again");
    assert!(!again.whole_tree, "{again:?}");
    assert_eq!(again.short_after, short.short_after, "{again:?}");
    back(c, &moved);
    let whole = syncer
        .pass(&store)
        .unwrap()
        .copies
        .expect("C back: the whole tree");
    assert!(whole.whole_tree && whole.short_after == 0, "{whole:?}");
    assert!(syncer.pass(&store).unwrap().copies.is_none());
}

/// A peer that does not take the blocks it is given (here its spool's
/// `%blocks` is a file, so nothing can be written below it) is left out of
/// the next round of the same pass: the other peer gets them.
#[test]
fn blocks_a_peer_refuses_go_to_another_peer_in_the_same_pass() {
    let cluster = cluster(2);
    let (a, b, c) = (cluster.node(0), cluster.node(1), cluster.node(2));
    write_all(a);
    let tree = tree_blocks(a);
    fs::write(b.inbound(a).join("%blocks"), b"not a directory").unwrap();
    let report = a.sync();
    let copies = report.copies.as_ref().expect("a copies report");
    assert_eq!(copies.short_after, 0, "{copies:?}");
    let to_b = report.peer(b.id).unwrap();
    assert!(
        to_b.notes.iter().any(|n| n.contains("replicating block")),
        "{to_b:?}"
    );
    assert!(shown_by(b).is_empty());
    let on_c = shown_by(c);
    for (path, blocks) in &tree {
        for (hash, _) in blocks {
            assert!(on_c.contains(&hash.to_string()), "{path}: {hash}");
        }
    }
}
