//! Content-addressed blocks under `hashes/aa/bb/cc/dd/<56 hex>`: writing them
//! (temp file, flushed, then renamed into place), finding, reading and checking them.
//!
//! A block is stored raw under its hash path, or as a zstd frame under the same
//! path with `.zst` appended; readers accept either, so the store-wide compression
//! setting may change at any time. A new block is made durable before it gets its
//! final name: writers collect temp files and flush them in batches (each
//! file's data, or one `syncfs` for a batch of thousands), then rename them,
//! so a crash never leaves a torn block under a hash name.

// FFI: sync_file_range has no safe wrapper in nix; every block says why it is sound.
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::ids::BlockHash;
use crate::spec::Compression;

use super::{IoContext, StoreError};

/// Threads that open blocks to hint the kernel (local disk only: a peer's store
/// is never prefetched, so no thread can hang on a remote filesystem).
const PREFETCH_THREADS: usize = 4;

/// Directories between `hashes/` and a block file (`aa/bb/cc/dd`, FORMAT §4).
const FANOUT_LEVELS: usize = 4;

/// The queue of blocks to hint, started on first use.
fn prefetcher() -> &'static std::sync::mpsc::SyncSender<PathBuf> {
    static QUEUE: std::sync::OnceLock<std::sync::mpsc::SyncSender<PathBuf>> =
        std::sync::OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<PathBuf>(256);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for n in 0..PREFETCH_THREADS {
            let rx = std::sync::Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("prefetch-{n}"))
                .spawn(move || {
                    loop {
                        let next = crate::lock(&rx).recv();
                        let Ok(raw) = next else {
                            return;
                        };
                        hint(&raw);
                    }
                });
            if let Err(err) = spawned {
                tracing::debug!(error = %err, "no prefetch thread");
            }
        }
        tx
    })
}

/// Asks the kernel to start reading the block at `raw` (or its `.zst`).
fn hint(raw: &Path) {
    let file = File::open(raw).or_else(|_| {
        let mut zst = raw.as_os_str().to_os_string();
        zst.push(".zst");
        File::open(zst)
    });
    if let Ok(file) = file {
        let _ = nix::fcntl::posix_fadvise(
            &file,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
        );
    }
}

/// Where a block is and how it is stored.
#[derive(Clone, Debug)]
pub struct Located {
    pub path: PathBuf,
    pub compressed: bool,
}

/// The `hashes/` tree of one store (ours or a peer's).
#[derive(Clone, Debug)]
pub struct Blocks {
    dir: PathBuf,
}

impl Blocks {
    pub fn new(dir: impl Into<PathBuf>) -> Blocks {
        Blocks { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn raw_path(&self, hash: &BlockHash) -> PathBuf {
        self.dir.join(hash.relative_path())
    }

    pub fn zst_path(&self, hash: &BlockHash) -> PathBuf {
        let mut path = self.raw_path(hash).into_os_string();
        path.push(".zst");
        PathBuf::from(path)
    }

    /// Finds the block, raw or compressed. A raw block of the wrong size is not it.
    pub fn locate(&self, hash: &BlockHash, len: Option<usize>) -> Option<Located> {
        let raw = self.raw_path(hash);
        if let Ok(meta) = fs::metadata(&raw) {
            if meta.is_file() && len.is_none_or(|len| meta.len() == len as u64) {
                return Some(Located {
                    path: raw,
                    compressed: false,
                });
            }
        }
        let zst = self.zst_path(hash);
        if fs::metadata(&zst).map(|m| m.is_file()).unwrap_or(false) {
            return Some(Located {
                path: zst,
                compressed: true,
            });
        }
        None
    }

    /// Hints the kernel to read a local block soon (a no-op when it is not here).
    /// Done on background threads: opening a block walks four directory levels
    /// that may not be cached, and the reader must not wait for that. Hints
    /// beyond what the threads keep up with are dropped.
    pub fn prefetch(&self, hash: &BlockHash) {
        let _ = prefetcher().try_send(self.raw_path(hash));
    }

    /// The block of `hash` and length `len`, or an error saying it is not here.
    fn require(&self, hash: &BlockHash, len: usize) -> Result<Located, StoreError> {
        self.locate(hash, Some(len))
            .ok_or_else(|| StoreError::BadBlock {
                hash: *hash,
                why: format!("not in {}", self.dir.display()),
            })
    }

    /// Reads a whole block and checks its length (and, with `verify`, its hash).
    pub fn read(&self, hash: &BlockHash, len: usize, verify: bool) -> Result<Vec<u8>, StoreError> {
        let located = self.require(hash, len)?;
        let data = read_located(&located, len)?;
        if data.len() != len {
            return Err(StoreError::BadBlock {
                hash: *hash,
                why: format!(
                    "{} holds {} bytes, expected {len}",
                    located.path.display(),
                    data.len()
                ),
            });
        }
        if verify && BlockHash::of(&data) != *hash {
            return Err(StoreError::BadBlock {
                hash: *hash,
                why: format!(
                    "{}: content does not match its hash",
                    located.path.display()
                ),
            });
        }
        Ok(data)
    }

    /// Reads `buf.len()` bytes at `offset` of a block of length `len` without reading the rest
    /// (raw blocks); compressed blocks are decompressed whole.
    pub fn read_at(
        &self,
        hash: &BlockHash,
        len: usize,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<usize, StoreError> {
        self.open(hash, len)?.read_at(offset, buf)
    }

    /// Opens the block of `hash` and length `len` for reading ranges of it:
    /// a raw block stays a file read in place, a compressed one is
    /// decompressed whole, and so always checked (a damaged frame without a
    /// zstd checksum could otherwise decode to wrong bytes).
    pub fn open(&self, hash: &BlockHash, len: usize) -> Result<OpenBlock, StoreError> {
        let located = self.require(hash, len)?;
        if located.compressed {
            return Ok(OpenBlock::in_memory(*hash, self.read(hash, len, true)?));
        }
        let file = File::open(&located.path).at(&located.path)?;
        Ok(OpenBlock {
            hash: *hash,
            len,
            data: BlockData::File {
                file,
                path: located.path,
            },
        })
    }
}

/// One block opened for reading ranges of it ([`Blocks::open`],
/// `Store::open_block`); it stays readable when the block file loses its name
/// meanwhile (evicted or collected).
#[derive(Debug)]
pub struct OpenBlock {
    hash: BlockHash,
    len: usize,
    data: BlockData,
}

#[derive(Debug)]
enum BlockData {
    /// A raw block file, read in place.
    File { file: File, path: PathBuf },
    /// The block's bytes: decompressed, or read whole and checked.
    Bytes(Vec<u8>),
}

impl OpenBlock {
    /// A block whose bytes are already in memory (and checked).
    pub(super) fn in_memory(hash: BlockHash, data: Vec<u8>) -> OpenBlock {
        OpenBlock {
            hash,
            len: data.len(),
            data: BlockData::Bytes(data),
        }
    }

    pub fn hash(&self) -> &BlockHash {
        &self.hash
    }

    /// The block's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether reads go to a file (false: the bytes are in memory).
    pub fn is_file(&self) -> bool {
        matches!(self.data, BlockData::File { .. })
    }

    /// Reads up to `buf.len()` bytes at `offset` of the block; fewer only at
    /// its end (0 at or past it).
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<usize, StoreError> {
        let want = buf.len().min(self.len.saturating_sub(offset));
        if want == 0 {
            return Ok(0);
        }
        match &self.data {
            BlockData::Bytes(data) => {
                buf[..want].copy_from_slice(&data[offset..offset + want]);
                Ok(want)
            }
            BlockData::File { file, path } => {
                let mut done = 0;
                while done < want {
                    let n = file
                        .read_at(&mut buf[done..want], (offset + done) as u64)
                        .at(path)?;
                    if n == 0 {
                        return Err(StoreError::BadBlock {
                            hash: self.hash,
                            why: format!("{} is shorter than {} bytes", path.display(), self.len),
                        });
                    }
                    done += n;
                }
                Ok(done)
            }
        }
    }

    /// Asks the kernel to start reading the block from `offset` on (a reader
    /// that will want the rest of it soon); nothing for a block in memory.
    pub fn will_need(&self, offset: usize) {
        if let BlockData::File { file, .. } = &self.data {
            let _ = nix::fcntl::posix_fadvise(
                file,
                offset as libc::off_t,
                0,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
            );
        }
    }
}

/// Reads a located block's bytes (decompressing), at most `limit` + 1 bytes.
fn read_located(located: &Located, limit: usize) -> Result<Vec<u8>, StoreError> {
    let file = File::open(&located.path).at(&located.path)?;
    let mut data = Vec::with_capacity(limit);
    if located.compressed {
        let decoder = zstd::stream::read::Decoder::new(file).at(&located.path)?;
        decoder
            .take(limit as u64 + 1)
            .read_to_end(&mut data)
            .at(&located.path)?;
    } else {
        file.take(limit as u64 + 1)
            .read_to_end(&mut data)
            .at(&located.path)?;
    }
    Ok(data)
}

/// Writes new blocks into a store: temp files in `tmp/`, made durable in batches,
/// then renamed into place. Call [`BlockWriter::finish`] before publishing a
/// version that names the blocks.
pub struct BlockWriter<'a> {
    blocks: &'a Blocks,
    tmp: PathBuf,
    compression: Compression,
    /// Temp file, name, and the first byte of the hash (which thread of a
    /// large flush places it).
    pending: Vec<(PathBuf, PathBuf, u8)>,
    /// The hashes of `pending`, so a repeated block is found in constant
    /// time (a 64 MiB batch of 4 KiB blocks holds 16,384 of them).
    pending_hashes: HashSet<BlockHash>,
    pending_bytes: usize,
    /// New blocks written (not deduplicated).
    pub written: u64,
    /// Blocks already present.
    pub deduplicated: u64,
    /// Flush to disk before renaming into place (off for lazy, close-time commits).
    durable: bool,
}

/// A new block's temp file written by [`BlockPrep::prepare`], not yet in a
/// writer's batch.
pub enum Prepared {
    /// A block of the right size is stored already.
    Stored,
    /// All zeros: a hole, made by the writer itself.
    Zero(usize),
    /// Written (compressed if the store compresses) to `tmp`, to be named
    /// `dest`; `bytes` on disk.
    Written {
        tmp: PathBuf,
        dest: PathBuf,
        bytes: usize,
    },
}

/// The part of a [`BlockWriter`] that writes one block's temp file: held by
/// several threads at once (a large file's blocks are written side by side).
pub struct BlockPrep<'a> {
    blocks: &'a Blocks,
    tmp: PathBuf,
    compression: Compression,
    durable: bool,
}

impl BlockPrep<'_> {
    /// Writes `data` to a temp file to be named `hash`, unless a block of
    /// its size is stored already (or it is all zeros).
    pub fn prepare(&self, hash: &BlockHash, data: &[u8]) -> Result<Prepared, StoreError> {
        if self.blocks.locate(hash, Some(data.len())).is_some() {
            return Ok(Prepared::Stored);
        }
        if super::sparse::is_zero(data) {
            return Ok(Prepared::Zero(data.len()));
        }
        let (dest, bytes) = match self.compression {
            Compression::None => (self.blocks.raw_path(hash), std::borrow::Cow::Borrowed(data)),
            Compression::Zstd => {
                let packed = zstd::bulk::compress(data, 3).at(self.blocks.zst_path(hash))?;
                (self.blocks.zst_path(hash), std::borrow::Cow::Owned(packed))
            }
        };
        // Readable by peers (docs/FORMAT.md section 18), not a temp file's 0600.
        let (mut file, chmod) = crate::layout::store_temp_file(&self.tmp, "block-").at(&self.tmp)?;
        file.write_all(&bytes).at(file.path())?;
        if chmod {
            crate::layout::set_file_mode(file.as_file()).at(file.path())?;
        }
        if self.durable {
            // Start writeback now, so the batch flush finds the data on its way.
            use std::os::fd::AsRawFd;
            // SAFETY: the descriptor is the temp file's, open for the whole
            // call; the call takes plain integers and touches no memory of
            // ours (nix has no wrapper for sync_file_range(2)).
            unsafe {
                libc::sync_file_range(
                    file.as_file().as_raw_fd(),
                    0,
                    0,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        let (_, tmp) = file
            .keep()
            .map_err(|err| StoreError::io(&self.tmp, err.error))?;
        Ok(Prepared::Written {
            tmp,
            dest,
            bytes: bytes.len(),
        })
    }
}

/// Flush pending blocks once this many bytes wait.
const BATCH_BYTES: usize = 64 << 20;

impl<'a> BlockWriter<'a> {
    /// Called by [`super::Store::block_writer`] only: the store builds its
    /// writers from its own configuration.
    pub(super) fn new(blocks: &'a Blocks, tmp: &Path, compression: Compression) -> BlockWriter<'a> {
        BlockWriter {
            blocks,
            tmp: tmp.to_path_buf(),
            compression,
            pending: Vec::new(),
            pending_hashes: HashSet::new(),
            pending_bytes: 0,
            written: 0,
            deduplicated: 0,
            durable: true,
        }
    }

    /// Skips the flush before renaming (commits that promise atomicity, not
    /// durability; readers still check a block's size before trusting it).
    pub fn lazy(mut self) -> BlockWriter<'a> {
        self.durable = false;
        self
    }

    /// Stores `data` under `hash` unless a block of the right size is already there.
    pub fn put(&mut self, hash: &BlockHash, data: &[u8]) -> Result<(), StoreError> {
        if self.pending_hashes.contains(hash) {
            self.deduplicated += 1;
            return Ok(());
        }
        let prepared = self.preparer().prepare(hash, data)?;
        self.add(hash, prepared)
    }

    /// What writes a block's temp file, shareable with threads while this
    /// writer records what they wrote ([`BlockWriter::add`]).
    pub fn preparer(&self) -> BlockPrep<'a> {
        BlockPrep {
            blocks: self.blocks,
            tmp: self.tmp.clone(),
            compression: self.compression,
            durable: self.durable,
        }
    }

    /// Records a block [`BlockPrep::prepare`] handled, in the order of the
    /// file: a new one joins the batch (flushed and placed with it), one
    /// already pending or stored counts as deduplicated.
    pub fn add(&mut self, hash: &BlockHash, prepared: Prepared) -> Result<(), StoreError> {
        match prepared {
            Prepared::Stored => {
                self.deduplicated += 1;
                Ok(())
            }
            Prepared::Zero(len) => self.put_zero(hash, len),
            Prepared::Written { tmp, dest, bytes } => {
                if self.pending_hashes.contains(hash) {
                    // Written twice in one batch by two threads.
                    self.deduplicated += 1;
                    return fs::remove_file(&tmp).at(&tmp);
                }
                self.pending.push((tmp, dest, hash.0[0]));
                self.pending_hashes.insert(*hash);
                self.pending_bytes += bytes;
                self.written += 1;
                if self.pending_bytes >= BATCH_BYTES {
                    self.flush()?;
                }
                Ok(())
            }
        }
    }

    /// Stores the block of `len` zero bytes named `hash` (a hole) unless it is
    /// here: a sparse file of that length, raw whatever the compression (a
    /// raw block is read in place, and the file holds no data to compress),
    /// made durable and named like any block.
    pub fn put_zero(&mut self, hash: &BlockHash, len: usize) -> Result<(), StoreError> {
        let dest = self.blocks.raw_path(hash);
        if self.pending_hashes.contains(hash) || self.blocks.locate(hash, Some(len)).is_some() {
            self.deduplicated += 1;
            return Ok(());
        }
        let (file, chmod) = crate::layout::store_temp_file(&self.tmp, "block-").at(&self.tmp)?;
        file.as_file().set_len(len as u64).at(file.path())?;
        if chmod {
            crate::layout::set_file_mode(file.as_file()).at(file.path())?;
        }
        let (_, path) = file
            .keep()
            .map_err(|err| StoreError::io(&self.tmp, err.error))?;
        self.pending.push((path, dest, hash.0[0]));
        self.pending_hashes.insert(*hash);
        self.written += 1;
        Ok(())
    }

    /// Makes pending blocks durable and renames them into place.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.durable {
            let files: Vec<&Path> = self
                .pending
                .iter()
                .map(|(tmp, _, _)| tmp.as_path())
                .collect();
            flush_files(&self.tmp, &files)?;
        }
        // Forgotten before placing: after a failure below, no later put may
        // take a block that never reached its name for one that is pending.
        self.pending_hashes.clear();
        // Placed by a thread per share of `hashes/aa/` when there are many
        // (a large file in small blocks): each mostly makes fan-out
        // directories, which run side by side in different parents.
        let pending = std::mem::take(&mut self.pending);
        super::pipeline::run_grouped(
            &pending,
            super::pipeline::default_workers(),
            PARALLEL_PLACE_MIN,
            |(_, _, first)| usize::from(*first),
            |share| {
                for (tmp, dest, _) in share {
                    place_new_block(tmp, dest)?;
                }
                Ok::<(), StoreError>(())
            },
        )?;
        self.pending_bytes = 0;
        Ok(())
    }

    /// Flushes everything; the blocks written so far are now under their names.
    pub fn finish(mut self) -> Result<(u64, u64), StoreError> {
        self.flush()?;
        Ok((self.written, self.deduplicated))
    }
}

impl Drop for BlockWriter<'_> {
    fn drop(&mut self) {
        // An abandoned writer leaves no temp files behind.
        for (tmp, _, _) in self.pending.drain(..) {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// Blocks in one flush from which it places them on several threads.
const PARALLEL_PLACE_MIN: usize = 64;

/// [`place_block`], making the block's fan-out directories when missing,
/// top-down (`hashes/` is there; its `aa/bb/cc/dd` seldom are all).
fn place_new_block(tmp: &Path, dest: &Path) -> Result<(), StoreError> {
    match place_block(tmp, dest) {
        Err(err) if err.is_not_found() => {
            if let Some(parent) = dest.parent() {
                crate::layout::create_dirs_tail(parent, FANOUT_LEVELS).at(parent)?;
            }
            place_block(tmp, dest)
        }
        other => other,
    }
}

/// Gives a new block (a temp file) its hash name without replacing a block
/// another writer placed meanwhile: replacing would drop the other block's inode,
/// and a concurrent `link` of that name then fails with ENOENT (the kernel
/// refuses to link an inode whose last name just went). Only a block of another
/// size (damaged) is replaced.
fn place_block(tmp: &Path, dest: &Path) -> Result<(), StoreError> {
    match rename_noreplace(tmp, dest) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == ErrorKind::AlreadyExists => {
            let ours = fs::metadata(tmp).at(tmp)?.len();
            let theirs = fs::metadata(dest).map(|m| m.len()).ok();
            if theirs == Some(ours) {
                fs::remove_file(tmp).at(tmp)
            } else {
                fs::rename(tmp, dest).at(dest)
            }
        }
        // A filesystem without RENAME_NOREPLACE.
        Err(err) if matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
            fs::rename(tmp, dest).at(dest)
        }
        Err(err) => Err(StoreError::io(dest, err)),
    }
}

/// `rename` that fails with EEXIST instead of replacing `to`.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE)
        .map_err(std::io::Error::from)
}

/// Makes the data of `files` durable: each file's own, or one `syncfs` of
/// the filesystem holding `tmp` when there are more than
/// [`super::durable::TARGETED_MAX`] (one call beats thousands).
fn flush_files(tmp: &Path, files: &[&Path]) -> Result<(), StoreError> {
    if files.len() > super::durable::TARGETED_MAX {
        return sync_filesystem(tmp);
    }
    // Side by side: the file system commits the flushes that wait at once
    // in one journal transaction, where one by one each waits for its own.
    super::pipeline::run_grouped(files, FLUSH_THREADS, FLUSH_THREADS * 4, hash_of, |share| {
        for path in share {
            File::open(path)
                .and_then(|file| file.sync_data())
                .at(path)?;
        }
        Ok::<(), StoreError>(())
    })?;
    Ok(())
}

/// Threads that flush a batch of blocks (they wait on the disk, not on a core).
const FLUSH_THREADS: usize = 8;

/// Spreads paths over [`flush_files`]'s threads.
fn hash_of(path: &&Path) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut hasher);
    hasher.finish() as usize
}

/// Flushes the filesystem holding `path` (one journal commit for a whole batch).
pub fn sync_filesystem(path: &Path) -> Result<(), StoreError> {
    let dir = File::open(path).at(path)?;
    nix::unistd::syncfs(&dir).map_err(|errno| StoreError::io(path, std::io::Error::from(errno)))
}

/// Hard-links `source` at `link` (making parents). An existing link is kept.
/// Returns false when the file system refused because `source` has too many links
/// (EMLINK); the caller then stores a copy (docs/FORMAT.md, "Link limits").
pub fn link_block(source: &Path, link: &Path) -> Result<bool, StoreError> {
    let mut made_parent = false;
    // ENOENT has two harmless causes: the link's directory is not there yet,
    // and (on stores written by older versions, which replaced blocks on
    // rename) the source name moved to another inode during the call.
    for _ in 0..4 {
        match fs::hard_link(source, link) {
            Ok(()) => return Ok(true),
            Err(err) if err.kind() == ErrorKind::AlreadyExists => return Ok(true),
            Err(err) if err.raw_os_error() == Some(libc::EMLINK) => return Ok(false),
            Err(err) if err.kind() == ErrorKind::NotFound => {
                if !source.exists() {
                    return Err(StoreError::io(source, err));
                }
                if !made_parent {
                    if let Some(parent) = link.parent() {
                        // `<...>/hashes/aa/bb/cc/dd`: made top-down from the
                        // directory above `hashes/`.
                        crate::layout::create_dirs_tail(parent, FANOUT_LEVELS + 1).at(parent)?;
                    }
                    made_parent = true;
                }
            }
            Err(err) => return Err(StoreError::io(link, err)),
        }
    }
    Err(StoreError::io(
        link,
        std::io::Error::from(ErrorKind::NotFound),
    ))
}

/// Stores a full copy of `source` at `link` (temp file + rename), for EMLINK.
pub fn copy_block(source: &Path, link: &Path) -> Result<(), StoreError> {
    let parent = link.parent().unwrap_or(Path::new("."));
    crate::layout::create_dirs(parent).at(parent)?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent).at(parent)?;
    let mut input = File::open(source).at(source)?;
    if is_sparse_zero_block(&input) {
        // A hole (docs/FORMAT.md section 4, "Zero blocks"): its copy is one too.
        let len = input.metadata().at(source)?.len();
        tmp.as_file().set_len(len).at(tmp.path())?;
    } else {
        std::io::copy(&mut input, tmp.as_file_mut()).at(link)?;
    }
    crate::layout::set_file_mode(tmp.as_file()).at(tmp.path())?;
    tmp.as_file().sync_all().at(link)?;
    tmp.persist(link)
        .map_err(|err| StoreError::io(link, err.error))?;
    Ok(())
}

/// Whether `file` is a block file of zeros with no data on disk.
fn is_sparse_zero_block(file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata()
        .is_ok_and(|meta| meta.len() > 0 && meta.blocks() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    /// Two writers store the same new block at the same moment and each links
    /// it under its own path right after. Replacing the first writer's block on
    /// rename made the first writer's `link` fail with ENOENT now and then.
    #[test]
    fn two_writers_of_one_new_block_both_link_it() {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::store::scratch_spec(dir.path());
        let store = crate::store::Store::open_spec(&spec).unwrap();
        let blocks = store.blocks();
        let rounds = 300;
        let barrier = Arc::new(Barrier::new(2));
        std::thread::scope(|scope| {
            for writer in 0..2 {
                let (store, barrier) = (&store, Arc::clone(&barrier));
                let links = dir.path().join(format!("links-{writer}"));
                scope.spawn(move || {
                    let held = store.writer_lock().unwrap();
                    for round in 0..rounds {
                        let data = format!("block of round {round}").into_bytes();
                        let hash = BlockHash::of(&data);
                        barrier.wait();
                        let mut put = store.block_writer(&held).lazy();
                        put.put(&hash, &data).unwrap();
                        put.finish().unwrap();
                        let source = blocks.locate(&hash, Some(data.len())).unwrap().path;
                        let link = links.join(hash.relative_path());
                        assert!(link_block(&source, &link).unwrap(), "round {round}");
                        assert_eq!(fs::read(&link).unwrap(), data, "round {round}");
                    }
                });
            }
        });
        // Both paths' links name the one block file that stayed.
        use std::os::unix::fs::MetadataExt;
        for round in 0..rounds {
            let hash = BlockHash::of(format!("block of round {round}").as_bytes());
            let block = fs::metadata(blocks.raw_path(&hash)).unwrap();
            assert_eq!(block.nlink(), 3, "round {round}");
        }
    }
}
