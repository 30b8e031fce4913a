//! Reading file data: ranges of a version (random access), whole blocks
//! (verified, pulled from a peer when not here) and whole-file streams.

use std::io::Write;

use super::{Kind, STREAM_QUEUE_BYTES, Store, StoreError, Version, pipeline};
use crate::ids::BlockHash;

/// How far ahead a whole-file copy asks the kernel to read block files.
const READ_AHEAD_BLOCKS: usize = 8;

impl Store {
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

    pub(super) fn read_block_range(
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
    pub(super) fn local_or_pulled<T>(
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
        self.store_block(&lock, hash, &data)?;
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
    pub(super) fn checked_block(
        &self,
        version: &Version,
        index: usize,
    ) -> Result<Vec<u8>, StoreError> {
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
}
