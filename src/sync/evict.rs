//! Giving disk space back: evicting local blocks that enough other nodes hold.
//!
//! `globofs drop [PATH]` evicts the local blocks of the current tree (or of
//! PATH); `cache.max_size` evicts automatically, least recently read first,
//! until the block files in `hashes/` add up to at most `max_size` (after a
//! `globofs sync` pass, and in the mount after a sync pass at most every
//! [`CACHE_CHECK_EVERY`]).
//!
//! A block is evicted only when at least `cache.min_copies` *other* reachable
//! nodes hold it in their `hashes/`. Each such copy is read through that
//! peer's worker (with the sync deadline) and its SHA-256 checked: eviction is
//! the moment a copy elsewhere becomes the only one we can count on, and a
//! size check would not see a flipped byte. A peer that does not answer in
//! time counts as not holding it.
//!
//! Eviction removes the block from `hashes/` and every link of it under every
//! `root/<path>/hashes/` (else no space is freed), links first, with the gc
//! lock held exclusively, so no writer is between "this block exists, I reuse
//! it" and "my version naming it is published". The links are found by a walk
//! of `root/` before the lock (checked against the link counts under it). An evicted block is *remote*
//! (verify counts it apart, not as missing) and a read pulls it back.
//!
//! "Least recently read" is the block file's access time, or its modification
//! time when that is later (filesystems mounted `noatime`, or `relatime`, which
//! updates atime on the first read after a write and then at most daily). Our
//! own `verify` and eviction checks open block files with `O_NOATIME` where
//! allowed, so they do not count as reads.
//!
//! Two nodes evicting the same block at the same moment must not each count
//! the other's copy, and there is no one to ask who goes first. So reliance
//! is one-way: a node counts only copies on nodes whose id sorts after its own.
//! Whatever runs at once, the `min_copies` holders with the highest ids never
//! find enough copies "after" themselves, so they keep the block. The price:
//! the node with the highest id of a volume never evicts (nor does any node
//! whose peers all sort before it).

use crate::store::read_dir_if_present;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::ids::BlockHash;
use crate::layout::VPath;
use crate::store::gc::{block_file_matches, each_block};
use crate::store::{Blocks, Kind, Store, StoreError, Version};

use super::SyncError;
use super::remote::Remote;

/// How often the mount checks the cache size (a check stats every block file).
pub const CACHE_CHECK_EVERY: Duration = Duration::from_secs(600);

/// Peers checked at once.
const CHECK_THREADS: usize = 4;

/// Candidates checked per round while shrinking to `max_size`.
const SHRINK_BATCH: usize = 32;

/// What an eviction did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct EvictReport {
    /// Distinct local blocks considered.
    pub considered: u64,
    pub evicted: u64,
    /// Bytes of block files removed from `hashes/` (compressed size for `.zst`).
    pub bytes_freed: u64,
    /// Per-path links removed under `root/<path>/hashes/`.
    pub links_removed: u64,
    /// Blocks kept: fewer than `min_copies` other reachable nodes hold a good copy.
    pub kept_too_few_copies: u64,
    /// Blocks of the tree that were not local before (`drop` only).
    pub not_local: u64,
    /// `drop`: the blocks kept for too few copies elsewhere, each with a path
    /// naming it (at most [`KEPT_LISTED`]; `kept_too_few_copies` counts all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<KeptBlock>,
    /// `cache.max_size` runs: the block bytes in `hashes/` before and after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_bytes_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_bytes_after: Option<u64>,
}

/// Kept blocks `drop` lists by hash and path.
pub const KEPT_LISTED: usize = 100;

/// A block `drop` kept: too few other reachable nodes hold a good copy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeptBlock {
    pub hash: String,
    /// A volume path of the current tree naming it.
    pub path: String,
}

/// `globofs drop [PATH]`: evicts the local blocks of the current versions
/// below `path` that at least `min_copies` other reachable nodes hold.
pub fn drop_tree(
    store: &Store,
    remotes: &[Arc<Remote>],
    path: &VPath,
    min_copies: u32,
) -> Result<EvictReport, SyncError> {
    // Never zero: a block is evicted only when a copy elsewhere is known.
    let min_copies = min_copies.max(1);
    let remotes = &counted(store, remotes);
    let mut report = EvictReport::default();
    let files: Vec<Version> = if store.is_dir(path)? {
        store
            .walk(path)?
            .into_iter()
            .map(|(_, version)| version)
            .filter(|version| version.kind == Kind::File)
            .collect()
    } else {
        match store.live(path)? {
            Some(version) if version.kind == Kind::File => vec![version],
            Some(_) => Vec::new(),
            None => return Err(StoreError::NotFound(path.clone()).into()),
        }
    };
    let mut seen = HashSet::new();
    let mut candidates = Vec::new();
    let mut named_by = Vec::new();
    for version in &files {
        for (index, hash) in version.hashes.iter().enumerate() {
            if !seen.insert(*hash) {
                continue;
            }
            match store.blocks().locate(hash, Some(version.block_len(index))) {
                Some(_) => {
                    candidates.push(*hash);
                    named_by.push(&version.path);
                }
                None => report.not_local += 1,
            }
        }
    }
    report.considered = candidates.len() as u64;
    let held = held_elsewhere(remotes, &candidates, min_copies);
    let chosen: Vec<BlockHash> = candidates
        .iter()
        .zip(&held)
        .filter_map(|(hash, ok)| ok.then_some(*hash))
        .collect();
    report.kept = candidates
        .iter()
        .zip(&held)
        .zip(&named_by)
        .filter(|((_, ok), _)| !**ok)
        .take(KEPT_LISTED)
        .map(|((hash, _), path)| KeptBlock {
            hash: hash.to_string(),
            path: path.display(),
        })
        .collect();
    report.kept_too_few_copies = (candidates.len() - chosen.len()) as u64;
    evict(store, &chosen, &mut report)?;
    Ok(report)
}

/// A local block file's size and when it was last read.
struct Cached {
    hash: BlockHash,
    bytes: u64,
    used: (i64, i64),
}

/// `cache.max_size`: evicts least recently read blocks that enough other nodes
/// hold until the block files in `hashes/` add up to at most `max_size`.
pub fn shrink_to(
    store: &Store,
    remotes: &[Arc<Remote>],
    max_size: u64,
    min_copies: u32,
) -> Result<EvictReport, SyncError> {
    let min_copies = min_copies.max(1);
    let remotes = &counted(store, remotes);
    let mut report = EvictReport::default();
    let mut by_hash: HashMap<BlockHash, Cached> = HashMap::new();
    each_block(&store.layout().hashes(), &mut |file, hash| {
        let Some(hash) = hash else { return Ok(()) };
        let meta = match fs::symlink_metadata(file) {
            Ok(meta) => meta,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(StoreError::io(file, err)),
        };
        let used = (meta.atime(), meta.atime_nsec()).max((meta.mtime(), meta.mtime_nsec()));
        let entry = by_hash.entry(hash).or_insert(Cached {
            hash,
            bytes: 0,
            used,
        });
        entry.bytes += meta.len();
        entry.used = entry.used.max(used);
        Ok(())
    })?;
    let total: u64 = by_hash.values().map(|c| c.bytes).sum();
    report.local_bytes_before = Some(total);
    report.local_bytes_after = Some(total);
    if total <= max_size {
        return Ok(report);
    }
    let mut order: Vec<Cached> = by_hash.into_values().collect();
    order.sort_by(|a, b| a.used.cmp(&b.used).then(a.hash.cmp(&b.hash)));
    let mut chosen = Vec::new();
    let mut planned = 0u64;
    'rounds: for batch in order.chunks(SHRINK_BATCH) {
        let hashes: Vec<BlockHash> = batch.iter().map(|c| c.hash).collect();
        let held = held_elsewhere(remotes, &hashes, min_copies);
        for (cached, ok) in batch.iter().zip(held) {
            if total - planned <= max_size {
                break 'rounds;
            }
            report.considered += 1;
            if ok {
                chosen.push(cached.hash);
                planned += cached.bytes;
            } else {
                report.kept_too_few_copies += 1;
            }
        }
    }
    evict(store, &chosen, &mut report)?;
    report.local_bytes_after = Some(total.saturating_sub(report.bytes_freed));
    if total.saturating_sub(report.bytes_freed) > max_size {
        tracing::info!(
            max_size,
            local = total.saturating_sub(report.bytes_freed),
            kept = report.kept_too_few_copies,
            "cache still above max_size: the rest has too few copies elsewhere"
        );
    }
    Ok(report)
}

/// The peers whose copies may be counted: those whose id sorts after ours
/// (see the module notes: reliance is one-way, so no two evictors rely on
/// each other).
fn counted(store: &Store, remotes: &[Arc<Remote>]) -> Vec<Arc<Remote>> {
    let own = store.config().node;
    let (after, before): (Vec<_>, Vec<_>) = remotes
        .iter()
        .cloned()
        .partition(|remote| remote.id() > own);
    if !before.is_empty() {
        tracing::debug!(
            skipped = before.len(),
            "copies on peers whose id sorts before ours are not counted for eviction"
        );
    }
    after
}

/// For each hash: whether at least `min_copies` other reachable nodes hold a
/// good copy (checked on the peers' workers, several hashes at a time).
fn held_elsewhere(remotes: &[Arc<Remote>], hashes: &[BlockHash], min_copies: u32) -> Vec<bool> {
    let mut held = vec![false; hashes.len()];
    if remotes.is_empty() || hashes.is_empty() {
        return held;
    }
    let next = AtomicUsize::new(0);
    let answers = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..CHECK_THREADS.min(hashes.len()) {
            scope.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let at = next.fetch_add(1, Ordering::SeqCst);
                    let Some(hash) = hashes.get(at) else { break };
                    mine.push((
                        at,
                        copies_elsewhere(remotes, hash, min_copies) >= min_copies,
                    ));
                }
                answers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(mine);
            });
        }
    });
    for (at, ok) in answers.into_inner().unwrap_or_else(|e| e.into_inner()) {
        held[at] = ok;
    }
    held
}

/// How many reachable peers hold a good copy of `hash` (stops at `want`).
fn copies_elsewhere(remotes: &[Arc<Remote>], hash: &BlockHash, want: u32) -> u32 {
    let mut count = 0;
    for remote in remotes {
        if count >= want {
            break;
        }
        if remote.check(false).is_err() {
            continue;
        }
        let dir = remote.layout().hashes();
        let wanted = *hash;
        match remote.run(move || peer_holds(&dir, &wanted)) {
            Ok(true) => count += 1,
            Ok(false) => {}
            Err(away) => {
                tracing::debug!(peer = %remote.id(), %hash, why = %away.why, "copy not checked")
            }
        }
    }
    count
}

/// Whether a peer's `hashes/` holds `hash` with matching content (raw or `.zst`).
fn peer_holds(dir: &Path, hash: &BlockHash) -> bool {
    let blocks = Blocks::new(dir);
    [blocks.raw_path(hash), blocks.zst_path(hash)]
        .iter()
        .any(|file| file.is_file() && block_file_matches(file, hash).unwrap_or(false))
}

/// Removes `hashes` from `hashes/` and their links under every
/// `root/<path>/hashes/`, holding the gc lock exclusively.
///
/// The links are found by walking `root/` before taking the lock (so writers,
/// a mount's `close` among them, do not wait for the walk); under the lock each
/// block's link count is compared with the links found, and only when a link
/// appeared meanwhile is `root/` walked again, under the lock.
fn evict(store: &Store, hashes: &[BlockHash], report: &mut EvictReport) -> Result<(), StoreError> {
    if hashes.is_empty() {
        return Ok(());
    }
    let set: HashSet<BlockHash> = hashes.iter().copied().collect();
    let root = store.layout().root();
    let mut links = links_under(&root, &set)?;
    let _lock = store.gc_lock()?;
    if !all_links_known(store, &set, &links) {
        links = links_under(&root, &set)?;
    }
    // Links first: a crash in between leaves a block with fewer links (harmless),
    // never a link whose block `hashes/` lost (which verify reports as missing).
    for link in links.values().flatten() {
        remove(link, &mut report.links_removed)?;
    }
    for hash in &set {
        let mut found = false;
        for file in [store.blocks().raw_path(hash), store.blocks().zst_path(hash)] {
            let bytes = match fs::symlink_metadata(&file) {
                Ok(meta) => meta.len(),
                Err(_) => continue,
            };
            let mut removed = 0;
            remove(&file, &mut removed)?;
            if removed > 0 {
                found = true;
                report.bytes_freed += bytes;
            }
        }
        if found {
            report.evicted += 1;
        }
    }
    Ok(())
}

/// Every file under a `root/<path>/hashes/` named like one of `set`. Unlike
/// gc's walk (which starts from `versions/` directories) this finds every
/// `hashes/` directory, also one a writer is linking into before its version
/// file exists.
fn links_under(
    root: &Path,
    set: &HashSet<BlockHash>,
) -> Result<HashMap<BlockHash, Vec<PathBuf>>, StoreError> {
    let mut links: HashMap<BlockHash, Vec<PathBuf>> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Some(listing) = read_dir_if_present(&dir)? else {
            continue;
        };
        for item in listing {
            let item = item.map_err(|err| StoreError::io(&dir, err))?;
            let is_dir = item
                .file_type()
                .map_err(|err| StoreError::io(item.path(), err))?
                .is_dir();
            if !is_dir {
                continue;
            }
            let name = item.file_name();
            if name == "hashes" {
                each_block(&item.path(), &mut |link, hash| {
                    if let Some(hash) = hash.filter(|hash| set.contains(hash)) {
                        links.entry(hash).or_default().push(link.to_path_buf());
                    }
                    Ok(())
                })?;
            } else if name != "versions" {
                stack.push(item.path());
            }
        }
    }
    Ok(links)
}

/// Whether every hard link of each block file is `hashes/` itself or one of
/// `links` (a link made after the walk shows as a higher link count).
fn all_links_known(
    store: &Store,
    set: &HashSet<BlockHash>,
    links: &HashMap<BlockHash, Vec<PathBuf>>,
) -> bool {
    set.iter().all(|hash| {
        [store.blocks().raw_path(hash), store.blocks().zst_path(hash)]
            .iter()
            .all(|file| {
                let Ok(meta) = fs::symlink_metadata(file) else {
                    return true;
                };
                let known = links.get(hash).map_or(0, |found| {
                    found
                        .iter()
                        .filter(|link| {
                            fs::symlink_metadata(link)
                                .is_ok_and(|m| m.ino() == meta.ino() && m.dev() == meta.dev())
                        })
                        .count() as u64
                });
                meta.nlink() == 1 + known
            })
    })
}

fn remove(file: &Path, count: &mut u64) -> Result<(), StoreError> {
    match fs::remove_file(file) {
        Ok(()) => {
            *count += 1;
            Ok(())
        }
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        Err(err) => Err(StoreError::io(file, err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Attrs;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let spec_text = format!(
            "volume: {}\nnode:\n  id: {}\nblock_size: 4KiB\n",
            dir.path().join("vol").display(),
            crate::ids::NodeId::random()
        );
        let spec_path = dir.path().join("spec.yaml");
        fs::write(&spec_path, spec_text).unwrap();
        let spec = crate::spec::Spec::load(&spec_path).unwrap();
        crate::reconcile::reconcile(&spec, false).unwrap();
        (dir, Store::open_spec(&spec).unwrap())
    }

    #[test]
    fn a_link_made_after_the_walk_is_noticed_and_found_again() {
        let (_dir, store) = store();
        let path = VPath::parse(std::ffi::OsStr::new("/a")).unwrap();
        let version = store
            .write_file(&path, &mut &[5u8; 100][..], Attrs::default(), false)
            .unwrap();
        let hash = version.hashes[0];
        let set: HashSet<BlockHash> = [hash].into_iter().collect();
        let root = store.layout().root();
        let links = links_under(&root, &set).unwrap();
        assert_eq!(links[&hash].len(), 1, "{links:?}");
        assert!(all_links_known(&store, &set, &links));
        // Another path links the block after the walk (a writer deduplicating).
        let other = VPath::parse(std::ffi::OsStr::new("/b")).unwrap();
        store.link_blocks(&other, &[hash]).unwrap();
        assert!(!all_links_known(&store, &set, &links));
        let again = links_under(&root, &set).unwrap();
        assert_eq!(again[&hash].len(), 2, "{again:?}");
        assert!(all_links_known(&store, &set, &again));
        let mut report = EvictReport::default();
        evict(&store, &[hash], &mut report).unwrap();
        assert_eq!((report.evicted, report.links_removed), (1, 2));
        assert!(store.blocks().locate(&hash, None).is_none());
        assert!(links_under(&root, &set).unwrap().is_empty());
    }
}
