//! `globofs mirror [PATH]`: pull every block of the current tree (or of PATH)
//! that is not local, from peers, several at a time. Resumable by nature: a
//! block already here is skipped, so an interrupted mirror just runs again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::ids::BlockHash;
use crate::layout::VPath;
use crate::store::{Kind, Store, StoreError, Version};

use super::SyncError;

/// What `mirror` did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MirrorReport {
    pub files: u64,
    /// Distinct blocks the tree names.
    pub blocks: u64,
    /// Of those, already local.
    pub present: u64,
    pub fetched: u64,
    pub bytes_fetched: u64,
    /// Blocks no reachable peer could give (with why).
    pub failed: Vec<String>,
}

/// One block to pull: the first version naming it, and every path that does.
struct Want {
    version: Version,
    hash: BlockHash,
    len: usize,
    paths: Vec<VPath>,
}

/// Pulls the missing blocks below `path` with `threads` workers. The store
/// needs a fetcher ([`Store::set_fetcher`]); `progress` gets (done, total).
pub fn mirror(
    store: &Store,
    path: &VPath,
    threads: usize,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<MirrorReport, SyncError> {
    let mut report = MirrorReport::default();
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
    report.files = files.len() as u64;
    let mut wants: Vec<Want> = Vec::new();
    // None: already local.
    let mut index_of: HashMap<BlockHash, Option<usize>> = HashMap::new();
    for version in &files {
        for (index, hash) in version.hashes.iter().enumerate() {
            if let Some(slot) = index_of.get(hash) {
                if let Some(at) = *slot {
                    if !wants[at].paths.contains(&version.path) {
                        wants[at].paths.push(version.path.clone());
                    }
                }
                continue;
            }
            let len = version.block_len(index);
            report.blocks += 1;
            if store.blocks().locate(hash, Some(len)).is_some() {
                report.present += 1;
                index_of.insert(*hash, None);
                continue;
            }
            index_of.insert(*hash, Some(wants.len()));
            wants.push(Want {
                version: version.clone(),
                hash: *hash,
                len,
                paths: vec![version.path.clone()],
            });
        }
    }
    let total = wants.len() as u64;
    progress(0, total);
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let failed = Mutex::new(Vec::new());
    let fatal: Mutex<Option<StoreError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, 64) {
            scope.spawn(|| {
                loop {
                    let at = next.fetch_add(1, Ordering::SeqCst);
                    let Some(want) = wants.get(at) else { break };
                    if fatal.lock().map(|f| f.is_some()).unwrap_or(true) {
                        break;
                    }
                    let outcome = store
                        .pull_block(&want.version, &want.hash, want.len)
                        .and_then(|()| {
                            for other in want.paths.iter().skip(1) {
                                store.link_blocks(other, &[want.hash])?;
                            }
                            Ok(())
                        });
                    match outcome {
                        Ok(()) => {
                            bytes.fetch_add(want.len as u64, Ordering::SeqCst);
                        }
                        Err(
                            err @ (StoreError::MissingBlock { .. } | StoreError::BadBlock { .. }),
                        ) => {
                            if let Ok(mut list) = failed.lock() {
                                list.push(format!("{}: {err}", want.version.path));
                            }
                        }
                        Err(err) => {
                            if let Ok(mut slot) = fatal.lock() {
                                slot.get_or_insert(err);
                            }
                        }
                    }
                    let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                    progress(n, total);
                }
            });
        }
    });
    if let Some(err) = fatal.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(err.into());
    }
    report.failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    report.bytes_fetched = bytes.load(Ordering::SeqCst);
    report.fetched = total - report.failed.len() as u64;
    Ok(report)
}
