//! Reading file data: ranges of a version (random access), whole blocks
//! (verified, pulled from a peer when not here) and whole-file streams.

use std::io::Write;

use super::{Kind, OpenBlock, STREAM_QUEUE_BYTES, Store, StoreError, Version, pipeline};
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
            if super::sparse::is_zero_block(&hash, len) {
                // A hole reads as zeros without opening its block file.
                buf[done..done + want].fill(0);
                done += want;
                pos += want as u64;
                continue;
            }
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
        self.open_block_of(version, hash, len)?.read_at(within, buf)
    }

    /// Opens block `index` of file `version` for reading ranges of it: the one
    /// raw block read of the store. The block is pulled from a peer when it is
    /// not here; a compressed block is decompressed (and checked); with
    /// `verify_reads` the whole block is read and checked against its hash
    /// first (a mismatch is [`StoreError::BadBlock`], naming the hash and the
    /// path). [`Store::read_at`] reads through it.
    pub fn open_block(&self, version: &Version, index: usize) -> Result<OpenBlock, StoreError> {
        let hash = version
            .hashes
            .get(index)
            .filter(|_| version.kind == Kind::File)
            .ok_or_else(|| {
                StoreError::Internal(format!("{}: no block {index} to open", version.path))
            })?;
        self.open_block_of(version, hash, version.block_len(index))
    }

    fn open_block_of(
        &self,
        version: &Version,
        hash: &BlockHash,
        len: usize,
    ) -> Result<OpenBlock, StoreError> {
        if self.config.verify_reads {
            return Ok(OpenBlock::in_memory(*hash, self.block(version, hash, len)?));
        }
        self.local_or_pulled(version, hash, len, || self.blocks.open(hash, len))
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

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;
    use crate::layout::VPath;
    use crate::spec::Compression;
    use crate::store::{Attrs, scratch_spec};

    fn scratch(compression: Compression) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let spec = scratch_spec(dir.path());
        let mut store = Store::open_spec(&spec).unwrap();
        store.config_mut().compression = compression;
        // The raw path, read in place; tests of the check turn it on.
        store.config_mut().verify_reads = false;
        (dir, store)
    }

    /// Two full blocks and a short one, each byte telling where it is.
    fn put(store: &Store, name: &str) -> (Version, Vec<u8>) {
        let bs = store.config().block_size as usize;
        let data: Vec<u8> = (0..2 * bs + 100).map(|i| (i % 251) as u8).collect();
        let path = VPath::parse(OsStr::new(name)).unwrap();
        let version = store
            .write_file(&path, &mut data.as_slice(), Attrs::default(), true)
            .unwrap();
        (version, data)
    }

    #[test]
    fn open_block_reads_ranges_of_raw_and_compressed_blocks() {
        for compression in [Compression::None, Compression::Zstd] {
            let (_dir, store) = scratch(compression);
            let (version, data) = put(&store, "/f");
            let bs = store.config().block_size as usize;
            for index in 0..3 {
                let block = store.open_block(&version, index).unwrap();
                assert_eq!(block.hash(), &version.hashes[index]);
                assert_eq!(block.len(), version.block_len(index));
                assert_eq!(block.is_file(), compression == Compression::None);
                block.will_need(0);
                let mut buf = vec![0; 300];
                let n = block.read_at(10, &mut buf).unwrap();
                let start = index * bs + 10;
                assert_eq!(n, 300.min(block.len() - 10));
                assert_eq!(
                    &buf[..n],
                    &data[start..start + n],
                    "{compression:?} {index}"
                );
                // At and past the end: nothing.
                assert_eq!(block.read_at(block.len(), &mut buf).unwrap(), 0);
                assert_eq!(block.read_at(block.len() + 7, &mut buf).unwrap(), 0);
            }
            assert!(matches!(
                store.open_block(&version, 3),
                Err(StoreError::Internal(_))
            ));
        }
    }

    /// A raw block damaged in place (same size): with `verify_reads` the
    /// open (and every read through it) fails with an error naming the hash
    /// and the path; without, the bytes are handed out unchecked, as the
    /// mount's reads always were.
    #[test]
    fn a_corrupt_block_with_verify_reads_is_a_bad_block_naming_its_hash() {
        let (_dir, mut store) = scratch(Compression::None);
        store.config_mut().verify_reads = false;
        let (version, data) = put(&store, "/damaged");
        let hash = version.hashes[1];
        let file = store.blocks().raw_path(&hash);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[5] ^= 0xff;
        // Block files are read-only hard links: replace, keeping the size.
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, &bytes).unwrap();

        let unchecked = store.open_block(&version, 1).unwrap();
        let mut buf = vec![0; 10];
        unchecked.read_at(0, &mut buf).unwrap();
        assert_eq!(buf, bytes[..10]);

        store.config_mut().verify_reads = true;
        let err = store.open_block(&version, 1).unwrap_err();
        match &err {
            StoreError::BadBlock { hash: named, .. } => assert_eq!(*named, hash),
            other => panic!("not a bad block: {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains(&hash.to_string()), "{text}");
        assert!(text.contains("/damaged"), "{text}");
        // Store::read_at goes the same way; the intact blocks still read.
        let bs = store.config().block_size as usize;
        let mut buf = vec![0; 10];
        assert!(matches!(
            store.read_at(&version, bs as u64, &mut buf),
            Err(StoreError::BadBlock { .. })
        ));
        store.read_at(&version, 0, &mut buf).unwrap();
        assert_eq!(buf, data[..10]);
        let good = store.open_block(&version, 2).unwrap();
        assert!(!good.is_file());
    }

    /// A damaged compressed block is caught whatever `verify_reads` says.
    #[test]
    fn a_corrupt_compressed_block_is_caught_without_verify_reads() {
        let (_dir, mut store) = scratch(Compression::Zstd);
        store.config_mut().verify_reads = false;
        let (version, _) = put(&store, "/z");
        let hash = version.hashes[0];
        let file = store.blocks().zst_path(&hash);
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last / 2] ^= 0x55;
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, &bytes).unwrap();
        assert!(!store.config().verify_reads);
        let err = store.open_block(&version, 0).unwrap_err();
        assert!(matches!(err, StoreError::BadBlock { .. }), "{err}");
    }
}
