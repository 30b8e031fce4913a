//! Writes, truncation and commits: a write state becomes a new version.

use std::sync::Arc;

use super::error::{VfsError, VfsResult};
use super::locks::Ranked;
use super::locks::lock;
use super::write_cache::{Dirty, WriteCache};
use super::{Vfs, WriteAt, Written};
use crate::store::{Attrs, Content, Kind, Mtime, StoreError, Version, WriterLock};

impl Vfs {
    /// Commits every file that writers have open (before the mount goes away
    /// with them still open); returns how many new versions that made.
    pub fn commit_all(&self) -> usize {
        let open: Vec<(u64, Arc<Ranked<Dirty>>)> = lock(&self.dirty)
            .iter()
            .map(|(ino, dirty)| (*ino, Arc::clone(dirty)))
            .collect();
        let mut made = 0;
        for (ino, dirty) in open {
            let before = lock(&dirty).base.as_ref().map(|b| b.id);
            match self.commit_dirty(ino, &dirty, false) {
                Ok(()) if lock(&dirty).base.as_ref().map(|b| b.id) != before => made += 1,
                Ok(()) => {}
                Err(err) => tracing::error!(
                    ino,
                    errno = err.errno(),
                    "committing an open file failed: {err}"
                ),
            }
        }
        if made > 0 {
            if let Err(err) = crate::store::sync_filesystem(&self.store.layout().dir) {
                tracing::error!(error = %err, "flushing the store to disk");
            }
        }
        made
    }

    /// Writes into an open file's cache at `offset`.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> VfsResult<u32> {
        Ok(self.write_at(fh, WriteAt::Offset(offset), data)?.count)
    }

    /// Writes into an open file's cache where `at` says.
    pub fn write_at(&self, fh: u64, at: WriteAt, data: &[u8]) -> VfsResult<Written> {
        let dirty = self.writers_state(fh)?;
        let mut guard = lock(&dirty);
        let state = &mut *guard;
        state
            .cache
            .write_at(&self.store, state.base.as_ref(), at, data)
    }

    /// The write state of writer handle `fh` (EBADF for a reader).
    pub(super) fn writers_state(&self, fh: u64) -> VfsResult<Arc<Ranked<Dirty>>> {
        let handle = self.handle(fh)?;
        let handle = lock(&handle);
        match &handle.dirty {
            Some(dirty) if handle.writes => Ok(Arc::clone(dirty)),
            _ => Err(VfsError::new(
                libc::EBADF,
                format!("file handle {fh} is not open for writing"),
            )),
        }
    }

    /// Truncates (or extends with zeros) an open file or a path. Through a
    /// path, the new size is committed at once, with whatever open writers of
    /// the file wrote so far.
    pub fn truncate(&self, ino: u64, fh: Option<u64>, size: u64) -> VfsResult<()> {
        if let Some(dirty) = fh.and_then(|fh| self.writers_state(fh).ok()) {
            let mut state = lock(&dirty);
            let state = &mut *state;
            return state.cache.truncate(&self.store, state.base.as_ref(), size);
        }
        // No writable handle given: open one (joining any open writers), truncate, commit.
        let fh = self.open(ino, true, false)?.fh;
        let result = self
            .writers_state(fh)
            .and_then(|dirty| {
                let mut state = lock(&dirty);
                let state = &mut *state;
                state.cache.truncate(&self.store, state.base.as_ref(), size)
            })
            .and_then(|_| self.commit(fh, false));
        let released = self.release(fh);
        result.and(released)
    }

    /// Commits the writes of writer handle `fh`'s inode as a new version (if
    /// anything changed): every writer's, as they share one write state.
    pub fn commit(&self, fh: u64, durable: bool) -> VfsResult<()> {
        self.commit_changed(fh, durable).map(|_| ())
    }

    /// [`Vfs::commit`], saying whether a new version was made (its ctime,
    /// the version's id, is not what the kernel was told while writing).
    pub fn commit_changed(&self, fh: u64, durable: bool) -> VfsResult<bool> {
        let Ok(dirty) = self.writers_state(fh) else {
            if durable {
                // An fsync through a handle that never wrote: what it shows
                // may have been committed lazily by an earlier close.
                let ino = lock(&*self.handle(fh)?).ino;
                if let Some(version) = self.path_of(ino).ok().and_then(|p| self.live(&p).ok()?) {
                    self.store.make_durable(std::slice::from_ref(&version))?;
                }
            }
            return Ok(false);
        };
        let ino = lock(&*self.handle(fh)?).ino;
        let before = lock(&dirty).base.as_ref().map(|b| b.id);
        self.commit_dirty(ino, &dirty, durable)?;
        Ok(lock(&dirty).base.as_ref().map(|b| b.id) != before)
    }

    /// Commits `ino`'s write state as a new version (if anything changed).
    pub(super) fn commit_dirty(
        &self,
        ino: u64,
        dirty: &Ranked<Dirty>,
        durable: bool,
    ) -> VfsResult<()> {
        let mut guard = lock(dirty);
        let state = &mut *guard;
        let cache = &mut state.cache;
        cache.sync_direct()?;
        if !cache.changed {
            if durable {
                self.make_base_durable(state.base.as_ref())?;
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
        let held = self.store.writer_lock()?;
        let Some((content, mut cut)) = self.build_content(&held, state, durable)? else {
            return Ok(());
        };
        let version = if self.live(&path)?.is_some_and(|v| v.kind == Kind::Dir) {
            // The name became a directory elsewhere while this file was
            // open: its bytes go to a conflict copy beside it.
            self.store
                .commit_beside_directory(&held, &path, content, durable)?
        } else {
            // Built on the base: if someone replaced it meanwhile (another
            // mount, a peer's version applied), the two are concurrent,
            // unless the state only appended and what replaced the base
            // extends it (rebase.rs): then the appends are built again on
            // top of that, with the path's log still locked.
            let mut rebase = |current: &Version| -> Result<Option<Content>, StoreError> {
                let rebuilt = self
                    .rebase_onto(&path, state, current)
                    .and_then(|moved| match moved {
                        true => self.build_content(&held, state, durable),
                        false => Ok(None),
                    })
                    .map_err(|err| err.into_store(&path))?;
                Ok(rebuilt.map(|(content, rebuilt_cut)| {
                    state.rebased = true;
                    cut = rebuilt_cut;
                    content
                }))
            };
            let made =
                self.store
                    .commit_each_rebasing(&held, &path, content, durable, &mut rebase)?;
            // The versions at a hard-linked file's other names too: the
            // kernel knows the change (one inode).
            for version in &made {
                self.made_here(version);
            }
            crate::store::links::first(made)?
        };
        lock(&self.created).remove(&path);
        // Later reads and writes build on what was just committed.
        let cache = &mut state.cache;
        if cut != cache.block_size {
            cache.recut(cut);
        }
        cache.committed(version.size);
        state.base = Some(version);
        Ok(())
    }

    /// The content `state` commits as (`None`: exactly its base, nothing
    /// to commit), and the block size it is cut in.
    fn build_content(
        &self,
        held: &WriterLock,
        state: &mut Dirty,
        durable: bool,
    ) -> VfsResult<Option<(Content, u32)>> {
        let cache = &mut state.cache;
        let base = state.base.clone();
        let bs = cache.block_size;
        let count = crate::store::version::Version::block_count(cache.size, bs);
        // The store's one write pipeline: blocks not written here are named
        // again by hash, written ones are cut, hashed and stored.
        // Lazy blocks even for an fsync: its durable point copies them into
        // the redo record or flushes them in place (FORMAT §14).
        // An fsync of a file cut in big blocks re-cuts it in small ones
        // (FORMAT §14): each later fsync then stores a small block again,
        // not a big one, for a few changed bytes.
        let cut = fsync_cut(durable, bs, cache.size);
        let mut file = self.store.file_write(held, false).with_block_size(cut);
        let mut buf = vec![0u8; cache.size.min(u64::from(cut)) as usize];
        // For an fsync, what changed in each block since the base, so the
        // redo record holds those pages and need not compare whole blocks.
        let mut hints = Vec::new();
        if cut != bs {
            let count = crate::store::version::Version::block_count(cache.size, cut);
            for index in 0..count {
                let start = index * u64::from(cut);
                let len = (cache.size - start).min(u64::from(cut)) as usize;
                let data = &mut buf[..len];
                cache.read(&self.store, base.as_ref(), start, data)?;
                file.push(data)?;
            }
        } else {
            for index in 0..count {
                let start = index * u64::from(bs);
                let len = (cache.size - start).min(u64::from(bs)) as usize;
                if cache.reuses_base(base.as_ref(), index, len) {
                    if let Some(base) = &base {
                        file.reuse(base.hashes[index as usize], len);
                        continue;
                    }
                }
                if cache.is_hole_past_base(index) {
                    // Past what the base still holds and never written: zeros,
                    // stored as a hole without reading or hashing them.
                    file.push_zero(len)?;
                    continue;
                }
                let data = &mut buf[..len];
                cache.read(&self.store, base.as_ref(), start, data)?;
                if crate::store::sparse::is_zero(data) {
                    file.push_zero(len)?;
                    continue;
                }
                let base_block = base
                    .as_ref()
                    .filter(|b| b.kind == Kind::File && b.block_size == bs)
                    .and_then(|b| b.hashes.get(index as usize).copied());
                let (hash, changed) = cache.commit_block(index, data, durable, base_block);
                file.push_hashed(hash, data)?;
                if let Some(hint) =
                    changed.and_then(|c| delta_hint(cache, base.as_ref(), index, data, c))
                {
                    hints.push((hash, hint));
                }
            }
        }
        for (hash, hint) in hints {
            self.store.note_delta(hash, hint);
        }
        // Nothing to write only when the bytes are the base's and nothing
        // touched them: a write or truncation that leaves the same bytes
        // still moves the mtime, as on a local file system.
        let unchanged = cache.last_change().is_none()
            && cache.attrs_changed().is_none()
            && base.as_ref().is_some_and(|b| {
                b.id.secs > 0 && b.size == cache.size && b.hashes.as_slice() == file.hashes()
            });
        // The mtime is when the content last changed, not when it is committed
        // (a file created and closed unwritten keeps the time it was made).
        let mtime = match (cache.last_change(), base.as_ref()) {
            (Some(time), _) => Mtime::from_system(time),
            (None, Some(base)) => base.mtime,
            (None, None) => Mtime::now(),
        };
        let attrs = Attrs {
            mode: base.as_ref().map_or(0o644, |b| b.mode),
            mtime,
        };
        let mut content = file.finish(attrs)?;
        if unchanged {
            // The cache holds exactly the base: all of it reads from the base
            // now (a cache the kernel writes directly re-marks itself on use).
            cache.committed(cache.size);
            if durable {
                self.make_base_durable(base.as_ref())?;
            }
            return Ok(None);
        }
        // Owners, xattrs and the rest stay as they were (a new file's base
        // carries its creator).
        content.posix = base.as_ref().map(|b| b.posix.clone()).unwrap_or_default();
        // Built on the base: if someone replaced it meanwhile (another
        // mount, a peer's version applied), the two are concurrent.
        content.based_on = base.as_ref().filter(|b| b.id.secs > 0).map(|b| b.id);
        content.new_file = content.based_on.is_none();
        Ok(Some((content, cut)))
    }

    /// An fsync with nothing new to commit: the version it already made
    /// (maybe lazily, at a close) becomes durable.
    fn make_base_durable(&self, base: Option<&Version>) -> VfsResult<()> {
        if let Some(base) = base.filter(|b| b.id.secs > 0) {
            self.store.make_durable(std::slice::from_ref(base))?;
        }
        Ok(())
    }

    /// An fsync of a directory: its entries' changes (and every other lazy
    /// commit of this mount) become durable.
    pub fn fsyncdir(&self) -> VfsResult<()> {
        self.store.make_lazy_durable()?;
        Ok(())
    }
}

/// The largest block an fsync leaves a file cut in: a database or log
/// fsynced after every few bytes written then stores and hashes blocks of
/// this size, not the volume's (FORMAT §14).
pub const FSYNC_BLOCK: u32 = 64 * 1024;
/// Files up to this size are re-cut at an fsync (once: the new versions
/// keep the small blocks); bigger ones keep theirs.
pub const RECUT_MAX: u64 = 64 << 20;

/// The block size a commit cuts the file in: its own, or [`FSYNC_BLOCK`]
/// for an fsync of a file of at most [`RECUT_MAX`] bytes in bigger blocks.
fn fsync_cut(durable: bool, block_size: u32, size: u64) -> u32 {
    if durable && block_size > FSYNC_BLOCK && block_size % FSYNC_BLOCK == 0 && size <= RECUT_MAX {
        FSYNC_BLOCK
    } else {
        block_size
    }
}

/// The delta hint of block `index` (now `data`), whose bytes differ from
/// the same block of `base` only in `changed`; `None` when there is no such
/// block to build on.
fn delta_hint(
    cache: &WriteCache,
    base: Option<&Version>,
    index: u64,
    data: &[u8],
    changed: Vec<std::ops::Range<usize>>,
) -> Option<crate::store::DeltaHint> {
    let base = base.filter(|b| b.kind == Kind::File && b.id.secs > 0)?;
    if base.block_size != cache.block_size || index as usize >= base.hashes.len() {
        return None;
    }
    // More than half changed: the record holds the whole block anyway.
    let changed_bytes: usize = changed.iter().map(|r| r.len()).sum();
    if changed_bytes * 2 > data.len() {
        return None;
    }
    Some(crate::store::DeltaHint {
        base: base.hashes[index as usize],
        base_len: base.block_len(index as usize),
        ranges: changed
            .into_iter()
            .map(|range| (range.start, data[range].to_vec()))
            .collect(),
    })
}
