//! The write-back cache of a file open for writing: a sparse private file
//! holding the blocks written since the last commit, at their offsets, over the
//! committed version they apply to (the base). Reads through it take written
//! blocks from the cache file and the rest from the base; a partial write first
//! copies the block it lands in from the base. A commit leaves the blocks it
//! stored in the file (`present`: the new base's bytes), so the next partial
//! write there copies nothing, and their hash states ([`super::ladder`]) let
//! the next commit hash only what changed after them. It also notes which
//! pages changed since the last commit, so a durable commit can record just
//! those (FORMAT §14). It knows the store only to read the base and to find
//! its scratch directory; committing is [`super::write`]'s.

use std::collections::BTreeSet;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::time::SystemTime;

use super::error::{VfsError, VfsResult, io_error};
use super::ladder::Ladders;
use crate::ids::BlockHash;
use crate::store::{Kind, Store, Version};

/// Granularity of the changed pages noted between commits.
pub(super) const PAGE: u64 = 4096;

/// The write-back state of an open file.
pub(super) struct WriteCache {
    /// Sparse private file holding the dirty blocks at their offsets.
    pub(super) file: File,
    pub(super) size: u64,
    pub(super) block_size: u32,
    pub(super) dirty: BTreeSet<u64>,
    /// Blocks not written since the last commit whose bytes in `file` are
    /// the base's (that commit stored them from there).
    present: BTreeSet<u64>,
    /// Hash states of the blocks whose bytes are in `file`.
    ladders: Ladders,
    /// Pages (offset / [`PAGE`]) whose bytes may differ from the base's
    /// since the last commit; `None`: not known (the kernel wrote directly).
    pages: Option<BTreeSet<u64>>,
    /// For a cache the kernel writes directly (which says nothing of where):
    /// the bytes of the last blocks a durable commit stored, to find what
    /// changed in them since by comparing (cheaper than hashing them again).
    shadows: Vec<Shadow>,
    /// Bytes of the base version still valid (shrinks with truncation).
    pub(super) base_valid: u64,
    /// Something changed since the last commit.
    pub(super) changed: bool,
    /// The kernel writes into `file` directly (passthrough): the file is the content.
    pub(super) direct: bool,
    /// When a write or truncation through this mount last changed the
    /// content since the last commit (`None`: not since then).
    modified: Option<SystemTime>,
    /// A direct cache's file mtime at the last commit (or when the kernel was
    /// given it): a later one says the kernel wrote into it, and when.
    direct_mtime: Option<SystemTime>,
    /// When an attribute change (chmod, chown, utime, xattrs) was folded into
    /// this state since the last commit: the next commit is a new version
    /// even if the bytes are the base's, and the ctime shown until then.
    attrs_changed: Option<SystemTime>,
    /// Something since the last commit was written at an offset the writer
    /// chose (not an `O_APPEND` write), truncated, or the state started cut
    /// below its base (`O_TRUNC`): its bytes may not be moved.
    positioned: bool,
}

/// The writes to an inode while writers have it open in this mount. Every
/// handle of the inode reads and writes through it, so processes sharing a
/// file on one mount see each other's writes at once and never undo them, as
/// on a local file system; every close of a writer commits all of it.
pub(super) struct Dirty {
    /// The committed version the writes apply to (each commit moves it on).
    pub(super) base: Option<Version>,
    pub(super) cache: WriteCache,
    /// Handles joined to it: writers, and readers opened while it existed.
    pub(super) users: usize,
    /// Of those, the writers: while there is one, a close or fsync will
    /// commit what is folded into the state.
    pub(super) writers: usize,
    /// A commit moved its appends onto a newer version ([`super::rebase`])
    /// since the kernel was last told: its pages and size are stale.
    pub(super) rebased: bool,
}

impl WriteCache {
    /// An empty cache of a file `size` bytes long over `base` (`None`: a new
    /// file), in the store's scratch directory, cut into the base's blocks (or
    /// the store's block size for a new file).
    pub(super) fn new(store: &Store, base: Option<&Version>, size: u64) -> VfsResult<WriteCache> {
        let file =
            tempfile::tempfile_in(store.layout().tmp()).map_err(io_error("a write cache file"))?;
        let block_size = match base {
            Some(base) if base.kind == Kind::File && base.block_size > 0 => base.block_size,
            _ => store.config().block_size,
        };
        Ok(WriteCache {
            file,
            size,
            block_size,
            dirty: BTreeSet::new(),
            present: BTreeSet::new(),
            ladders: Ladders::default(),
            pages: Some(BTreeSet::new()),
            shadows: Vec::new(),
            base_valid: base.map_or(0, |b| b.size.min(size)),
            changed: false,
            direct: false,
            modified: None,
            direct_mtime: None,
            attrs_changed: None,
            positioned: base.is_some_and(|b| size < b.size),
        })
    }

    /// Lets the kernel write straight into this (empty) cache file: a second
    /// descriptor of it, for the kernel to attach.
    pub(super) fn attach_direct(&mut self) -> Option<File> {
        let file = self.file.try_clone().ok()?;
        self.direct = true;
        self.direct_mtime = self.file_mtime();
        Some(file)
    }

    fn file_mtime(&self) -> Option<SystemTime> {
        self.file.metadata().and_then(|meta| meta.modified()).ok()
    }

    /// When the content last changed since the last commit: the time of the
    /// last write or truncation here, or for a direct cache the time the
    /// kernel last wrote it (`None`: unchanged since the commit, so the
    /// version's mtime stays; to a clock tick for a direct cache).
    pub(super) fn last_change(&self) -> Option<SystemTime> {
        let meta = if self.direct {
            self.file.metadata().ok()
        } else {
            None
        };
        self.last_change_by(meta.as_ref())
    }

    /// [`WriteCache::last_change`] with the cache file's metadata already
    /// read (`meta`, for a direct cache; one `fstat` serves a whole getattr).
    pub(super) fn last_change_by(&self, meta: Option<&std::fs::Metadata>) -> Option<SystemTime> {
        let direct = if self.direct {
            meta.and_then(|meta| meta.modified().ok())
                .filter(|time| Some(*time) != self.direct_mtime)
        } else {
            None
        };
        match (self.modified, direct) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// For a cache the kernel writes directly: take its size from the file and
    /// treat every block as written.
    pub(super) fn sync_direct(&mut self) -> VfsResult<()> {
        if !self.direct {
            return Ok(());
        }
        self.size = self
            .file
            .metadata()
            .map_err(io_error("a write cache file"))?
            .len();
        let count = Version::block_count(self.size, self.block_size);
        self.dirty = (0..count).collect();
        self.present.clear();
        // The hash states stay: a commit checks them against the shadows.
        self.pages = None;
        self.base_valid = 0;
        self.changed = true;
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset`: dirty blocks from the cache file,
    /// the rest from `base` (zeros past what of it is still valid).
    pub(super) fn read(
        &self,
        store: &Store,
        base: Option<&Version>,
        offset: u64,
        buf: &mut [u8],
    ) -> VfsResult<()> {
        let bs = u64::from(self.block_size);
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let index = pos / bs;
            let block_end = (index + 1) * bs;
            let n = ((block_end - pos) as usize).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            if self.in_file(index) {
                read_exact_at(&self.file, out, pos)?;
            } else {
                out.fill(0);
                if let Some(base) = base {
                    if pos < self.base_valid {
                        let valid = ((self.base_valid - pos) as usize).min(n);
                        let got = store.read_at(base, pos, &mut out[..valid])?;
                        if got < valid {
                            return Err(VfsError::new(
                                libc::EIO,
                                format!("version {}: {got} of {valid} bytes read", base.id),
                            )
                            .at(tracing::Level::ERROR));
                        }
                    }
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Whether block `index`'s bytes are read from the cache file.
    fn in_file(&self, index: u64) -> bool {
        self.dirty.contains(&index) || self.present.contains(&index)
    }

    /// Copies block `index` of `base` into the cache file before a partial
    /// write (nothing to copy when a commit left it there).
    fn materialize(&mut self, store: &Store, base: Option<&Version>, index: u64) -> VfsResult<()> {
        if self.dirty.contains(&index) {
            return Ok(());
        }
        if self.present.remove(&index) {
            self.dirty.insert(index);
            return Ok(());
        }
        self.ladders.forget(index);
        let bs = u64::from(self.block_size);
        let start = index * bs;
        // Only the part of the block inside the file: the cache file reads
        // zeros past what was ever written, and past the size it holds none.
        let len = (self.size.max(self.base_valid).saturating_sub(start)).min(bs) as usize;
        let mut data = vec![0u8; len];
        if start < self.base_valid {
            let valid = ((self.base_valid - start) as usize).min(len);
            if let Some(base) = base {
                let got = store.read_at(base, start, &mut data[..valid])?;
                if got < valid {
                    return Err(VfsError::new(
                        libc::EIO,
                        format!("version {}: {got} of {valid} bytes read", base.id),
                    )
                    .at(tracing::Level::ERROR));
                }
            }
        }
        self.file
            .write_all_at(&data, start)
            .map_err(io_error("a write cache file"))?;
        self.dirty.insert(index);
        Ok(())
    }

    /// Notes that the bytes in `range` may differ from the base's now: the
    /// pages they touch, and the hash states of their blocks past the start.
    fn note_change(&mut self, range: Range<u64>) {
        self.positioned = true;
        if range.is_empty() {
            return;
        }
        let bs = u64::from(self.block_size);
        for index in range.start / bs..=(range.end - 1) / bs {
            let from = range.start.saturating_sub(index * bs);
            self.ladders.changed(index, from as usize);
        }
        if let Some(pages) = self.pages.as_mut() {
            pages.extend(range.start / PAGE..range.end.div_ceil(PAGE));
        }
    }

    /// A whole block was punched out of the cache file (it reads zeros).
    pub(super) fn punched(&mut self, index: u64) {
        let bs = u64::from(self.block_size);
        self.present.remove(&index);
        self.dirty.insert(index);
        self.note_change(index * bs..(index + 1) * bs);
    }

    /// Writes `data` at `offset` (blocks it covers only in part are first
    /// copied from `base`).
    /// [`WriteCache::write`] where `at` says (the end: this cache's size,
    /// decided under the state's lock, so appends never overlap).
    pub(super) fn write_at(
        &mut self,
        store: &Store,
        base: Option<&Version>,
        at: super::WriteAt,
        data: &[u8],
    ) -> VfsResult<super::Written> {
        let (offset, positioned) = match at {
            super::WriteAt::Offset(offset) => (offset, true),
            super::WriteAt::End(_) => (self.size, false),
        };
        let before = self.positioned;
        let count = self.write(store, base, offset, data)?;
        // `write` counts as positioned; an append does not.
        self.positioned = before || positioned;
        Ok(super::Written { count, offset })
    }

    pub(super) fn write(
        &mut self,
        store: &Store,
        base: Option<&Version>,
        offset: u64,
        data: &[u8],
    ) -> VfsResult<u32> {
        if data.is_empty() {
            return Ok(0);
        }
        let bs = u64::from(self.block_size);
        let end = offset + data.len() as u64;
        let first = offset / bs;
        let last = (end - 1) / bs;
        for index in first..=last {
            let start = index * bs;
            let covers = offset <= start && end >= start + bs;
            if !covers {
                self.materialize(store, base, index)?;
            } else {
                self.present.remove(&index);
                self.dirty.insert(index);
            }
        }
        self.note_change(offset..end);
        self.file
            .write_all_at(data, offset)
            .map_err(io_error("a write cache file"))?;
        self.size = self.size.max(end);
        self.changed = true;
        self.modified = Some(SystemTime::now());
        Ok(data.len() as u32)
    }

    /// Truncates (or extends with zeros) to `size`.
    pub(super) fn truncate(
        &mut self,
        store: &Store,
        base: Option<&Version>,
        size: u64,
    ) -> VfsResult<()> {
        self.sync_direct()?;
        if size == self.size {
            // Linux moves mtime and ctime on every truncation that succeeds,
            // to the same size too (ext4 does; `: > f` of an empty file).
            self.mark_changed();
            return Ok(());
        }
        let bs = u64::from(self.block_size);
        self.note_change(size.min(self.size)..size.max(self.size));
        if size < self.size {
            // Keep the partial last block's bytes below `size`; forget blocks past it.
            if size % bs != 0 {
                self.materialize(store, base, size / bs)?;
            }
            let keep_below = size.div_ceil(bs);
            self.dirty.retain(|index| *index < keep_below);
            self.present.retain(|index| *index < keep_below);
            self.ladders.keep_below(keep_below);
            self.base_valid = self.base_valid.min(size);
            self.file
                .set_len(size)
                .map_err(io_error("a write cache file"))?;
        } else if self.size % bs != 0 {
            // Growing: the old last block must read zeros past the old end.
            self.materialize(store, base, self.size / bs)?;
            self.base_valid = self.base_valid.min(self.size);
        } else {
            self.base_valid = self.base_valid.min(self.size);
        }
        // A cache the kernel writes directly is the content: its length is the size.
        let len = if self.direct {
            size
        } else {
            size.max(self.size)
        };
        self.file
            .set_len(len)
            .map_err(io_error("a write cache file"))?;
        self.size = size;
        self.changed = true;
        self.modified = Some(SystemTime::now());
        Ok(())
    }

    /// Whether block `index` reads as zeros without looking: not written
    /// here and wholly past the valid part of the base.
    pub(super) fn is_hole_past_base(&self, index: u64) -> bool {
        !self.direct
            && !self.in_file(index)
            && index * u64::from(self.block_size) >= self.base_valid
    }

    /// An attribute change was folded into the base just now (see
    /// [`WriteCache::attrs_changed`]); `sets_mtime`: it set the mtime, which
    /// then stands until the next write.
    pub(super) fn attributes_changed(&mut self, sets_mtime: bool) {
        self.changed = true;
        self.attrs_changed = Some(SystemTime::now());
        if sets_mtime {
            self.modified = None;
            if self.direct {
                self.direct_mtime = self.file_mtime();
            }
        }
    }

    /// When attributes last changed here since the last commit.
    pub(super) fn attrs_changed(&self) -> Option<SystemTime> {
        self.attrs_changed
    }

    /// Something changed the content just now (a punched hole).
    pub(super) fn mark_changed(&mut self) {
        self.changed = true;
        self.modified = Some(SystemTime::now());
    }

    /// Whether block `index` (`len` bytes long) can be taken from `base` as it
    /// is: not written here, and the same length and still valid there.
    pub(super) fn reuses_base(&self, base: Option<&Version>, index: u64, len: usize) -> bool {
        let start = index * u64::from(self.block_size);
        !self.dirty.contains(&index)
            && base.is_some_and(|b| {
                b.kind == Kind::File
                    && (index as usize) < b.hashes.len()
                    && b.block_len(index as usize) == len
                    && start + len as u64 <= self.base_valid
            })
    }

    /// The commit just made cut the file in blocks of `block_size` (a
    /// divisor of the old size): the cache counts in those from now on.
    pub(super) fn recut(&mut self, block_size: u32) {
        let ratio = u64::from(self.block_size / block_size.max(1)).max(1);
        let widen = |set: &BTreeSet<u64>| -> BTreeSet<u64> {
            set.iter()
                .flat_map(|index| index * ratio..(index + 1) * ratio)
                .collect()
        };
        self.dirty = widen(&self.dirty);
        self.present = widen(&self.present);
        self.ladders = Ladders::default();
        self.shadows.clear();
        self.block_size = block_size;
    }

    /// The cache now holds exactly what was committed as `size` bytes: all of
    /// it reads from the (new) base from now on.
    pub(super) fn committed(&mut self, size: u64) {
        let count = Version::block_count(size, self.block_size);
        let dirty = std::mem::take(&mut self.dirty);
        if self.direct {
            // The kernel may write any block again unseen: nothing is kept.
            self.present.clear();
        } else {
            self.present.extend(dirty);
            self.present.retain(|index| *index < count);
        }
        self.pages = (!self.direct).then(BTreeSet::new);
        self.base_valid = size;
        self.changed = false;
        self.modified = None;
        self.attrs_changed = None;
        self.positioned = false;
        if self.direct {
            self.direct_mtime = self.file_mtime();
        }
    }

    /// Whether every change since the last commit was an `O_APPEND` write
    /// past `base_size` (the base's end): appends only, which may move.
    pub(super) fn only_appended(&self, base_size: u64) -> bool {
        !self.direct && !self.positioned && self.size >= base_size
    }
}

/// A block's bytes as a durable commit stored them, under that hash.
struct Shadow {
    index: u64,
    hash: BlockHash,
    bytes: Vec<u8>,
}

/// Blocks a direct cache keeps a shadow of at most.
const MAX_SHADOWS: usize = 2;
/// Blocks shorter than this are hashed whole, without a shadow.
const SHADOW_MIN: usize = 64 * 1024;

impl WriteCache {
    /// Block `index` as a commit stores it, its bytes in the cache file
    /// being `data` (read just now) and the base's same block `base_block`:
    /// its hash, from the last valid hash state; with `durable`, also the
    /// ranges in it that may differ from `base_block` (`None`: not known).
    pub(super) fn commit_block(
        &mut self,
        index: u64,
        data: &[u8],
        durable: bool,
        base_block: Option<BlockHash>,
    ) -> (BlockHash, Option<Vec<Range<usize>>>) {
        if !self.direct {
            let hash = self.ladders.hash(index, data);
            let changed = if durable {
                self.changed_in(index, data.len())
            } else {
                None
            };
            return (hash, changed);
        }
        // The kernel wrote where it liked: compare with the shadow, if it is
        // the base's block (else the hash states say nothing either).
        let shadow = self
            .shadows
            .iter()
            .position(|shadow| shadow.index == index)
            .map(|i| self.shadows.remove(i))
            .filter(|shadow| Some(shadow.hash) == base_block);
        let changed = match &shadow {
            Some(old) => {
                let ranges = differing_pages(&old.bytes, data);
                let first = ranges.first().map_or(data.len(), |r| r.start);
                self.ladders.changed(index, first);
                Some(ranges)
            }
            None => {
                self.ladders.forget(index);
                None
            }
        };
        let hash = self.ladders.hash(index, data);
        if durable && data.len() >= SHADOW_MIN {
            let mut bytes = shadow.map(|s| s.bytes).unwrap_or_default();
            bytes.clear();
            bytes.extend_from_slice(data);
            if self.shadows.len() >= MAX_SHADOWS {
                self.shadows.remove(0);
            }
            self.shadows.push(Shadow { index, hash, bytes });
        } else {
            self.ladders.forget(index);
        }
        (hash, changed.filter(|_| durable))
    }

    /// Of block `index` (`start`..`start + len` of the file), the pages that
    /// may differ from the base's, as ranges within the block; `None` when
    /// that is not known.
    fn changed_in(&self, index: u64, len: usize) -> Option<Vec<Range<usize>>> {
        let pages = self.pages.as_ref()?;
        let start = index * u64::from(self.block_size);
        let end = start + len as u64;
        let mut out: Vec<Range<usize>> = Vec::new();
        for page in pages.range(start / PAGE..end.div_ceil(PAGE)) {
            let from = (page * PAGE).max(start) - start;
            let to = ((page + 1) * PAGE).min(end) - start;
            push_range(&mut out, from as usize..to as usize);
        }
        Some(out)
    }
}

/// Adds `range` to `out`, merged with the last one when they touch.
fn push_range(out: &mut Vec<Range<usize>>, range: Range<usize>) {
    match out.last_mut() {
        Some(last) if last.end == range.start => last.end = range.end,
        _ => out.push(range),
    }
}

/// The pages of `new` that differ from `old` (cut or extended with zeros
/// to `new`'s length), as merged ranges.
fn differing_pages(old: &[u8], new: &[u8]) -> Vec<Range<usize>> {
    let page = PAGE as usize;
    let mut out = Vec::new();
    for (n, chunk) in new.chunks(page).enumerate() {
        let at = n * page;
        let same = match old.get(at..) {
            Some(rest) if rest.len() >= chunk.len() => rest[..chunk.len()] == *chunk,
            Some(rest) => {
                rest == &chunk[..rest.len()] && crate::store::sparse::is_zero(&chunk[rest.len()..])
            }
            None => crate::store::sparse::is_zero(chunk),
        };
        if !same {
            push_range(&mut out, at..at + chunk.len());
        }
    }
    out
}

/// Fills `buf` from `file` at `offset`; a sparse tail past the file's end reads
/// as zeros.
pub(super) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> VfsResult<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = file
            .read_at(&mut buf[done..], offset + done as u64)
            .map_err(io_error("a write cache file"))?;
        if n == 0 {
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
    use crate::layout::VPath;

    const BS: usize = 4096;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::store::scratch_spec(dir.path());
        let store = Store::open_spec(&spec).unwrap();
        (dir, store)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn committed(store: &Store, data: &[u8]) -> Version {
        let path = VPath::root().join(b"f").unwrap();
        store
            .write_file(
                &path,
                &mut std::io::Cursor::new(data),
                crate::store::Attrs::default(),
                false,
            )
            .unwrap()
    }

    fn read_all(cache: &WriteCache, store: &Store, base: Option<&Version>) -> Vec<u8> {
        let mut buf = vec![0u8; cache.size as usize];
        cache.read(store, base, 0, &mut buf).unwrap();
        buf
    }

    #[test]
    fn a_partial_write_keeps_the_rest_of_its_block_from_the_base() {
        let (_dir, store) = store();
        let data = pattern(2 * BS + 100);
        let base = committed(&store, &data);
        let mut cache = WriteCache::new(&store, Some(&base), base.size).unwrap();
        cache
            .write(&store, Some(&base), BS as u64 + 5, b"XY")
            .unwrap();
        let mut expected = data.clone();
        expected[BS + 5..BS + 7].copy_from_slice(b"XY");
        assert_eq!(read_all(&cache, &store, Some(&base)), expected);
        // Only block 1 was touched: the others still come from the base.
        assert_eq!(cache.dirty.iter().copied().collect::<Vec<_>>(), vec![1]);
        assert!(cache.reuses_base(Some(&base), 0, BS));
        assert!(!cache.reuses_base(Some(&base), 1, BS));
        assert!(cache.reuses_base(Some(&base), 2, 100));
    }

    #[test]
    fn truncating_down_and_up_again_reads_zeros_past_the_cut() {
        let (_dir, store) = store();
        let data = pattern(2 * BS + 100);
        let base = committed(&store, &data);
        let mut cache = WriteCache::new(&store, Some(&base), base.size).unwrap();
        cache.truncate(&store, Some(&base), 3).unwrap();
        cache
            .truncate(&store, Some(&base), 2 * BS as u64 + 100)
            .unwrap();
        let mut expected = vec![0u8; 2 * BS + 100];
        expected[..3].copy_from_slice(&data[..3]);
        assert_eq!(read_all(&cache, &store, Some(&base)), expected);
        // Past the cut the base is no longer valid: no block of it is reused.
        assert!(!cache.reuses_base(Some(&base), 1, BS));
        assert!(!cache.reuses_base(Some(&base), 2, 100));
        assert!(cache.changed);
    }

    #[test]
    fn a_write_past_the_end_leaves_a_hole_of_zeros() {
        let (_dir, store) = store();
        let mut cache = WriteCache::new(&store, None, 0).unwrap();
        cache.write(&store, None, 6, b"z").unwrap();
        assert_eq!(cache.size, 7);
        assert_eq!(read_all(&cache, &store, None), b"\0\0\0\0\0\0z");
        cache.committed(7);
        assert!(!cache.changed);
        assert!(cache.dirty.is_empty());
    }
}
