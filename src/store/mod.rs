//! One node's store on local disk: content-addressed blocks under `hashes/`,
//! per-path version logs and version files under `root/`, hard links as
//! reference counts, the node's journal and its per-peer outbound spools.
//!
//! This layer knows nothing of FUSE; the CLI, the mount and sync all use it.
//! docs/FORMAT.md is the contract this code implements.

mod blocks;
pub mod digest;
mod error;
pub mod gc;
mod heads;
pub mod import;
pub mod intents;
pub mod journal;
pub mod live_cache;
pub mod lock;
mod meta;
pub mod pipeline;
pub mod posix;
pub mod resolve;
pub mod version;

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use blocks::{BlockWriter, Blocks, Located, copy_block, link_block, sync_filesystem};
pub use error::{IoContext, StoreError};
pub use meta::{FORMAT_VERSION, StoreMeta, set_mode};
pub use version::{Kind, Mtime, Version};

use crate::ids::{BlockHash, NodeId, VersionId};
use crate::ignore::IgnoreRules;
use crate::layout::{StoreLayout, VPath, is_hashed_name, name_from_disk};
use crate::spec::{Compression, Spec};
use journal::JournalWriter;
use lock::FileLock;

/// How far ahead a whole-file copy asks the kernel to read block files.
const READ_AHEAD_BLOCKS: usize = 8;

/// Bytes of blocks queued between the hashing and the writing thread of a put.
const STREAM_QUEUE_BYTES: usize = 8 << 20;

/// How a store is configured for writing (from the spec).
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub node: NodeId,
    pub major: Option<u32>,
    pub block_size: u32,
    pub compression: Compression,
    /// Peers whose outbound spools get every new version.
    pub peers: Vec<NodeId>,
    /// Paths matching the spec's `ignore` stay local (never queued for peers).
    pub ignore: Option<IgnoreRules>,
    /// Check every block's hash when reading it.
    pub verify_reads: bool,
}

impl StoreConfig {
    pub fn from_spec(spec: &Spec) -> Result<StoreConfig, StoreError> {
        let ignore = IgnoreRules::new(&spec.ignore)
            .map_err(|err| StoreError::Refused(format!("ignore: {err}")))?;
        Ok(StoreConfig {
            node: spec.node,
            major: spec.major,
            block_size: spec.block_size,
            compression: spec.compression,
            peers: spec.peers.iter().map(|peer| peer.id).collect(),
            ignore,
            verify_reads: false,
        })
    }
}

/// Proof that the caller holds the writer lock shared (see
/// [`Store::writer_lock`]); dropping it releases the lock.
#[derive(Debug)]
pub struct WriterLock(#[allow(dead_code)] FileLock);

/// Fetches blocks this store lacks (the sync layer supplies one from peers).
pub trait BlockFetcher: Send + Sync {
    /// The verified bytes of `hash` (length `len`), trying `origin` first.
    fn fetch(&self, hash: &BlockHash, len: usize, origin: NodeId) -> Result<Vec<u8>, StoreError>;
    /// Whether some reachable peer holds the block (for `verify`).
    fn held_remotely(&self, hash: &BlockHash, len: usize) -> bool;
}

/// Attributes given to a new file version.
#[derive(Clone, Copy, Debug)]
pub struct Attrs {
    pub mode: u32,
    pub mtime: Mtime,
}

impl Default for Attrs {
    fn default() -> Attrs {
        Attrs {
            mode: 0o644,
            mtime: Mtime::now(),
        }
    }
}

/// What to commit as a new version (the store fills in id, path, node, parents).
#[derive(Clone, Debug)]
pub struct Content {
    pub kind: Kind,
    pub size: u64,
    pub mode: u32,
    pub mtime: Mtime,
    pub block_size: u32,
    pub target: Option<Vec<u8>>,
    pub hashes: Vec<BlockHash>,
    pub from: Option<(VersionId, VPath)>,
    pub conflict_of: Option<(VersionId, VPath)>,
}

impl Content {
    /// The same content as `version` (for renames, restores and attribute changes).
    pub fn of(version: &Version) -> Content {
        Content {
            kind: version.kind,
            size: version.size,
            mode: version.mode,
            mtime: version.mtime,
            block_size: version.block_size,
            target: version.target.clone(),
            hashes: version.hashes.clone(),
            from: None,
            conflict_of: None,
        }
    }

    fn simple(kind: Kind, mode: u32, mtime: Mtime) -> Content {
        Content {
            kind,
            size: 0,
            mode,
            mtime,
            block_size: 0,
            target: None,
            hashes: Vec::new(),
            from: None,
            conflict_of: None,
        }
    }
}

/// A directory entry: its name and current version.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: Vec<u8>,
    pub version: Version,
}

/// One node's store.
pub struct Store {
    layout: StoreLayout,
    meta: StoreMeta,
    config: StoreConfig,
    blocks: Blocks,
    journal: JournalWriter,
    fetcher: Option<Arc<dyn BlockFetcher>>,
    /// The heads of long histories, as last read (see `heads.rs`).
    heads: heads::Heads,
    /// This process's record of publications in progress (see `intents.rs`).
    intents: intents::Intents,
    /// Whether this store already finished what dead processes left.
    recovered: std::sync::OnceLock<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.layout.dir)
            .field("node", &self.meta.node)
            .finish()
    }
}

/// A fresh node's spec (4 KiB blocks) in `dir`, its layout reconciled: the
/// scratch store of unit tests.
#[cfg(test)]
pub(crate) fn scratch_spec(dir: &Path) -> Spec {
    let node = NodeId::random();
    let text = format!(
        "volume: {}\nnode:\n  id: {node}\nblock_size: 4KiB\n",
        dir.join("vol").display()
    );
    let path = dir.join("spec.yaml");
    fs::write(&path, text).expect("write a scratch spec");
    let spec = Spec::load(&path).expect("load the scratch spec");
    crate::reconcile::reconcile(&spec, false).expect("reconcile the scratch store");
    spec
}

/// Threads that decide the entries of a large directory listing at once.
const LIST_THREADS: usize = 8;

/// The current version of every path, in order: from `known` (answers from
/// memory, `None` when it does not know) or else from `live`. When many paths
/// are not known, they are decided on several threads: deciding a path with a
/// cold cache is a few small random reads, and a disk serves many of those at
/// once (a listing of 1,000 entries would otherwise wait for them one after
/// another).
fn live_all(
    paths: &[VPath],
    known: impl Fn(&VPath) -> Option<Option<Version>>,
    live: &(impl Fn(&VPath) -> Result<Option<Version>, StoreError> + Sync),
) -> Result<Vec<Option<Version>>, StoreError> {
    let mut out: Vec<Option<Option<Version>>> = paths.iter().map(known).collect();
    let missing: Vec<usize> = (0..paths.len()).filter(|i| out[*i].is_none()).collect();
    let unknown: Vec<VPath> = missing.iter().map(|i| paths[*i].clone()).collect();
    for (index, version) in missing.into_iter().zip(decide_all(&unknown, live)?) {
        out[index] = Some(version);
    }
    Ok(out.into_iter().map(Option::flatten).collect())
}

/// `live` of every path, in order, on several threads for many paths.
fn decide_all(
    paths: &[VPath],
    live: &(impl Fn(&VPath) -> Result<Option<Version>, StoreError> + Sync),
) -> Result<Vec<Option<Version>>, StoreError> {
    if paths.len() < 4 * LIST_THREADS {
        return paths.iter().map(live).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut found: Vec<(usize, Option<Version>)> = Vec::with_capacity(paths.len());
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..LIST_THREADS)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(path) = paths.get(index) else {
                            return Ok(mine);
                        };
                        match live(path) {
                            Ok(version) => mine.push((index, version)),
                            Err(err) => {
                                // Stop the others early too.
                                next.store(paths.len(), std::sync::atomic::Ordering::Relaxed);
                                return Err(err);
                            }
                        }
                    }
                })
            })
            .collect();
        let mut first_error = None;
        for worker in workers {
            match worker.join() {
                Ok(Ok(mine)) => found.extend(mine),
                Ok(Err(err)) => {
                    first_error.get_or_insert(err);
                }
                Err(_) => {
                    first_error.get_or_insert(StoreError::Refused(
                        "a listing thread panicked".to_string(),
                    ));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    })?;
    found.sort_unstable_by_key(|(index, _)| *index);
    Ok(found.into_iter().map(|(_, version)| version).collect())
}

impl Store {
    /// Opens the store in `dir`, which `reconcile` made.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        let layout = StoreLayout::new(dir);
        let meta = match StoreMeta::read(&layout.format_file()) {
            Ok(meta) => meta,
            Err(err) if err.is_not_found() => {
                return Err(StoreError::NoStore {
                    path: dir.to_path_buf(),
                });
            }
            Err(err) => return Err(err),
        };
        if meta.node != config.node {
            return Err(StoreError::WrongNode {
                path: layout.format_file(),
                found: meta.node.to_string(),
                expected: config.node.to_string(),
            });
        }
        let journal = JournalWriter::new(
            layout.journal(),
            layout.locks().join("journal"),
            &meta.nonce,
        );
        Ok(Store {
            blocks: Blocks::new(layout.hashes()),
            layout,
            meta,
            config,
            journal,
            fetcher: None,
            heads: heads::Heads::default(),
            intents: intents::Intents::default(),
            recovered: std::sync::OnceLock::new(),
        })
    }

    /// Opens the store of the spec's node in the spec's volume.
    pub fn open_spec(spec: &Spec) -> Result<Store, StoreError> {
        Store::open(
            &spec.volume.join(spec.node.to_string()),
            StoreConfig::from_spec(spec)?,
        )
    }

    pub fn layout(&self) -> &StoreLayout {
        &self.layout
    }
    pub fn meta(&self) -> &StoreMeta {
        &self.meta
    }
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }
    pub fn config_mut(&mut self) -> &mut StoreConfig {
        &mut self.config
    }
    pub fn blocks(&self) -> &Blocks {
        &self.blocks
    }
    pub fn journal(&self) -> &JournalWriter {
        &self.journal
    }
    pub fn set_fetcher(&mut self, fetcher: Arc<dyn BlockFetcher>) {
        self.fetcher = Some(fetcher);
    }
    pub fn fetcher(&self) -> Option<&Arc<dyn BlockFetcher>> {
        self.fetcher.as_ref()
    }

    /// `root/<path>` on disk.
    pub fn path_dir(&self, path: &VPath) -> PathBuf {
        path.disk_path(&self.layout.root())
    }

    fn versions_dir(&self, path: &VPath) -> PathBuf {
        self.path_dir(path).join("versions")
    }

    /// Takes the lock writers hold shared and `gc` exclusively.
    pub fn writer_lock(&self) -> Result<WriterLock, StoreError> {
        Ok(WriterLock(FileLock::shared(
            &self.layout.locks().join("gc"),
        )?))
    }

    /// The one way to store blocks: a writer built from this store's own
    /// configuration (its `hashes/`, `tmp/`, compression), for a caller that
    /// holds the writer lock (gc waits while blocks are not yet named by a
    /// published version).
    pub fn block_writer(&self, _held: &WriterLock) -> BlockWriter<'_> {
        BlockWriter::new(&self.blocks, &self.layout.tmp(), self.config.compression)
    }

    // ----- reading versions -----

    /// The ids of all versions of `path`, ascending.
    pub fn version_ids(&self, path: &VPath) -> Result<Vec<VersionId>, StoreError> {
        version_ids_in(&self.versions_dir(path))
    }

    /// Reads one version file of `path`.
    pub fn read_version(&self, path: &VPath, id: VersionId) -> Result<Version, StoreError> {
        let file = self.versions_dir(path).join(id.to_string());
        let version = read_version_file(&file)?;
        if version.id != id || version.path != *path {
            return Err(StoreError::Corrupt {
                path: file,
                why: format!("it says it is version {} of {}", version.id, version.path),
            });
        }
        Ok(version)
    }

    /// Every version of `path`, ascending by id.
    pub fn versions(&self, path: &VPath) -> Result<Vec<Version>, StoreError> {
        let mut out = Vec::new();
        for id in self.version_ids(path)? {
            if let Some(version) = self.read_listed(path, id)? {
                out.push(version);
            }
        }
        Ok(out)
    }

    /// Reads a version file just listed. Readers take no lock, so `prune` may
    /// remove an old version between the listing and the read: such a version
    /// is gone from the history, not an error.
    fn read_listed(&self, path: &VPath, id: VersionId) -> Result<Option<Version>, StoreError> {
        match self.read_version(path, id) {
            Ok(version) => Ok(Some(version)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The current version of `path` (a tombstone if deleted), or `None` when it
    /// never existed here. Decided from the version files, never from the log.
    pub fn current(&self, path: &VPath) -> Result<Option<Version>, StoreError> {
        let ids = self.version_ids(path)?;
        let Some(&newest) = ids.last() else {
            return Ok(None);
        };
        // The newest version is always a head (a child's id exceeds its parents').
        // A live directory head beats every other head (resolve's rank: live, then
        // directory, then id); a newest file or symlink may still lose to an older,
        // concurrent directory head, so only a sole or directory version is decided
        // without reading the others. A long history goes to the remembered
        // heads straight away (they read only what is new, the newest included).
        if ids.len() >= heads::MIN_VERSIONS {
            let heads = self.heads.of(self, path, &ids)?;
            return Ok(resolve::resolve(&heads).current.cloned());
        }
        match self.read_version(path, newest) {
            Ok(top) if top.kind == Kind::Dir || ids.len() == 1 => return Ok(Some(top)),
            Ok(_) => {}
            // A version file torn by a crash before it was flushed: the older ones decide.
            Err(err @ StoreError::Corrupt { .. }) => {
                tracing::warn!(path = %path, error = %err, "skipping an unreadable version file");
            }
            // Pruned (or the path's history dropped) since the listing.
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(err),
        }
        let heads = self.heads.of(self, path, &ids)?;
        Ok(resolve::resolve(&heads).current.cloned())
    }

    /// The current version of `path` if it is live (not deleted).
    pub fn live(&self, path: &VPath) -> Result<Option<Version>, StoreError> {
        Ok(self.current(path)?.filter(|v| v.kind.is_live()))
    }

    /// The heads of `path` (parents of a new version).
    pub fn heads(&self, path: &VPath) -> Result<Vec<VersionId>, StoreError> {
        let ids = self.version_ids(path)?;
        match ids.len() {
            0 => Ok(Vec::new()),
            1 => Ok(ids),
            _ => {
                let heads = self.heads.of(self, path, &ids)?;
                Ok(resolve::resolve(&heads)
                    .heads
                    .iter()
                    .map(|v| v.id)
                    .collect())
            }
        }
    }

    /// Whether `path` is a live directory (the root always is).
    pub fn is_dir(&self, path: &VPath) -> Result<bool, StoreError> {
        if path.is_root() {
            return Ok(true);
        }
        Ok(self.live(path)?.is_some_and(|v| v.kind == Kind::Dir))
    }

    /// The live entries of directory `path`, sorted by name.
    pub fn list_dir(&self, path: &VPath) -> Result<Vec<Entry>, StoreError> {
        self.list_dir_by(path, |_| None, |child| self.live(child))
    }

    /// [`Store::list_dir`], taking each path's current version from `known`
    /// where it answers (the mount's cache) and deciding the rest with `live`.
    pub fn list_dir_by(
        &self,
        path: &VPath,
        known: impl Fn(&VPath) -> Option<Option<Version>>,
        live: impl Fn(&VPath) -> Result<Option<Version>, StoreError> + Sync,
    ) -> Result<Vec<Entry>, StoreError> {
        // The root is always a directory, with or without a version of its own.
        if !path.is_root() {
            match live(path)? {
                Some(v) if v.kind == Kind::Dir => {}
                Some(_) => return Err(StoreError::NotADirectory(path.clone())),
                None => return Err(StoreError::NotFound(path.clone())),
            }
        }
        let dir = self.path_dir(path);
        let mut children = Vec::new();
        let listing = match fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(StoreError::io(&dir, err)),
        };
        for item in listing {
            let item = item.at(&dir)?;
            let disk = item.file_name();
            let child = match name_from_disk(&disk) {
                Some(name) => path.join(&name)?,
                None if is_hashed_name(&disk) => match self.hashed_child(&dir.join(&disk))? {
                    Some(child) => child,
                    None => continue,
                },
                None => continue,
            };
            children.push(child);
        }
        let mut entries: Vec<Entry> = live_all(&children, known, &live)?
            .into_iter()
            .zip(&children)
            .filter_map(|(version, child)| {
                Some(Entry {
                    name: child.file_name().unwrap_or_default().to_vec(),
                    version: version?,
                })
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// The path of a long-named entry, from its newest version file.
    pub(crate) fn hashed_child(&self, dir: &Path) -> Result<Option<VPath>, StoreError> {
        let ids = version_ids_in(&dir.join("versions"))?;
        match ids.last() {
            Some(id) => Ok(Some(
                read_version_file(&dir.join("versions").join(id.to_string()))?.path,
            )),
            None => Ok(None),
        }
    }

    /// Every live path below `path` (depth first, sorted), with its version.
    pub fn walk(&self, path: &VPath) -> Result<Vec<(VPath, Version)>, StoreError> {
        let mut out = Vec::new();
        let mut stack = vec![path.clone()];
        while let Some(dir) = stack.pop() {
            let mut children = self.list_dir(&dir)?;
            children.reverse();
            for entry in children {
                let child = dir.join(&entry.name)?;
                if entry.version.kind == Kind::Dir {
                    stack.push(child.clone());
                }
                out.push((child, entry.version));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    // ----- reading file data -----

    /// Reads up to `buf.len()` bytes of `version` at `offset`; 0 at the end.
    /// Random access: only the blocks covering the range are touched.
    pub fn read_at(
        &self,
        version: &Version,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, StoreError> {
        if version.kind != Kind::File || offset >= version.size || buf.is_empty() {
            return Ok(0);
        }
        let bs = u64::from(version.block_size);
        let mut done = 0usize;
        let mut pos = offset;
        while done < buf.len() && pos < version.size {
            let index = (pos / bs) as usize;
            let within = (pos % bs) as usize;
            let len = version.block_len(index);
            let want = (len - within).min(buf.len() - done);
            let hash = version.hashes[index];
            let n =
                self.read_block_range(version, &hash, len, within, &mut buf[done..done + want])?;
            if n == 0 {
                break;
            }
            done += n;
            pos += n as u64;
        }
        Ok(done)
    }

    fn read_block_range(
        &self,
        version: &Version,
        hash: &BlockHash,
        len: usize,
        within: usize,
        buf: &mut [u8],
    ) -> Result<usize, StoreError> {
        if self.config.verify_reads {
            let data = self.block(version, hash, len)?;
            let n = buf.len().min(len - within);
            buf[..n].copy_from_slice(&data[within..within + n]);
            return Ok(n);
        }
        self.local_or_pulled(version, hash, len, || {
            self.blocks.read_at(hash, len, within, buf)
        })
    }

    /// Runs `read` on a local block, pulling the block first when it is not
    /// here, and once more when it vanished between the check and the read
    /// (evicted by `drop` or `cache.max_size` meanwhile).
    fn local_or_pulled<T>(
        &self,
        version: &Version,
        hash: &BlockHash,
        len: usize,
        mut read: impl FnMut() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.blocks.locate(hash, Some(len)).is_none() {
            self.pull_block(version, hash, len)?;
        }
        match read() {
            Err(err) if self.fetcher.is_some() && self.blocks.locate(hash, Some(len)).is_none() => {
                tracing::debug!(%hash, error = %err, "block vanished while reading; pulling it again");
                self.pull_block(version, hash, len)?;
                read()
            }
            other => other,
        }
    }

    /// A whole block of `version`, verified, pulled from a peer if needed.
    pub fn block(
        &self,
        version: &Version,
        hash: &BlockHash,
        len: usize,
    ) -> Result<Vec<u8>, StoreError> {
        self.local_or_pulled(version, hash, len, || self.blocks.read(hash, len, true))
            .map_err(|err| match err {
                StoreError::BadBlock { hash, why } => StoreError::BadBlock {
                    hash,
                    why: format!("{why} (a block of {})", version.path),
                },
                other => other,
            })
    }

    /// Brings a missing block of `version` from a peer, verified, and links it.
    pub fn pull_block(
        &self,
        version: &Version,
        hash: &BlockHash,
        len: usize,
    ) -> Result<(), StoreError> {
        let fetcher = self
            .fetcher
            .as_ref()
            .ok_or_else(|| StoreError::MissingBlock {
                path: version.path.clone(),
                hash: *hash,
            })?;
        let data = fetcher.fetch(hash, len, version.node).map_err(|err| {
            tracing::warn!(path = %version.path, %hash, error = %err, "block not available");
            StoreError::MissingBlock {
                path: version.path.clone(),
                hash: *hash,
            }
        })?;
        if data.len() != len || BlockHash::of(&data) != *hash {
            return Err(StoreError::BadBlock {
                hash: *hash,
                why: "a peer sent bytes that do not match the hash".into(),
            });
        }
        let lock = self.writer_lock()?;
        let mut writer = self.block_writer(&lock);
        writer.put(hash, &data)?;
        writer.finish()?;
        self.link_blocks(&version.path, std::slice::from_ref(hash))?;
        Ok(())
    }

    /// Streams the whole content of a file version into `out`, one block at a
    /// time, each checked against its hash: a whole-file copy (`get`) never
    /// hands out wrong bytes, whatever `verify_reads` says.
    pub fn copy_to(&self, version: &Version, out: &mut dyn Write) -> Result<u64, StoreError> {
        if version.kind != Kind::File {
            return Ok(0);
        }
        // Worker threads read (or pull) and check blocks, several at once, while
        // this thread writes them out in order; a few MiB in flight.
        let bs = version.block_size.max(1) as usize;
        let workers = pipeline::default_workers();
        let queue = (STREAM_QUEUE_BYTES / bs / workers).max(1);
        for hash in version.hashes.iter().take(READ_AHEAD_BLOCKS) {
            self.blocks.prefetch(hash);
        }
        let mut next = 0usize;
        let mut written = 0u64;
        pipeline::run_ordered(
            workers,
            queue,
            || {
                let index = next;
                next += 1;
                if index >= version.hashes.len() {
                    return Ok(None);
                }
                // Ask the kernel to start reading a few blocks ahead.
                if let Some(ahead) = version.hashes.get(index + READ_AHEAD_BLOCKS) {
                    self.blocks.prefetch(ahead);
                }
                Ok(Some(index))
            },
            |index| self.checked_block(version, index),
            |data: Vec<u8>| {
                out.write_all(&data)
                    .map_err(|err| StoreError::io("(output)", err))?;
                written += data.len() as u64;
                Ok(())
            },
        )?;
        Ok(written)
    }

    /// Block `index` of `version`, pulled if not here, checked against its hash.
    fn checked_block(&self, version: &Version, index: usize) -> Result<Vec<u8>, StoreError> {
        let hash = &version.hashes[index];
        let len = version.block_len(index);
        let data =
            self.local_or_pulled(version, hash, len, || self.blocks.read(hash, len, false))?;
        if BlockHash::of(&data) != *hash {
            return Err(StoreError::BadBlock {
                hash: *hash,
                why: format!(
                    "{} (block {index}): content does not match its hash",
                    version.path
                ),
            });
        }
        Ok(data)
    }

    // ----- writing -----

    /// Cuts `input` into blocks, stores them, and returns the content of a new
    /// file version (not yet committed). Streams: one block in memory at a time.
    pub fn store_stream(
        &self,
        held: &WriterLock,
        input: &mut dyn Read,
        attrs: Attrs,
        durable: bool,
    ) -> Result<Content, StoreError> {
        let bs = self.config.block_size as usize;
        let mut writer = self.block_writer(held);
        if !durable {
            writer = writer.lazy();
        }
        let mut first = vec![0; bs];
        let n = read_full(input, &mut first)?;
        first.truncate(n);
        let mut hashes = Vec::new();
        let mut size = n as u64;
        if n < bs {
            // A file of one block (most files): no threads for it.
            if n > 0 {
                let hash = BlockHash::of(&first);
                writer.put(&hash, &first)?;
                hashes.push(hash);
            }
        } else {
            size = 0;
            self.stream_blocks(input, first, &mut writer, &mut hashes, &mut size)?;
        }
        writer.finish()?;
        Ok(Content {
            kind: Kind::File,
            size,
            mode: attrs.mode & 0o7777,
            mtime: attrs.mtime,
            block_size: self.config.block_size,
            target: None,
            hashes,
            from: None,
            conflict_of: None,
        })
    }

    /// Stores the blocks of a stream whose first block is `first`: this thread
    /// reads the input and stores the blocks while worker threads hash them
    /// (hashing is the costly part). Buffers go round, so memory stays at a few
    /// blocks (at most about 8 MiB in flight).
    fn stream_blocks(
        &self,
        input: &mut dyn Read,
        first: Vec<u8>,
        writer: &mut BlockWriter<'_>,
        hashes: &mut Vec<BlockHash>,
        size: &mut u64,
    ) -> Result<(), StoreError> {
        let bs = self.config.block_size as usize;
        let workers = pipeline::default_workers();
        let queue = (STREAM_QUEUE_BYTES / bs / workers).max(1);
        let spare: std::cell::RefCell<Vec<Vec<u8>>> = Default::default();
        let mut first = Some(first);
        let mut ended = false;
        pipeline::run_ordered::<_, _, StoreError>(
            workers,
            queue,
            || {
                if let Some(first) = first.take() {
                    return Ok(Some(first));
                }
                if ended {
                    return Ok(None);
                }
                let mut buf = spare.borrow_mut().pop().unwrap_or_default();
                buf.resize(bs, 0);
                let n = read_full(input, &mut buf)?;
                buf.truncate(n);
                ended = n < bs;
                Ok((n > 0).then_some(buf))
            },
            |buf: Vec<u8>| Ok((BlockHash::of(&buf), buf)),
            |(hash, buf): (BlockHash, Vec<u8>)| {
                writer.put(&hash, &buf)?;
                hashes.push(hash);
                *size += buf.len() as u64;
                spare.borrow_mut().push(buf);
                Ok(())
            },
        )
    }

    /// Writes a whole file from `input` as a new version of `path` (parents made
    /// as directories when missing).
    pub fn write_file(
        &self,
        path: &VPath,
        input: &mut dyn Read,
        attrs: Attrs,
        durable: bool,
    ) -> Result<Version, StoreError> {
        let lock = self.writer_lock()?;
        self.check_writable_file(path)?;
        self.make_parents_locked(path, attrs.mtime)?;
        let content = self.store_stream(&lock, input, attrs, durable)?;
        self.commit(path, content, durable)
    }

    fn check_writable_file(&self, path: &VPath) -> Result<(), StoreError> {
        if path.is_root() {
            return Err(StoreError::IsADirectory(path.clone()));
        }
        if let Some(current) = self.live(path)? {
            if current.kind == Kind::Dir {
                return Err(StoreError::IsADirectory(path.clone()));
            }
        }
        Ok(())
    }

    /// Creates missing parent directories of `path` (like `mkdir -p`).
    pub fn make_parents(&self, path: &VPath, mtime: Mtime) -> Result<(), StoreError> {
        // Commits write temp files under tmp/, which `gc` removes when it holds
        // the lock exclusively: a commit must hold it shared (taking it again in
        // a caller that already holds it is harmless: both are shared).
        let _lock = self.writer_lock()?;
        self.make_parents_locked(path, mtime)
    }

    fn make_parents_locked(&self, path: &VPath, mtime: Mtime) -> Result<(), StoreError> {
        let mut missing = Vec::new();
        let mut dir = path.parent();
        while let Some(current) = dir {
            if current.is_root() {
                break;
            }
            match self.live(&current)? {
                Some(v) if v.kind == Kind::Dir => break,
                Some(_) => return Err(StoreError::NotADirectory(current)),
                None => missing.push(current.clone()),
            }
            dir = current.parent();
        }
        for dir in missing.into_iter().rev() {
            self.commit(&dir, Content::simple(Kind::Dir, 0o755, mtime), false)?;
        }
        Ok(())
    }

    /// The parent of `path` must be a live directory.
    fn check_parent(&self, path: &VPath) -> Result<(), StoreError> {
        let parent = path
            .parent()
            .ok_or_else(|| StoreError::Exists(path.clone()))?;
        if self.is_dir(&parent)? {
            return Ok(());
        }
        Err(match self.live(&parent)? {
            Some(_) => StoreError::NotADirectory(parent),
            None => StoreError::NotFound(parent),
        })
    }

    /// Creates directory `path`.
    pub fn mkdir(&self, path: &VPath, mode: u32) -> Result<Version, StoreError> {
        self.mkdir_at(path, mode, Mtime::now())
    }

    /// Creates directory `path` with a given mtime.
    pub fn mkdir_at(&self, path: &VPath, mode: u32, mtime: Mtime) -> Result<Version, StoreError> {
        let _lock = self.writer_lock()?;
        if path.is_root() || self.live(path)?.is_some() {
            return Err(StoreError::Exists(path.clone()));
        }
        self.check_parent(path)?;
        self.commit(
            path,
            Content::simple(Kind::Dir, mode & 0o7777, mtime),
            false,
        )
    }

    /// Creates a symlink at `path` pointing to `target`.
    pub fn symlink(&self, path: &VPath, target: &[u8]) -> Result<Version, StoreError> {
        let _lock = self.writer_lock()?;
        if path.is_root() || self.live(path)?.is_some() {
            return Err(StoreError::Exists(path.clone()));
        }
        if target.is_empty() || target.contains(&0) || target.len() > 4096 {
            return Err(StoreError::Refused(format!(
                "{path}: not a valid symlink target"
            )));
        }
        self.check_parent(path)?;
        let mut content = Content::simple(Kind::Symlink, 0o777, Mtime::now());
        content.target = Some(target.to_vec());
        self.commit(path, content, false)
    }

    /// Deletes `path` (a file, a symlink, or an empty directory): a tombstone.
    pub fn remove(&self, path: &VPath) -> Result<Version, StoreError> {
        let _lock = self.writer_lock()?;
        let current = self
            .live(path)?
            .ok_or_else(|| StoreError::NotFound(path.clone()))?;
        if path.is_root() {
            return Err(StoreError::Refused(
                "the volume root cannot be removed".into(),
            ));
        }
        if current.kind == Kind::Dir && !self.list_dir(path)?.is_empty() {
            return Err(StoreError::NotEmpty(path.clone()));
        }
        self.commit(
            path,
            Content::simple(Kind::Tombstone, 0, Mtime::now()),
            false,
        )
    }

    /// Deletes a directory and everything below it.
    pub fn remove_tree(&self, path: &VPath) -> Result<usize, StoreError> {
        let mut removed = 0;
        let mut below = self.walk(path)?;
        below.reverse();
        for (child, _) in below {
            self.remove(&child)?;
            removed += 1;
        }
        self.remove(path)?;
        Ok(removed + 1)
    }

    /// Renames `src` to `dst` (over an existing file or empty directory, like
    /// rename(2)). No block is copied: the new versions name the same blocks.
    pub fn rename(&self, src: &VPath, dst: &VPath, no_replace: bool) -> Result<(), StoreError> {
        let _lock = self.writer_lock()?;
        let source = self
            .live(src)?
            .ok_or_else(|| StoreError::NotFound(src.clone()))?;
        if src == dst {
            return Ok(());
        }
        if src.is_root() || dst.is_root() || dst.starts_with(src) {
            return Err(StoreError::Invalid { path: dst.clone() });
        }
        self.check_parent(dst)?;
        if let Some(target) = self.live(dst)? {
            if no_replace {
                return Err(StoreError::Exists(dst.clone()));
            }
            match (source.kind == Kind::Dir, target.kind == Kind::Dir) {
                (false, true) => return Err(StoreError::IsADirectory(dst.clone())),
                (true, false) => return Err(StoreError::NotADirectory(dst.clone())),
                (true, true) if !self.list_dir(dst)?.is_empty() => {
                    return Err(StoreError::NotEmpty(dst.clone()));
                }
                _ => {}
            }
        }
        let mut moves = vec![(src.clone(), dst.clone(), source.clone())];
        if source.kind == Kind::Dir {
            for (child, version) in self.walk(src)? {
                let rest = &child.names()[src.names().len()..];
                let mut to = dst.clone();
                for name in rest {
                    to = to.join(name)?;
                }
                moves.push((child, to, version));
            }
        }
        // New versions first (parents before children), then tombstones (children first).
        for (from, to, version) in &moves {
            let mut content = Content::of(version);
            content.from = Some((version.id, from.clone()));
            self.commit(to, content, false)?;
        }
        for (from, _, _) in moves.iter().rev() {
            self.commit(
                from,
                Content::simple(Kind::Tombstone, 0, Mtime::now()),
                false,
            )?;
        }
        Ok(())
    }

    /// Changes mode and/or mtime: a new version with the same content.
    pub fn set_attrs(
        &self,
        path: &VPath,
        mode: Option<u32>,
        mtime: Option<Mtime>,
    ) -> Result<Version, StoreError> {
        let _lock = self.writer_lock()?;
        let current = self
            .live(path)?
            .ok_or_else(|| StoreError::NotFound(path.clone()))?;
        let mut content = Content::of(&current);
        if let Some(mode) = mode {
            content.mode = mode & 0o7777;
        }
        if let Some(mtime) = mtime {
            content.mtime = mtime;
        }
        self.commit(path, content, false)
    }

    /// Makes the content of an older version of `path` current again.
    pub fn restore(&self, path: &VPath, id: VersionId) -> Result<Version, StoreError> {
        let _lock = self.writer_lock()?;
        let old = match self.read_version(path, id) {
            Ok(old) => old,
            Err(err) if err.is_not_found() => {
                return Err(StoreError::NoSuchVersion(path.clone(), id.to_string()));
            }
            Err(err) => return Err(err),
        };
        if old.kind.is_live() {
            self.make_parents_locked(path, Mtime::now())?;
        }
        self.commit(path, Content::of(&old), true)
    }

    /// Links `hashes` under `root/<path>/hashes/` (one link per block per path).
    pub fn link_blocks(&self, path: &VPath, hashes: &[BlockHash]) -> Result<(), StoreError> {
        let dir = self.path_dir(path).join("hashes");
        let mut done = std::collections::HashSet::new();
        for hash in hashes {
            if !done.insert(*hash) {
                continue;
            }
            let Some(located) = self.blocks.locate(hash, None) else {
                // Not local (a version applied from a peer): linked when pulled.
                continue;
            };
            let mut link = dir.join(hash.relative_path()).into_os_string();
            if located.compressed {
                link.push(".zst");
            }
            let link = PathBuf::from(link);
            if !link_block(&located.path, &link)? {
                tracing::debug!(%hash, path = %path, "block has too many links; storing a copy");
                copy_block(&located.path, &link)?;
            }
        }
        Ok(())
    }

    /// Commits `content` as the new current version of `path`: links its blocks,
    /// publishes the version file (no-replace), appends to the log, journals it
    /// and queues it for every peer. Callers hold the writer lock.
    pub fn commit(
        &self,
        path: &VPath,
        content: Content,
        durable: bool,
    ) -> Result<Version, StoreError> {
        self.recover_once()?;
        let versions_dir = self.versions_dir(path);
        crate::layout::create_dirs(&versions_dir).at(&versions_dir)?;
        // Serialise writers of this path (in every process of this node).
        let log_path = versions_dir.join("log");
        let log = open_log(&log_path)?;
        let _path_lock = flock_file(&log, &log_path)?;
        let parents = self.heads(path)?;
        self.link_blocks(path, &content.hashes)?;
        let mut version = Version {
            id: VersionId::for_new_version(self.config.major, &parents),
            kind: content.kind,
            path: path.clone(),
            node: self.config.node,
            parents,
            from: content.from,
            conflict_of: content.conflict_of,
            size: content.size,
            mode: content.mode,
            mtime: content.mtime,
            block_size: content.block_size,
            target: content.target,
            hashes: content.hashes,
            posix: posix::Posix::default(),
        };
        if version.kind == Kind::Tombstone {
            // What a tombstone's file says (no mode, no mtime), so the version
            // returned equals the version read back.
            version.mode = 0;
            version.mtime = Mtime::default();
        }
        // Named in our intent file before it is visible, so a kill between the
        // publishing link and the journal line is finished by the next writer.
        let intent = self.intents.begin(self, version.id, path)?;
        self.publish(&versions_dir, &mut version, durable)?;
        crate::failpoint::hit("commit:published");
        append_line(&log, &log_path, &format!("{}\n", version.id))?;
        crate::failpoint::hit("commit:logged");
        self.record(&version)?;
        intent.done();
        if durable {
            sync_filesystem(&self.layout.dir)?;
        }
        Ok(version)
    }

    /// Writes the version file under a name no other file has: temp file, fsync,
    /// then `link` (which never replaces); on a clash, one nanosecond later.
    fn publish(
        &self,
        versions_dir: &Path,
        version: &mut Version,
        durable: bool,
    ) -> Result<(), StoreError> {
        loop {
            let text = version.to_text();
            let mut tmp = tempfile::Builder::new()
                .prefix("version-")
                .tempfile_in(self.layout.tmp())
                .at(self.layout.tmp())?;
            tmp.write_all(text.as_bytes()).at(tmp.path())?;
            if durable {
                tmp.as_file().sync_data().at(tmp.path())?;
            }
            fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644)).at(tmp.path())?;
            let dest = versions_dir.join(version.id.to_string());
            match fs::hard_link(tmp.path(), &dest) {
                Ok(()) => return Ok(()),
                Err(err) if err.kind() == ErrorKind::AlreadyExists => {
                    version.id = version.id.next_nanosecond();
                    self.intents.retarget(version.id, &version.path)?;
                }
                Err(err) => return Err(StoreError::io(&dest, err)),
            }
        }
    }

    /// Runs [`Store::recover_interrupted`] once per open store, before its
    /// first publication.
    pub(crate) fn recover_once(&self) -> Result<(), StoreError> {
        if self.recovered.get().is_none() {
            self.recover_interrupted()?;
            let _ = self.recovered.set(());
        }
        Ok(())
    }

    /// Journals a new version and queues it in every peer's outbound spool.
    pub fn record(&self, version: &Version) -> Result<(), StoreError> {
        self.journal
            .append(&[format!("{} {}", version.id, version.path.escaped())])?;
        if self.is_ignored(&version.path) {
            return Ok(());
        }
        let source = self
            .versions_dir(&version.path)
            .join(version.id.to_string());
        for peer in &self.config.peers {
            self.queue_outbound(*peer, version, &source)?;
        }
        Ok(())
    }

    /// Links a version file into `spool/outbound/<peer>/<path>/versions/`.
    pub fn queue_outbound(
        &self,
        peer: NodeId,
        version: &Version,
        source: &Path,
    ) -> Result<(), StoreError> {
        let dir = version
            .path
            .disk_path(&self.layout.outbound(peer))
            .join("versions");
        crate::layout::create_dirs(&dir).at(&dir)?;
        let dest = dir.join(version.id.to_string());
        match fs::hard_link(source, &dest) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::AlreadyExists => return Ok(()),
            Err(err) => return Err(StoreError::io(&dest, err)),
        }
        let log_path = dir.join("log");
        let log = open_log(&log_path)?;
        append_line(&log, &log_path, &format!("{}\n", version.id))
    }

    /// Whether `path` matches the spec's `ignore` patterns (see [`crate::ignore`]).
    pub fn is_ignored(&self, path: &VPath) -> bool {
        self.config
            .ignore
            .as_ref()
            .is_some_and(|rules| rules.is_match(path))
    }
}

/// Version ids in a `versions/` directory, ascending; other names are ignored.
pub fn version_ids_in(dir: &Path) -> Result<Vec<VersionId>, StoreError> {
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(err)
            if err.kind() == ErrorKind::NotFound || err.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Ok(Vec::new());
        }
        Err(err) => return Err(StoreError::io(dir, err)),
    };
    let mut ids = Vec::new();
    for item in listing {
        let item = item.at(dir)?;
        if let Some(id) = item
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<VersionId>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Reads and parses one version file (not following a symlink).
pub fn read_version_file(file: &Path) -> Result<Version, StoreError> {
    let mut handle = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(file)
        .at(file)?;
    // Most version files fit: one read and one at the end, not a growing series.
    let mut bytes = Vec::with_capacity(16 << 10);
    (&mut handle)
        .take(version::MAX_VERSION_FILE + 1)
        .read_to_end(&mut bytes)
        .at(file)?;
    Version::parse(file, &bytes)
}

/// Fills `buf` from `input` unless it ends first; returns the bytes read.
fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> Result<usize, StoreError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(StoreError::io("(input)", err)),
        }
    }
    Ok(filled)
}

/// Opens (creating) a `versions/log` file for appending.
pub(crate) fn open_log(log_path: &Path) -> Result<File, StoreError> {
    crate::layout::open_append(log_path).at(log_path)
}

/// Appends `line` with one write(2) to a file opened with O_APPEND. A torn last
/// line (no newline: a writer that crashed mid-append) is ended first, in the same
/// write, so the new line stays a line of its own and `tail -1` stays right.
/// Callers serialise appends to one file (the path's flock).
fn append_line(file: &File, path: &Path, line: &str) -> Result<(), StoreError> {
    let mut handle = file;
    let len = file.metadata().at(path)?.len();
    let mut text = std::borrow::Cow::Borrowed(line);
    if len > 0 {
        use std::os::unix::fs::FileExt;
        let mut last = [0u8; 1];
        let reader = File::open(path).at(path)?;
        if reader.read_at(&mut last, len - 1).at(path)? == 1 && last[0] != b'\n' {
            text = std::borrow::Cow::Owned(format!("\n{line}"));
        }
    }
    let line = text.as_ref();
    let n = handle.write(line.as_bytes()).at(path)?;
    if n != line.len() {
        return Err(StoreError::io(
            path,
            std::io::Error::new(ErrorKind::WriteZero, "short append"),
        ));
    }
    Ok(())
}

/// An exclusive flock on an open file, released on drop of the guard.
struct FlockGuard<'a>(&'a File);

impl Drop for FlockGuard<'_> {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking a descriptor we hold open.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

fn flock_file<'a>(file: &'a File, path: &Path) -> Result<FlockGuard<'a>, StoreError> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(FlockGuard(file));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != ErrorKind::Interrupted {
            return Err(StoreError::io(path, err));
        }
    }
}

/// Names of the user entries of a `root/` directory on disk (for tools and tests).
pub fn user_entries(dir: &Path) -> Result<Vec<OsString>, StoreError> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir).at(dir)? {
        let name = item.at(dir)?.file_name();
        if name_from_disk(&name).is_some() || is_hashed_name(&name) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}
