//! N copies of every block (`copies` in the spec): which nodes hold each block
//! of the current tree, and which peers should get the blocks held by fewer.
//!
//! A copy is counted only from what a store shows: our own `hashes/`, and for
//! each *reachable* peer its `hashes/` (raw or `.zst`) or a `%blocks/` file of
//! the right length in one of its inbound spools (a block pushed there is taken
//! into the peer's `hashes/` when the peer next applies). What a peer says about
//! itself (its status, its reports) is never used, and a peer that is away
//! holds nothing as far as this count goes. Paths matching `ignore` stay local
//! and are not counted.
//!
//! [`count_holders`] does the counting (on each peer's worker, a batch of
//! blocks per call); [`plan`] chooses, for each block held by fewer than N
//! nodes that we hold, the peers to copy it to: peers that do not hold it and
//! accepted our push in this pass, those already holding more blocks of the
//! same file first, then more blocks of the same directory, then the one this
//! pass gave the fewest bytes so far, then by id. The
//! copying itself is the `replicate` path of push ([`super::push::copy_blocks`]).
//!
//! The functions over a store's directories ([`store_holds`]) work on plain
//! paths, so everything here is testable without a mount.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::ids::{BlockHash, NodeId};
use crate::layout::{StoreLayout, VPath};
use crate::store::gc::block_file_matches;
use crate::store::{Blocks, Kind, Store, StoreError, Version};

use super::remote::Remote;
use super::state::BLOCKS;

/// Blocks checked per call on a peer's worker (each call has the sync
/// deadline): stats, and whole blocks read for a content check.
const BATCH: usize = 128;
const CONTENT_BATCH: usize = 4;

/// Rounds of copying per pass: a peer that did not take its share is left
/// out of the next round.
const ROUNDS: usize = 3;

/// The distinct blocks of the current tree, with the files naming them.
#[derive(Debug, Default)]
pub struct TreeBlocks {
    /// Current file versions (paths not matching `ignore`), in walk order.
    pub files: Vec<Version>,
    /// Distinct blocks, in the order the walk first meets them.
    pub blocks: Vec<TreeBlock>,
}

/// One distinct block of the current tree.
#[derive(Clone, Debug)]
pub struct TreeBlock {
    pub hash: BlockHash,
    pub len: usize,
    /// Indexes into [`TreeBlocks::files`] of every file naming it.
    pub files: Vec<usize>,
}

impl TreeBlocks {
    /// Walks the current tree below `path` (one version read per path).
    pub fn of(store: &Store, path: &VPath) -> Result<TreeBlocks, StoreError> {
        let versions: Vec<Version> = if store.is_dir(path)? {
            store.walk(path)?.into_iter().map(|(_, v)| v).collect()
        } else {
            store.live(path)?.into_iter().collect()
        };
        Ok(TreeBlocks::from_versions(store, versions))
    }

    /// The current versions of just `paths` (those that are live files).
    pub fn of_paths(store: &Store, paths: &BTreeSet<VPath>) -> Result<TreeBlocks, StoreError> {
        let mut versions = Vec::new();
        for path in paths {
            if let Some(version) = store.live(path)? {
                versions.push(version);
            }
        }
        Ok(TreeBlocks::from_versions(store, versions))
    }

    fn from_versions(store: &Store, versions: Vec<Version>) -> TreeBlocks {
        let mut tree = TreeBlocks::default();
        let mut index: HashMap<BlockHash, usize> = HashMap::new();
        for version in versions {
            if version.kind != Kind::File || store.is_ignored(&version.path) {
                continue;
            }
            let file = tree.files.len();
            for (at, hash) in version.hashes.iter().enumerate() {
                let len = version.block_len(at);
                match index.get(hash) {
                    Some(&known) => {
                        let files = &mut tree.blocks[known].files;
                        if files.last() != Some(&file) {
                            files.push(file);
                        }
                    }
                    None => {
                        index.insert(*hash, tree.blocks.len());
                        tree.blocks.push(TreeBlock {
                            hash: *hash,
                            len,
                            files: vec![file],
                        });
                    }
                }
            }
            tree.files.push(version);
        }
        tree
    }

    /// The volume path of the first file naming block `at`.
    pub fn first_path(&self, at: usize) -> &VPath {
        &self.files[self.blocks[at].files[0]].path
    }
}

/// Who holds one block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holders {
    /// In our own `hashes/`.
    pub local: bool,
    /// Reachable peers whose store shows it.
    pub peers: Vec<NodeId>,
}

impl Holders {
    /// Nodes holding it, this one included.
    pub fn count(&self) -> u32 {
        u32::from(self.local) + self.peers.len() as u32
    }
}

/// How a copy is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The file is there with the block's length (`.zst`: present). One
    /// `stat` per place: sync and `status`.
    Present,
    /// Its content is read and its SHA-256 compared: `verify`.
    Content,
}

/// The result of a count.
#[derive(Debug, Default)]
pub struct Count {
    /// One entry per block asked about, in the same order.
    pub holders: Vec<Holders>,
    /// Peers not counted (away, or gone away during the count), with why.
    pub away: Vec<(NodeId, String)>,
}

impl Count {
    /// The peers not counted, one `<peer>: <why>` each (status and verify).
    pub fn away_lines(&self) -> Vec<String> {
        self.away
            .iter()
            .map(|(peer, why)| format!("{peer}: {why}"))
            .collect()
    }
}

/// Counts, for each block, which nodes hold it: this store, and every
/// reachable peer of `remotes` (through its store's directories, on its
/// worker). A peer that is away, or goes away during the count, is not
/// counted for any block it had not answered for yet.
pub fn count_holders(
    store: &Store,
    remotes: &[Arc<Remote>],
    blocks: &[(BlockHash, usize)],
    check: Check,
) -> Count {
    let local = store.layout();
    let mut holders: Vec<Holders> = blocks
        .iter()
        .map(|(hash, len)| Holders {
            local: store_holds(local, &[], hash, *len, check),
            peers: Vec::new(),
        })
        .collect();
    let mut away = Vec::new();
    for remote in remotes {
        if let Err(gone) = remote.check(false) {
            away.push((remote.id(), gone.why));
            continue;
        }
        let layout = remote.layout().clone();
        let batch = match check {
            Check::Present => BATCH,
            Check::Content => CONTENT_BATCH,
        };
        for (chunk_at, chunk) in blocks.chunks(batch).enumerate() {
            let wanted = chunk.to_vec();
            let layout = layout.clone();
            let answer = remote.run(move || {
                let spools = inbound_spools(&layout);
                wanted
                    .iter()
                    .map(|(hash, len)| store_holds(&layout, &spools, hash, *len, check))
                    .collect::<Vec<bool>>()
            });
            match answer {
                Ok(found) => {
                    for (offset, held) in found.into_iter().enumerate() {
                        if held {
                            holders[chunk_at * batch + offset].peers.push(remote.id());
                        }
                    }
                }
                Err(gone) => {
                    away.push((remote.id(), gone.why));
                    break;
                }
            }
        }
    }
    Count { holders, away }
}

/// The inbound spool directories of a store (`spool/inbound/*/`).
fn inbound_spools(layout: &StoreLayout) -> Vec<PathBuf> {
    let dir = layout.inbound_dir();
    let Ok(listing) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    listing
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| entry.path())
        .collect()
}

/// Whether the store at `layout` shows block `hash` of `len` bytes: in its
/// `hashes/`, or as a `%blocks/` file in one of `spools`. Runs on plain paths
/// (a peer's through its worker).
pub fn store_holds(
    layout: &StoreLayout,
    spools: &[PathBuf],
    hash: &BlockHash,
    len: usize,
    check: Check,
) -> bool {
    let blocks = Blocks::new(layout.hashes());
    let in_hashes = match check {
        Check::Present => blocks.locate(hash, Some(len)).is_some(),
        Check::Content => [blocks.raw_path(hash), blocks.zst_path(hash)]
            .iter()
            .any(|file| file.is_file() && block_file_matches(file, hash).unwrap_or(false)),
    };
    in_hashes
        || spools.iter().any(|spool| {
            let file = spool.join(BLOCKS).join(hash.relative_path());
            spool_block_holds(&file, hash, len, check)
        })
}

/// A `%blocks/` file: always raw, so its length must be the block's.
fn spool_block_holds(file: &Path, hash: &BlockHash, len: usize, check: Check) -> bool {
    let Ok(meta) = fs::symlink_metadata(file) else {
        return false;
    };
    if !meta.is_file() || meta.len() != len as u64 {
        return false;
    }
    match check {
        Check::Present => true,
        Check::Content => fs::read(file).is_ok_and(|data| BlockHash::of(&data) == *hash),
    }
}

/// The copies of the current tree, as counted.
#[derive(Debug)]
pub struct Census {
    pub tree: TreeBlocks,
    pub count: Count,
}

impl Census {
    /// Counts the holders of every block of the current tree below `path`.
    pub fn take(
        store: &Store,
        remotes: &[Arc<Remote>],
        path: &VPath,
        check: Check,
    ) -> Result<Census, StoreError> {
        Ok(Census::of(
            store,
            remotes,
            TreeBlocks::of(store, path)?,
            check,
        ))
    }

    /// Counts the holders of the blocks of `tree`.
    pub fn of(store: &Store, remotes: &[Arc<Remote>], tree: TreeBlocks, check: Check) -> Census {
        let wanted: Vec<(BlockHash, usize)> = tree.blocks.iter().map(|b| (b.hash, b.len)).collect();
        let count = count_holders(store, remotes, &wanted, check);
        Census { tree, count }
    }

    /// Blocks held by fewer than `copies` nodes (indexes into the tree's blocks).
    pub fn short(&self, copies: u32) -> Vec<usize> {
        (0..self.tree.blocks.len())
            .filter(|&at| self.count.holders[at].count() < copies)
            .collect()
    }

    /// Under-replicated blocks and bytes per top-level prefix of the volume
    /// (`/Photos`; files in the root count under `/`), and in all (distinct).
    pub fn shortfall(&self, copies: u32) -> Shortfall {
        let mut by_prefix: BTreeMap<String, (HashSet<usize>, u64)> = BTreeMap::new();
        let mut total = Shortfall::default();
        for at in self.short(copies) {
            let block = &self.tree.blocks[at];
            total.blocks += 1;
            total.bytes += block.len as u64;
            for &file in &block.files {
                let prefix = prefix_of(&self.tree.files[file].path);
                let entry = by_prefix.entry(prefix).or_default();
                if entry.0.insert(at) {
                    entry.1 += block.len as u64;
                }
            }
        }
        total.prefixes = by_prefix
            .into_iter()
            .map(|(prefix, (blocks, bytes))| PrefixShort {
                prefix,
                blocks: blocks.len() as u64,
                bytes,
            })
            .collect();
        total
    }
}

/// The top-level name of a volume path as a volume path (`/a/b/c` → `/a`;
/// `/c`, a file in the root, → `/`).
fn prefix_of(path: &VPath) -> String {
    let escaped = path.escaped();
    match escaped.split_once('/') {
        Some((top, _)) => format!("/{top}"),
        None => "/".to_string(),
    }
}

/// What falls short of `copies`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Shortfall {
    /// Distinct blocks of the current tree held by fewer nodes than wanted.
    pub blocks: u64,
    /// Their bytes (uncompressed).
    pub bytes: u64,
    /// Per top-level prefix (a block shared by two prefixes counts in both).
    pub prefixes: Vec<PrefixShort>,
}

/// Under-replicated blocks below one top-level prefix.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PrefixShort {
    pub prefix: String,
    pub blocks: u64,
    pub bytes: u64,
}

/// Which blocks go to which peer.
#[derive(Debug, Default)]
pub struct Plan {
    /// Per peer: indexes into the tree's blocks.
    pub to: BTreeMap<NodeId, Vec<usize>>,
    /// Short blocks not held here (another holder must copy them).
    pub not_local: u64,
    /// Short blocks with fewer accepting peers left than copies missing.
    pub too_few_peers: u64,
}

/// Chooses peers for every block held by fewer than `copies` nodes that we
/// hold: among `accepting` peers that do not hold it, those holding more
/// blocks of the same file first, then of the same directory, then the peer
/// given the fewest bytes by this plan so far, then by id.
pub fn plan(census: &Census, copies: u32, accepting: &[NodeId]) -> Plan {
    let mut plan = Plan::default();
    let tree = &census.tree;
    let holders = &census.count.holders;
    // Blocks each peer holds per file and per directory.
    let mut per_file: HashMap<(usize, NodeId), u64> = HashMap::new();
    let mut per_dir: HashMap<(String, NodeId), u64> = HashMap::new();
    let dir_of = |file: usize| -> String {
        let path = &tree.files[file].path;
        path.parent().map(|p| p.escaped()).unwrap_or_default()
    };
    for (at, block) in tree.blocks.iter().enumerate() {
        for peer in &holders[at].peers {
            for &file in &block.files {
                *per_file.entry((file, *peer)).or_default() += 1;
                *per_dir.entry((dir_of(file), *peer)).or_default() += 1;
            }
        }
    }
    // Bytes this plan gives each peer: with no neighbours to follow, the
    // least loaded peer gets the next file.
    let mut placed: HashMap<NodeId, u64> = HashMap::new();
    for at in census.short(copies) {
        let held = &holders[at];
        if !held.local {
            plan.not_local += 1;
            continue;
        }
        let block = &tree.blocks[at];
        let file = block.files[0];
        let dir = dir_of(file);
        let mut candidates: Vec<NodeId> = accepting
            .iter()
            .copied()
            .filter(|peer| !held.peers.contains(peer))
            .collect();
        candidates.sort_by_key(|peer| {
            let same_file = per_file.get(&(file, *peer)).copied().unwrap_or(0);
            let same_dir = per_dir.get(&(dir.clone(), *peer)).copied().unwrap_or(0);
            let given = placed.get(peer).copied().unwrap_or(0);
            (
                std::cmp::Reverse(same_file),
                std::cmp::Reverse(same_dir),
                given,
                *peer,
            )
        });
        let missing = (copies - held.count()) as usize;
        if candidates.len() < missing {
            plan.too_few_peers += 1;
        }
        for peer in candidates.into_iter().take(missing) {
            plan.to.entry(peer).or_default().push(at);
            *placed.entry(peer).or_default() += block.len as u64;
            // What this pass places counts as a neighbour for the next block.
            for &file in &block.files {
                *per_file.entry((file, peer)).or_default() += 1;
                *per_dir.entry((dir_of(file), peer)).or_default() += 1;
            }
        }
    }
    plan
}

/// What a sync pass did for `copies`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CopiesReport {
    /// The spec's `copies`.
    pub wanted: u32,
    /// Distinct blocks of the current tree.
    pub blocks: u64,
    /// Held by fewer than `wanted` nodes before this pass copied any.
    pub short_before: u64,
    /// Blocks written into peers' spools.
    pub copied: u64,
    /// Still short after the copies (counted again from the stores).
    pub short_after: u64,
    /// Short blocks this node does not hold (another holder copies them).
    pub not_local: u64,
    /// Short blocks with too few reachable peers accepting them.
    pub too_few_peers: u64,
    /// Peers not counted (away), with why.
    pub not_counted: Vec<String>,
    /// Whether the whole current tree was counted (else only the paths
    /// changed since this syncer's last census and those still short then).
    pub whole_tree: bool,
    /// The files with blocks still short (what the next census looks at again).
    #[serde(skip)]
    pub short_paths: BTreeSet<VPath>,
}

/// After the pushes of a pass: counts the holders of every block of the
/// current tree (or, with `only`, of those paths' current versions) and
/// copies those held by fewer than `copies` nodes into the chosen
/// `accepting` peers' spools (see [`plan`]). `reports` is indexed like
/// `remotes`.
pub(super) fn ensure(
    store: &Store,
    remotes: &[Arc<Remote>],
    accepting: &[bool],
    reports: &mut [super::PeerReport],
    copies: u32,
    only: Option<&BTreeSet<VPath>>,
) -> Result<CopiesReport, StoreError> {
    let reachable: Vec<Arc<Remote>> = remotes
        .iter()
        .zip(reports.iter())
        .filter(|(_, report)| report.reachable)
        .map(|(remote, _)| remote.clone())
        .collect();
    let tree = match only {
        Some(paths) => TreeBlocks::of_paths(store, paths)?,
        None => TreeBlocks::of(store, &VPath::root())?,
    };
    let census = Census::of(store, &reachable, tree, Check::Present);
    let mut out = CopiesReport {
        wanted: copies,
        blocks: census.tree.blocks.len() as u64,
        whole_tree: only.is_none(),
        ..CopiesReport::default()
    };
    let mut census = census;
    out.short_before = census.short(copies).len() as u64;
    let mut ids: Vec<NodeId> = remotes
        .iter()
        .zip(accepting)
        .filter(|(_, ok)| **ok)
        .map(|(remote, _)| remote.id())
        .collect();
    // A peer that did not end up holding what it was given (its disk full,
    // its spool refused, gone away) is left out of the next round, so the
    // blocks go to another peer in the same pass.
    for round in 0..ROUNDS {
        let plan = plan(&census, copies, &ids);
        if round == 0 {
            out.not_local = plan.not_local;
        }
        out.too_few_peers = plan.too_few_peers;
        if plan.to.is_empty() {
            break;
        }
        for (index, remote) in remotes.iter().enumerate() {
            let Some(chosen) = plan.to.get(&remote.id()) else {
                continue;
            };
            // Per file, the chosen blocks it names (each block once, with the
            // first file naming it).
            let mut per_file: BTreeMap<usize, HashSet<BlockHash>> = BTreeMap::new();
            for &at in chosen {
                let block = &census.tree.blocks[at];
                per_file
                    .entry(block.files[0])
                    .or_default()
                    .insert(block.hash);
            }
            let versions: Vec<(&Version, HashSet<BlockHash>)> = per_file
                .into_iter()
                .map(|(file, hashes)| (&census.tree.files[file], hashes))
                .collect();
            match super::push::copy_blocks(store, remote, &versions, &mut reports[index]) {
                Ok(copied) => out.copied += copied,
                Err(super::push::PushError::Away(away)) => {
                    reports[index].note(format!("copying blocks for `copies`: {away}"));
                }
                Err(super::push::PushError::Store(err)) => return Err(err),
            }
        }
        // Counted again, from the stores, for the blocks that were short.
        let short = census.short(copies);
        let again: Vec<(BlockHash, usize)> = short
            .iter()
            .map(|&at| (census.tree.blocks[at].hash, census.tree.blocks[at].len))
            .collect();
        let recount = count_holders(store, &reachable, &again, Check::Present);
        for (at, held) in short.iter().zip(recount.holders) {
            census.count.holders[*at] = held;
        }
        for (peer, why) in recount.away {
            if !census.count.away.iter().any(|(p, _)| *p == peer) {
                census.count.away.push((peer, why));
            }
        }
        let failed: Vec<NodeId> = plan
            .to
            .iter()
            .filter(|(peer, chosen)| {
                chosen
                    .iter()
                    .any(|at| !census.count.holders[*at].peers.contains(peer))
            })
            .map(|(peer, _)| *peer)
            .collect();
        if failed.is_empty() {
            break;
        }
        tracing::info!(
            ?failed,
            "peers that did not take the blocks given to them for `copies`; trying others"
        );
        ids.retain(|peer| !failed.contains(peer));
    }
    for at in census.short(copies) {
        out.short_after += 1;
        for &file in &census.tree.blocks[at].files {
            out.short_paths.insert(census.tree.files[file].path.clone());
        }
    }
    let mut away: Vec<(NodeId, String)> = census.count.away.clone();
    for (remote, report) in remotes.iter().zip(reports.iter()) {
        if !report.reachable {
            away.push((
                remote.id(),
                report.away.clone().unwrap_or_else(|| "away".into()),
            ));
        }
    }
    out.not_counted = away
        .into_iter()
        .map(|(peer, why)| format!("{peer}: {why}"))
        .collect();
    if out.short_after > 0 {
        tracing::info!(
            copies,
            short = out.short_after,
            not_local = out.not_local,
            too_few_peers = out.too_few_peers,
            "blocks of the current tree held by fewer nodes than `copies` asks"
        );
    }
    Ok(out)
}

/// What `verify` says about `copies`: every copy of every block of the
/// current tree it could read, content checked (SHA-256).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VerifyCopies {
    /// The spec's `copies`.
    pub wanted: u32,
    /// Distinct blocks of the current tree.
    pub blocks: u64,
    /// Good copies found, over all blocks and nodes (this one included).
    pub copies_checked: u64,
    /// Blocks with fewer good copies than `wanted`.
    pub under_replicated: Shortfall,
    /// Peers not counted (away), with why.
    pub not_counted: Vec<String>,
}

/// `verify` with `copies` above 1: reads every copy this node can reach of
/// every block of the current tree (ours and reachable peers': `hashes/` and
/// inbound `%blocks`) and checks its SHA-256.
pub fn verify_copies(
    store: &Store,
    remotes: &[Arc<Remote>],
    copies: u32,
) -> Result<VerifyCopies, StoreError> {
    let census = Census::take(store, remotes, &VPath::root(), Check::Content)?;
    Ok(VerifyCopies {
        wanted: copies,
        blocks: census.tree.blocks.len() as u64,
        copies_checked: census
            .count
            .holders
            .iter()
            .map(|held| u64::from(held.count()))
            .sum(),
        under_replicated: census.shortfall(copies),
        not_counted: census.count.away_lines(),
    })
}

/// The spec's `copies` as an eviction bound: a block may leave this node only
/// when at least this many *other* nodes hold it (so `copies` nodes still do),
/// and never fewer than `cache.min_copies`.
pub fn others_needed(min_copies: u32, copies: u32) -> u32 {
    min_copies.max(copies).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> BlockHash {
        BlockHash::of(&[n; 10])
    }

    #[test]
    fn a_store_holds_what_its_hashes_or_a_spool_shows_with_the_right_length() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StoreLayout::new(dir.path());
        let spool = dir.path().join("spool/inbound/x");
        let spools = [spool.clone()];
        let data = [1u8; 10];
        let h = BlockHash::of(&data);
        assert!(!store_holds(&layout, &spools, &h, 10, Check::Present));
        let in_spool = spool.join(BLOCKS).join(h.relative_path());
        fs::create_dir_all(in_spool.parent().unwrap()).unwrap();
        fs::write(&in_spool, [1u8; 9]).unwrap();
        assert!(
            !store_holds(&layout, &spools, &h, 10, Check::Present),
            "a short file is no copy"
        );
        fs::write(&in_spool, [2u8; 10]).unwrap();
        assert!(store_holds(&layout, &spools, &h, 10, Check::Present));
        assert!(
            !store_holds(&layout, &spools, &h, 10, Check::Content),
            "wrong bytes of the right length pass a stat, not a content check"
        );
        fs::write(&in_spool, data).unwrap();
        assert!(store_holds(&layout, &spools, &h, 10, Check::Content));
        fs::remove_file(&in_spool).unwrap();
        let in_hashes = Blocks::new(layout.hashes()).raw_path(&h);
        fs::create_dir_all(in_hashes.parent().unwrap()).unwrap();
        fs::write(&in_hashes, data).unwrap();
        assert!(store_holds(&layout, &[], &h, 10, Check::Content));
        assert!(!store_holds(&layout, &[], &h, 11, Check::Present));
    }

    fn census(files: &[(&str, &[u8])], holders: Vec<Holders>) -> Census {
        let mut tree = TreeBlocks::default();
        let mut index = HashMap::new();
        for (file, (path, blocks)) in files.iter().enumerate() {
            let version = Version {
                id: "1000000000.000000001".parse().unwrap(),
                kind: Kind::File,
                path: VPath::parse(std::ffi::OsStr::new(path)).unwrap(),
                node: NodeId::random(),
                parents: Vec::new(),
                from: None,
                conflict_of: None,
                size: 10 * blocks.len() as u64,
                mode: 0o644,
                mtime: Default::default(),
                block_size: 10,
                target: None,
                hashes: blocks.iter().map(|n| hash(*n)).collect(),
                posix: Default::default(),
            };
            for n in *blocks {
                let at = *index.entry(*n).or_insert_with(|| {
                    tree.blocks.push(TreeBlock {
                        hash: hash(*n),
                        len: 10,
                        files: Vec::new(),
                    });
                    tree.blocks.len() - 1
                });
                tree.blocks[at].files.push(file);
            }
            tree.files.push(version);
        }
        assert_eq!(tree.blocks.len(), holders.len());
        Census {
            tree,
            count: Count {
                holders,
                away: Vec::new(),
            },
        }
    }

    fn held(local: bool, peers: &[NodeId]) -> Holders {
        Holders {
            local,
            peers: peers.to_vec(),
        }
    }

    #[test]
    fn short_blocks_go_to_the_peer_holding_their_neighbours() {
        let mut ids = [NodeId::random(), NodeId::random(), NodeId::random()];
        ids.sort();
        let [b, c, d] = ids;
        // /p/f has blocks 1, 2, 3; d already holds 1, so 2 and 3 go to d too,
        // although b sorts first. /q/g's block 4 goes to c, which holds block
        // 6 of the same file. Block 5 is not ours. Block 6 has 2 holders.
        let census = census(
            &[("/p/f", &[1, 2, 3]), ("/q/g", &[4, 5, 6])],
            vec![
                held(true, &[d]),
                held(true, &[]),
                held(true, &[]),
                held(true, &[]),
                held(false, &[]),
                held(true, &[c]),
            ],
        );
        let two = plan(&census, 2, &[b, c, d]);
        assert_eq!(two.to.get(&d), Some(&vec![1, 2]));
        assert_eq!(two.to.get(&c), Some(&vec![3]));
        assert_eq!(two.to.get(&b), None);
        assert_eq!(two.not_local, 1);
        assert_eq!(two.too_few_peers, 0);
        // Three copies with only b and c accepting: blocks 2, 3 and 4 need
        // both; 1 and 6 need one more.
        let three = plan(&census, 3, &[b, c]);
        assert_eq!(three.to.get(&d), None);
        for at in [1, 2, 3] {
            assert!(three.to[&b].contains(&at) && three.to[&c].contains(&at));
        }
        assert_eq!(three.too_few_peers, 0);
        // Only b accepting: blocks 2, 3 and 4 cannot reach three holders.
        let few = plan(&census, 3, &[b]);
        assert_eq!(few.too_few_peers, 3, "{few:?}");
        assert_eq!(few.to[&b], vec![0, 1, 2, 3, 5]);
    }

    #[test]
    fn the_shortfall_is_per_top_level_prefix_and_distinct_in_all() {
        let peer = NodeId::random();
        let census = census(
            &[("/a/x", &[1, 2]), ("/b/y", &[2, 3]), ("/z", &[4])],
            vec![
                held(true, &[peer]),
                held(true, &[]),
                held(true, &[]),
                held(false, &[]),
            ],
        );
        let short = census.shortfall(2);
        assert_eq!((short.blocks, short.bytes), (3, 30));
        let got: Vec<(&str, u64, u64)> = short
            .prefixes
            .iter()
            .map(|p| (p.prefix.as_str(), p.blocks, p.bytes))
            .collect();
        assert_eq!(got, vec![("/", 1, 10), ("/a", 1, 10), ("/b", 2, 20)]);
        assert_eq!(census.shortfall(1).blocks, 1, "block 4: no holder at all");
    }

    #[test]
    fn eviction_needs_copies_others() {
        assert_eq!(others_needed(1, 1), 1);
        assert_eq!(others_needed(1, 2), 2);
        assert_eq!(others_needed(3, 2), 3);
    }
}
