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

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::Cursor;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::ids::BlockHash;
use crate::layout::{NAME_MAX, VPath};
use crate::lock;
use crate::open_ahead::OpenAhead;
use crate::store::live_cache::LiveCache;
use crate::store::{Content, Kind, Mtime, Store, StoreError, Version};

/// Block files a sequential reader asks the kernel to read ahead (cold reads
/// otherwise wait for the disk one block at a time).
const PREFETCH_BLOCKS: usize = 8;

/// The root directory's inode number.
pub const ROOT_INO: u64 = 1;

/// An errno for a failed operation.
pub type Errno = i32;

/// The result of an operation.
pub type VfsResult<T> = Result<T, Errno>;

fn errno(err: StoreError) -> Errno {
    match &err {
        StoreError::NotFound(_) | StoreError::Exists(_) | StoreError::NotEmpty(_) => {
            tracing::debug!(error = %err, "expected failure")
        }
        _ => tracing::warn!(error = %err, "operation failed"),
    }
    err.errno()
}

/// What kind of entry an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
}

/// Attributes of an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: NodeKind,
    pub size: u64,
    pub perm: u16,
    pub mtime: SystemTime,
    pub nlink: u32,
}

/// A directory entry.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub attr: Attr,
}

/// What to invalidate in the kernel after a change: the inode (if known) and
/// the directory entry (parent inode, name).
pub type Invalidation = (Option<u64>, Option<(u64, Vec<u8>)>);

/// Filesystem totals for statfs.
#[derive(Clone, Copy, Debug)]
pub struct FsStats {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

/// A version as an inode remembers it: a 64-bit fingerprint of its id (the
/// inode table has an entry per inode the kernel knows, 100,000s of them, and
/// only ever asks "the same version as before?").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen(u64);

impl Seen {
    fn of(id: &crate::ids::VersionId) -> Seen {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut hasher);
        Seen(hasher.finish())
    }
}

struct Node {
    path: VPath,
    lookups: u64,
    /// The version whose bytes the kernel's page cache of this inode may hold
    /// (`None`: unknown, the next open must drop the cache).
    cached: Option<Seen>,
    /// Bumped by anything that may put other bytes in the page cache (a
    /// writer opening or closing, a change from elsewhere), so a reader that
    /// raced with it does not vouch for the cache.
    epoch: u64,
    /// Set once the inode lost its name (unlinked, or replaced by a rename)
    /// while the kernel still holds it: the version it showed then, which an
    /// open or `fstat` by inode still gets, as on a local file system (boxed:
    /// the table holds an entry per inode the kernel knows, 100,000s of them).
    gone: Option<Box<Version>>,
    /// The committed version whose attributes the kernel was last given for
    /// this inode (`None`: a writer's, or none yet). An open that serves
    /// another version has the kernel drop them: its cached size would cut
    /// the new bytes short or read past their end.
    described: Option<Seen>,
}

impl Node {
    fn new(path: &VPath) -> Node {
        Node {
            path: path.clone(),
            lookups: 0,
            cached: None,
            epoch: 0,
            gone: None,
            described: None,
        }
    }
}

#[derive(Default)]
struct Inodes {
    next: u64,
    by_ino: HashMap<u64, Node>,
    by_path: HashMap<VPath, u64>,
}

impl Inodes {
    fn ino_for(&mut self, path: &VPath) -> u64 {
        if path.is_root() {
            return ROOT_INO;
        }
        if let Some(ino) = self.by_path.get(path) {
            return *ino;
        }
        self.next += 1;
        let ino = self.next;
        self.by_ino.insert(ino, Node::new(path));
        self.by_path.insert(path.clone(), ino);
        ino
    }

    /// The inode of `path` (a new one if it has none), with one more kernel
    /// reference counted, in one step: a reply naming it is on its way.
    fn referenced(&mut self, path: &VPath) -> u64 {
        let ino = self.ino_for(path);
        if let Some(node) = self.by_ino.get_mut(&ino) {
            node.lookups += 1;
        }
        ino
    }

    /// `ino` lost its name; it showed `version` until then (`None`: nothing to
    /// keep showing, it goes at once).
    fn orphan(&mut self, ino: u64, version: Option<Version>) {
        match version {
            Some(version) => {
                if let Some(node) = self.by_ino.get_mut(&ino) {
                    node.gone = Some(Box::new(version));
                }
            }
            None => {
                self.by_ino.remove(&ino);
            }
        }
    }

    /// Counts a reference to `ino` at `path`, bringing its entry back if the
    /// kernel's FORGET of earlier references removed it.
    fn adopt(&mut self, ino: u64, path: &VPath) {
        let node = self.by_ino.entry(ino).or_insert_with(|| Node::new(path));
        node.lookups += 1;
        self.by_path.entry(path.clone()).or_insert(ino);
    }

    /// Moves `from` (and everything below it) to `to`.
    fn rename(&mut self, from: &VPath, to: &VPath, replaced: Option<Version>) {
        let moved: Vec<(VPath, u64)> = self
            .by_path
            .iter()
            .filter(|(path, _)| path.starts_with(from))
            .map(|(path, ino)| (path.clone(), *ino))
            .collect();
        if let Some(old) = self.by_path.remove(to) {
            // The replaced target keeps its inode (for the kernel's references
            // and open handles), but loses its name.
            self.orphan(old, replaced);
        }
        for (path, ino) in moved {
            self.by_path.remove(&path);
            let mut new_path = to.clone();
            for name in &path.names()[from.names().len()..] {
                if let Ok(child) = new_path.join(name) {
                    new_path = child;
                }
            }
            if let Some(node) = self.by_ino.get_mut(&ino) {
                node.path = new_path.clone();
            }
            self.by_path.insert(new_path, ino);
        }
    }
}

/// The write-back state of an open file.
struct WriteCache {
    /// Sparse private file holding the dirty blocks at their offsets.
    file: File,
    size: u64,
    block_size: u32,
    dirty: BTreeSet<u64>,
    /// Bytes of the base version still valid (shrinks with truncation).
    base_valid: u64,
    /// Something changed since the last commit.
    changed: bool,
    /// The kernel writes into `file` directly (passthrough): the file is the content.
    direct: bool,
}

/// The writes to an inode while writers have it open in this mount. Every
/// handle of the inode reads and writes through it, so processes sharing a
/// file on one mount see each other's writes at once and never undo them, as
/// on a local file system; every close of a writer commits all of it.
struct Dirty {
    /// The committed version the writes apply to (each commit moves it on).
    base: Option<Version>,
    cache: WriteCache,
    /// Handles joined to it: writers, and readers opened while it existed.
    users: usize,
}

struct Handle {
    ino: u64,
    /// The committed version this handle reads while its inode has no writers.
    base: Option<Version>,
    /// The inode's write state, for handles opened while it had one.
    dirty: Option<Arc<Mutex<Dirty>>>,
    /// Opened for writing: only these handles write and commit.
    writes: bool,
    /// The block file read last (sequential reads reuse its descriptor).
    last_block: Option<(usize, File)>,
    /// Blocks below this index were hinted to the kernel (sequential readers).
    hinted: usize,
}

/// What `open` hands the adapter.
#[derive(Debug)]
pub struct Opened {
    pub fh: u64,
    /// A file the kernel may read and write directly (FUSE passthrough): the
    /// private cache file of a new or truncated file opened for writing.
    pub backing: Option<File>,
    /// The handle's bytes are the passthrough writer's cache file (the writer
    /// itself, or a later open sharing it): the only backing file ever attached
    /// to an inode, so the only one a handle may use directly.
    ///
    /// A store block is never attached, though the kernel could read one-block
    /// files from it: it re-opens the backing file for every handle with that
    /// handle's own flags and the mount's credentials, so a writer arriving
    /// while a reader had a block attached would hold the shared block open for
    /// writing, and a writable shared `mmap` (which direct I/O does not
    /// redirect) would write into every file that shares the block.
    pub shares_cache: bool,
    /// The kernel may keep the inode's page cache: it holds this very version.
    pub keep_cache: bool,
    /// The kernel's attributes of the inode describe another version than the
    /// one this handle reads (it changed since, or an atomic rename replaced
    /// it): the adapter tells the kernel to drop them before answering, so its
    /// size is asked again before a read stops at the old one.
    pub stale_attrs: bool,
}

/// How the kernel is to serve an open handle. The kernel attaches one backing
/// file to an inode while any passthrough handle of it is open: every other
/// open of that inode must then be passthrough with the same file, and no
/// passthrough open may join handles served through the page cache.
#[derive(Debug)]
pub enum Mode {
    /// Served here, through the kernel's page cache (`keep_cache`: it already
    /// holds this version's bytes).
    Cached { keep_cache: bool },
    /// Attach this file as the inode's backing file (the kernel may refuse:
    /// then [`Vfs::passthrough_refused`] and serve the handle cached).
    Attach(File),
    /// Reuse the backing file already attached; `direct` when it does not hold
    /// what this handle must see, so the kernel sends its reads and writes here
    /// (direct I/O overrides passthrough).
    Share { direct: bool },
}

/// The filesystem core.
pub struct Vfs {
    store: Arc<Store>,
    /// Current versions of recently asked paths, kept true by the node's journal.
    versions: Arc<LiveCache>,
    /// Reads ahead of a process opening a directory's files in order.
    ahead: OpenAhead,
    inodes: Mutex<Inodes>,
    /// Held shared while a name is resolved to its inode and version, and
    /// exclusively while a rename moves both: an open, lookup or getattr sees
    /// an atomic rename-over wholly before or wholly after, never the target's
    /// new bytes on the inode (and so the size) of the file it replaced.
    names: std::sync::RwLock<()>,
    handles: Mutex<HashMap<u64, Arc<Mutex<Handle>>>>,
    /// The write state of each inode with writers open (see [`Dirty`]). Locks
    /// are taken in the order handle, this map, a write state.
    dirty: Mutex<HashMap<u64, Arc<Mutex<Dirty>>>>,
    next_fh: AtomicU64,
    /// Files created through this mount and not committed yet: visible here at once.
    created: Mutex<HashMap<VPath, u64>>,
    /// Directory listings per open directory handle (a listing is read once, at
    /// offset 0, and paged from memory).
    listings: Mutex<HashMap<u64, Arc<Vec<DirEntry>>>>,
    /// Open directory handles: their inode and attributes when opened (what
    /// `fstat` reports once the directory is removed while still open).
    open_dirs: Mutex<HashMap<u64, (u64, Attr)>>,
    /// Whether the kernel accepted FUSE passthrough (set by the adapter at init).
    passthrough: std::sync::atomic::AtomicBool,
    /// Versions this mount made: the kernel already knows those changes, so the
    /// journal follower does not invalidate for them (invalidating an entry
    /// the kernel holds would, among other things, detach a mount made on it).
    own: Mutex<std::collections::HashSet<crate::ids::VersionId>>,
    /// Inodes forgotten since [`Vfs::take_forgotten`] was last called.
    forgotten: AtomicU64,
    uid: u32,
    gid: u32,
}

impl Vfs {
    pub fn new(store: Arc<Store>) -> Vfs {
        let inodes = Inodes {
            next: ROOT_INO,
            ..Inodes::default()
        };
        let versions = Arc::new(LiveCache::new(&store));
        Vfs {
            versions: Arc::clone(&versions),
            ahead: OpenAhead::new(Arc::clone(&store), versions),
            store,
            inodes: Mutex::new(inodes),
            names: std::sync::RwLock::new(()),
            handles: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            created: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
            open_dirs: Mutex::new(HashMap::new()),
            passthrough: std::sync::atomic::AtomicBool::new(false),
            own: Mutex::new(std::collections::HashSet::new()),
            forgotten: AtomicU64::new(0),
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        }
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

    /// Lets `open` offer backing files for FUSE passthrough.
    pub fn enable_passthrough(&self) {
        self.passthrough.store(true, Ordering::Relaxed);
    }

    pub fn passthrough_enabled(&self) -> bool {
        self.passthrough.load(Ordering::Relaxed)
    }

    pub fn uid(&self) -> u32 {
        self.uid
    }

    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// Holds names still while one is resolved (see [`Vfs::names`]); never
    /// taken twice by one thread, nor while any other lock of the mount is held.
    fn resolving(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.names
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The path of an inode.
    pub fn path_of(&self, ino: u64) -> VfsResult<VPath> {
        if ino == ROOT_INO {
            return Ok(VPath::root());
        }
        lock(&self.inodes)
            .by_ino
            .get(&ino)
            .filter(|node| node.gone.is_none())
            .map(|node| node.path.clone())
            .ok_or(libc::ENOENT)
    }

    /// The inode of a path, if the mount has handed one out.
    pub fn ino_of(&self, path: &VPath) -> Option<u64> {
        if path.is_root() {
            return Some(ROOT_INO);
        }
        lock(&self.inodes).by_path.get(path).copied()
    }

    fn child(&self, parent: u64, name: &OsStr) -> VfsResult<VPath> {
        if name.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        self.path_of(parent)?
            .join(name.as_bytes())
            .map_err(|_| libc::EINVAL)
    }

    fn attr_of(&self, ino: u64, version: &Version) -> Attr {
        let kind = match version.kind {
            Kind::Dir => NodeKind::Dir,
            Kind::Symlink => NodeKind::Symlink,
            _ => NodeKind::File,
        };
        let size = match version.kind {
            Kind::Symlink => version.target.as_ref().map_or(0, |t| t.len() as u64),
            Kind::Dir => 0,
            _ => version.size,
        };
        Attr {
            ino,
            kind,
            size,
            perm: (version.mode & 0o7777) as u16,
            mtime: version.mtime.to_system(),
            nlink: if kind == NodeKind::Dir { 2 } else { 1 },
        }
    }

    fn root_attr(&self) -> Attr {
        let version = self.live(&VPath::root()).ok().flatten();
        Attr {
            ino: ROOT_INO,
            kind: NodeKind::Dir,
            size: 0,
            perm: version.as_ref().map_or(0o755, |v| (v.mode & 0o7777) as u16),
            mtime: version.map_or_else(
                || {
                    let created = self.store.meta().created;
                    SystemTime::UNIX_EPOCH + std::time::Duration::new(created.secs, created.nanos)
                },
                |v| v.mtime.to_system(),
            ),
            nlink: 2,
        }
    }

    /// Whether any handle is open on `ino`.
    fn is_open(&self, ino: u64) -> bool {
        let handles: Vec<Arc<Mutex<Handle>>> = lock(&self.handles).values().cloned().collect();
        handles.iter().any(|h| lock(h).ino == ino)
    }

    /// The inode's write state, if writers have it open.
    fn dirty_of(&self, ino: u64) -> Option<Arc<Mutex<Dirty>>> {
        lock(&self.dirty).get(&ino).cloned()
    }

    /// The attributes of `ino` while writers have it open (its size as written).
    fn writer_attr(&self, ino: u64) -> Option<Attr> {
        let dirty = self.dirty_of(ino)?;
        // Unlinked while open: no links left (checked before taking the state's lock).
        let named = self.path_of(ino).is_ok_and(|path| {
            path.is_root() || lock(&self.inodes).by_path.get(&path) == Some(&ino)
        });
        let dirty = lock(&dirty);
        let cache = &dirty.cache;
        let perm = dirty.base.as_ref().map_or(0o644, |b| b.mode as u16);
        let meta = cache.file.metadata().ok();
        let size = match &meta {
            Some(meta) if cache.direct => meta.len(),
            _ => cache.size,
        };
        // The committed mtime until something is written after the commit
        // (the kernel writes a direct cache: its file's mtime says when).
        let committed = dirty.base.as_ref().filter(|b| b.id.secs > 0);
        let written = match (&meta, committed) {
            (_, None) => None,
            (Some(meta), Some(base)) if cache.direct => meta.modified().ok().filter(|t| {
                *t > SystemTime::UNIX_EPOCH + std::time::Duration::new(base.id.secs, base.id.nanos)
            }),
            _ if cache.changed => Some(SystemTime::now()),
            _ => None,
        };
        let mtime = match (written, committed) {
            (Some(time), _) => time,
            (None, Some(base)) => base.mtime.to_system(),
            (None, None) => SystemTime::now(),
        };
        Some(Attr {
            ino,
            kind: NodeKind::File,
            size,
            perm,
            mtime,
            nlink: u32::from(named),
        })
    }

    /// Looks up `name` in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> VfsResult<Attr> {
        let _names = self.resolving();
        let path = self.child(parent, name)?;
        match self.current_or_pending(&path)? {
            Some(version) => {
                let ino = lock(&self.inodes).referenced(&path);
                Ok(self
                    .writer_attr(ino)
                    .unwrap_or_else(|| self.shown(ino, &version)))
            }
            None => {
                let Some(ino) = lock(&self.created).get(&path).copied() else {
                    return Err(libc::ENOENT);
                };
                // The reply hands the kernel a reference: count it before
                // answering, in one step with finding the inode, so a FORGET the
                // kernel sends meanwhile (for an earlier reference) cannot drop
                // an inode this reply is about to name.
                lock(&self.inodes).adopt(ino, &path);
                match self.writer_attr(ino) {
                    Some(attr) => Ok(attr),
                    None => {
                        self.forget(ino, 1);
                        Err(libc::ENOENT)
                    }
                }
            }
        }
    }

    /// The kernel took a reference to `ino` without a lookup (readdirplus).
    pub fn remember(&self, ino: u64) {
        if let Some(node) = lock(&self.inodes).by_ino.get_mut(&ino) {
            node.lookups += 1;
        }
    }

    /// The kernel dropped `count` references to `ino`.
    pub fn forget(&self, ino: u64, count: u64) {
        // Lock order: a handle's lock is never taken while `inodes` is held
        // (a commit holds its handle and then looks up paths).
        let open = self.is_open(ino);
        let mut inodes = lock(&self.inodes);
        let drop_it = match inodes.by_ino.get_mut(&ino) {
            Some(node) => {
                node.lookups = node.lookups.saturating_sub(count);
                node.lookups == 0
            }
            None => false,
        };
        if drop_it && !open && ino != ROOT_INO {
            if let Some(node) = inodes.by_ino.remove(&ino) {
                if inodes.by_path.get(&node.path) == Some(&ino) {
                    inodes.by_path.remove(&node.path);
                }
                self.forgotten.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Inodes forgotten since the last call (the kernel drops whole trees of
    /// them when it reclaims memory; the mount then hands the freed memory back).
    pub fn take_forgotten(&self) -> u64 {
        self.forgotten.swap(0, Ordering::Relaxed)
    }

    pub fn getattr(&self, ino: u64) -> VfsResult<Attr> {
        if ino == ROOT_INO {
            return Ok(self.root_attr());
        }
        if let Some(attr) = self.writer_attr(ino) {
            return Ok(attr);
        }
        let _names = self.resolving();
        let found = match self.path_of(ino) {
            Ok(path) => self.live(&path).map_err(errno)?,
            Err(_) => None,
        };
        match found {
            Some(version) => Ok(self.shown(ino, &version)),
            None => self.orphan_attr(ino).ok_or(libc::ENOENT),
        }
    }

    /// The attributes of `version` for `ino`, as handed to the kernel now.
    fn shown(&self, ino: u64, version: &Version) -> Attr {
        if let Some(node) = lock(&self.inodes).by_ino.get_mut(&ino) {
            node.described = Some(Seen::of(&version.id));
        }
        self.attr_of(ino, version)
    }

    /// Whether the kernel may hold attributes of `ino` other than `id`'s
    /// (and is told to drop them: [`Opened::stale_attrs`]).
    fn describes_other(&self, ino: u64, id: crate::ids::VersionId) -> bool {
        let mut inodes = lock(&self.inodes);
        let Some(node) = inodes.by_ino.get_mut(&ino) else {
            return false;
        };
        let other = node.described != Some(Seen::of(&id));
        if other {
            // Its next GETATTR (through the handle, or by path) describes it anew.
            node.described = None;
        }
        other
    }

    /// The attributes of an inode that lost its name while it is still open
    /// (`fstat` of an unlinked file or a removed directory), with no links.
    fn orphan_attr(&self, ino: u64) -> Option<Attr> {
        let handles: Vec<Arc<Mutex<Handle>>> = lock(&self.handles).values().cloned().collect();
        let from_file = handles.iter().find_map(|handle| {
            let handle = lock(handle);
            let base = handle.base.as_ref().filter(|_| handle.ino == ino)?;
            Some(self.shown(ino, base))
        });
        let mut attr = from_file
            .or_else(|| self.gone_version(ino).map(|v| self.shown(ino, &v)))
            .or_else(|| {
                lock(&self.open_dirs)
                    .values()
                    .find(|(dir, _)| *dir == ino)
                    .map(|(_, attr)| attr.clone())
            })?;
        attr.nlink = 0;
        Some(attr)
    }

    /// The entries of a directory (without `.` and `..`).
    pub fn readdir(&self, ino: u64) -> VfsResult<Vec<DirEntry>> {
        let path = self.path_of(ino)?;
        // One look at the journal for the whole listing.
        let at = self.versions.fresh();
        let entries = self
            .store
            .list_dir_by(
                &path,
                |child| self.versions.known(child, at),
                |child| self.versions.live_at(&self.store, child, at),
            )
            .map_err(errno)?;
        let mut out = Vec::with_capacity(entries.len());
        {
            let mut inodes = lock(&self.inodes);
            for entry in entries {
                let Ok(child) = path.join(&entry.name) else {
                    continue;
                };
                let child_ino = inodes.ino_for(&child);
                if let Some(node) = inodes.by_ino.get_mut(&child_ino) {
                    node.described = Some(Seen::of(&entry.version.id));
                }
                out.push(DirEntry {
                    attr: self.attr_of(child_ino, &entry.version),
                    name: entry.name,
                });
            }
        }
        let created: Vec<(VPath, u64)> = lock(&self.created)
            .iter()
            .filter(|(p, _)| p.parent().as_ref() == Some(&path))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (child, child_ino) in created {
            let name = child.file_name().unwrap_or_default().to_vec();
            if out.iter().any(|e| e.name == name) {
                continue;
            }
            if let Some(attr) = self.writer_attr(child_ino) {
                out.push(DirEntry { name, attr });
            }
        }
        for entry in &mut out {
            if let Some(attr) = self.writer_attr(entry.attr.ino) {
                entry.attr = attr;
            }
        }
        Ok(out)
    }

    /// Opens a directory for listing.
    pub fn opendir(&self, ino: u64) -> VfsResult<u64> {
        let attr = self.getattr(ino)?;
        if attr.kind != NodeKind::Dir {
            return Err(libc::ENOTDIR);
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.open_dirs).insert(fh, (ino, attr));
        Ok(fh)
    }

    /// The listing of an open directory: read at offset 0, then served from memory.
    pub fn listing(&self, fh: u64, ino: u64, offset: u64) -> VfsResult<Arc<Vec<DirEntry>>> {
        if offset > 0 {
            if let Some(listing) = lock(&self.listings).get(&fh) {
                return Ok(Arc::clone(listing));
            }
        }
        let listing = match self.readdir(ino) {
            Ok(entries) => {
                let listing = Arc::new(entries);
                if let Ok(dir) = self.path_of(ino) {
                    self.ahead.listed(&dir, &listing);
                }
                listing
            }
            // Removed since it was opened: an open directory that is gone lists
            // as empty, as on a local file system.
            Err(libc::ENOENT) => Arc::new(Vec::new()),
            Err(err) => return Err(err),
        };
        lock(&self.listings).insert(fh, Arc::clone(&listing));
        Ok(listing)
    }

    pub fn releasedir(&self, fh: u64) {
        lock(&self.listings).remove(&fh);
        lock(&self.open_dirs).remove(&fh);
    }

    pub fn readlink(&self, ino: u64) -> VfsResult<Vec<u8>> {
        let path = self.path_of(ino)?;
        match self.live(&path).map_err(errno)? {
            Some(version) if version.kind == Kind::Symlink => {
                Ok(version.target.unwrap_or_default())
            }
            Some(_) => Err(libc::EINVAL),
            None => Err(libc::ENOENT),
        }
    }

    fn new_handle(&self, handle: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, Arc::new(Mutex::new(handle)));
        fh
    }

    fn handle(&self, fh: u64) -> VfsResult<Arc<Mutex<Handle>>> {
        lock(&self.handles).get(&fh).cloned().ok_or(libc::EBADF)
    }

    fn new_cache(&self, base: Option<&Version>, size: u64) -> VfsResult<WriteCache> {
        let file = tempfile::tempfile_in(self.store.layout().tmp()).map_err(io_errno)?;
        let block_size = match base {
            Some(base) if base.kind == Kind::File && base.block_size > 0 => base.block_size,
            _ => self.store.config().block_size,
        };
        Ok(WriteCache {
            file,
            size,
            block_size,
            dirty: BTreeSet::new(),
            base_valid: base.map_or(0, |b| b.size.min(size)),
            changed: false,
            direct: false,
        })
    }

    /// Opens a file; `write` when opened for writing, `truncate` for O_TRUNC.
    ///
    /// While writers have the inode open, every open joins its write state
    /// (see [`Dirty`]); otherwise a reader reads the current version and the
    /// first writer starts a write state on top of it.
    pub fn open(&self, ino: u64, write: bool, truncate: bool) -> VfsResult<Opened> {
        let names = self.resolving();
        let path = match self.path_of(ino) {
            Ok(path) => path,
            // Lost its name after the kernel resolved it: open what it showed.
            Err(err) => {
                drop(names);
                return self.open_gone(ino, write).ok_or(err);
            }
        };
        let base = self.openable(&path)?;
        if !write {
            drop(names);
            return match self.join_dirty(ino) {
                Ok(Some(dirty)) => Ok(self.joined(ino, dirty, false)),
                Ok(None) => Ok(self.open_reader(ino, base)),
                // Its last writer left just now: start over from what it committed.
                Err(None) => self.open(ino, write, truncate),
                Err(Some(err)) => Err(err),
            };
        }
        // The kernel takes one backing file per inode: a writer may write its
        // cache directly only when no other handle of the inode is open.
        let passthrough = self.passthrough_enabled() && self.open_handles(ino).is_empty();
        let mut map = lock(&self.dirty);
        if let Some(existing) = map.get(&ino).cloned() {
            drop(map);
            drop(names);
            return match self.join_dirty_state(existing, truncate) {
                Ok(dirty) => Ok(self.joined(ino, dirty, true)),
                Err(None) => self.open(ino, write, truncate),
                Err(Some(err)) => Err(err),
            };
        }
        // Decided again now that no writer can come or go: a writer that
        // committed and left since the first look must not be built over (its
        // bytes would be lost under a version made from the one before).
        let base = self.openable(&path)?;
        let size = if truncate {
            0
        } else {
            base.as_ref().map_or(0, |b| b.size)
        };
        let mut cache = self.new_cache(base.as_ref(), size)?;
        cache.changed = truncate && base.as_ref().is_some_and(|b| b.size > 0);
        let backing = if size == 0 && passthrough {
            self.direct_backing(&mut cache)
        } else {
            None
        };
        let dirty = Arc::new(Mutex::new(Dirty {
            base,
            cache,
            users: 1,
        }));
        map.insert(ino, Arc::clone(&dirty));
        drop(map);
        drop(names);
        self.page_cache_unknown(ino);
        let fh = self.dirty_handle(ino, dirty, true);
        Ok(Opened {
            fh,
            shares_cache: backing.is_some(),
            backing,
            keep_cache: false,
            stale_attrs: false,
        })
    }

    /// Opens an inode that lost its name: a reader of the version it showed
    /// (or of its writers' state, if they still have it open). `None` when it
    /// showed no file or a new writer asks for it (nothing could commit it).
    fn open_gone(&self, ino: u64, write: bool) -> Option<Opened> {
        let version = self.gone_version(ino).filter(|v| v.kind == Kind::File)?;
        if let Ok(Some(dirty)) = self.join_dirty(ino) {
            return Some(self.joined(ino, dirty, write));
        }
        if write {
            return None;
        }
        Some(self.open_reader(ino, Some(version)))
    }

    /// The current version of a file to open at `path` (`None`: created here,
    /// not committed yet).
    fn openable(&self, path: &VPath) -> VfsResult<Option<Version>> {
        let pending = lock(&self.created).contains_key(path);
        match self.current_or_pending(path)? {
            Some(v) if v.kind == Kind::Dir => Err(libc::EISDIR),
            Some(v) if v.kind == Kind::Symlink => Err(libc::ELOOP),
            Some(v) => Ok(Some(v)),
            None if pending => Ok(None),
            None => Err(libc::ENOENT),
        }
    }

    /// The current version of `path`. A file created here is first in
    /// `created` and, once its writer commits, in the store, in that order: so
    /// `created` is asked first, and the store once more when the file was
    /// pending (its commit may have landed between the two looks).
    fn current_or_pending(&self, path: &VPath) -> VfsResult<Option<Version>> {
        let pending = lock(&self.created).contains_key(path);
        match self.live(path).map_err(errno)? {
            None if pending => self.live(path).map_err(errno),
            found => Ok(found),
        }
    }

    /// Joins `ino`'s write state as a reader, if it has one (`Err(None)`: its
    /// last user left meanwhile).
    fn join_dirty(&self, ino: u64) -> Result<Option<Arc<Mutex<Dirty>>>, Option<Errno>> {
        match self.dirty_of(ino) {
            Some(existing) => self.join_dirty_state(existing, false).map(Some),
            None => Ok(None),
        }
    }

    /// Counts one more user of a write state still in use (`Err(None)` when
    /// its last user already left).
    fn join_dirty_state(
        &self,
        dirty: Arc<Mutex<Dirty>>,
        truncate: bool,
    ) -> Result<Arc<Mutex<Dirty>>, Option<Errno>> {
        {
            let mut state = lock(&dirty);
            if state.users == 0 {
                return Err(None);
            }
            if truncate {
                let state = &mut *state;
                self.truncate_cache(state.base.as_ref(), &mut state.cache, 0)
                    .map_err(Some)?;
            }
            state.users += 1;
        }
        Ok(dirty)
    }

    /// A new handle on `ino` that reads (and with `writes`, writes) through its
    /// write state.
    fn dirty_handle(&self, ino: u64, dirty: Arc<Mutex<Dirty>>, writes: bool) -> u64 {
        self.new_handle(Handle {
            ino,
            base: None,
            dirty: Some(dirty),
            writes,
            last_block: None,
            hinted: 0,
        })
    }

    /// A handle on `ino` joined to its write state.
    fn joined(&self, ino: u64, dirty: Arc<Mutex<Dirty>>, writes: bool) -> Opened {
        let direct = lock(&dirty).cache.direct;
        self.page_cache_unknown(ino);
        let fh = self.dirty_handle(ino, dirty, writes);
        Opened {
            fh,
            backing: None,
            shares_cache: direct,
            keep_cache: false,
            stale_attrs: false,
        }
    }

    /// A reader of the committed version `base` (no writers are open).
    fn open_reader(&self, ino: u64, base: Option<Version>) -> Opened {
        let read_of = base.as_ref().map(|v| v.id);
        if read_of.is_none() {
            self.page_cache_unknown(ino);
        }
        let epoch = self.page_cache_epoch(ino);
        let fh = self.new_handle(Handle {
            ino,
            base,
            dirty: None,
            writes: false,
            last_block: None,
            hinted: 0,
        });
        let keep_cache = read_of.is_some_and(|id| self.page_cache_for_read(ino, fh, id, epoch));
        Opened {
            fh,
            backing: None,
            shares_cache: false,
            keep_cache,
            stale_attrs: read_of.is_some_and(|id| self.describes_other(ino, id)),
        }
    }

    fn page_cache_epoch(&self, ino: u64) -> u64 {
        lock(&self.inodes)
            .by_ino
            .get(&ino)
            .map_or(0, |node| node.epoch)
    }

    /// Something may have put other bytes in `ino`'s page cache: the next
    /// read-only open drops it.
    pub fn page_cache_unknown(&self, ino: u64) {
        if let Some(node) = lock(&self.inodes).by_ino.get_mut(&ino) {
            node.cached = None;
            node.epoch += 1;
        }
    }

    /// Whether a read-only open `fh` of version `id` may keep `ino`'s page
    /// cache (it already holds `id`'s bytes); otherwise the kernel drops it and,
    /// when nothing else could refill it with other bytes, it holds `id` from now on.
    fn page_cache_for_read(
        &self,
        ino: u64,
        fh: u64,
        id: crate::ids::VersionId,
        epoch: u64,
    ) -> bool {
        // Handle locks are taken before, never while holding, the inode table.
        let handles: Vec<(u64, Arc<Mutex<Handle>>)> = lock(&self.handles)
            .iter()
            .map(|(fh, handle)| (*fh, Arc::clone(handle)))
            .collect();
        let alone = handles.iter().all(|(other, handle)| {
            let handle = lock(handle);
            *other == fh
                || handle.ino != ino
                || (handle.dirty.is_none() && handle.base.as_ref().is_some_and(|b| b.id == id))
        }) && self.dirty_of(ino).is_none();
        let mut inodes = lock(&self.inodes);
        let Some(node) = inodes.by_ino.get_mut(&ino) else {
            return false;
        };
        if !alone || node.epoch != epoch {
            node.cached = None;
            return false;
        }
        let keep = node.cached == Some(Seen::of(&id));
        node.cached = Some(Seen::of(&id));
        keep
    }

    /// How many files are open through the mount.
    pub fn open_handle_count(&self) -> usize {
        lock(&self.handles).len()
    }

    /// Commits every file that writers have open (before the mount goes away
    /// with them still open); returns how many new versions that made.
    pub fn commit_all(&self) -> usize {
        let open: Vec<(u64, Arc<Mutex<Dirty>>)> = lock(&self.dirty)
            .iter()
            .map(|(ino, dirty)| (*ino, Arc::clone(dirty)))
            .collect();
        let mut made = 0;
        for (ino, dirty) in open {
            let before = lock(&dirty).base.as_ref().map(|b| b.id);
            match self.commit_dirty(ino, &dirty, false) {
                Ok(()) if lock(&dirty).base.as_ref().map(|b| b.id) != before => made += 1,
                Ok(()) => {}
                Err(err) => tracing::error!(ino, errno = err, "committing an open file failed"),
            }
        }
        if made > 0 {
            if let Err(err) = crate::store::sync_filesystem(&self.store.layout().dir) {
                tracing::error!(error = %err, "flushing the store to disk");
            }
        }
        made
    }

    /// The open handles on `ino`.
    pub fn open_handles(&self, ino: u64) -> Vec<u64> {
        lock(&self.handles)
            .iter()
            .filter(|(_, handle)| lock(handle).ino == ino)
            .map(|(fh, _)| *fh)
            .collect()
    }

    /// Lets the kernel write straight into an empty cache file.
    fn direct_backing(&self, cache: &mut WriteCache) -> Option<File> {
        let file = cache.file.try_clone().ok()?;
        cache.direct = true;
        Some(file)
    }

    /// Creates a file (exclusive) and opens it for writing. The new file is
    /// visible in this mount at once and committed on close.
    /// `open(2)` with O_CREAT: creates `name` (with O_EXCL only if it does not
    /// exist), or opens the file another process created a moment before, as
    /// a local file system does.
    pub fn create_or_open(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> VfsResult<(Attr, Opened)> {
        match self.create(parent, name, mode) {
            Err(libc::EEXIST) if flags & libc::O_EXCL == 0 => {
                // The reply hands the kernel a reference, as a lookup does.
                let attr = self.lookup(parent, name)?;
                let access = flags & libc::O_ACCMODE;
                let write = access == libc::O_WRONLY || access == libc::O_RDWR;
                let opened = match attr.kind {
                    NodeKind::Dir => Err(libc::EISDIR),
                    _ => self.open(attr.ino, write, flags & libc::O_TRUNC != 0),
                };
                match opened {
                    Ok(opened) => Ok((self.getattr(attr.ino)?, opened)),
                    Err(err) => {
                        self.forget(attr.ino, 1);
                        Err(err)
                    }
                }
            }
            other => other,
        }
    }

    pub fn create(&self, parent: u64, name: &OsStr, mode: u32) -> VfsResult<(Attr, Opened)> {
        let path = self.child(parent, name)?;
        let parent_path = self.path_of(parent)?;
        if !self.is_dir(&parent_path).map_err(errno)? {
            return Err(libc::ENOENT);
        }
        if self.live(&path).map_err(errno)?.is_some() || lock(&self.created).contains_key(&path) {
            return Err(libc::EEXIST);
        }
        let ino = lock(&self.inodes).referenced(&path);
        let mut cache = self.new_cache(None, 0)?;
        cache.changed = true;
        let backing = if self.passthrough_enabled() {
            self.direct_backing(&mut cache)
        } else {
            None
        };
        let base = Version {
            id: crate::ids::VersionId {
                secs: 0,
                nanos: 0,
                major: None,
            },
            kind: Kind::File,
            path: path.clone(),
            node: self.store.config().node,
            parents: Vec::new(),
            from: None,
            conflict_of: None,
            size: 0,
            mode: mode & 0o7777,
            mtime: Mtime::now(),
            block_size: cache.block_size,
            target: None,
            hashes: Vec::new(),
        };
        lock(&self.created).insert(path, ino);
        let dirty = Arc::new(Mutex::new(Dirty {
            base: Some(base),
            cache,
            users: 1,
        }));
        lock(&self.dirty).insert(ino, Arc::clone(&dirty));
        let fh = self.dirty_handle(ino, dirty, true);
        let attr = self.writer_attr(ino).unwrap_or(Attr {
            ino,
            kind: NodeKind::File,
            size: 0,
            perm: (mode & 0o7777) as u16,
            mtime: SystemTime::now(),
            nlink: 1,
        });
        self.page_cache_unknown(ino);
        Ok((
            attr,
            Opened {
                fh,
                shares_cache: backing.is_some(),
                backing,
                keep_cache: false,
                stale_attrs: false,
            },
        ))
    }

    /// Reads from an open file: through its inode's write state while writers
    /// have it open, else from the version the handle opened.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> VfsResult<Vec<u8>> {
        let handle = self.handle(fh)?;
        let mut handle = lock(&handle);
        if let Some(dirty) = handle.dirty.clone().or_else(|| self.dirty_of(handle.ino)) {
            drop(handle);
            let mut dirty = lock(&dirty);
            let dirty = &mut *dirty;
            Self::sync_direct(&mut dirty.cache)?;
            let end = dirty.cache.size;
            if offset >= end {
                return Ok(Vec::new());
            }
            let mut buf = vec![0u8; (u64::from(size)).min(end - offset) as usize];
            self.read_cached(dirty.base.as_ref(), &dirty.cache, offset, &mut buf)?;
            return Ok(buf);
        }
        let end = handle.base.as_ref().map_or(0, |b| b.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (u64::from(size)).min(end - offset) as usize];
        let n = self.read_base(&mut handle, offset, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Reads a committed version, keeping the last raw block file open so a
    /// sequential reader opens each block once.
    fn read_base(&self, handle: &mut Handle, offset: u64, buf: &mut [u8]) -> VfsResult<usize> {
        let base = handle.base.as_ref().ok_or(libc::EIO)?;
        let bs = u64::from(base.block_size.max(1));
        let index = (offset / bs) as usize;
        let within = offset % bs;
        let block_len = base.block_len(index);
        let fits = within as usize + buf.len() <= block_len;
        if fits && index < base.hashes.len() {
            let cached = matches!(&handle.last_block, Some((i, _)) if *i == index);
            let sequential = match &handle.last_block {
                Some((i, _)) => *i + 1 == index,
                None => index == 0,
            };
            if !cached {
                if handle.last_block.is_none() && index == 0 {
                    // The kernel's page cache missed this file's start: others
                    // in its directory may be next (see open_ahead).
                    if let Ok(path) = self.path_of(handle.ino) {
                        self.ahead.reading(&path);
                    }
                }
                handle.last_block = self
                    .store
                    .blocks()
                    .locate(&base.hashes[index], Some(block_len))
                    .filter(|located| !located.compressed)
                    .and_then(|located| File::open(located.path).ok())
                    .map(|file| {
                        // Read the rest of this block in one go, not request by request.
                        use std::os::fd::AsRawFd;
                        // SAFETY: an advisory call on a descriptor we own.
                        unsafe {
                            libc::posix_fadvise(
                                file.as_raw_fd(),
                                within as libc::off_t,
                                0,
                                libc::POSIX_FADV_WILLNEED,
                            );
                        }
                        (index, file)
                    });
                // A sequential reader will want the next blocks: start reading
                // them (a random reader would only waste the disk's time).
                // Blocks hinted at earlier steps are not hinted again.
                if sequential {
                    let from = handle.hinted.max(index + 1);
                    let to = (index + 1 + PREFETCH_BLOCKS).min(base.hashes.len());
                    for next in base.hashes.get(from..to).unwrap_or_default() {
                        self.store.blocks().prefetch(next);
                    }
                    handle.hinted = handle.hinted.max(to);
                } else {
                    handle.hinted = 0;
                }
            }
            if let Some((_, file)) = &handle.last_block {
                if read_exact_at(file, buf, within).is_ok() {
                    return Ok(buf.len());
                }
            }
        }
        let base = handle.base.as_ref().ok_or(libc::EIO)?;
        self.store.read_at(base, offset, buf).map_err(errno)
    }

    /// Reads through a write cache: dirty blocks from the cache file, the rest
    /// from the base version (zeros past what of it is still valid).
    fn read_cached(
        &self,
        base: Option<&Version>,
        cache: &WriteCache,
        offset: u64,
        buf: &mut [u8],
    ) -> VfsResult<()> {
        let bs = u64::from(cache.block_size);
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let index = pos / bs;
            let block_end = (index + 1) * bs;
            let n = ((block_end - pos) as usize).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            if cache.dirty.contains(&index) {
                read_exact_at(&cache.file, out, pos)?;
            } else {
                out.fill(0);
                if let Some(base) = base {
                    if pos < cache.base_valid {
                        let valid = ((cache.base_valid - pos) as usize).min(n);
                        let got = self
                            .store
                            .read_at(base, pos, &mut out[..valid])
                            .map_err(errno)?;
                        if got < valid {
                            return Err(libc::EIO);
                        }
                    }
                }
            }
            done += n;
        }
        Ok(())
    }

    /// For a cache the kernel writes directly: take its size from the file and
    /// treat every block as written.
    fn sync_direct(cache: &mut WriteCache) -> VfsResult<()> {
        if !cache.direct {
            return Ok(());
        }
        cache.size = cache.file.metadata().map_err(io_errno)?.len();
        let count = Version::block_count(cache.size, cache.block_size);
        cache.dirty = (0..count).collect();
        cache.base_valid = 0;
        cache.changed = true;
        Ok(())
    }

    /// Decides how an open handle is served, given whether its inode has a
    /// backing file attached (a passthrough writer's cache, by an earlier
    /// handle still open).
    pub fn mode(&self, ino: u64, opened: Opened, attached: bool) -> Mode {
        let fh = opened.fh;
        if attached {
            let direct = !opened.shares_cache;
            if direct {
                self.passthrough_refused(fh);
            }
            self.page_cache_unknown(ino);
            return Mode::Share { direct };
        }
        match opened.backing {
            Some(file) if opened.shares_cache && self.open_handles(ino) == [fh] => {
                self.page_cache_unknown(ino);
                Mode::Attach(file)
            }
            _ => {
                self.passthrough_refused(fh);
                Mode::Cached {
                    keep_cache: opened.keep_cache,
                }
            }
        }
    }

    /// The adapter could not set up passthrough: writes come through `write` after all.
    pub fn passthrough_refused(&self, fh: u64) {
        let dirty = self.handle(fh).ok().and_then(|h| lock(&h).dirty.clone());
        if let Some(dirty) = dirty {
            // The cache file may hold the kernel's writes (earlier handles had it
            // attached): take all of it as written before serving it here.
            let mut state = lock(&dirty);
            if let Err(err) = Self::sync_direct(&mut state.cache) {
                tracing::error!(fh, errno = err, "reading a write cache's size");
            }
            state.cache.direct = false;
        }
    }

    /// Copies block `index` of the base into the cache file before a partial write.
    fn materialize(
        &self,
        base: Option<&Version>,
        cache: &mut WriteCache,
        index: u64,
    ) -> VfsResult<()> {
        if cache.dirty.contains(&index) {
            return Ok(());
        }
        let bs = u64::from(cache.block_size);
        let start = index * bs;
        let len = bs as usize;
        let mut data = vec![0u8; len];
        if start < cache.base_valid {
            let valid = ((cache.base_valid - start) as usize).min(len);
            if let Some(base) = base {
                let got = self
                    .store
                    .read_at(base, start, &mut data[..valid])
                    .map_err(errno)?;
                if got < valid {
                    return Err(libc::EIO);
                }
            }
        }
        cache.file.write_all_at(&data, start).map_err(io_errno)?;
        cache.dirty.insert(index);
        Ok(())
    }

    /// Writes into an open file's cache.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> VfsResult<u32> {
        let dirty = self.writers_state(fh)?;
        let mut guard = lock(&dirty);
        let state = &mut *guard;
        let base = state.base.as_ref();
        let cache = &mut state.cache;
        if data.is_empty() {
            return Ok(0);
        }
        let bs = u64::from(cache.block_size);
        let end = offset + data.len() as u64;
        let first = offset / bs;
        let last = (end - 1) / bs;
        for index in first..=last {
            let start = index * bs;
            let covers = offset <= start && end >= start + bs;
            if !covers {
                self.materialize(base, cache, index)?;
            } else {
                cache.dirty.insert(index);
            }
        }
        cache.file.write_all_at(data, offset).map_err(io_errno)?;
        cache.size = cache.size.max(end);
        cache.changed = true;
        Ok(data.len() as u32)
    }

    /// The write state of writer handle `fh` (EBADF for a reader).
    fn writers_state(&self, fh: u64) -> VfsResult<Arc<Mutex<Dirty>>> {
        let handle = self.handle(fh)?;
        let handle = lock(&handle);
        match &handle.dirty {
            Some(dirty) if handle.writes => Ok(Arc::clone(dirty)),
            _ => Err(libc::EBADF),
        }
    }

    /// Truncates (or extends with zeros) an open file or a path. Through a
    /// path, the new size is committed at once, with whatever open writers of
    /// the file wrote so far.
    pub fn truncate(&self, ino: u64, fh: Option<u64>, size: u64) -> VfsResult<()> {
        if let Some(dirty) = fh.and_then(|fh| self.writers_state(fh).ok()) {
            let mut state = lock(&dirty);
            let state = &mut *state;
            return self.truncate_cache(state.base.as_ref(), &mut state.cache, size);
        }
        // No writable handle given: open one (joining any open writers), truncate, commit.
        let fh = self.open(ino, true, false)?.fh;
        let result = self
            .writers_state(fh)
            .and_then(|dirty| {
                let mut state = lock(&dirty);
                let state = &mut *state;
                self.truncate_cache(state.base.as_ref(), &mut state.cache, size)
            })
            .and_then(|_| self.commit(fh, false));
        let released = self.release(fh);
        result.and(released)
    }

    /// Truncates (or extends with zeros) a write cache over `base`.
    fn truncate_cache(
        &self,
        base: Option<&Version>,
        cache: &mut WriteCache,
        size: u64,
    ) -> VfsResult<()> {
        Self::sync_direct(cache)?;
        if size == cache.size {
            return Ok(());
        }
        let bs = u64::from(cache.block_size);
        if size < cache.size {
            // Keep the partial last block's bytes below `size`; forget blocks past it.
            if size % bs != 0 {
                self.materialize(base, cache, size / bs)?;
            }
            let keep_below = size.div_ceil(bs);
            cache.dirty.retain(|index| *index < keep_below);
            cache.base_valid = cache.base_valid.min(size);
            cache.file.set_len(size).map_err(io_errno)?;
        } else if cache.size % bs != 0 {
            // Growing: the old last block must read zeros past the old end.
            self.materialize(base, cache, cache.size / bs)?;
            cache.base_valid = cache.base_valid.min(cache.size);
        } else {
            cache.base_valid = cache.base_valid.min(cache.size);
        }
        // A cache the kernel writes directly is the content: its length is the size.
        let len = if cache.direct {
            size
        } else {
            size.max(cache.size)
        };
        cache.file.set_len(len).map_err(io_errno)?;
        cache.size = size;
        cache.changed = true;
        Ok(())
    }

    /// Commits the writes of writer handle `fh`'s inode as a new version (if
    /// anything changed): every writer's, as they share one write state.
    pub fn commit(&self, fh: u64, durable: bool) -> VfsResult<()> {
        let Ok(dirty) = self.writers_state(fh) else {
            return Ok(());
        };
        let ino = lock(&*self.handle(fh)?).ino;
        self.commit_dirty(ino, &dirty, durable)
    }

    /// Commits `ino`'s write state as a new version (if anything changed).
    fn commit_dirty(&self, ino: u64, dirty: &Mutex<Dirty>, durable: bool) -> VfsResult<()> {
        let mut guard = lock(dirty);
        let state = &mut *guard;
        let cache = &mut state.cache;
        Self::sync_direct(cache)?;
        if !cache.changed {
            if durable {
                crate::store::sync_filesystem(&self.store.layout().dir).map_err(errno)?;
            }
            return Ok(());
        }
        let path = match self.path_of(ino) {
            Ok(path) => path,
            // Unlinked while open: nothing to commit to.
            Err(_) => return Ok(()),
        };
        let still_named = lock(&self.inodes).by_path.get(&path) == Some(&ino) || path.is_root();
        if !still_named {
            return Ok(());
        }
        let held = self.store.writer_lock().map_err(errno)?;
        let base = state.base.clone();
        let bs = cache.block_size;
        let count = crate::store::version::Version::block_count(cache.size, bs);
        let mut writer = self.store.block_writer(&held);
        if !durable {
            writer = writer.lazy();
        }
        let mut hashes = Vec::with_capacity(count as usize);
        let mut buf = vec![0u8; bs as usize];
        for index in 0..count {
            let start = index * u64::from(bs);
            let len = (cache.size - start).min(u64::from(bs)) as usize;
            let reusable = !cache.dirty.contains(&index)
                && base.as_ref().is_some_and(|b| {
                    b.kind == Kind::File
                        && (index as usize) < b.hashes.len()
                        && b.block_len(index as usize) == len
                        && start + len as u64 <= cache.base_valid
                });
            if reusable {
                if let Some(base) = &base {
                    hashes.push(base.hashes[index as usize]);
                    continue;
                }
            }
            let data = &mut buf[..len];
            self.read_cached(base.as_ref(), cache, start, data)?;
            let hash = BlockHash::of(data);
            writer.put(&hash, data).map_err(errno)?;
            hashes.push(hash);
        }
        writer.finish().map_err(errno)?;
        let mode = base.as_ref().map_or(0o644, |b| b.mode);
        let unchanged = base
            .as_ref()
            .is_some_and(|b| b.id.secs > 0 && b.size == cache.size && b.hashes == hashes);
        if unchanged {
            // The cache holds exactly the base: all of it reads from the base
            // now (a cache the kernel writes directly re-marks itself on use).
            cache.dirty.clear();
            cache.base_valid = cache.size;
            cache.changed = false;
            return Ok(());
        }
        if self
            .live(&path)
            .map_err(errno)?
            .is_some_and(|v| v.kind == Kind::Dir)
        {
            return Err(libc::EISDIR);
        }
        let content = Content {
            kind: Kind::File,
            size: cache.size,
            mode,
            mtime: Mtime::now(),
            block_size: bs,
            target: None,
            hashes,
            from: None,
            conflict_of: None,
        };
        let version = self.store.commit(&path, content, durable).map_err(errno)?;
        self.made_here(&version);
        lock(&self.created).remove(&path);
        // Later reads and writes build on what was just committed.
        cache.dirty.clear();
        cache.base_valid = version.size;
        cache.changed = false;
        state.base = Some(version);
        Ok(())
    }

    /// Closes an open file (after a final commit by `flush`). The last handle
    /// of a write state ends it: handles opened before it read what it
    /// committed last from then on.
    pub fn release(&self, fh: u64) -> VfsResult<()> {
        let Some(handle) = lock(&self.handles).remove(&fh) else {
            return Ok(());
        };
        let (ino, writes, dirty) = {
            let handle = lock(&handle);
            (handle.ino, handle.writes, handle.dirty.clone())
        };
        let Some(dirty) = dirty else {
            return Ok(());
        };
        // `flush` committed at close. A cache file the kernel writes directly
        // is committed there only: this handle's release may come after
        // another handle's writes, and re-hashing it here would be wasted.
        let direct = lock(&dirty).cache.direct;
        let result = if writes && !direct {
            self.commit_dirty(ino, &dirty, false)
        } else {
            Ok(())
        };
        let last = {
            let mut map = lock(&self.dirty);
            let mut state = lock(&dirty);
            state.users = state.users.saturating_sub(1);
            let last = state.users == 0;
            if last && map.get(&ino).is_some_and(|d| Arc::ptr_eq(d, &dirty)) {
                map.remove(&ino);
            }
            last
        };
        if last {
            let committed = lock(&dirty).base.clone().filter(|b| b.id.secs > 0);
            if let Some(committed) = committed {
                let handles: Vec<Arc<Mutex<Handle>>> =
                    lock(&self.handles).values().cloned().collect();
                for handle in handles {
                    let mut handle = lock(&handle);
                    if handle.ino == ino && handle.dirty.is_none() {
                        handle.base = Some(committed.clone());
                        handle.last_block = None;
                        handle.hinted = 0;
                    }
                }
            }
            self.page_cache_unknown(ino);
            if let Ok(path) = self.path_of(ino) {
                let mut created = lock(&self.created);
                if created.get(&path) == Some(&ino) {
                    created.remove(&path);
                }
            }
        }
        result
    }

    pub fn mkdir(&self, parent: u64, name: &OsStr, mode: u32) -> VfsResult<Attr> {
        let path = self.child(parent, name)?;
        let version = self.store.mkdir(&path, mode).map_err(errno)?;
        self.made_here(&version);
        // The reply hands the kernel a reference, as a lookup does.
        let ino = lock(&self.inodes).referenced(&path);
        Ok(self.attr_of(ino, &version))
    }

    pub fn symlink(&self, parent: u64, name: &OsStr, target: &[u8]) -> VfsResult<Attr> {
        let path = self.child(parent, name)?;
        let version = self.store.symlink(&path, target).map_err(errno)?;
        self.made_here(&version);
        // The reply hands the kernel a reference, as a lookup does.
        let ino = lock(&self.inodes).referenced(&path);
        Ok(self.attr_of(ino, &version))
    }

    /// `path` was removed: its inode loses its name, and keeps showing
    /// `version` to whoever still holds it.
    fn forget_name(&self, path: &VPath, version: Option<Version>) {
        let mut inodes = lock(&self.inodes);
        if let Some(ino) = inodes.by_path.remove(path) {
            inodes.orphan(ino, version);
        }
    }

    /// The version an inode that lost its name still shows.
    fn gone_version(&self, ino: u64) -> Option<Version> {
        lock(&self.inodes)
            .by_ino
            .get(&ino)
            .and_then(|node| node.gone.as_deref().cloned())
    }

    pub fn unlink(&self, parent: u64, name: &OsStr) -> VfsResult<()> {
        let path = self.child(parent, name)?;
        if let Some(ino) = lock(&self.created).remove(&path) {
            let _ = ino;
            if self.live(&path).map_err(errno)?.is_none() {
                self.forget_name(&path, None);
                return Ok(());
            }
        }
        let version = match self.live(&path).map_err(errno)? {
            Some(v) if v.kind == Kind::Dir => return Err(libc::EISDIR),
            Some(v) => v,
            None => return Err(libc::ENOENT),
        };
        let tombstone = self.store.remove(&path).map_err(errno)?;
        self.made_here(&tombstone);
        self.forget_name(&path, Some(version));
        Ok(())
    }

    pub fn rmdir(&self, parent: u64, name: &OsStr) -> VfsResult<()> {
        let path = self.child(parent, name)?;
        let version = match self.live(&path).map_err(errno)? {
            Some(v) if v.kind != Kind::Dir => return Err(libc::ENOTDIR),
            Some(v) => v,
            None => return Err(libc::ENOENT),
        };
        // A file created in it and still open is not in the store yet, but the
        // directory is not empty (removing it would lose that file at close).
        let holds_pending = lock(&self.created)
            .keys()
            .any(|pending| pending != &path && pending.starts_with(&path));
        if holds_pending {
            return Err(libc::ENOTEMPTY);
        }
        let tombstone = self.store.remove(&path).map_err(errno)?;
        self.made_here(&tombstone);
        self.forget_name(&path, Some(version));
        Ok(())
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
        exchange: bool,
    ) -> VfsResult<()> {
        if exchange {
            return Err(libc::EINVAL);
        }
        let from = self.child(parent, name)?;
        let to = self.child(new_parent, new_name)?;
        // A file still being written through this mount: commit it first (one
        // write state for all its handles). Bound first: a commit takes the
        // `created` lock too.
        // Files created below a renamed directory too, or they would stay
        // filed under the old path until their close.
        let pending: Vec<u64> = lock(&self.created)
            .iter()
            .filter(|(path, _)| path.starts_with(&from))
            .map(|(_, ino)| *ino)
            .collect();
        for ino in pending {
            if let Some(dirty) = self.dirty_of(ino) {
                self.commit_dirty(ino, &dirty, false)?;
            }
        }
        // What the replaced target showed: readers that resolved the name just
        // before still open and read it (an atomic replace, as on a local disk).
        let _names = self
            .names
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let replaced = self.live(&to).map_err(errno)?;
        self.store.rename(&from, &to, no_replace).map_err(errno)?;
        lock(&self.inodes).rename(&from, &to, replaced);
        Ok(())
    }

    /// chmod / utimens / truncate by path.
    pub fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        mode: Option<u32>,
        size: Option<u64>,
        mtime: Option<SystemTime>,
    ) -> VfsResult<Attr> {
        if let Some(size) = size {
            self.truncate(ino, fh, size)?;
        }
        if mode.is_some() || mtime.is_some() {
            let path = self.path_of(ino)?;
            if path.is_root() {
                return Err(libc::EPERM);
            }
            // Open writers' writes first, so the attribute change applies on top of them.
            if let Some(dirty) = self.dirty_of(ino) {
                self.commit_dirty(ino, &dirty, false)?;
            }
            let version = self
                .store
                .set_attrs(
                    &path,
                    mode.map(|m| m & 0o7777),
                    mtime.map(Mtime::from_system),
                )
                .map_err(errno)?;
            self.made_here(&version);
            // Open writers keep the new mode for their next commit.
            if let Some(dirty) = self.dirty_of(ino) {
                if let Some(base) = lock(&dirty).base.as_mut() {
                    base.mode = version.mode;
                    base.mtime = version.mtime;
                }
            }
        }
        self.getattr(ino)
    }

    pub fn statfs(&self) -> VfsResult<FsStats> {
        let stat = nix::sys::statvfs::statvfs(&self.store.layout().dir).map_err(|e| e as i32)?;
        Ok(FsStats {
            blocks: stat.blocks() as u64,
            bfree: stat.blocks_free() as u64,
            bavail: stat.blocks_available() as u64,
            files: stat.files() as u64,
            ffree: stat.files_free() as u64,
            bsize: stat.block_size() as u32,
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
        if lock(&self.own).remove(&id) {
            return None;
        }
        Some(self.changed(path))
    }

    /// Paths that changed (from the journal): the inodes to invalidate.
    pub fn changed(&self, path: &VPath) -> Invalidation {
        let ino = self.ino_of(path);
        if let Some(ino) = ino {
            self.page_cache_unknown(ino);
        }
        let entry = path
            .parent()
            .and_then(|parent| self.ino_of(&parent))
            .map(|parent_ino| (parent_ino, path.file_name().unwrap_or_default().to_vec()));
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
            .map_err(errno)
    }

    /// Reads a whole file (for tests and tools).
    pub fn read_whole(&self, path: &VPath) -> VfsResult<Vec<u8>> {
        let version = self.live(path).map_err(errno)?.ok_or(libc::ENOENT)?;
        let mut out = Vec::new();
        self.store.copy_to(&version, &mut out).map_err(errno)?;
        Ok(out)
    }
}

fn io_errno(err: std::io::Error) -> Errno {
    StoreError::io_errno(&err)
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> VfsResult<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = file
            .read_at(&mut buf[done..], offset + done as u64)
            .map_err(io_errno)?;
        if n == 0 {
            // A sparse tail past the cache file's end reads as zeros.
            buf[done..].fill(0);
            return Ok(());
        }
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vfs() -> (tempfile::TempDir, Vfs) {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::store::scratch_spec(dir.path());
        let store = Store::open_spec(&spec).unwrap();
        (dir, Vfs::new(Arc::new(store)))
    }

    /// A committed file, its inode, and the vfs with passthrough on.
    fn committed_file(vfs: &Vfs, name: &str, data: &[u8]) -> u64 {
        vfs.enable_passthrough();
        let path = VPath::root().join(name.as_bytes()).unwrap();
        vfs.write_whole(&path, data).unwrap();
        vfs.lookup(ROOT_INO, OsStr::new(name)).unwrap().ino
    }

    fn mode_of(vfs: &Vfs, ino: u64, write: bool, attached: bool) -> (u64, Mode) {
        let opened = vfs.open(ino, write, false).unwrap();
        let fh = opened.fh;
        (fh, vfs.mode(ino, opened, attached))
    }

    #[test]
    fn readers_never_attach_a_store_block() {
        let (_dir, vfs) = vfs();
        for (name, len) in [("small", 100), ("big", 3 * 4096 + 1)] {
            let ino = committed_file(&vfs, name, &vec![7u8; len]);
            let (fh, mode) = mode_of(&vfs, ino, false, false);
            assert!(matches!(mode, Mode::Cached { .. }), "{name}: {mode:?}");
            vfs.release(fh).unwrap();
        }
    }

    #[test]
    fn later_opens_share_a_passthrough_writers_cache() {
        let (_dir, vfs) = vfs();
        vfs.enable_passthrough();
        let (attr, created) = vfs.create(ROOT_INO, OsStr::new("new"), 0o644).unwrap();
        let writer = created.fh;
        let Mode::Attach(file) = vfs.mode(attr.ino, created, false) else {
            panic!("a new file's writer was not given its cache file");
        };
        std::io::Write::write_all(&mut &file, b"written by the kernel").unwrap();
        // A reader opened now shares the cache as it is (the bytes of the
        // open file, as on a local disk).
        let (reader, mode) = mode_of(&vfs, attr.ino, false, true);
        assert!(matches!(mode, Mode::Share { direct: false }), "{mode:?}");
        assert_eq!(vfs.read(reader, 0, 100).unwrap(), b"written by the kernel");
        vfs.release(reader).unwrap();
        vfs.commit(writer, false).unwrap();
        vfs.release(writer).unwrap();
        assert_eq!(
            vfs.read_whole(&VPath::root().join(b"new").unwrap())
                .unwrap(),
            b"written by the kernel"
        );
    }

    #[test]
    fn an_open_that_must_not_use_the_attached_file_gets_direct_io() {
        let (_dir, vfs) = vfs();
        let ino = committed_file(&vfs, "f", b"committed");
        // The kernel still has a writer's cache attached (its release is on
        // its way): this reader must not read that cache.
        let (reader, mode) = mode_of(&vfs, ino, false, true);
        assert!(matches!(mode, Mode::Share { direct: true }), "{mode:?}");
        assert_eq!(vfs.read(reader, 0, 100).unwrap(), b"committed");
    }

    #[test]
    fn nothing_attaches_while_a_handle_is_served_through_the_page_cache() {
        let (_dir, vfs) = vfs();
        let ino = committed_file(&vfs, "f", b"bytes");
        // A reader is served through the page cache.
        let (_reader, mode) = mode_of(&vfs, ino, false, false);
        assert!(matches!(mode, Mode::Cached { .. }), "{mode:?}");
        // So a truncating writer may not attach its cache file now.
        let opened = vfs.open(ino, true, true).unwrap();
        let mode = vfs.mode(ino, opened, false);
        assert!(matches!(mode, Mode::Cached { .. }), "{mode:?}");
        // Alone, it may.
        let other = committed_file(&vfs, "g", b"bytes");
        let opened = vfs.open(other, true, true).unwrap();
        assert!(opened.backing.is_some());
        assert!(matches!(vfs.mode(other, opened, false), Mode::Attach(_)));
    }

    #[test]
    fn create_write_close_read() {
        let (_dir, vfs) = vfs();
        let (attr, opened) = vfs.create(ROOT_INO, OsStr::new("a.txt"), 0o600).unwrap();
        let fh = opened.fh;
        assert_eq!(
            vfs.lookup(ROOT_INO, OsStr::new("a.txt")).unwrap().ino,
            attr.ino
        );
        vfs.write(fh, 0, b"hello world").unwrap();
        assert_eq!(vfs.getattr(attr.ino).unwrap().size, 11);
        vfs.commit(fh, false).unwrap();
        vfs.release(fh).unwrap();
        let fh = vfs.open(attr.ino, false, false).unwrap().fh;
        assert_eq!(vfs.read(fh, 6, 100).unwrap(), b"world");
        assert_eq!(vfs.getattr(attr.ino).unwrap().perm, 0o600);
    }

    #[test]
    fn the_journal_follower_skips_what_this_mount_made() {
        let (_dir, vfs) = vfs();
        let attr = vfs.mkdir(ROOT_INO, OsStr::new("d"), 0o755).unwrap();
        let path = VPath::parse(OsStr::new("/d")).unwrap();
        let made = vfs.store().current(&path).unwrap().unwrap();
        assert_eq!(vfs.changed_elsewhere(made.id, &path), None);
        // Another process's change to the same path is invalidated.
        let other = vfs.store().set_attrs(&path, Some(0o700), None).unwrap();
        let (ino, entry) = vfs.changed_elsewhere(other.id, &path).unwrap();
        assert_eq!(ino, Some(attr.ino));
        assert_eq!(entry, Some((ROOT_INO, b"d".to_vec())));
    }

    #[test]
    fn page_cache_is_kept_only_for_the_version_it_holds() {
        let (_dir, vfs) = vfs();
        let path = VPath::parse(OsStr::new("/p")).unwrap();
        vfs.write_whole(&path, b"one").unwrap();
        let ino = vfs.lookup(ROOT_INO, OsStr::new("p")).unwrap().ino;
        let open_read = || {
            let opened = vfs.open(ino, false, false).unwrap();
            vfs.release(opened.fh).unwrap();
            opened.keep_cache
        };
        // The first open fills the cache; the next one of the same version keeps it.
        assert!(!open_read());
        assert!(open_read());
        // A reader open at the same time as a writer never vouches for the cache,
        // and the writer's bytes mean the next reader starts afresh.
        let writer = vfs.open(ino, true, false).unwrap().fh;
        assert!(!open_read());
        vfs.write(writer, 0, b"two").unwrap();
        vfs.release(writer).unwrap();
        assert!(!open_read());
        assert!(open_read());
        // A change from elsewhere (the journal follower calls `changed`).
        vfs.write_whole(&path, b"three").unwrap();
        vfs.changed(&path);
        assert!(!open_read());
        // A new version not announced yet: the version id differs, so no keep.
        vfs.write_whole(&path, b"four").unwrap();
        assert!(!open_read());
        assert!(open_read());
        let fh = vfs.open(ino, false, false).unwrap().fh;
        assert_eq!(vfs.read(fh, 0, 10).unwrap(), b"four");
        vfs.release(fh).unwrap();
    }

    #[test]
    fn partial_writes_keep_the_rest_and_rehash_only_touched_blocks() {
        let (_dir, vfs) = vfs();
        let data: Vec<u8> = (0..10 * 4096 + 7).map(|i| (i % 251) as u8).collect();
        let path = VPath::from_escaped("big").unwrap();
        let before = vfs.write_whole(&path, &data).unwrap();
        let ino = vfs.lookup(ROOT_INO, OsStr::new("big")).unwrap().ino;
        let fh = vfs.open(ino, true, false).unwrap().fh;
        vfs.write(fh, 4096 * 3 + 10, b"XYZ").unwrap();
        vfs.release(fh).unwrap();
        let after = vfs.store().live(&path).unwrap().unwrap();
        let changed: Vec<usize> = (0..after.hashes.len())
            .filter(|i| after.hashes[*i] != before.hashes[*i])
            .collect();
        assert_eq!(changed, vec![3]);
        let mut expect = data.clone();
        expect[4096 * 3 + 10..4096 * 3 + 13].copy_from_slice(b"XYZ");
        assert_eq!(vfs.read_whole(&path).unwrap(), expect);
    }

    #[test]
    fn truncate_down_then_up_reads_zeros() {
        let (_dir, vfs) = vfs();
        let path = VPath::from_escaped("t").unwrap();
        vfs.write_whole(&path, &[7u8; 9000]).unwrap();
        let ino = vfs.lookup(ROOT_INO, OsStr::new("t")).unwrap().ino;
        vfs.setattr(ino, None, None, Some(100), None).unwrap();
        vfs.setattr(ino, None, None, Some(5000), None).unwrap();
        let got = vfs.read_whole(&path).unwrap();
        assert_eq!(got.len(), 5000);
        assert!(got[..100].iter().all(|b| *b == 7));
        assert!(got[100..].iter().all(|b| *b == 0));
    }

    #[test]
    fn unlinked_open_file_stays_readable() {
        let (_dir, vfs) = vfs();
        let path = VPath::from_escaped("gone").unwrap();
        vfs.write_whole(&path, b"still here").unwrap();
        let ino = vfs.lookup(ROOT_INO, OsStr::new("gone")).unwrap().ino;
        let fh = vfs.open(ino, false, false).unwrap().fh;
        vfs.unlink(ROOT_INO, OsStr::new("gone")).unwrap();
        assert_eq!(vfs.lookup(ROOT_INO, OsStr::new("gone")), Err(libc::ENOENT));
        assert_eq!(vfs.read(fh, 0, 100).unwrap(), b"still here");
        assert_eq!(vfs.getattr(ino).unwrap().nlink, 0);
        vfs.release(fh).unwrap();
    }

    #[test]
    fn a_write_cache_the_kernel_wrote_keeps_its_bytes_when_served_here_later() {
        let (_dir, vfs) = vfs();
        vfs.enable_passthrough();
        let (attr, created) = vfs.create(ROOT_INO, OsStr::new("f"), 0o644).unwrap();
        let (ino, first) = (attr.ino, created.fh);
        let Mode::Attach(file) = vfs.mode(ino, created, false) else {
            panic!("a new file's writer was not given its cache file");
        };
        let data: Vec<u8> = (0..3 * 4096 + 5).map(|i| (i % 251) as u8).collect();
        std::io::Write::write_all(&mut &file, &data).unwrap();
        // Another writer shares the attached file; both close (FLUSH commits,
        // the second time with nothing new).
        let opened = vfs.open(ino, true, false).unwrap();
        let second = opened.fh;
        assert!(matches!(
            vfs.mode(ino, opened, true),
            Mode::Share { direct: false }
        ));
        vfs.commit(first, false).unwrap();
        vfs.commit(second, false).unwrap();
        vfs.release(first).unwrap();
        // The kernel already let go of the backing file, but the second
        // handle's RELEASE is still on its way: a new open joins the write
        // state and is served here.
        for write in [false, true] {
            let opened = vfs.open(ino, write, false).unwrap();
            let fh = opened.fh;
            assert!(matches!(vfs.mode(ino, opened, false), Mode::Cached { .. }));
            assert_eq!(vfs.read(fh, 0, data.len() as u32 + 10).unwrap(), data);
            if write {
                vfs.write(fh, 0, b"Z").unwrap();
                vfs.commit(fh, false).unwrap();
            }
            vfs.release(fh).unwrap();
        }
        vfs.release(second).unwrap();
        let mut want = data.clone();
        want[0] = b'Z';
        let path = VPath::from_escaped("f").unwrap();
        assert_eq!(vfs.read_whole(&path).unwrap(), want);
    }

    #[test]
    fn a_file_replaced_by_rename_still_opens_by_inode_with_its_old_bytes() {
        let (_dir, vfs) = vfs();
        vfs.write_whole(&VPath::from_escaped("target").unwrap(), b"old target")
            .unwrap();
        vfs.write_whole(&VPath::from_escaped("tmp").unwrap(), b"new")
            .unwrap();
        // A reader resolved the name just before the replace.
        let old = vfs.lookup(ROOT_INO, OsStr::new("target")).unwrap().ino;
        vfs.rename(
            ROOT_INO,
            OsStr::new("tmp"),
            ROOT_INO,
            OsStr::new("target"),
            false,
            false,
        )
        .unwrap();
        let attr = vfs.getattr(old).unwrap();
        assert_eq!((attr.size, attr.nlink), (10, 0));
        let fh = vfs.open(old, false, false).unwrap().fh;
        assert_eq!(vfs.read(fh, 0, 100).unwrap(), b"old target");
        vfs.release(fh).unwrap();
        // Nothing can write it any more; the name shows the new file.
        assert_eq!(vfs.open(old, true, false).err(), Some(libc::ENOENT));
        let now = vfs.lookup(ROOT_INO, OsStr::new("target")).unwrap();
        assert_ne!(now.ino, old);
        assert_eq!(now.size, 3);
        // Once the kernel forgets it, it is gone.
        vfs.forget(old, 1);
        assert_eq!(vfs.getattr(old), Err(libc::ENOENT));
    }

    #[test]
    fn every_open_reads_the_version_its_inode_was_described_with_across_renames_over() {
        // The atomic-save pattern: a writer renames a new file over `cur` again
        // and again while readers resolve `cur`, open its inode and read it. The
        // size a lookup gave the kernel for an inode must be the size of what an
        // open of that inode reads, or the kernel cuts reads short (or pads them).
        let (_dir, vfs) = vfs();
        let vfs = Arc::new(vfs);
        let cur = VPath::from_escaped("cur").unwrap();
        vfs.write_whole(&cur, b"first").unwrap();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (vfs, done) = (Arc::clone(&vfs), Arc::clone(&done));
                std::thread::spawn(move || {
                    let mut mismatches = Vec::new();
                    while !done.load(Ordering::Relaxed) {
                        let attr = vfs.lookup(ROOT_INO, OsStr::new("cur")).unwrap();
                        let opened = vfs.open(attr.ino, false, false).unwrap();
                        let read = vfs.read(opened.fh, 0, 1 << 20).unwrap();
                        vfs.release(opened.fh).unwrap();
                        vfs.forget(attr.ino, 1);
                        if read.len() as u64 != attr.size {
                            mismatches.push((attr.size, read.len()));
                        }
                    }
                    mismatches
                })
            })
            .collect();
        let tmp = VPath::from_escaped("tmp").unwrap();
        for i in 0..100usize {
            vfs.write_whole(&tmp, &vec![b'x'; 1 + (i * 7919) % 9000])
                .unwrap();
            let (tmp_name, cur_name) = (OsStr::new("tmp"), OsStr::new("cur"));
            vfs.rename(ROOT_INO, tmp_name, ROOT_INO, cur_name, false, false)
                .unwrap();
        }
        done.store(true, Ordering::Relaxed);
        for reader in readers {
            let mismatches = reader.join().unwrap();
            assert!(
                mismatches.is_empty(),
                "(size described, bytes read): {mismatches:?}"
            );
        }
    }

    #[test]
    fn an_open_of_a_version_the_kernel_has_not_been_told_of_drops_its_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::store::scratch_spec(dir.path());
        let vfs = Vfs::new(Arc::new(Store::open_spec(&spec).unwrap()));
        let path = VPath::from_escaped("f").unwrap();
        vfs.write_whole(&path, b"old").unwrap();
        let ino = vfs.lookup(ROOT_INO, OsStr::new("f")).unwrap().ino;
        // The kernel was told of this version: nothing to drop.
        let opened = vfs.open(ino, false, false).unwrap();
        assert!(!opened.stale_attrs);
        vfs.release(opened.fh).unwrap();
        // Another process of the node (a second mount, `globofs put`) commits a
        // longer version; the kernel still holds the old size.
        let elsewhere = Store::open_spec(&spec).unwrap();
        elsewhere
            .write_file(
                &path,
                &mut Cursor::new(b"new and longer"),
                crate::store::Attrs::default(),
                false,
            )
            .unwrap();
        let opened = vfs.open(ino, false, false).unwrap();
        assert!(
            opened.stale_attrs,
            "the kernel would read the new bytes cut at 3"
        );
        // The GETATTR the kernel then sends gives the new size.
        assert_eq!(vfs.getattr(ino).unwrap().size, 14);
        assert_eq!(vfs.read(opened.fh, 0, 100).unwrap(), b"new and longer");
        let again = vfs.open(ino, false, false).unwrap();
        assert!(!again.stale_attrs);
        vfs.release(opened.fh).unwrap();
        vfs.release(again.fh).unwrap();
    }

    #[test]
    fn handles_share_one_write_state_until_the_last_one_goes() {
        let (_dir, vfs) = vfs();
        let (attr, created) = vfs.create(ROOT_INO, OsStr::new("f"), 0o644).unwrap();
        let ino = attr.ino;
        let writer = created.fh;
        vfs.write(writer, 0, b"one two").unwrap();
        vfs.commit(writer, false).unwrap();
        // The kernel sends RELEASE in the background: a reader may open first.
        let reader = vfs.open(ino, false, false).unwrap().fh;
        let second = vfs.open(ino, true, false).unwrap().fh;
        vfs.write(second, 4, b"TWO").unwrap();
        assert_eq!(vfs.read(reader, 0, 100).unwrap(), b"one TWO");
        vfs.release(writer).unwrap();
        // The second writer's bytes are still there for every handle.
        assert_eq!(vfs.read(reader, 0, 100).unwrap(), b"one TWO");
        assert_eq!(vfs.getattr(ino).unwrap().size, 7);
        vfs.release(second).unwrap();
        let path = VPath::from_escaped("f").unwrap();
        assert_eq!(vfs.read_whole(&path).unwrap(), b"one TWO");
        // Unlinked while the reader still holds the state: no links.
        vfs.unlink(ROOT_INO, OsStr::new("f")).unwrap();
        assert_eq!(vfs.getattr(ino).unwrap().nlink, 0);
        assert_eq!(vfs.read(reader, 0, 100).unwrap(), b"one TWO");
        vfs.release(reader).unwrap();
        // The kernel still holds the inode until it forgets it.
        assert_eq!(vfs.getattr(ino).unwrap().nlink, 0);
        vfs.forget(ino, 1);
        assert_eq!(vfs.getattr(ino), Err(libc::ENOENT));
    }
}
