//! Holes in files as the mount shows them: `st_blocks` (what is stored, holes
//! excluded), `lseek` with SEEK_DATA / SEEK_HOLE at block granularity, and
//! `fallocate` (mode 0, KEEP_SIZE, PUNCH_HOLE | KEEP_SIZE) through an open
//! file's write state. A hole is a block whose hash is the zero hash of its
//! length (docs/FORMAT.md section 4, "Zero blocks"); the store side of it is
//! `crate::store::sparse`.

use std::os::unix::fs::MetadataExt;

use super::Vfs;
use super::error::{VfsError, VfsResult, io_error};
use super::locks::lock;
use super::write_cache::WriteCache;
use crate::store::sparse::{is_zero, zero_hash};
use crate::store::{Kind, Store, Version};

/// The 512-byte units a committed version stores: the bytes of its blocks
/// that are not holes (a directory or symlink: its size).
pub(super) fn stored_blocks(version: &Version) -> u64 {
    if version.kind != Kind::File {
        return version.size.div_ceil(512);
    }
    data_bytes(version, version.hashes.len(), |_| true).div_ceil(512)
}

/// Bytes of the first `count` blocks of `version` that are data and pass `keep`.
fn data_bytes(version: &Version, count: usize, keep: impl Fn(usize) -> bool) -> u64 {
    let bs = version.block_size as usize;
    let full = zero_hash(bs.max(1));
    let count = count.min(version.hashes.len());
    let mut bytes = 0u64;
    for index in 0..count {
        let len = version.block_len(index);
        let hole = if len == bs {
            version.hashes[index] == full
        } else {
            len == 0 || version.hashes[index] == zero_hash(len)
        };
        if !hole && keep(index) {
            bytes += len as u64;
        }
    }
    bytes
}

/// The 512-byte units an open file's write state stands for: its written
/// blocks whole (what the commit will store, zeros aside), plus the blocks of
/// the base it still takes as they are (holes excluded). A cache the kernel
/// writes directly is the content: what its file holds on disk.
pub(super) fn cache_blocks(
    cache: &WriteCache,
    base: Option<&Version>,
    meta: Option<&std::fs::Metadata>,
) -> u64 {
    if cache.direct {
        return meta.map_or(0, |meta| meta.blocks());
    }
    let bs = u64::from(cache.block_size.max(1));
    let written: u64 = cache
        .dirty
        .iter()
        .map(|index| cache.size.saturating_sub(index * bs).min(bs))
        .sum();
    let from_base = base.filter(|b| b.kind == Kind::File).map_or(0, |base| {
        let bs = u64::from(base.block_size.max(1));
        let valid = (cache.base_valid.div_ceil(bs)) as usize;
        data_bytes(base, valid, |index| !cache.dirty.contains(&(index as u64)))
    });
    (written + from_base).div_ceil(512)
}

/// Whether each block of a file is a hole, asked one block at a time.
trait Holes {
    fn size(&self) -> u64;
    fn block_size(&self) -> u64;
    fn is_hole(&self, index: u64) -> VfsResult<bool>;
}

struct Committed<'a>(&'a Version);

impl Holes for Committed<'_> {
    fn size(&self) -> u64 {
        self.0.size
    }
    fn block_size(&self) -> u64 {
        u64::from(self.0.block_size.max(1))
    }
    fn is_hole(&self, index: u64) -> VfsResult<bool> {
        let index = index as usize;
        let len = self.0.block_len(index);
        Ok(self
            .0
            .hashes
            .get(index)
            .is_none_or(|hash| len == 0 || *hash == zero_hash(len)))
    }
}

struct Writing<'a> {
    cache: &'a WriteCache,
    base: Option<&'a Version>,
}

impl Holes for Writing<'_> {
    fn size(&self) -> u64 {
        self.cache.size
    }
    fn block_size(&self) -> u64 {
        u64::from(self.cache.block_size.max(1))
    }
    fn is_hole(&self, index: u64) -> VfsResult<bool> {
        let bs = self.block_size();
        let start = index * bs;
        let len = (self.cache.size.saturating_sub(start)).min(bs) as usize;
        if len == 0 {
            return Ok(true);
        }
        if self.cache.dirty.contains(&index) || self.cache.direct {
            let mut buf = vec![0u8; len];
            super::write_cache::read_exact_at(&self.cache.file, &mut buf, start)?;
            return Ok(is_zero(&buf));
        }
        if start >= self.cache.base_valid {
            return Ok(true);
        }
        match self.base.filter(|b| b.kind == Kind::File) {
            Some(base) => Committed(base).is_hole(index),
            None => Ok(true),
        }
    }
}

/// SEEK_DATA / SEEK_HOLE over `file` from `offset`.
fn seek(file: &dyn Holes, offset: u64, data: bool) -> VfsResult<u64> {
    let size = file.size();
    if offset >= size {
        return Err(VfsError::new(
            libc::ENXIO,
            format!("seek to {offset}: at or past the end ({size})"),
        ));
    }
    let bs = file.block_size();
    let count = size.div_ceil(bs);
    for index in offset / bs..count {
        if file.is_hole(index)? != data {
            return Ok(offset.max(index * bs));
        }
    }
    if data {
        Err(VfsError::new(
            libc::ENXIO,
            format!("no data at or after {offset}"),
        ))
    } else {
        // Every file ends in a hole at its end.
        Ok(size)
    }
}

impl Vfs {
    /// `lseek` with SEEK_DATA or SEEK_HOLE on open handle `fh` (the kernel
    /// answers the other kinds itself).
    pub fn lseek(&self, fh: u64, offset: i64, whence: i32) -> VfsResult<i64> {
        let data = match whence {
            libc::SEEK_DATA => true,
            libc::SEEK_HOLE => false,
            other => {
                return Err(VfsError::new(
                    libc::EINVAL,
                    format!("lseek whence {other} is the kernel's"),
                ));
            }
        };
        let offset = u64::try_from(offset)
            .map_err(|_| VfsError::new(libc::ENXIO, format!("seek to {offset}")))?;
        let handle = self.handle(fh)?;
        let handle = lock(&handle);
        if let Some(dirty) = handle.dirty.clone().or_else(|| self.dirty_of(handle.ino)) {
            drop(handle);
            let mut state = lock(&dirty);
            let state = &mut *state;
            state.cache.sync_direct()?;
            let file = Writing {
                cache: &state.cache,
                base: state.base.as_ref(),
            };
            return seek(&file, offset, data).map(|at| at as i64);
        }
        match &handle.base {
            Some(base) => seek(&Committed(base), offset, data).map(|at| at as i64),
            None => Err(VfsError::new(libc::ENXIO, format!("seek to {offset}"))),
        }
    }

    /// `fallocate` on writer handle `fh`: mode 0 makes the file at least
    /// `offset + length` long (zeros, stored as holes), KEEP_SIZE changes
    /// nothing visible (space is not reserved: blocks are written at commit),
    /// PUNCH_HOLE | KEEP_SIZE zeroes the range. Other modes: EOPNOTSUPP.
    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> VfsResult<()> {
        const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;
        const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE;
        if mode != 0 && mode != KEEP && mode != PUNCH | KEEP {
            return Err(VfsError::new(
                libc::EOPNOTSUPP,
                format!("fallocate mode {mode:#x} is not supported"),
            ));
        }
        let end = offset
            .checked_add(length)
            .filter(|end| *end <= i64::MAX as u64);
        let Some(end) = end.filter(|_| length > 0) else {
            return Err(VfsError::new(
                libc::EINVAL,
                format!("fallocate of {length} bytes at {offset}"),
            ));
        };
        let dirty = self.writers_state(fh)?;
        let mut state = lock(&dirty);
        let state = &mut *state;
        let cache = &mut state.cache;
        match mode {
            0 => {
                cache.sync_direct()?;
                if end > cache.size {
                    cache.truncate(&self.store, state.base.as_ref(), end)?;
                }
                Ok(())
            }
            KEEP => Ok(()),
            _ => punch(cache, &self.store, state.base.as_ref(), offset, end),
        }
    }
}

/// Zeroes `offset..end` (cut at the file's size) of an open file: blocks it
/// covers whole become holes of the cache file, the rest is written zeros.
fn punch(
    cache: &mut WriteCache,
    store: &Store,
    base: Option<&Version>,
    offset: u64,
    end: u64,
) -> VfsResult<()> {
    cache.sync_direct()?;
    let end = end.min(cache.size);
    if offset >= end {
        return Ok(());
    }
    let bs = u64::from(cache.block_size.max(1));
    let mut pos = offset;
    while pos < end {
        let index = pos / bs;
        let block_end = ((index + 1) * bs).min(end);
        let whole = pos == index * bs && block_end == (index + 1) * bs;
        if whole && !cache.direct {
            punch_file(cache, pos, block_end - pos)?;
            cache.punched(index);
        } else if cache.direct {
            punch_file(cache, pos, block_end - pos)?;
        } else {
            let zeros = vec![0u8; (block_end - pos) as usize];
            cache.write(store, base, pos, &zeros)?;
        }
        pos = block_end;
    }
    cache.mark_changed();
    Ok(())
}

/// Punches `len` bytes at `offset` out of the cache file (zeros where the
/// filesystem cannot punch).
fn punch_file(cache: &WriteCache, offset: u64, len: u64) -> VfsResult<()> {
    use nix::fcntl::{FallocateFlags, fallocate};
    let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
    if fallocate(&cache.file, flags, offset as i64, len as i64).is_ok() {
        return Ok(());
    }
    use std::os::unix::fs::FileExt;
    let zeros = vec![0u8; len as usize];
    cache
        .file
        .write_all_at(&zeros, offset)
        .map_err(io_error("a write cache file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Blocks(Vec<bool>, u64);

    impl Holes for Blocks {
        fn size(&self) -> u64 {
            self.1
        }
        fn block_size(&self) -> u64 {
            10
        }
        fn is_hole(&self, index: u64) -> VfsResult<bool> {
            Ok(self.0[index as usize])
        }
    }

    #[test]
    fn seek_data_and_hole_at_block_granularity() {
        // data, hole, hole, data (5 bytes): 35 bytes.
        let file = Blocks(vec![false, true, true, false], 35);
        assert_eq!(seek(&file, 0, true).unwrap(), 0);
        assert_eq!(seek(&file, 3, true).unwrap(), 3);
        assert_eq!(seek(&file, 0, false).unwrap(), 10);
        assert_eq!(seek(&file, 12, false).unwrap(), 12);
        assert_eq!(seek(&file, 12, true).unwrap(), 30);
        assert_eq!(seek(&file, 31, false).unwrap(), 35);
        assert_eq!(seek(&file, 35, true).unwrap_err().errno(), libc::ENXIO);
        assert_eq!(seek(&file, 35, false).unwrap_err().errno(), libc::ENXIO);
        let holes = Blocks(vec![true, true], 20);
        assert_eq!(seek(&holes, 0, true).unwrap_err().errno(), libc::ENXIO);
        assert_eq!(seek(&holes, 5, false).unwrap(), 5);
    }
}
