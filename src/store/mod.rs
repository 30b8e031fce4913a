//! One node's store on local disk: content-addressed blocks under `hashes/`,
//! per-path version logs and version files under `root/`, hard links as
//! reference counts, the node's journal and its per-peer outbound spools.
//!
//! This layer knows nothing of FUSE; the CLI, the mount and sync all use it.
//! docs/FORMAT.md is the contract this code implements.

mod blocks;
mod coalesce;
mod commit;
pub mod digest;
pub mod dir_times;
mod durable;
mod entry;
mod error;
mod exchange;
mod file_write;
pub mod gc;
mod heads;
pub mod import;
pub mod intents;
pub mod journal;
pub mod links;
pub mod live_cache;
pub mod lock;
mod meta;
pub mod past;
mod path_links;
pub mod pipeline;
pub mod posix;
mod read;
pub mod redo;
pub mod resolve;
pub mod restore;
pub mod sparse;
mod tree;
pub mod usage;
pub mod version;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use blocks::{
    BlockWriter, Blocks, Located, OpenBlock, copy_block, link_block, sync_filesystem,
};
pub use commit::Rebase;
pub(crate) use commit::open_log;
pub(crate) use commit::record_conflict;
use commit::{append_line, flock_file};
pub use error::{IoContext, StoreError, read_dir_if_present};
pub use file_write::FileWrite;
pub use meta::{FORMAT_VERSION, StoreMeta, set_mode};
pub use redo::DeltaHint;
pub use tree::{read_version_file, user_entries, version_ids_in};
pub use version::{Kind, Mtime, Version};

use crate::ids::{BlockHash, NodeId, VersionId};
use crate::ignore::IgnoreRules;
use crate::layout::{StoreLayout, VPath};
use crate::spec::{Compression, Spec};
use journal::JournalWriter;
use lock::FileLock;

/// Bytes of blocks queued between the hashing and the writing thread of a put.
const STREAM_QUEUE_BYTES: usize = 8 << 20;

/// How a store is configured for writing (from the spec).
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub node: NodeId,
    pub major: Option<u32>,
    pub block_size: u32,
    pub compression: Compression,
    /// Check every block's hash when reading it.
    pub verify_reads: bool,
    /// Drop a replaced version no peer was sent yet when it is younger than
    /// this (see `coalesce.rs`); `None`: never.
    pub coalesce: Option<std::time::Duration>,
}

impl StoreConfig {
    pub fn from_spec(spec: &Spec) -> Result<StoreConfig, StoreError> {
        Ok(StoreConfig {
            node: spec.node,
            major: spec.major,
            block_size: spec.block_size,
            compression: spec.compression,
            verify_reads: spec.verify_reads,
            coalesce: spec.coalesce_within,
        })
    }
}

/// Whom a store shares its new versions with (from the spec): the peers
/// whose outbound spools get each new version, and the paths kept local. An
/// open store can be given new ones ([`Store::set_sharing`], a mount's reload).
#[derive(Clone, Debug, Default)]
pub struct Sharing {
    pub peers: Vec<NodeId>,
    /// Paths matching the spec's `ignore` stay local (never queued for peers).
    pub ignore: Option<IgnoreRules>,
}

impl Sharing {
    pub fn from_spec(spec: &Spec) -> Result<Sharing, StoreError> {
        let ignore = IgnoreRules::new(&spec.ignore).map_err(|err| StoreError::BadConfig {
            what: "ignore",
            why: err.to_string(),
        })?;
        Ok(Sharing {
            peers: spec.peers.iter().map(|peer| peer.id).collect(),
            ignore,
        })
    }
}

/// Proof that the caller holds the writer lock shared (see
/// [`Store::writer_lock`]); dropping it releases the lock. What stores blocks
/// or commits a version asks for one (see `file_write.rs`).
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
    /// Owners, atime, xattrs, special kind, link group.
    pub posix: posix::Posix,
    /// The version this content was made from, when the writer may have
    /// held it a while (a file open in the mount): if it is no longer a
    /// head when the commit comes, the new version's one parent is it, so
    /// a version made meanwhile by someone else is a concurrent edit (kept
    /// as a conflict copy) and not silently superseded (FORMAT.md §10.5).
    pub based_on: Option<VersionId>,
    /// Made as a new file by a writer that saw no live version of the path
    /// (created in the mount, not committed yet): a live head there now was
    /// made meanwhile by someone else, so the two are concurrent creates
    /// (kept as a conflict copy), not an edit of it.
    pub new_file: bool,
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
            posix: version.posix.clone(),
            based_on: None,
            new_file: false,
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
            posix: posix::Posix::default(),
            based_on: None,
            new_file: false,
        }
    }

    /// A new directory, symlink or special file (`target` for a symlink).
    pub fn entry(kind: Kind, mode: u32, target: Option<Vec<u8>>, posix: posix::Posix) -> Content {
        let mut content = Content::simple(kind, mode & 0o7777, Mtime::now());
        content.target = target;
        content.posix = posix;
        content
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
    /// See [`Sharing`]; read on every commit, replaced whole by a reload.
    sharing: std::sync::RwLock<Arc<Sharing>>,
    blocks: Blocks,
    journal: JournalWriter,
    fetcher: Option<Arc<dyn BlockFetcher>>,
    /// The heads of long histories, as last read (see `heads.rs`).
    heads: heads::Heads,
    /// This process's record of publications in progress (see `intents.rs`).
    intents: intents::Intents,
    /// Whether this store already finished what dead processes left.
    recovered: std::sync::OnceLock<()>,
    /// Lazy commits not made durable yet (for an `fsync` of a directory).
    lazy: std::sync::Mutex<durable::Lazy>,
    /// This process's redo file (see `redo.rs`).
    redo: redo::Redo,
    /// The live cache told of this process's commits ([`Store::tell_commits`]).
    told: std::sync::OnceLock<std::sync::Weak<live_cache::LiveCache>>,
    /// Block links under `root/<path>/hashes/` queued for a thread (see `path_links.rs`).
    path_links: Arc<path_links::PathLinks>,
}

impl Drop for Store {
    fn drop(&mut self) {
        self.flush_path_links();
        // Closing the store checkpoints its redo file, so the next process
        // of the node finds nothing to replay.
        if let Err(err) = self.checkpoint_redo() {
            tracing::warn!(store = %self.layout.dir.display(), error = %err, "flushing the redo log's versions at close");
        }
    }
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
    scratch_spec_cut(dir, "4KiB")
}

/// [`scratch_spec`] with another block size.
#[cfg(test)]
pub(crate) fn scratch_spec_cut(dir: &Path, block_size: &str) -> Spec {
    let node = NodeId::random();
    let text = format!(
        "volume: {}\nnode:\n  id: {node}\nblock_size: {block_size}\n",
        dir.join("vol").display()
    );
    let path = dir.join("spec.yaml");
    std::fs::write(&path, text).expect("write a scratch spec");
    let spec = Spec::load(&path).expect("load the scratch spec");
    crate::reconcile::reconcile(&spec, false).expect("reconcile the scratch store");
    spec
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
            sharing: Default::default(),
            journal,
            fetcher: None,
            heads: heads::Heads::default(),
            intents: intents::Intents::default(),
            recovered: std::sync::OnceLock::new(),
            lazy: Default::default(),
            redo: Default::default(),
            told: std::sync::OnceLock::new(),
            path_links: Arc::default(),
        })
    }

    /// Tells `cache` of every version this store's commits publish, under
    /// the path's log lock (so its entry for the path needs no reading after
    /// the commit's own journal line). One cache per store; a second call is
    /// ignored.
    pub fn tell_commits(&self, cache: &Arc<live_cache::LiveCache>) {
        let _ = self.told.set(Arc::downgrade(cache));
    }

    /// Opens the store of the spec's node in the spec's volume.
    pub fn open_spec(spec: &Spec) -> Result<Store, StoreError> {
        let store = Store::open(
            &spec.volume.join(spec.node.to_string()),
            StoreConfig::from_spec(spec)?,
        )?;
        store.set_sharing(Sharing::from_spec(spec)?);
        // What a crash left only in a redo file goes back before anyone
        // reads (FORMAT §14); cheap when nothing died: one listing.
        if let Err(err) = store.replay_redo() {
            tracing::warn!(store = %store.layout.dir.display(), error = %err, "replaying the redo files of processes that died");
        }
        Ok(store)
    }

    /// Whom new versions are shared with, as now.
    pub fn sharing(&self) -> Arc<Sharing> {
        Arc::clone(&self.sharing.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Shares new versions from now on as `sharing` says (a reload: peers
    /// added or removed, new `ignore` rules).
    pub fn set_sharing(&self, sharing: Sharing) {
        *self.sharing.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(sharing);
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

    /// Whether `path` matches the spec's `ignore` patterns (see [`crate::ignore`]).
    pub fn is_ignored(&self, path: &VPath) -> bool {
        self.sharing()
            .ignore
            .as_ref()
            .is_some_and(|rules| rules.is_match(path))
    }
}
