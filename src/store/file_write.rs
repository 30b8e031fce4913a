//! The store's one write pipeline. Every new block goes through a
//! [`BlockWriter`] the store builds from its own configuration
//! ([`Store::block_writer`], the only caller of `BlockWriter::new`), and every
//! new file version is cut, hashed and stored by a [`FileWrite`] and then
//! published by [`Store::commit_locked`]. All of it asks for the writer lock
//! as a typed argument ([`WriterLock`]): `gc`, which takes that lock
//! exclusively, never sees a block or temp file that a version about to be
//! published still needs.
//!
//! ```text
//! let held = store.writer_lock()?;
//! let mut file = store.file_write(&held, durable);   // or .with_block_size(bs)
//! file.read_from(&mut input)?;                        // or push / reuse per block
//! let content = file.finish(attrs)?;
//! let version = store.commit_locked(&held, &path, content, durable)?;
//! ```

use std::io::{ErrorKind, Read};

use super::blocks::Prepared;
use super::{
    Attrs, BlockWriter, Content, Kind, STREAM_QUEUE_BYTES, Store, StoreError, WriterLock,
    lock::FileLock, pipeline,
};
use crate::ids::BlockHash;

impl Store {
    /// Takes the lock writers hold shared and `gc` exclusively.
    pub fn writer_lock(&self) -> Result<WriterLock, StoreError> {
        Ok(WriterLock(FileLock::shared(
            &self.layout.locks().join("gc"),
        )?))
    }

    /// The one way to store blocks: a writer built from this store's own
    /// configuration (its `hashes/`, `tmp/`, compression), for a caller that
    /// holds the writer lock (gc waits while blocks are not yet named by a
    /// published version).
    pub fn block_writer(&self, _held: &WriterLock) -> BlockWriter<'_> {
        BlockWriter::new(&self.blocks, &self.layout.tmp(), self.config.compression)
    }

    /// Stores one block whose bytes were checked against `hash` (a block
    /// pulled from or pushed by a peer), durable and under its name on return.
    pub fn store_block(
        &self,
        held: &WriterLock,
        hash: &BlockHash,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let mut writer = self.block_writer(held);
        writer.put(hash, data)?;
        writer.finish()?;
        Ok(())
    }

    /// Starts a new file version in blocks of this store's block size. With
    /// `durable` false the blocks are not flushed before they get their names
    /// (a lazy commit: atomic, not durable).
    pub fn file_write<'s>(&'s self, held: &WriterLock, durable: bool) -> FileWrite<'s> {
        let mut writer = self.block_writer(held);
        if !durable {
            writer = writer.lazy();
        }
        FileWrite {
            writer,
            block_size: self.config.block_size,
            hashes: Vec::new(),
            size: 0,
        }
    }
}

/// A file version being written: its blocks, cut at `block_size`, hashed and
/// stored as they come. [`FileWrite::finish`] makes them durable (unless
/// lazy) and gives the [`Content`] to commit.
pub struct FileWrite<'s> {
    writer: BlockWriter<'s>,
    block_size: u32,
    hashes: Vec<BlockHash>,
    size: u64,
}

impl<'s> FileWrite<'s> {
    /// Cuts at `block_size` instead of the store's (a file keeps the block
    /// size of the version it was opened at). Call before the first block.
    pub fn with_block_size(mut self, block_size: u32) -> FileWrite<'s> {
        debug_assert!(self.hashes.is_empty(), "block size changed mid-file");
        self.block_size = block_size;
        self
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// The hashes of the blocks so far, in order.
    pub fn hashes(&self) -> &[BlockHash] {
        &self.hashes
    }

    /// Bytes so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Hashes and stores the next block (`block_size` bytes, but the last).
    /// A block of zeros is not hashed: its hash comes from the zero table.
    pub fn push(&mut self, data: &[u8]) -> Result<BlockHash, StoreError> {
        if super::sparse::is_zero(data) && !data.is_empty() {
            return self.push_zero(data.len());
        }
        let hash = BlockHash::of(data);
        self.push_hashed(hash, data)?;
        Ok(hash)
    }

    /// Stores the next block as `len` zero bytes (a hole): nothing is read,
    /// hashed or written but one sparse block file per length.
    pub fn push_zero(&mut self, len: usize) -> Result<BlockHash, StoreError> {
        let hash = super::sparse::zero_hash(len);
        self.writer.put_zero(&hash, len)?;
        self.hashes.push(hash);
        self.size += len as u64;
        Ok(hash)
    }

    /// Stores the next block, already hashed by the caller.
    pub fn push_hashed(&mut self, hash: BlockHash, data: &[u8]) -> Result<(), StoreError> {
        self.writer.put(&hash, data)?;
        self.hashes.push(hash);
        self.size += data.len() as u64;
        Ok(())
    }

    /// Names a block of `len` bytes that a published version already names,
    /// as the next block (nothing is written).
    pub fn reuse(&mut self, hash: BlockHash, len: usize) {
        self.hashes.push(hash);
        self.size += len as u64;
    }

    /// Cuts the rest of `input` into blocks and stores them. Streams: the
    /// input is read on this thread while worker threads hash (the costly
    /// part); buffers go round, so at most about 8 MiB are in flight. A file
    /// of one block (most files) uses no threads.
    pub fn read_from(&mut self, input: &mut dyn Read) -> Result<(), StoreError> {
        let bs = self.block_size as usize;
        let mut first = vec![0; bs];
        let n = read_full(input, &mut first)?;
        first.truncate(n);
        if n < bs {
            if n > 0 {
                self.push(&first)?;
            }
            return Ok(());
        }
        let workers = pipeline::default_workers();
        let queue = (STREAM_QUEUE_BYTES / bs / workers).max(1);
        let spare: std::cell::RefCell<Vec<Vec<u8>>> = Default::default();
        let mut first = Some(first);
        let mut ended = false;
        // The workers hash and write each block's temp file; this thread
        // reads and records them in order (flushing and placing batches).
        let prep = self.writer.preparer();
        let prep = &prep;
        pipeline::run_ordered::<_, _, StoreError>(
            workers,
            queue,
            || {
                if let Some(first) = first.take() {
                    return Ok(Some(first));
                }
                if ended {
                    return Ok(None);
                }
                let mut buf = spare.borrow_mut().pop().unwrap_or_default();
                buf.resize(bs, 0);
                let n = read_full(input, &mut buf)?;
                buf.truncate(n);
                ended = n < bs;
                Ok((n > 0).then_some(buf))
            },
            |buf: Vec<u8>| {
                if super::sparse::is_zero(&buf) {
                    let len = buf.len();
                    return Ok((super::sparse::zero_hash(len), Prepared::Zero(len), buf));
                }
                let hash = BlockHash::of(&buf);
                let prepared = prep.prepare(&hash, &buf)?;
                Ok((hash, prepared, buf))
            },
            |(hash, prepared, buf): (BlockHash, Prepared, Vec<u8>)| {
                self.writer.add(&hash, prepared)?;
                self.hashes.push(hash);
                self.size += buf.len() as u64;
                spare.borrow_mut().push(buf);
                Ok(())
            },
        )
    }

    /// Puts every block written under its name (flushed first unless lazy)
    /// and returns the content of the new file version, not yet committed.
    pub fn finish(self, attrs: Attrs) -> Result<Content, StoreError> {
        self.writer.finish()?;
        Ok(Content {
            kind: Kind::File,
            size: self.size,
            mode: attrs.mode & 0o7777,
            mtime: attrs.mtime,
            block_size: self.block_size,
            target: None,
            hashes: self.hashes,
            from: None,
            conflict_of: None,
            posix: crate::store::posix::Posix::default(),
            based_on: None,
            new_file: false,
        })
    }
}

/// Fills `buf` from `input` unless it ends first; returns the bytes read.
fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> Result<usize, StoreError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(StoreError::io("(input)", err)),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Mtime, scratch_spec};

    fn scratch() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let spec = scratch_spec(dir.path());
        let store = Store::open_spec(&spec).unwrap();
        (dir, store)
    }

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// A stream cut by `read_from`, pushed block by block, or partly reused
    /// from a committed version gives the same content, and reads back.
    #[test]
    fn streamed_pushed_and_reused_blocks_make_the_same_version() {
        let (_dir, store) = scratch();
        let bs = store.config().block_size as usize;
        let data = bytes(40 * bs + 123, 7);
        let attrs = Attrs {
            mode: 0o100640,
            mtime: Mtime::now(),
        };
        let held = store.writer_lock().unwrap();
        let mut streamed = store.file_write(&held, true);
        streamed.read_from(&mut data.as_slice()).unwrap();
        let streamed = streamed.finish(attrs).unwrap();
        assert_eq!(streamed.size, data.len() as u64);
        assert_eq!(streamed.hashes.len(), 41);
        assert_eq!(streamed.mode, 0o640);

        let mut pushed = store.file_write(&held, false);
        for chunk in data.chunks(bs) {
            pushed.push(chunk).unwrap();
        }
        let pushed = pushed.finish(attrs).unwrap();
        assert_eq!(pushed.hashes, streamed.hashes);

        let path = crate::layout::VPath::parse(std::ffi::OsStr::new("/f")).unwrap();
        let version = store.commit_locked(&held, &path, streamed, true).unwrap();
        let mut edited = data.clone();
        edited[5 * bs] ^= 0xff;
        let mut reused = store.file_write(&held, true);
        for (index, chunk) in edited.chunks(bs).enumerate() {
            if index == 5 {
                reused.push(chunk).unwrap();
            } else {
                reused.reuse(version.hashes[index], chunk.len());
            }
        }
        assert_eq!(reused.size(), data.len() as u64);
        let content = reused.finish(attrs).unwrap();
        let next = store.commit_locked(&held, &path, content, false).unwrap();
        drop(held);
        let mut back = Vec::new();
        store.copy_to(&next, &mut back).unwrap();
        assert_eq!(back, edited);
        assert_eq!(store.current(&path).unwrap().unwrap().id, next.id);
    }

    /// Empty and one-block inputs, and a block size of the caller's.
    #[test]
    fn small_inputs_and_a_chosen_block_size() {
        let (_dir, store) = scratch();
        let held = store.writer_lock().unwrap();
        let mut empty = store.file_write(&held, true);
        empty.read_from(&mut std::io::empty()).unwrap();
        let empty = empty.finish(Attrs::default()).unwrap();
        assert_eq!((empty.size, empty.hashes.len()), (0, 0));

        let data = bytes(10_000, 1);
        let mut small = store.file_write(&held, true).with_block_size(1024);
        assert_eq!(small.block_size(), 1024);
        small.read_from(&mut data.as_slice()).unwrap();
        let small = small.finish(Attrs::default()).unwrap();
        assert_eq!(small.block_size, 1024);
        assert_eq!(small.hashes.len(), 10);
        for (index, hash) in small.hashes.iter().enumerate() {
            let len = if index == 9 { 10_000 - 9 * 1024 } else { 1024 };
            let block = store.blocks().read(hash, len, true).unwrap();
            assert_eq!(block, data[index * 1024..index * 1024 + len]);
        }
    }
}
