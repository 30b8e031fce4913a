//! Open files: the handle table, open, create, and release (the last handle of
//! a write state ends it).

use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::Vfs;
use super::attrs::Made;
use super::error::{VfsError, VfsResult};
use super::locks::{Rank, Ranked, lock};
use super::privileges;
use super::types::{Attr, Caller, NodeKind, Opened};
use super::write_cache::{Dirty, WriteCache};
use crate::layout::VPath;
use crate::store::{Kind, Mtime, Version};

pub(super) struct Handle {
    pub(super) ino: u64,
    /// The committed version this handle reads while its inode has no writers.
    pub(super) base: Option<Version>,
    /// The inode's write state, for handles opened while it had one.
    pub(super) dirty: Option<Arc<Ranked<Dirty>>>,
    /// Opened for writing: only these handles write and commit.
    pub(super) writes: bool,
    /// The block file read last (sequential reads reuse its descriptor).
    pub(super) last_block: Option<(usize, crate::store::OpenBlock)>,
    /// The block open before `last_block`: the kernel's read-ahead sends
    /// requests of two neighbouring blocks interleaved, and a block read
    /// whole and checked (`verify_reads`) must not be read again each time.
    pub(super) prev_block: Option<(usize, crate::store::OpenBlock)>,
    /// Blocks below this index were hinted to the kernel (sequential readers).
    pub(super) hinted: usize,
}

/// How often a create that found the name taken, then gone, tries again.
const CREATE_TRIES: u32 = 4;

impl Vfs {
    pub(super) fn new_handle(&self, handle: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, Arc::new(Ranked::new(Rank::Handle, handle)));
        fh
    }

    pub(super) fn handle(&self, fh: u64) -> VfsResult<Arc<Ranked<Handle>>> {
        lock(&self.handles)
            .get(&fh)
            .cloned()
            .ok_or_else(|| VfsError::new(libc::EBADF, format!("no open file handle {fh}")))
    }

    /// Opens a file; `write` when opened for writing, `truncate` for O_TRUNC.
    /// An inode whose file is gone (removed elsewhere since the kernel
    /// looked it up) answers `ENOENT`; the adapter tells the kernel `ESTALE`
    /// for it, so it looks the name up again once.
    ///
    /// While writers have the inode open, every open joins its write state
    /// (see [`Dirty`]); otherwise a reader reads the current version and the
    /// first writer starts a write state on top of it.
    pub fn open(&self, ino: u64, write: bool, truncate: bool) -> VfsResult<Opened> {
        self.open_as(ino, write, truncate, true)
    }

    /// Opens a file as open(2) with `flags` asks. Only a write-only opener
    /// may write its cache file directly (passthrough): the kernel's writes
    /// then tell nothing of where they went, so each commit hashes the whole
    /// file again. A database, a log or a journal, opened read-write and
    /// fsynced after a few bytes, has its writes come here, where the pages
    /// they touch are known (see `write_cache.rs`).
    pub fn open_flags(&self, ino: u64, flags: i32) -> VfsResult<Opened> {
        let access = flags & libc::O_ACCMODE;
        let write = access == libc::O_WRONLY || access == libc::O_RDWR;
        let truncate = flags & libc::O_TRUNC != 0;
        // Nor an appender: its appends must stay movable onto a version
        // that replaces its base meanwhile (rebase.rs), and the kernel's
        // writes into an attached file cannot be moved.
        let append = flags & libc::O_APPEND != 0;
        self.open_as(ino, write, truncate, access == libc::O_WRONLY && !append)
    }

    fn open_as(&self, ino: u64, write: bool, truncate: bool, direct_ok: bool) -> VfsResult<Opened> {
        if let Some(answer) = self.past_open(ino, write) {
            return answer;
        }
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
            return match self.join_dirty(ino, false) {
                Ok(Some(dirty)) => Ok(self.joined(ino, dirty, false)),
                Ok(None) => Ok(self.open_reader(ino, base)),
                // Its last writer left just now: start over from what it committed.
                Err(None) => self.open_as(ino, write, truncate, direct_ok),
                Err(Some(err)) => Err(err),
            };
        }
        // The kernel takes one backing file per inode: a writer may write its
        // cache directly only when no other handle of the inode is open, and
        // not into a file whose writes must drop privileges (privileges.rs).
        let passthrough = direct_ok
            && self.passthrough_enabled()
            && self.open_handles(ino).is_empty()
            && !base.as_ref().is_some_and(privileges::held_by);
        let mut map = lock(&self.dirty);
        if let Some(existing) = map.get(&ino).cloned() {
            drop(map);
            drop(names);
            return match self.join_dirty_state(existing, truncate, true) {
                Ok(dirty) => Ok(self.joined(ino, dirty, true)),
                Err(None) => self.open_as(ino, write, truncate, direct_ok),
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
        let base_id = base.as_ref().map(|b| b.id);
        let mut cache = WriteCache::new(&self.store, base.as_ref(), size)?;
        if truncate && base.is_some() {
            // O_TRUNC of an existing file moves its mtime and ctime, even
            // when it was empty already (as Linux does).
            cache.mark_changed();
        }
        let backing = if size == 0 && passthrough {
            cache.attach_direct()
        } else {
            None
        };
        let dirty = Arc::new(Ranked::new(
            Rank::WriteState,
            Dirty {
                base,
                cache,
                users: 1,
                writers: 1,
                rebased: false,
            },
        ));
        map.insert(ino, Arc::clone(&dirty));
        drop(map);
        drop(names);
        self.page_cache_unknown(ino);
        let fh = self.dirty_handle(ino, dirty, true);
        // The kernel places an O_APPEND write at the size it holds: when it
        // holds another version's (one another mount replaced), it must ask
        // again, or the write lands inside or past this base's bytes.
        let stale_attrs = base_id.is_some_and(|id| self.describes_other(ino, id));
        Ok(Opened {
            fh,
            shares_cache: backing.is_some(),
            backing,
            keep_cache: false,
            stale_attrs,
        })
    }

    /// Opens an inode that lost its name: a reader of the version it showed
    /// (or of its writers' state, if they still have it open). `None` when it
    /// showed no file or a new writer asks for it (nothing could commit it).
    pub(super) fn open_gone(&self, ino: u64, write: bool) -> Option<Opened> {
        let version = self.gone_version(ino).filter(|v| v.kind == Kind::File)?;
        if let Ok(Some(dirty)) = self.join_dirty(ino, write) {
            return Some(self.joined(ino, dirty, write));
        }
        if write {
            return None;
        }
        Some(self.open_reader(ino, Some(version)))
    }

    /// The current version of a file to open at `path` (`None`: created here,
    /// not committed yet).
    pub(super) fn openable(&self, path: &VPath) -> VfsResult<Option<Version>> {
        let pending = lock(&self.created).contains_key(path);
        match self.current_or_pending(path)? {
            Some(v) if v.kind == Kind::Dir => Err(VfsError::new(
                libc::EISDIR,
                format!("{path}: is a directory"),
            )),
            Some(v) if v.kind == Kind::Symlink => Err(VfsError::new(
                libc::ELOOP,
                format!("{path}: is a symbolic link"),
            )),
            Some(v) => Ok(Some(v)),
            None if pending => Ok(None),
            None => Err(VfsError::new(libc::ENOENT, format!("{path}: no such file"))),
        }
    }

    /// The current version of `path`. A file created here is first in
    /// `created` and, once its writer commits, in the store, in that order: so
    /// `created` is asked first, and the store once more when the file was
    /// pending (its commit may have landed between the two looks).
    pub(super) fn current_or_pending(&self, path: &VPath) -> VfsResult<Option<Version>> {
        let pending = lock(&self.created).contains_key(path);
        match self.live(path)? {
            None if pending => self.live(path).map_err(VfsError::from),
            found => Ok(found),
        }
    }

    /// Joins `ino`'s write state as a reader, if it has one (`Err(None)`: its
    /// last user left meanwhile).
    pub(super) fn join_dirty(
        &self,
        ino: u64,
        writes: bool,
    ) -> Result<Option<Arc<Ranked<Dirty>>>, Option<VfsError>> {
        match self.dirty_of(ino) {
            Some(existing) => self.join_dirty_state(existing, false, writes).map(Some),
            None => Ok(None),
        }
    }

    /// Counts one more user (a writer with `writes`) of a write state still
    /// in use (`Err(None)` when its last user already left).
    pub(super) fn join_dirty_state(
        &self,
        dirty: Arc<Ranked<Dirty>>,
        truncate: bool,
        writes: bool,
    ) -> Result<Arc<Ranked<Dirty>>, Option<VfsError>> {
        {
            let mut state = lock(&dirty);
            if state.users == 0 {
                return Err(None);
            }
            if truncate {
                let state = &mut *state;
                state
                    .cache
                    .truncate(&self.store, state.base.as_ref(), 0)
                    .map_err(Some)?;
            }
            state.users += 1;
            state.writers += usize::from(writes);
        }
        Ok(dirty)
    }

    /// A new handle on `ino` that reads (and with `writes`, writes) through its
    /// write state.
    pub(super) fn dirty_handle(&self, ino: u64, dirty: Arc<Ranked<Dirty>>, writes: bool) -> u64 {
        self.new_handle(Handle {
            ino,
            base: None,
            dirty: Some(dirty),
            writes,
            last_block: None,
            prev_block: None,
            hinted: 0,
        })
    }

    /// A handle on `ino` joined to its write state.
    pub(super) fn joined(&self, ino: u64, dirty: Arc<Ranked<Dirty>>, writes: bool) -> Opened {
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
    pub(super) fn open_reader(&self, ino: u64, base: Option<Version>) -> Opened {
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
            prev_block: None,
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

    /// How many files are open through the mount.
    pub fn open_handle_count(&self) -> usize {
        lock(&self.handles).len()
    }

    /// The open handles on `ino`.
    pub fn open_handles(&self, ino: u64) -> Vec<u64> {
        lock(&self.handles)
            .iter()
            .filter(|(_, handle)| lock(handle).ino == ino)
            .map(|(fh, _)| *fh)
            .collect()
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
        self.create_or_open_as(parent, name, mode, flags, self.mount_user())
    }

    /// [`Vfs::create_or_open`] for `caller`, who owns what is created.
    pub fn create_or_open_as(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        caller: Caller,
    ) -> VfsResult<(Attr, Opened)> {
        // As in `open_flags`: an appender's cache is never attached.
        let write_only = flags & libc::O_ACCMODE == libc::O_WRONLY && flags & libc::O_APPEND == 0;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.create_with(parent, name, mode, caller, write_only) {
                Err(err) if err.errno() == libc::EEXIST && flags & libc::O_EXCL == 0 => {}
                other => return other,
            }
            // The reply hands the kernel a reference, as a lookup does.
            let attr = match self.lookup(parent, name) {
                // Removed (by another mount of the node) since the create
                // found it: create it after all, as a local file system would.
                Err(err) if err.errno() == libc::ENOENT && tries < CREATE_TRIES => continue,
                found => found?,
            };
            let opened = match attr.kind {
                NodeKind::Dir => Err(VfsError::new(
                    libc::EISDIR,
                    format!("inode {}: is a directory", attr.ino),
                )),
                _ => self.open_flags(attr.ino, flags),
            };
            match opened {
                Ok(opened) => return Ok((self.getattr(attr.ino)?, opened)),
                Err(err) => {
                    self.forget(attr.ino, 1);
                    if !(err.errno() == libc::ENOENT && tries < CREATE_TRIES) {
                        return Err(err);
                    }
                }
            }
        }
    }

    pub fn create(&self, parent: u64, name: &OsStr, mode: u32) -> VfsResult<(Attr, Opened)> {
        self.create_as(parent, name, mode, self.mount_user())
    }

    /// Creates a file owned by `caller` (exclusive) and opens it for writing.
    pub fn create_as(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> VfsResult<(Attr, Opened)> {
        self.create_with(parent, name, mode, caller, true)
    }

    /// [`Vfs::create_as`]; `direct_ok`: the opener may write the cache file
    /// directly (see [`Vfs::open_flags`]).
    fn create_with(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        caller: Caller,
        direct_ok: bool,
    ) -> VfsResult<(Attr, Opened)> {
        let path = self.child(parent, name)?;
        let parent_path = self.path_of(parent)?;
        let (posix, mode) = self.new_owner(&parent_path, caller, mode, Made::File);
        if !self.is_dir(&parent_path)? {
            return Err(VfsError::new(
                libc::ENOENT,
                format!("{parent_path}: no such directory"),
            ));
        }
        if self.live(&path)?.is_some() || lock(&self.created).contains_key(&path) {
            return Err(VfsError::new(
                libc::EEXIST,
                format!("{path}: already exists"),
            ));
        }
        let ino = lock(&self.inodes).referenced(&path);
        let mut cache = WriteCache::new(&self.store, None, 0)?;
        cache.changed = true;
        let backing =
            if direct_ok && self.passthrough_enabled() && !privileges::held(mode, &posix.xattrs) {
                cache.attach_direct()
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
            posix,
        };
        lock(&self.created).insert(path, ino);
        let dirty = Arc::new(Ranked::new(
            Rank::WriteState,
            Dirty {
                base: Some(base),
                cache,
                users: 1,
                writers: 1,
                rebased: false,
            },
        ));
        lock(&self.dirty).insert(ino, Arc::clone(&dirty));
        let fh = self.dirty_handle(ino, dirty, true);
        let attr = self.writer_attr(ino).unwrap_or_else(|| {
            let now = SystemTime::now();
            Attr {
                ino,
                kind: NodeKind::File,
                size: 0,
                perm: (mode & 0o7777) as u16,
                mtime: now,
                nlink: 1,
                uid: caller.uid,
                gid: caller.gid,
                atime: now,
                ctime: now,
                rdev: 0,
                blocks: 0,
            }
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

    /// Closes an open file (after a final commit by `flush`). The last handle
    /// of a write state ends it: handles opened before it read what it
    /// committed last from then on.
    pub fn release(&self, fh: u64) -> VfsResult<()> {
        if self.past_release(fh) {
            return Ok(());
        }
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
        // RELEASE comes after close returned, while other writers of the
        // state may be in the middle of a write(2) split into several
        // requests: only the last writer commits here (what came in after
        // its flush, such as mmap pages written back); others commit at
        // their own close (QA: a version held half a pwrite).
        let (direct, last_writer) = {
            let state = lock(&dirty);
            (state.cache.direct, state.writers <= 1)
        };
        let mut result = if writes && !direct && last_writer {
            self.commit_dirty(ino, &dirty, false)
        } else {
            Ok(())
        };
        // Attribute changes fold into a state only while it has a writer;
        // one folded in since the flush (or the commit above) is this
        // writer's to commit, direct or not. It is looked for under the lock
        // that drops the writer, so none comes in between (a commit that
        // finds the file unlinked clears nothing: three tries at most).
        let mut tries = 0;
        let last = loop {
            let mut map = lock(&self.dirty);
            let mut state = lock(&dirty);
            if writes
                && tries < 3
                && result.is_ok()
                && state.writers <= 1
                && state.cache.attrs_changed().is_some()
            {
                drop(state);
                drop(map);
                tries += 1;
                result = self.commit_dirty(ino, &dirty, false);
                continue;
            }
            state.users = state.users.saturating_sub(1);
            if writes {
                state.writers = state.writers.saturating_sub(1);
            }
            let last = state.users == 0;
            if last && map.get(&ino).is_some_and(|d| Arc::ptr_eq(d, &dirty)) {
                map.remove(&ino);
            }
            break last;
        };
        if last {
            let committed = lock(&dirty).base.clone().filter(|b| b.id.secs > 0);
            if let Some(committed) = committed {
                let handles: Vec<Arc<Ranked<Handle>>> =
                    lock(&self.handles).values().cloned().collect();
                for handle in handles {
                    let mut handle = lock(&handle);
                    if handle.ino == ino && handle.dirty.is_none() {
                        handle.base = Some(committed.clone());
                        handle.last_block = None;
                        handle.prev_block = None;
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
}
