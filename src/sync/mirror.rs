//! `globofs mirror [PATH]`: pull every block of the current tree (or of PATH)
//! that is not local, from peers, several at a time. Resumable by nature: a
//! block already here is skipped, so an interrupted mirror just runs again.
//!
//! One pool of threads both lists the tree and pulls blocks, so pulling starts
//! with the first directory listed: with a cold page cache, listing is one small
//! disk read after another, pulling is one network round trip after another,
//! and each alone left the other idle. A worker's blocks are made durable in
//! batches (one `syncfs` per [`BATCH_BYTES`]) before their per-path links are
//! made, not one flush per block.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use crate::ids::BlockHash;
use crate::layout::VPath;
use crate::store::WriterLock;
use crate::store::{BlockWriter, Kind, Store, StoreError, Version};

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
#[derive(Clone)]
struct Want {
    version: Version,
    hash: BlockHash,
    len: usize,
    paths: Vec<VPath>,
}

/// Pulls the missing blocks below `path` with `threads` workers. The store
/// needs a fetcher ([`Store::set_fetcher`]); `progress` gets (done, total so
/// far); the total grows while the tree is being listed.
pub fn mirror(
    store: &Store,
    path: &VPath,
    threads: usize,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<MirrorReport, SyncError> {
    let threads = threads.clamp(1, 64);
    let mut work = Work::default();
    if store.is_dir(path)? {
        work.dirs.push(path.clone());
    } else {
        match store.live(path)? {
            Some(version) if version.kind == Kind::File => work.add_file(version),
            Some(_) => {}
            None => return Err(StoreError::NotFound(path.clone()).into()),
        }
    }
    let work = Mutex::new(work);
    let changed = Condvar::new();
    let lock = || work.lock().unwrap_or_else(|e| e.into_inner());
    let done = AtomicU64::new(0);
    let present = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let failed = Mutex::new(Vec::new());
    let give_up = |err: StoreError| {
        lock().fatal.get_or_insert(err);
        changed.notify_all();
    };
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut batch = Batch::new(store);
                loop {
                    let task = {
                        let mut state = lock();
                        loop {
                            if state.fatal.is_some() {
                                break None;
                            }
                            // At most half the threads list directories while
                            // blocks wait; the rest pull.
                            let walk_room = state.walking < (threads / 2).max(1);
                            if !state.dirs.is_empty()
                                && (walk_room || state.next == state.wants.len())
                            {
                                state.walking += 1;
                                break state.dirs.pop().map(Task::List);
                            }
                            if let Some(want) = state.wants.get(state.next).cloned() {
                                state.next += 1;
                                break Some(Task::Pull(Box::new(want)));
                            }
                            if state.walking == 0 {
                                break None;
                            }
                            state = changed.wait(state).unwrap_or_else(|e| e.into_inner());
                        }
                    };
                    match task {
                        None => break,
                        Some(Task::List(dir)) => {
                            let listed = store.list_dir(&dir).and_then(|entries| {
                                let mut children = Vec::with_capacity(entries.len());
                                for entry in entries {
                                    children.push((dir.join(&entry.name)?, entry.version));
                                }
                                Ok(children)
                            });
                            let mut state = lock();
                            state.walking -= 1;
                            match listed {
                                Ok(children) => {
                                    for (child, version) in children {
                                        match version.kind {
                                            Kind::Dir => state.dirs.push(child),
                                            Kind::File => state.add_file(version),
                                            _ => {}
                                        }
                                    }
                                }
                                Err(err) => {
                                    state.fatal.get_or_insert(err);
                                }
                            }
                            drop(state);
                            changed.notify_all();
                        }
                        Some(Task::Pull(want)) => {
                            if store.blocks().locate(&want.hash, Some(want.len)).is_some() {
                                present.fetch_add(1, Ordering::SeqCst);
                            } else {
                                match fetch(store, &want) {
                                    Ok(data) => {
                                        let outcome = batch.add(*want, &data).and_then(|()| {
                                            if batch.bytes >= BATCH_BYTES {
                                                batch.finish()
                                            } else {
                                                Ok(0)
                                            }
                                        });
                                        match outcome {
                                            Ok(n) => {
                                                bytes.fetch_add(n, Ordering::SeqCst);
                                            }
                                            Err(err) => {
                                                give_up(err);
                                                break;
                                            }
                                        }
                                    }
                                    Err(
                                        err @ (StoreError::MissingBlock { .. }
                                        | StoreError::BadBlock { .. }),
                                    ) => {
                                        if let Ok(mut list) = failed.lock() {
                                            list.push(format!("{}: {err}", want.version.path));
                                        }
                                    }
                                    Err(err) => {
                                        give_up(err);
                                        break;
                                    }
                                }
                            }
                            let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                            progress(n, lock().wants.len() as u64);
                        }
                    }
                }
                // What this worker wrote is made durable and linked before it
                // ends (after a fatal error too: those blocks are good).
                match batch.finish() {
                    Ok(n) => {
                        bytes.fetch_add(n, Ordering::SeqCst);
                    }
                    Err(err) => give_up(err),
                }
            });
        }
    });
    let mut work = work.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(err) = work.fatal {
        return Err(err.into());
    }
    // Paths listed after their block's pull had started: linked now, if the
    // block arrived.
    work.late_links.sort_unstable();
    work.late_links.dedup();
    for (path, hash) in &work.late_links {
        store.link_blocks(path, std::slice::from_ref(hash))?;
    }
    let failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    let present = present.load(Ordering::SeqCst);
    Ok(MirrorReport {
        files: work.files,
        blocks: work.wants.len() as u64,
        present,
        fetched: (work.wants.len() as u64).saturating_sub(present + failed.len() as u64),
        bytes_fetched: bytes.load(Ordering::SeqCst),
        failed,
    })
}

/// What one thread does next.
enum Task {
    List(VPath),
    Pull(Box<Want>),
}

/// The shared state of one mirror: directories to list, blocks to pull.
#[derive(Default)]
struct Work {
    /// Directories still to list.
    dirs: Vec<VPath>,
    /// Directories being listed now.
    walking: usize,
    files: u64,
    /// Every distinct block named so far; `wants[next..]` are not taken yet.
    wants: Vec<Want>,
    next: usize,
    index_of: HashMap<BlockHash, usize>,
    /// (path, block) pairs found after the block was taken by a worker.
    late_links: Vec<(VPath, BlockHash)>,
    fatal: Option<StoreError>,
}

impl Work {
    fn add_file(&mut self, version: Version) {
        self.files += 1;
        for (index, hash) in version.hashes.iter().enumerate() {
            match self.index_of.get(hash) {
                Some(&at) if at < self.next => {
                    self.late_links.push((version.path.clone(), *hash));
                }
                Some(&at) => {
                    let paths = &mut self.wants[at].paths;
                    if !paths.contains(&version.path) {
                        paths.push(version.path.clone());
                    }
                }
                None => {
                    self.index_of.insert(*hash, self.wants.len());
                    self.wants.push(Want {
                        version: version.clone(),
                        hash: *hash,
                        len: version.block_len(index),
                        paths: vec![version.path.clone()],
                    });
                }
            }
        }
    }
}

/// Bytes one worker writes before it makes them durable (one `syncfs`) and
/// links them under their paths. Per-block flushing made mirror wait on the
/// disk once per block.
const BATCH_BYTES: usize = 32 << 20;

/// The verified bytes of one wanted block, from the store's fetcher.
fn fetch(store: &Store, want: &Want) -> Result<Vec<u8>, StoreError> {
    let missing = || StoreError::MissingBlock {
        path: want.version.path.clone(),
        hash: want.hash,
    };
    let fetcher = store.fetcher().ok_or_else(missing)?;
    let data = fetcher
        .fetch(&want.hash, want.len, want.version.node)
        .map_err(|err| {
            tracing::warn!(path = %want.version.path, hash = %want.hash, error = %err, "block not available");
            missing()
        })?;
    // A fetcher returns verified bytes (the peer fetcher checks the hash of
    // what a peer's worker read); hashing again here cost a third of a second
    // of CPU per 640 MiB. The length is checked, as it is free.
    if data.len() != want.len {
        return Err(StoreError::BadBlock {
            hash: want.hash,
            why: "a peer sent bytes that do not match the hash".into(),
        });
    }
    Ok(data)
}

/// One worker's blocks written since its last flush: they become durable
/// together, and only then get their per-path links (a link names a block
/// file that is in place).
struct Batch<'s> {
    store: &'s Store,
    /// Held from the first block written until the batch is linked, so gc
    /// neither removes the temp files nor the fresh, still unlinked blocks.
    lock: Option<WriterLock>,
    writer: Option<BlockWriter<'s>>,
    wants: Vec<Want>,
    bytes: usize,
}

impl<'s> Batch<'s> {
    fn new(store: &'s Store) -> Batch<'s> {
        Batch {
            store,
            lock: None,
            writer: None,
            wants: Vec::new(),
            bytes: 0,
        }
    }

    fn add(&mut self, want: Want, data: &[u8]) -> Result<(), StoreError> {
        let lock = match &self.lock {
            Some(lock) => lock,
            None => self.lock.insert(self.store.writer_lock()?),
        };
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => self.writer.insert(self.store.block_writer(lock)),
        };
        writer.put(&want.hash, data)?;
        self.bytes += data.len();
        self.wants.push(want);
        Ok(())
    }

    /// Flushes and renames the batch's blocks, links every path naming them,
    /// and returns the bytes they hold.
    fn finish(&mut self) -> Result<u64, StoreError> {
        let Some(writer) = self.writer.take() else {
            return Ok(0);
        };
        writer.finish()?;
        let mut bytes = 0;
        for want in self.wants.drain(..) {
            for path in &want.paths {
                self.store.link_blocks(path, &[want.hash])?;
            }
            bytes += want.len as u64;
        }
        self.bytes = 0;
        self.lock = None;
        Ok(bytes)
    }
}
