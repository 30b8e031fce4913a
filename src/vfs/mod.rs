//! The filesystem core behind the mount: inode numbers, open files with their
//! write-back caches, and every operation, in terms of the store. It knows nothing
//! of fuser: it returns its own small structs and errno values, so it is tested
//! without a kernel mount (src/fuse.rs adapts it to fuser).
//!
//! Semantics are close-to-open, like NFS: writes land in a private cache file per
//! open handle; `flush` (every close) and `fsync` commit them as a new version
//! (close makes the version atomic, fsync makes it durable); other handles see
//! the committed version when they open the file. A commit re-hashes only the
//! blocks that were written.
//!
//! The parts, one concern each: [`types`] (what the adapter gets back),
//! [`error`] (errno), `inodes` (the inode table), `write_cache` (one file's
//! write-back cache), `handles` (open, create, release), `lookup` (names to
//! inodes and their attributes), `dirs` (listings), `dirtimes` (a
//! directory's times, links and size from its entries), `namespace`
//! (mkdir, unlink, rename, setattr), `exchange` (RENAME_EXCHANGE), `read`,
//! `write` (writes and commits), `links` (hard links), `passthrough` (how the kernel serves a
//! handle) and [`open_ahead`].
//!
//! # Lock order
//!
//! The locks of a [`Vfs`], by rank; a thread takes a lock only while every lock
//! it holds has a lower rank (debug builds check this, see `locks`):
//!
//! 1. `names` (read while a name is resolved, written by a rename);
//! 2. `handles` (the handle table), then 3. one handle;
//! 4. `dirty` (the write-state map), then 5. one write state ([`write_cache::Dirty`]);
//! 6. `created`, 7. `inodes`, 8. `listings`, 9. `open_dirs`, 10. `own`.
//!
//! The store's and the version cache's own locks, and [`open_ahead`]'s, are
//! taken under any of these and never take one of them.

mod acl;
mod attrs;
mod dirs;
mod dirtimes;
pub mod error;
mod exchange;
mod handles;
mod inodes;
mod ladder;
mod links;
mod locks;
mod lookup;
mod namespace;
pub mod open_ahead;
mod passthrough;
pub mod past;
mod privileges;
pub use privileges::Changer;
mod read;
mod rebase;
mod refused;
mod sparse;
#[cfg(test)]
mod tests;
pub mod types;
mod write;
mod write_cache;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Cursor;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use handles::Handle;
use inodes::Inodes;
use locks::{Rank, Ranked, RankedRw, lock};
use open_ahead::OpenAhead;
use write_cache::Dirty;

use crate::layout::{NAME_MAX, VPath};
use crate::spec::Ownership;
use crate::store::live_cache::LiveCache;
use crate::store::{Kind, Store, StoreError, Version};

pub use attrs::SetAttr;
pub use error::{Errno, VfsError, VfsResult};
pub use types::{
    Attr, Caller, DirEntry, Flushed, FsStats, Invalidation, Mode, NodeKind, Opened, WriteAt,
    Written,
};

/// The root directory's inode number.
pub const ROOT_INO: u64 = 1;

/// The filesystem core.
pub struct Vfs {
    store: Arc<Store>,
    /// Current versions of recently asked paths, kept true by the node's journal.
    versions: Arc<LiveCache>,
    /// Reads ahead of a process opening a directory's files in order.
    ahead: OpenAhead,
    inodes: Ranked<Inodes>,
    /// Held shared while a name is resolved to its inode and version, and
    /// exclusively while a rename moves both: an open, lookup or getattr sees
    /// an atomic rename-over wholly before or wholly after, never the target's
    /// new bytes on the inode (and so the size) of the file it replaced.
    names: RankedRw<()>,
    handles: Ranked<HashMap<u64, Arc<Ranked<Handle>>>>,
    /// The write state of each inode with writers open (see [`Dirty`]). Locks
    /// are taken in the order handle, this map, a write state.
    dirty: Ranked<HashMap<u64, Arc<Ranked<Dirty>>>>,
    next_fh: AtomicU64,
    /// Files created through this mount and not committed yet: visible here at once.
    created: Ranked<HashMap<VPath, u64>>,
    /// Directory listings per open directory handle (a listing is read once, at
    /// offset 0, and paged from memory).
    listings: Ranked<HashMap<u64, Arc<Vec<DirEntry>>>>,
    /// Open directory handles: their inode and attributes when opened (what
    /// `fstat` reports once the directory is removed while still open).
    open_dirs: Ranked<HashMap<u64, (u64, Attr)>>,
    /// Whether the kernel accepted FUSE passthrough (set by the adapter at init).
    passthrough: std::sync::atomic::AtomicBool,
    /// Versions this mount made: the kernel already knows those changes, so the
    /// journal follower does not invalidate for them (invalidating an entry
    /// the kernel holds would, among other things, detach a mount made on it).
    own: Ranked<std::collections::HashSet<crate::ids::VersionId>>,
    /// Inodes forgotten since [`Vfs::take_forgotten`] was last called.
    forgotten: AtomicU64,
    uid: u32,
    gid: u32,
    /// How owners are shown (`mount.ownership`).
    ownership: Ownership,
    /// The read-only history view at the root (`mount.history_dir`), if any.
    past: Option<past::PastView>,
}

impl Vfs {
    pub fn new(store: Arc<Store>) -> Vfs {
        let inodes = Inodes {
            next: ROOT_INO,
            ..Inodes::default()
        };
        let versions = Arc::new(LiveCache::new(&store));
        store.tell_commits(&versions);
        Vfs {
            versions: Arc::clone(&versions),
            ahead: OpenAhead::new(Arc::clone(&store), versions),
            store,
            inodes: Ranked::new(Rank::Inodes, inodes),
            names: RankedRw::new(Rank::Names, ()),
            handles: Ranked::new(Rank::Handles, HashMap::new()),
            dirty: Ranked::new(Rank::DirtyMap, HashMap::new()),
            next_fh: AtomicU64::new(1),
            created: Ranked::new(Rank::Created, HashMap::new()),
            listings: Ranked::new(Rank::Listings, HashMap::new()),
            open_dirs: Ranked::new(Rank::OpenDirs, HashMap::new()),
            passthrough: std::sync::atomic::AtomicBool::new(false),
            own: Ranked::new(Rank::Own, std::collections::HashSet::new()),
            forgotten: AtomicU64::new(0),
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            ownership: Ownership::Keep,
            past: None,
        }
    }

    /// Shows the history view at the root under `name` (see `past.rs`);
    /// `None` or an empty name: no view.
    pub fn with_history_dir(mut self, name: Option<&str>) -> Vfs {
        self.past = name
            .filter(|name| !name.is_empty())
            .map(|name| past::PastView::new(name.as_bytes().to_vec()));
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The current version of `path` if it is live, from the cache when no
    /// journal line named it since it was read.
    fn live(&self, path: &VPath) -> Result<Option<Version>, StoreError> {
        self.versions.live(&self.store, path)
    }

    /// Whether `path` is a live directory (the root always is).
    fn is_dir(&self, path: &VPath) -> Result<bool, StoreError> {
        Ok(path.is_root() || self.live(path)?.is_some_and(|v| v.kind == Kind::Dir))
    }

    /// Shows owners as `ownership` says (the spec's `mount.ownership`).
    pub fn with_ownership(mut self, ownership: Ownership) -> Vfs {
        self.ownership = ownership;
        self
    }

    /// The mounting user as a caller (what the plain `create`, `mkdir` and
    /// `symlink` make things as).
    pub fn mount_user(&self) -> Caller {
        Caller {
            uid: self.uid,
            gid: self.gid,
            umask: 0,
        }
    }

    pub fn uid(&self) -> u32 {
        self.uid
    }

    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// Holds names still while one is resolved (see [`Vfs::names`]); never
    /// taken twice by one thread, nor while any other lock of the mount is held.
    fn resolving(&self) -> locks::Held<std::sync::RwLockReadGuard<'_, ()>> {
        self.names.read()
    }

    /// The path of an inode.
    pub fn path_of(&self, ino: u64) -> VfsResult<VPath> {
        if ino == ROOT_INO {
            return Ok(VPath::root());
        }
        if past::is_virtual(ino) {
            // Anything that wants a store path of the view would change it.
            return Err(VfsError::new(libc::EROFS, "the history view is read-only"));
        }
        lock(&self.inodes)
            .by_ino
            .get(&ino)
            .filter(|node| node.gone.is_none())
            .map(|node| node.path.clone())
            .ok_or_else(|| {
                VfsError::new(
                    libc::ENOENT,
                    format!("inode {ino}: no name (forgotten or removed)"),
                )
            })
    }

    /// The inode of a path, if the mount has handed one out.
    pub fn ino_of(&self, path: &VPath) -> Option<u64> {
        if path.is_root() {
            return Some(ROOT_INO);
        }
        lock(&self.inodes).by_path.get(path).copied()
    }

    fn child(&self, parent: u64, name: &OsStr) -> VfsResult<VPath> {
        if let Some(refused) = self.refused_in_view(parent, name) {
            return Err(refused);
        }
        if name.len() > NAME_MAX {
            return Err(VfsError::new(
                libc::ENAMETOOLONG,
                format!("a name of {} bytes (at most {NAME_MAX})", name.len()),
            ));
        }
        self.path_of(parent)?
            .join(name.as_bytes())
            .map_err(|err| VfsError::new(libc::EINVAL, err.to_string()))
    }

    /// Whether any handle is open on `ino`.
    fn is_open(&self, ino: u64) -> bool {
        let handles: Vec<Arc<Ranked<Handle>>> = lock(&self.handles).values().cloned().collect();
        handles.iter().any(|h| lock(h).ino == ino)
    }

    /// The inode's write state, if writers have it open.
    fn dirty_of(&self, ino: u64) -> Option<Arc<Ranked<Dirty>>> {
        lock(&self.dirty).get(&ino).cloned()
    }

    pub fn statfs(&self) -> VfsResult<FsStats> {
        let stat = nix::sys::statvfs::statvfs(&self.store.layout().dir).map_err(|e| {
            VfsError::new(
                e as i32,
                format!("statfs of {}", self.store.layout().dir.display()),
            )
            .at(tracing::Level::WARN)
        })?;
        Ok(FsStats {
            blocks: stat.blocks() as u64,
            bfree: stat.blocks_free() as u64,
            bavail: stat.blocks_available() as u64,
            files: stat.files() as u64,
            ffree: stat.files_free() as u64,
            // The unit the counts are in (f_frsize), which the adapter
            // reports as both sizes: f_bsize may differ from it.
            bsize: stat.fragment_size() as u32,
            namelen: NAME_MAX as u32,
        })
    }

    fn made_here(&self, version: &Version) {
        let mut own = lock(&self.own);
        if own.len() >= 65_536 {
            // Never read back (the follower was behind or stopped): forget them;
            // the worst case is an invalidation the kernel did not need.
            own.clear();
        }
        own.insert(version.id);
    }

    /// A journal line (version `id` of `path`): the inodes to invalidate, or
    /// `None` when this mount made that version itself.
    pub fn changed_elsewhere(
        &self,
        id: crate::ids::VersionId,
        path: &VPath,
    ) -> Option<Invalidation> {
        // Ours: remembered after the commit returned, or (for a line read
        // before that) told to the live cache before the line was written.
        if lock(&self.own).remove(&id) || self.versions.committed_here(path, id) {
            return None;
        }
        Some(self.changed(path))
    }

    /// A journal line made elsewhere (version `id` of `path`): when it is
    /// the new name of a rename (its `from` names another path) whose old
    /// name this mount holds an inode of, the old name, for
    /// [`Vfs::follow_rename`] once its file is gone there.
    pub fn renamed_from(&self, id: crate::ids::VersionId, path: &VPath) -> Option<VPath> {
        {
            let inodes = lock(&self.inodes);
            let parent_known = path
                .parent()
                .is_some_and(|parent| parent.is_root() || inodes.by_path.contains_key(&parent));
            if !parent_known {
                // Nothing of it was ever looked at here: neither was its old name.
                return None;
            }
        }
        let version = self.store.read_version(path, id).ok()?;
        let (_, from) = version.from.filter(|(_, from)| from != path)?;
        let known = lock(&self.inodes).by_path.contains_key(&from);
        known.then_some(from)
    }

    /// Follows a rename made elsewhere (another mount of the node, a peer):
    /// the inodes this mount holds at `from` and below move to `to`, so open
    /// files, a shell's working directory and the kernel's inodes follow it
    /// as on a local file system (a write through a file open there commits
    /// at the new name; an inode the mount already gave the new name, from
    /// a lookup since, loses it as a replaced file does). Only while `from`
    /// is gone and `to` live in the store: `Some(true)` when it moved,
    /// `Some(false)` when `from` is still live (a copy, or the old name's
    /// tombstone is not written yet: ask again later), `None` when it never
    /// will.
    pub fn follow_rename(&self, from: &VPath, to: &VPath) -> Option<bool> {
        let _names = self.names.write();
        if lock(&self.created).contains_key(from) {
            // The old name holds a file created here since, not the file
            // that was renamed.
            return None;
        }
        let replaced = {
            let inodes = lock(&self.inodes);
            let moving = inodes.by_path.get(from)?;
            let replaced = inodes.by_path.get(to).copied();
            if replaced == Some(*moving) {
                return None;
            }
            replaced
        };
        if replaced.is_some_and(|ino| self.dirty_of(ino).is_some()) {
            // A file open for writing here at the new name: its writes
            // commit there and meet the renamed file as a concurrent edit
            // (no write state is made while the names are held).
            return None;
        }
        let shown = match self.store.live(to) {
            Ok(Some(version)) => version,
            _ => return None,
        };
        match self.store.live(from) {
            Ok(None) => {}
            Ok(Some(_)) => return Some(false),
            Err(_) => return None,
        }
        tracing::debug!(%from, %to, "following a rename made elsewhere");
        lock(&self.inodes).rename(from, to, Some(shown));
        Some(true)
    }

    /// Paths that changed (from the journal): the inodes to invalidate.
    pub fn changed(&self, path: &VPath) -> Invalidation {
        let ino = self.ino_of(path);
        if let Some(ino) = ino {
            self.page_cache_unknown(ino);
        }
        // The name to drop is the one below the nearest directory the kernel
        // knows: a path whose parents are new here too (a peer's new subtree)
        // changes that directory's listing, which the kernel may hold.
        let mut below = path.clone();
        let mut entry = None;
        while let Some(parent) = below.parent() {
            if let Some(parent_ino) = self.ino_of(&parent) {
                entry = Some((parent_ino, below.file_name().unwrap_or_default().to_vec()));
                break;
            }
            below = parent;
        }
        (ino, entry)
    }

    /// Writes a whole buffer as a new version (for tests and tools).
    pub fn write_whole(&self, path: &VPath, data: &[u8]) -> VfsResult<Version> {
        self.store
            .write_file(
                path,
                &mut Cursor::new(data),
                crate::store::Attrs::default(),
                false,
            )
            .map_err(VfsError::from)
    }

    /// Reads a whole file (for tests and tools).
    pub fn read_whole(&self, path: &VPath) -> VfsResult<Vec<u8>> {
        let version = self
            .live(path)?
            .ok_or_else(|| VfsError::new(libc::ENOENT, format!("{path}: no such file")))?;
        let mut out = Vec::new();
        self.store.copy_to(&version, &mut out)?;
        Ok(out)
    }
}
