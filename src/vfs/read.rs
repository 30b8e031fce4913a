//! Reads of an open file: through its write state while writers have it open,
//! else from the committed version, block file by block file.

use super::Vfs;
use super::error::{VfsError, VfsResult};
use super::handles::Handle;
use super::locks::lock;

/// Block files a sequential reader asks the kernel to read ahead (cold reads
/// otherwise wait for the disk one block at a time).
const PREFETCH_BLOCKS: usize = 8;

impl Vfs {
    /// Reads from an open file: through its inode's write state while writers
    /// have it open, else from the version the handle opened.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> VfsResult<Vec<u8>> {
        if let Some(answer) = self.past_read(fh, offset, size) {
            return answer;
        }
        let handle = self.handle(fh)?;
        let mut handle = lock(&handle);
        if let Some(dirty) = handle.dirty.clone().or_else(|| self.dirty_of(handle.ino)) {
            drop(handle);
            let mut dirty = lock(&dirty);
            let dirty = &mut *dirty;
            dirty.cache.sync_direct()?;
            let end = dirty.cache.size;
            if offset >= end {
                return Ok(Vec::new());
            }
            let mut buf = vec![0u8; (u64::from(size)).min(end - offset) as usize];
            dirty
                .cache
                .read(&self.store, dirty.base.as_ref(), offset, &mut buf)?;
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

    /// Reads a committed version, keeping the last block open so a
    /// sequential reader opens each block once.
    pub(super) fn read_base(
        &self,
        handle: &mut Handle,
        offset: u64,
        buf: &mut [u8],
    ) -> VfsResult<usize> {
        let base = handle.base.as_ref().ok_or_else(|| no_base(handle.ino))?;
        let bs = u64::from(base.block_size.max(1));
        let index = (offset / bs) as usize;
        let within = offset % bs;
        let block_len = base.block_len(index);
        let fits = within as usize + buf.len() <= block_len;
        if fits && index < base.hashes.len() {
            if matches!(&handle.prev_block, Some((i, _)) if *i == index) {
                std::mem::swap(&mut handle.last_block, &mut handle.prev_block);
            }
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
                // The store's one raw block read: compressed blocks come
                // decompressed, and `verify_reads` checks the block first.
                // Failing here, the read below says why (or pulls it).
                handle.prev_block = handle.last_block.take();
                handle.last_block = self.store.open_block(base, index).ok().map(|block| {
                    // Read the rest of this block in one go, not request by request.
                    block.will_need(within as usize);
                    (index, block)
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
            if let Some((_, block)) = &handle.last_block {
                if block.read_at(within as usize, buf).ok() == Some(buf.len()) {
                    return Ok(buf.len());
                }
            }
        }
        let base = handle.base.as_ref().ok_or_else(|| no_base(handle.ino))?;
        self.store
            .read_at(base, offset, buf)
            .map_err(VfsError::from)
    }
}

/// A handle reading a committed version with none to read: a bug here.
fn no_base(ino: u64) -> VfsError {
    VfsError::new(
        libc::EIO,
        format!("file handle of inode {ino}: no version to read"),
    )
    .at(tracing::Level::ERROR)
}
