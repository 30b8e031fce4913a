//! The redo log: what makes an `fsync` durable with one `fdatasync`.
//!
//! A durable commit first publishes its version lazily into the seed layout
//! (block files, version file, log, journal, outbound: in the page cache, at
//! once visible to every process of the node, exactly as a close), then
//! appends one checksummed *redo record* to this process's redo file
//! `state/redo/<pid>-<16 hex>` and `fdatasync`s that one file. The record
//! holds the version file's text and the bytes of every block of the version
//! not yet known to be durable (up to [`RECORD_DATA_MAX`]; a block beyond it,
//! or already on disk from earlier, is flushed in place). So after a power
//! loss that took lazy layout writes with it, the record alone is enough to
//! publish the version again.
//!
//! The file is locked (`flock`, exclusive) while its process lives. A
//! *checkpoint* flushes what the versions it holds depend on in the layout
//! (FORMAT §14's targeted flush, or one `syncfs` past 4,096 files) and
//! empties it: once it passes [`CHECKPOINT_BYTES`] or [`CHECKPOINT_VERSIONS`],
//! and when the store is closed. Recovery ([`Store::replay_redo`], part of
//! [`Store::recover_interrupted`]) takes the redo files whose lock it can
//! take (their process is gone), and for each whole record puts back what is
//! missing or damaged: blocks (checked against their hash), the version file,
//! the path's links, its log line, the journal line and the outbound entries;
//! then it flushes them and deletes the file. A torn last record belongs to an
//! `fsync` that never returned. docs/FORMAT.md §14 is the contract.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::fcntl::Flock;
use sha2::{Digest, Sha256};

use super::intents;
use super::{IoContext, Store, StoreError, Version, WriterLock, read_dir_if_present};
use crate::ids::{BlockHash, VersionId};
use crate::layout::VPath;

/// The redo record format this release writes and reads.
pub const REDO_FORMAT: u32 = 1;
/// Block bytes one durable point copies into the redo file at most; the rest
/// of its blocks are flushed where they are.
pub const RECORD_DATA_MAX: usize = 8 << 20;
/// A redo file past this many bytes is checkpointed.
pub const CHECKPOINT_BYTES: u64 = 64 << 20;
/// A redo file holding this many versions is checkpointed.
pub const CHECKPOINT_VERSIONS: usize = 4096;
/// Blocks remembered as durable, at most (then forgotten: more flushes).
const KNOWN_MAX: usize = 1 << 16;
/// Zero bytes written ahead of the last record (and flushed once), so a
/// durable point's record overwrites space the file already has and its
/// `fdatasync` changes no size (no file system journal commit for it).
const PREPARED_BYTES: u64 = 1 << 20;
/// Space ahead below which more is prepared, after a durable point.
const PREPARED_LOW: u64 = 256 << 10;
/// Largest redo file recovery reads.
const MAX_REDO_BYTES: u64 = CHECKPOINT_BYTES + 2 * RECORD_DATA_MAX as u64 + (16 << 20);

/// This process's redo file and what it knows is durable.
#[derive(Default)]
pub struct Redo {
    own: Mutex<Option<OwnRedo>>,
    /// Blocks known durable (flushed, or in a redo record), by the identity
    /// of the file that holds them: a block deleted and written again is a
    /// new file (new inode or ctime) and is not taken for the old one.
    known: Mutex<HashMap<BlockHash, FileId>>,
    /// What writers said of blocks they just stored (see [`DeltaHint`]), by
    /// the block's hash, until a durable point takes them.
    hints: Mutex<HashMap<BlockHash, DeltaHint>>,
}

/// A writer's word on a block it just stored: its bytes are those of block
/// `base` (`base_len` bytes, cut or extended with zeros) but in `ranges`.
/// A durable point records them as the block's delta without reading and
/// comparing the two blocks (when `base` is known durable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaHint {
    pub base: BlockHash,
    pub base_len: usize,
    /// (offset in the block, the bytes there now).
    pub ranges: Vec<(usize, Vec<u8>)>,
}

/// Hints kept at most, and their bytes at most (past either, the ones
/// kept are dropped: a durable point then compares the blocks itself).
const HINTS_MAX: usize = 1024;
const HINT_BYTES_MAX: usize = 32 << 20;

impl std::fmt::Debug for Redo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redo").finish_non_exhaustive()
    }
}

struct OwnRedo {
    file: Flock<File>,
    path: PathBuf,
    /// Where its records end (the next one is written there).
    bytes: u64,
    /// The file's length: zeros from `bytes` on.
    prepared: u64,
    /// The versions its records hold (for the checkpoint).
    held: std::collections::HashSet<(VPath, VersionId)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    ctime: i64,
    ctime_nsec: i64,
}

impl FileId {
    fn of(path: &Path) -> Option<FileId> {
        let meta = fs::symlink_metadata(path).ok()?;
        Some(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        })
    }
}

/// One block of a record.
struct RecordBlock {
    hash: BlockHash,
    len: usize,
    body: Body,
}

/// How a record holds a block's bytes.
enum Body {
    /// A block of zeros (a hole): no bytes.
    Zero,
    /// All of them.
    Data(Vec<u8>),
    /// The bytes where it differs from `base`, a durable block of
    /// `base_len` bytes (the same block of the version it was edited from;
    /// cut or extended with zeros to the block's length first).
    Delta {
        base: BlockHash,
        base_len: usize,
        ranges: Vec<(usize, Vec<u8>)>,
    },
}

/// Granularity of a delta: differing pages of this many bytes are kept.
const DELTA_PAGE: usize = 4096;

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Redo files of processes that are gone, read and removed.
    pub files: usize,
    /// Versions whose version file or blocks had to be put back.
    pub restored: usize,
}

impl Store {
    /// Remembers what the writer of block `hash` knows of how it differs
    /// from an older block, for the next durable point naming it.
    pub fn note_delta(&self, hash: BlockHash, hint: DeltaHint) {
        let bytes = |h: &DeltaHint| h.ranges.iter().map(|(_, r)| r.len()).sum::<usize>();
        let mut hints = crate::lock(&self.redo.hints);
        let held: usize = hints.values().map(bytes).sum();
        if hints.len() >= HINTS_MAX || held + bytes(&hint) > HINT_BYTES_MAX {
            hints.clear();
        }
        hints.insert(hash, hint);
    }

    /// Makes `versions` durable (FORMAT §14): one redo record each, one
    /// `fdatasync`; blocks already on disk from earlier are flushed in
    /// place once and then remembered.
    pub fn make_durable(&self, versions: &[Version]) -> Result<(), StoreError> {
        self.forget_lazy_all(versions);
        // A version a record of this process holds already is durable.
        let versions: Vec<Version> = {
            let own = crate::lock(&self.redo.own);
            versions
                .iter()
                .filter(|v| {
                    !own.as_ref()
                        .is_some_and(|f| f.held.contains(&(v.path.clone(), v.id)))
                })
                .cloned()
                .collect()
        };
        let versions = versions.as_slice();
        if versions.is_empty() {
            return Ok(());
        }
        // gc (exclusive) never runs between choosing a delta's base and
        // the record naming it: it keeps what redo files name as bases.
        let _held = self.writer_lock()?;
        let mut budget = RECORD_DATA_MAX;
        let mut flush = super::durable::Flush::default();
        let mut records = Vec::new();
        let mut now_known = Vec::new();
        {
            let known = crate::lock(&self.redo.known);
            for version in versions {
                let mut blocks = Vec::new();
                let mut seen = std::collections::HashSet::new();
                // The blocks of the version it was edited from, by index:
                // a block changed in place is kept as a delta on its old one.
                // Read only for a block no writer's hint covers.
                let mut bases: Option<Vec<(BlockHash, usize)>> = None;
                for (index, hash) in version.hashes.iter().enumerate() {
                    if !seen.insert(*hash) {
                        continue;
                    }
                    let len = version.block_len(index);
                    if super::sparse::is_zero_block(hash, len) {
                        blocks.push(RecordBlock {
                            hash: *hash,
                            len,
                            body: Body::Zero,
                        });
                        continue;
                    }
                    // A block not here (never pulled) has nothing to keep.
                    let Some(located) = self.blocks.locate(hash, Some(len)) else {
                        continue;
                    };
                    let Some(id) = FileId::of(&located.path) else {
                        continue;
                    };
                    if known.get(hash) == Some(&id) {
                        continue;
                    }
                    now_known.push((*hash, id));
                    let hint = crate::lock(&self.redo.hints).remove(hash);
                    if let Some(hint) = hint.filter(|h| {
                        len > DELTA_PAGE
                            && h.base != *hash
                            && self.is_known(&known, &h.base, h.base_len)
                    }) {
                        let bytes: usize = hint.ranges.iter().map(|(_, r)| r.len()).sum();
                        #[cfg(debug_assertions)]
                        self.check_hint(hash, len, &hint);
                        if bytes * 2 <= len && bytes <= budget {
                            budget -= bytes;
                            blocks.push(RecordBlock {
                                hash: *hash,
                                len,
                                body: Body::Delta {
                                    base: hint.base,
                                    base_len: hint.base_len,
                                    ranges: hint.ranges,
                                },
                            });
                            continue;
                        }
                    }
                    let bases = bases.get_or_insert_with(|| self.edited_from(version));
                    let base = bases.get(index).copied().filter(|(base, base_len)| {
                        base != hash && self.is_known(&known, base, *base_len)
                    });
                    if let Some((base, base_len)) = base.filter(|_| len > DELTA_PAGE) {
                        let data = self.blocks.read(hash, len, false)?;
                        if let Some(ranges) = self.delta(&base, base_len, &data) {
                            let bytes: usize = ranges.iter().map(|(_, r)| r.len()).sum();
                            if bytes <= budget {
                                budget -= bytes;
                                blocks.push(RecordBlock {
                                    hash: *hash,
                                    len,
                                    body: Body::Delta {
                                        base,
                                        base_len,
                                        ranges,
                                    },
                                });
                                continue;
                            }
                        }
                    }
                    if len <= budget {
                        budget -= len;
                        let data = self.blocks.read(hash, len, false)?;
                        blocks.push(RecordBlock {
                            hash: *hash,
                            len,
                            body: Body::Data(data),
                        });
                    } else {
                        self.block_depends(hash, &located.path, version, &mut flush);
                    }
                }
                encode(&mut records, version, &blocks);
            }
        }
        if flush.len() > super::durable::TARGETED_MAX {
            // Thousands of blocks: one flush of the filesystem covers all,
            // and its blocks are known durable from now on.
            self.flush_durable(versions)?;
            self.now_known(now_known);
            return Ok(());
        }
        flush.run()?;
        {
            let mut own = crate::lock(&self.redo.own);
            if own.is_none() {
                *own = Some(create(&self.layout.redo())?);
            }
            let Some(file) = own.as_mut() else {
                return Err(StoreError::Internal("redo file vanished".to_string()));
            };
            {
                use std::os::unix::fs::FileExt;
                file.file
                    .write_all_at(&records, file.bytes)
                    .at(&file.path)?;
            }
            crate::failpoint::hit("durable:appended");
            file.file.sync_data().at(&file.path)?;
            crate::failpoint::hit("durable:recorded");
            file.bytes += records.len() as u64;
            file.prepared = file.prepared.max(file.bytes);
            file.held
                .extend(versions.iter().map(|v| (v.path.clone(), v.id)));
            if file.bytes > CHECKPOINT_BYTES || file.held.len() >= CHECKPOINT_VERSIONS {
                self.checkpoint(file)?;
            }
            if file.prepared - file.bytes < PREPARED_LOW {
                // Not needed for what was made durable: a full disk only
                // makes the next points slower.
                if let Err(err) = prepare(file) {
                    tracing::debug!(file = %file.path.display(), error = %err, "preparing redo space");
                }
            }
        }
        self.now_known(now_known);
        Ok(())
    }

    /// Debug builds (the tests) check every hint rebuilds its block, as a
    /// replay would.
    #[cfg(debug_assertions)]
    fn check_hint(&self, hash: &BlockHash, len: usize, hint: &DeltaHint) {
        if let Ok(mut data) = self.blocks.read(&hint.base, hint.base_len, false) {
            data.resize(len, 0);
            for (at, bytes) in &hint.ranges {
                data[*at..at + bytes.len()].copy_from_slice(bytes);
            }
            assert_eq!(
                BlockHash::of(&data),
                *hash,
                "a writer's delta hint does not rebuild its block"
            );
        }
    }

    /// Remembers blocks just made durable.
    fn now_known(&self, blocks: Vec<(BlockHash, FileId)>) {
        let mut known = crate::lock(&self.redo.known);
        if known.len() + blocks.len() > KNOWN_MAX {
            known.clear();
        }
        known.extend(blocks);
    }

    /// Whether `hash` (a block of `len` bytes) is known durable now: its
    /// file is the one remembered.
    fn is_known(&self, known: &HashMap<BlockHash, FileId>, hash: &BlockHash, len: usize) -> bool {
        known.get(hash).is_some_and(|id| {
            self.blocks
                .locate(hash, Some(len))
                .and_then(|located| FileId::of(&located.path))
                == Some(*id)
        })
    }

    /// The pages of `data` that differ from block `base` (`base_len`
    /// bytes, cut or extended with zeros to `data`'s length), merged into
    /// ranges; `None` when `base` does not read or more than half differs
    /// (the whole block is cheaper then).
    fn delta(
        &self,
        base: &BlockHash,
        base_len: usize,
        data: &[u8],
    ) -> Option<Vec<(usize, Vec<u8>)>> {
        let mut old = self.blocks.read(base, base_len, false).ok()?;
        old.resize(data.len(), 0);
        let mut ranges: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut changed = 0;
        for (page, (new, was)) in data
            .chunks(DELTA_PAGE)
            .zip(old.chunks(DELTA_PAGE))
            .enumerate()
        {
            if new == was {
                continue;
            }
            let at = page * DELTA_PAGE;
            changed += new.len();
            match ranges.last_mut() {
                Some((start, bytes)) if *start + bytes.len() == at => bytes.extend_from_slice(new),
                _ => ranges.push((at, new.to_vec())),
            }
        }
        (changed * 2 <= data.len()).then_some(ranges)
    }

    /// The block hashes of the file version `version` was edited from (its
    /// newest parent still here with the same block size), by index; empty
    /// when none.
    fn edited_from(&self, version: &Version) -> Vec<(BlockHash, usize)> {
        let mut best: Option<Version> = None;
        for parent in &version.parents {
            if let Ok(parent) = self.read_version(&version.path, *parent) {
                if parent.kind == super::Kind::File
                    && parent.block_size == version.block_size
                    && best.as_ref().is_none_or(|b| b.id < parent.id)
                {
                    best = Some(parent);
                }
            }
        }
        best.map(|b| {
            (0..b.hashes.len())
                .map(|index| (b.hashes[index], b.block_len(index)))
                .collect()
        })
        .unwrap_or_default()
    }

    /// Every block a redo file (of any process) names as a delta's base:
    /// `gc` keeps them, or a replay could not rebuild the block.
    pub fn redo_bases(&self) -> Result<std::collections::HashSet<BlockHash>, StoreError> {
        let mut bases = std::collections::HashSet::new();
        let dir = self.layout.redo();
        let Some(entries) = read_dir_if_present(&dir)? else {
            return Ok(bases);
        };
        for entry in entries {
            let path = entry.at(&dir)?.path();
            let text = match fs::File::open(&path) {
                Ok(file) => {
                    let mut text = Vec::new();
                    file.take(MAX_REDO_BYTES).read_to_end(&mut text).at(&path)?;
                    text
                }
                Err(err) if err.kind() == ErrorKind::NotFound => continue,
                Err(err) => return Err(StoreError::io(&path, err)),
            };
            let mut at = 0;
            while at < text.len() {
                let Ok((_, blocks, next)) = decode(&path, &text[at..]) else {
                    break;
                };
                at += next;
                for block in blocks {
                    if let Body::Delta { base, .. } = block.body {
                        bases.insert(base);
                    }
                }
            }
        }
        Ok(bases)
    }

    /// Flushes what the versions of this process's redo file depend on and
    /// empties it (also done when the store is closed).
    pub fn checkpoint_redo(&self) -> Result<(), StoreError> {
        let mut own = crate::lock(&self.redo.own);
        match own.as_mut() {
            Some(file) if !file.held.is_empty() => self.checkpoint(file),
            _ => Ok(()),
        }
    }

    /// Where this process's redo records end (0 without a file).
    #[cfg(test)]
    fn redo_record_bytes(&self) -> u64 {
        crate::lock(&self.redo.own)
            .as_ref()
            .map_or(0, |file| file.bytes)
    }

    fn checkpoint(&self, file: &mut OwnRedo) -> Result<(), StoreError> {
        let held = std::mem::take(&mut file.held);
        let versions = self.read_held(&held)?;
        if let Err(err) = self.flush_durable(&versions) {
            file.held = held;
            return Err(err);
        }
        file.file.set_len(0).at(&file.path)?;
        file.bytes = 0;
        file.prepared = 0;
        // Blocks known durable through a record of the file may be of
        // versions dropped since, which the checkpoint did not flush.
        crate::lock(&self.redo.known).clear();
        Ok(())
    }

    /// The versions named, as their files say now (pruned or coalesced away
    /// since: nothing of them to keep).
    fn read_held<'h>(
        &self,
        held: impl IntoIterator<Item = &'h (VPath, VersionId)>,
    ) -> Result<Vec<Version>, StoreError> {
        let mut seen = std::collections::HashSet::new();
        let mut versions = Vec::new();
        for (path, id) in held {
            if !seen.insert((path, *id)) {
                continue;
            }
            match self.read_version(path, *id) {
                Ok(version) => versions.push(version),
                Err(err) if err.is_not_found() => {}
                Err(StoreError::Corrupt { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(versions)
    }

    /// Puts back what processes of this node that are gone left only in
    /// their redo files (see the module docs); then flushes it and deletes
    /// the files. Takes the writer lock when there is anything to do.
    pub fn replay_redo(&self) -> Result<Replayed, StoreError> {
        let own = crate::lock(&self.redo.own).as_ref().map(|f| f.path.clone());
        let candidates =
            intents::files_of_others(&self.layout.redo(), |path| own.as_deref() == Some(path))?;
        let mut done = Replayed::default();
        if candidates.is_empty() {
            return Ok(done);
        }
        // One replay at a time, and every other opener waits for it: a
        // file being replayed is locked like a live process's, and a reader
        // that skipped it would read the layout the crash left.
        let _replaying = super::lock::FileLock::exclusive(&self.layout.locks().join("redo"))?;
        let held = self.writer_lock()?;
        for path in candidates {
            let Some(file) = intents::take_if_dead(&path)? else {
                continue; // its process is alive
            };
            done.restored += self.replay_file(&held, &file, &path)?;
            intents::remove_done(&path)?;
            done.files += 1;
        }
        if done.restored > 0 {
            tracing::warn!(
                versions = done.restored,
                files = done.files,
                "put back versions that were durable only in the redo log (a crash lost their layout writes)"
            );
        }
        Ok(done)
    }

    fn replay_file(
        &self,
        held: &WriterLock,
        file: &File,
        path: &Path,
    ) -> Result<usize, StoreError> {
        let mut text = Vec::new();
        file.take(MAX_REDO_BYTES).read_to_end(&mut text).at(path)?;
        let mut at = 0;
        let mut restored = 0;
        let mut versions = Vec::new();
        while at < text.len() {
            if is_prepared_space(&text[at..]) {
                break;
            }
            let (version, blocks, next) = match decode(path, &text[at..]) {
                Ok(record) => record,
                Err(why) => {
                    // A torn last record was an fsync that never returned;
                    // anything else is damage, and nothing past it is trusted.
                    tracing::warn!(file = %path.display(), offset = at, %why, "a redo record that does not read whole: it and what follows are skipped");
                    break;
                }
            };
            at += next;
            if self.replay_version(held, &version, &blocks)? {
                restored += 1;
            }
            versions.push(version);
        }
        let versions: Vec<(VPath, VersionId)> =
            versions.into_iter().map(|v| (v.path, v.id)).collect();
        let versions = self.read_held(&versions)?;
        self.flush_durable(&versions)?;
        Ok(restored)
    }

    /// Puts back one record's version; true if anything was missing.
    fn replay_version(
        &self,
        held: &WriterLock,
        version: &Version,
        blocks: &[RecordBlock],
    ) -> Result<bool, StoreError> {
        let mut restored = false;
        for block in blocks {
            let data = match &block.body {
                Body::Zero => {
                    if self.blocks.locate(&block.hash, Some(block.len)).is_none() {
                        let mut writer = self.block_writer(held);
                        writer.put_zero(&block.hash, block.len)?;
                        writer.finish()?;
                        restored = true;
                    }
                    continue;
                }
                _ if self.blocks.read(&block.hash, block.len, true).is_ok() => continue,
                Body::Data(data) => data.clone(),
                Body::Delta {
                    base,
                    base_len,
                    ranges,
                } => {
                    let Ok(mut data) = self.blocks.read(base, *base_len, true) else {
                        tracing::error!(path = %version.path, block = %block.hash, base = %base, "a redo record's block cannot be rebuilt: the block it changes is gone; the version is not put back");
                        return Ok(false);
                    };
                    data.resize(block.len, 0);
                    for (at, bytes) in ranges {
                        if let Some(dest) = data.get_mut(*at..at + bytes.len()) {
                            dest.copy_from_slice(bytes);
                        }
                    }
                    if BlockHash::of(&data) != block.hash {
                        tracing::error!(path = %version.path, block = %block.hash, base = %base, "a redo record's delta does not rebuild its block; the version is not put back");
                        return Ok(false);
                    }
                    data
                }
            };
            // Missing or damaged (zeros of the right length after a crash):
            // the record's bytes replace it.
            for bad in [
                self.blocks.raw_path(&block.hash),
                self.blocks.zst_path(&block.hash),
            ] {
                match fs::remove_file(&bad) {
                    Ok(()) => {}
                    Err(err) if err.kind() == ErrorKind::NotFound => {}
                    Err(err) => return Err(StoreError::io(&bad, err)),
                }
            }
            self.store_block(held, &block.hash, &data)?;
            restored = true;
        }
        let dir = self.versions_dir(&version.path);
        match self.read_version(&version.path, version.id) {
            Ok(_) if !restored => return Ok(false),
            Ok(_) => {}
            Err(err) if err.is_not_found() => {
                if self.pruned_ids(&version.path)?.contains(&version.id) {
                    // Dropped on purpose after it was recorded.
                    return Ok(restored);
                }
                self.put_version_file(&dir, version, false)?;
            }
            Err(StoreError::Corrupt { .. }) => {
                self.put_version_file(&dir, version, true)?;
            }
            Err(err) => return Err(err),
        }
        // Put back without a line in the log: what this process remembers
        // of the path's heads does not know it (QA: the mount served the
        // version before it for seconds after a replay).
        self.heads.forget(&version.path);
        self.link_blocks(&version.path, &version.hashes)?;
        self.record(version)?;
        self.end_log_with_current(&version.path)?;
        Ok(true)
    }

    /// Writes `version`'s file at its own id (replacing a torn one).
    fn put_version_file(
        &self,
        dir: &Path,
        version: &Version,
        replace: bool,
    ) -> Result<(), StoreError> {
        crate::layout::create_dirs(dir).at(dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix("version-")
            .tempfile_in(self.layout.tmp())
            .at(self.layout.tmp())?;
        tmp.write_all(version.to_text().as_bytes()).at(tmp.path())?;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644)).at(tmp.path())?;
        let dest = dir.join(version.id.to_string());
        if replace {
            tmp.persist(&dest)
                .map_err(|err| StoreError::io(&dest, err.error))?;
            return Ok(());
        }
        match fs::hard_link(tmp.path(), &dest) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(err) => Err(StoreError::io(&dest, err)),
        }
    }

    /// Adds a block's file and the directories naming it (in `hashes/` and
    /// under the version's path) to `flush`.
    fn block_depends(
        &self,
        hash: &BlockHash,
        file: &Path,
        version: &Version,
        flush: &mut super::durable::Flush,
    ) {
        let top = &self.layout.dir;
        if let Some(dir) = file.parent() {
            flush.dirs_from(dir, top);
        }
        let links = self.path_dir(&version.path).join("hashes");
        if let Some(dir) = links.join(hash.relative_path()).parent() {
            flush.dirs_from(dir, top);
        }
        flush.files.insert(file.to_path_buf());
    }
}

impl Drop for Redo {
    fn drop(&mut self) {
        let own = self.own.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = own.take() {
            if file.held.is_empty() {
                let _ = fs::remove_file(&file.path);
            }
            // Otherwise the next process of the node replays it (nothing
            // missing: it only flushes), so an exit without a checkpoint
            // loses nothing.
        }
    }
}

/// Appends one record: a header line naming the format, the version text's
/// length, the number of blocks and a SHA-256 of the text and block lines;
/// the version text; per block a line `<hash> <len> d|z` and, for `d`, its
/// bytes (checked by the block's own hash).
fn encode(out: &mut Vec<u8>, version: &Version, blocks: &[RecordBlock]) {
    let text = version.to_text();
    let mut sum = Sha256::new();
    sum.update(text.as_bytes());
    // The block lines (and a delta's range lines), each followed by bytes.
    let mut parts: Vec<(String, &[u8])> = Vec::with_capacity(blocks.len());
    for block in blocks {
        match &block.body {
            Body::Zero => parts.push((format!("{} {} z\n", block.hash, block.len), &[])),
            Body::Data(data) => parts.push((format!("{} {} d\n", block.hash, block.len), data)),
            Body::Delta {
                base,
                base_len,
                ranges,
            } => {
                parts.push((
                    format!(
                        "{} {} x {base} {base_len} {}\n",
                        block.hash,
                        block.len,
                        ranges.len()
                    ),
                    &[],
                ));
                for (at, bytes) in ranges {
                    parts.push((format!("{at} {}\n", bytes.len()), bytes));
                }
            }
        }
    }
    for (line, _) in &parts {
        sum.update(line.as_bytes());
    }
    let digest = hex(&sum.finalize());
    out.extend_from_slice(
        format!(
            "globofs-redo {REDO_FORMAT} {} {} {digest}\n",
            text.len(),
            blocks.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(text.as_bytes());
    for (line, bytes) in parts {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(bytes);
    }
}

/// Reads one record from the start of `bytes`: the version, its blocks and
/// the record's length. Errors say why it does not read whole.
fn decode(file: &Path, bytes: &[u8]) -> Result<(Version, Vec<RecordBlock>, usize), String> {
    let mut at = 0;
    let header = take_line(bytes, &mut at).ok_or("torn header")?;
    let fields: Vec<&str> = header.split(' ').collect();
    let [magic, format, text_len, count, digest] = fields[..] else {
        return Err(format!("not a redo record header: {header:?}"));
    };
    if magic != "globofs-redo" {
        return Err(format!("not a redo record header: {header:?}"));
    }
    if format.parse::<u32>().ok() != Some(REDO_FORMAT) {
        return Err(format!("redo record format {format} is not {REDO_FORMAT}"));
    }
    let text_len: usize = text_len.parse().map_err(|_| "bad text length")?;
    let count: usize = count.parse().map_err(|_| "bad block count")?;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
        let data = bytes
            .get(*at..at.checked_add(n).ok_or("bad length")?)
            .ok_or("torn record")?;
        *at += n;
        Ok(data)
    };
    let text = take(&mut at, text_len)?;
    let mut sum = Sha256::new();
    sum.update(text);
    let mut blocks = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let start = at;
        let line = take_line(bytes, &mut at).ok_or("torn block line")?;
        sum.update(&bytes[start..at]);
        let parts: Vec<&str> = line.split(' ').collect();
        let [hash, len, kind, ref rest @ ..] = parts[..] else {
            return Err(format!("bad block line {line:?}"));
        };
        let hash: BlockHash = hash
            .parse()
            .map_err(|_| format!("bad block hash {hash:?}"))?;
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad block length {len:?}"))?;
        let body = match kind {
            "z" if rest.is_empty() => Body::Zero,
            "d" if rest.is_empty() => {
                let data = take(&mut at, len)?;
                if BlockHash::of(data) != hash {
                    return Err(format!("block {hash} does not match its bytes"));
                }
                Body::Data(data.to_vec())
            }
            "x" => {
                let [base, base_len, ranges] = rest[..] else {
                    return Err(format!("bad delta line {line:?}"));
                };
                let base: BlockHash = base
                    .parse()
                    .map_err(|_| format!("bad base hash {base:?}"))?;
                let base_len: usize = base_len
                    .parse()
                    .map_err(|_| format!("bad base length {base_len:?}"))?;
                let ranges: usize = ranges
                    .parse()
                    .map_err(|_| format!("bad range count {ranges:?}"))?;
                let mut taken = Vec::with_capacity(ranges.min(1024));
                for _ in 0..ranges {
                    let start = at;
                    let range = take_line(bytes, &mut at).ok_or("torn range line")?;
                    sum.update(&bytes[start..at]);
                    let (offset, n) = range
                        .split_once(' ')
                        .and_then(|(o, n)| {
                            Some((o.parse::<usize>().ok()?, n.parse::<usize>().ok()?))
                        })
                        .ok_or_else(|| format!("bad range line {range:?}"))?;
                    if offset.checked_add(n).is_none_or(|end| end > len) {
                        return Err(format!("range {offset}+{n} past a block of {len}"));
                    }
                    taken.push((offset, take(&mut at, n)?.to_vec()));
                }
                Body::Delta {
                    base,
                    base_len,
                    ranges: taken,
                }
            }
            other => return Err(format!("bad block kind {other:?}")),
        };
        blocks.push(RecordBlock { hash, len, body });
    }
    if hex(&sum.finalize()) != digest {
        return Err("checksum mismatch".to_string());
    }
    let version = Version::parse(file, text).map_err(|err| err.to_string())?;
    Ok((version, blocks, at))
}

fn take_line<'a>(bytes: &'a [u8], at: &mut usize) -> Option<&'a str> {
    let rest = bytes.get(*at..)?;
    let end = rest.iter().take(4096).position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&rest[..end]).ok()?;
    *at += end + 1;
    Some(line)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes this process's redo file: created as `.new-…`, locked, renamed.
/// Whether what follows the last record is only the zeros written ahead
/// ([`PREPARED_BYTES`]): the clean end of a redo file.
fn is_prepared_space(rest: &[u8]) -> bool {
    rest.iter().all(|b| *b == 0)
}

/// Writes [`PREPARED_BYTES`] of zeros after the last record and flushes
/// them with the file's new length.
fn prepare(file: &mut OwnRedo) -> Result<(), StoreError> {
    use std::os::unix::fs::FileExt;
    let end = file.bytes + PREPARED_BYTES;
    let zeros = vec![0u8; usize::try_from(end - file.prepared).unwrap_or(0)];
    file.file
        .write_all_at(&zeros, file.prepared)
        .at(&file.path)?;
    file.file.sync_data().at(&file.path)?;
    file.prepared = end;
    Ok(())
}

fn create(dir: &Path) -> Result<OwnRedo, StoreError> {
    let (file, path) = intents::create_locked_as(dir, 0o600, false)?;
    // The name must survive a crash too: the directory (and `state/`, which
    // may just have got it) is flushed once per process.
    for dir in [Some(dir), dir.parent()].into_iter().flatten() {
        File::open(dir).and_then(|d| d.sync_all()).at(dir)?;
    }
    Ok(OwnRedo {
        file,
        path,
        bytes: 0,
        prepared: 0,
        held: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::lock::flock;
    use crate::store::{Attrs, Mtime, scratch_spec};
    use nix::fcntl::FlockArg;
    use std::fs::OpenOptions;

    fn scratch() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let spec = scratch_spec(dir.path());
        let store = Store::open_spec(&spec).unwrap();
        (dir, store)
    }

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        let mut x = u64::from(seed) + 1;
        (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 33) as u8 | 1
            })
            .collect()
    }

    /// Writes `data` at `path` as the mount does for an fsync: lazy blocks,
    /// a durable commit.
    fn fsynced(store: &Store, path: &VPath, data: &[u8]) -> Version {
        let held = store.writer_lock().unwrap();
        let mut file = store.file_write(&held, false);
        file.read_from(&mut &data[..]).unwrap();
        let content = file
            .finish(Attrs {
                mode: 0o644,
                mtime: Mtime::now(),
            })
            .unwrap();
        store.commit_locked(&held, path, content, true).unwrap()
    }

    fn own_file(store: &Store) -> PathBuf {
        crate::lock(&store.redo.own).as_ref().unwrap().path.clone()
    }

    /// A copy of the live redo file under another name: unlocked, so to
    /// recovery it is the file of a process that died.
    fn dead_copy(store: &Store) -> PathBuf {
        let copy = store.layout.redo().join("1-00000000000000aa");
        fs::copy(own_file(store), &copy).unwrap();
        copy
    }

    /// What a power loss may take of lazy writes: the version file and the
    /// blocks of `version`.
    fn lose(store: &Store, version: &Version) {
        fs::remove_file(
            store
                .versions_dir(&version.path)
                .join(version.id.to_string()),
        )
        .unwrap();
        for hash in &version.hashes {
            let _ = fs::remove_file(store.blocks.raw_path(hash));
        }
    }

    #[test]
    fn a_dead_processs_records_put_back_lost_versions_and_blocks() {
        let (_dir, mut store) = scratch();
        store.config_mut().coalesce = None;
        let path = VPath::parse(std::ffi::OsStr::new("/db")).unwrap();
        let one = fsynced(&store, &path, &bytes(10_000, 1));
        fsynced(&store, &path, &bytes(11_000, 12));
        let two = fsynced(&store, &path, &bytes(12_000, 2));
        let copy = dead_copy(&store);
        lose(&store, &two);
        // The crash took the log's last line too.
        let log = store.versions_dir(&path).join("log");
        let text = fs::read_to_string(&log).unwrap();
        fs::write(&log, text.replace(&format!("{}\n", two.id), "")).unwrap();
        assert_ne!(store.current(&path).unwrap().unwrap().id, two.id);
        let done = store.replay_redo().unwrap();
        assert_eq!(
            done,
            Replayed {
                files: 1,
                restored: 1
            }
        );
        assert!(!copy.exists(), "a replayed file is deleted");
        let current = store.current(&path).unwrap().unwrap();
        assert_eq!(current, two);
        let mut back = Vec::new();
        store.copy_to(&current, &mut back).unwrap();
        assert_eq!(back, bytes(12_000, 2));
        // The log's last line and the journal name it again.
        let log = fs::read_to_string(store.versions_dir(&path).join("log")).unwrap();
        assert_eq!(log.lines().last(), Some(two.id.to_string().as_str()));
        assert!(store.read_version(&path, one.id).is_ok());
    }

    #[test]
    fn records_overwrite_zeros_written_ahead_and_replay_stops_cleanly_at_them() {
        let (_dir, store) = scratch();
        let a = VPath::parse(std::ffi::OsStr::new("/a")).unwrap();
        let b = VPath::parse(std::ffi::OsStr::new("/b")).unwrap();
        let va = fsynced(&store, &a, &bytes(5_000, 3));
        let own = own_file(&store);
        let first = fs::read(&own).unwrap();
        let end = first.iter().rposition(|byte| *byte != 0).unwrap() + 1;
        assert!(
            first.len() as u64 >= end as u64 + PREPARED_LOW,
            "space ahead of the record"
        );
        let vb = fsynced(&store, &b, &bytes(6_000, 4));
        let second = fs::read(&own).unwrap();
        // The second record went where the zeros were: the size did not move.
        assert_eq!(second.len(), first.len());
        assert_eq!(&second[..end], &first[..end]);
        assert!(second[end..].iter().any(|byte| *byte != 0));
        let copy = dead_copy(&store);
        lose(&store, &va);
        lose(&store, &vb);
        let done = store.replay_redo().unwrap();
        assert_eq!(
            done.restored, 2,
            "both records replayed, the zeros after them ignored"
        );
        for version in [&va, &vb] {
            assert!(store.read_version(&version.path, version.id).is_ok());
            for hash in &version.hashes {
                assert!(store.blocks.raw_path(hash).exists(), "{hash} put back");
            }
        }
        drop(copy);
    }

    #[test]
    fn a_block_zeroed_by_a_crash_is_replaced_and_a_torn_last_record_is_skipped() {
        let (_dir, store) = scratch();
        let a = VPath::parse(std::ffi::OsStr::new("/a")).unwrap();
        let b = VPath::parse(std::ffi::OsStr::new("/b")).unwrap();
        let va = fsynced(&store, &a, &bytes(5_000, 3));
        let vb = fsynced(&store, &b, &bytes(6_000, 4));
        let copy = dead_copy(&store);
        // The last record torn: cut its file a byte short of where the
        // records end (zeros written ahead follow them).
        let data = fs::read(&copy).unwrap();
        let len = data.iter().rposition(|b| *b != 0).unwrap() as u64 + 1;
        OpenOptions::new()
            .write(true)
            .open(&copy)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        // a's first block: right length, wrong bytes.
        let raw = store.blocks.raw_path(&va.hashes[0]);
        let block_len = fs::metadata(&raw).unwrap().len();
        fs::remove_file(&raw).unwrap();
        fs::write(&raw, vec![0u8; block_len as usize]).unwrap();
        lose(&store, &vb);
        let done = store.replay_redo().unwrap();
        assert_eq!(
            done.restored, 1,
            "a's block put back; b's torn record skipped"
        );
        let mut back = Vec::new();
        store.copy_to(&va, &mut back).unwrap();
        assert_eq!(back, bytes(5_000, 3));
        assert!(
            store.current(&b).unwrap().is_none(),
            "a torn record publishes nothing"
        );
    }

    #[test]
    fn a_version_dropped_on_purpose_is_not_brought_back() {
        let (_dir, store) = scratch();
        let path = VPath::parse(std::ffi::OsStr::new("/p")).unwrap();
        let old = fsynced(&store, &path, &bytes(3_000, 5));
        let copy = dead_copy(&store);
        // Dropped since (as coalescing does): its id is in `versions/pruned`.
        fs::remove_file(store.versions_dir(&path).join(old.id.to_string())).unwrap();
        fs::write(
            store.versions_dir(&path).join("pruned"),
            format!("{}\n", old.id),
        )
        .unwrap();
        store.replay_redo().unwrap();
        assert!(!copy.exists());
        assert!(store.current(&path).unwrap().is_none());
    }

    #[test]
    fn an_edit_in_place_is_recorded_as_a_delta_and_replayed_from_its_base() {
        let (_dir, mut store) = scratch();
        store.config_mut().block_size = 64 << 10;
        store.config_mut().coalesce = None;
        let path = VPath::parse(std::ffi::OsStr::new("/wal")).unwrap();
        let mut data = bytes(150_000, 8);
        fsynced(&store, &path, &data);
        let first = store.redo_record_bytes();
        // 100 bytes changed in the second block: a record of one page.
        data[70_000..70_100].copy_from_slice(&[0x5a; 100]);
        let edited = fsynced(&store, &path, &data);
        let second = store.redo_record_bytes() - first;
        assert!(
            second < 4096 + 2048,
            "a one-page edit of a 64 KiB block records about a page ({second} bytes)"
        );
        let bases = store.redo_bases().unwrap();
        assert!(bases.len() == 1, "gc keeps the delta's base: {bases:?}");
        // A frame appended to the growing last block (as a WAL grows): a
        // delta on the shorter block before it.
        data.extend(bytes(5_000, 9));
        let before = store.redo_record_bytes();
        let appended = fsynced(&store, &path, &data);
        let third = store.redo_record_bytes() - before;
        assert!(
            third < 2 * 4096 + 2048,
            "an append records its pages ({third} bytes)"
        );
        let copy = dead_copy(&store);
        // The crash took the edited blocks and the versions; the bases stay.
        for version in [&edited, &appended] {
            fs::remove_file(store.versions_dir(&path).join(version.id.to_string())).unwrap();
        }
        fs::remove_file(store.blocks.raw_path(&edited.hashes[1])).unwrap();
        fs::remove_file(store.blocks.raw_path(&appended.hashes[2])).unwrap();
        let done = store.replay_redo().unwrap();
        assert_eq!(done.restored, 2);
        assert!(!copy.exists());
        let mut back = Vec::new();
        store
            .copy_to(&store.current(&path).unwrap().unwrap(), &mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn an_opener_waits_for_a_replay_in_progress_instead_of_reading_what_the_crash_left() {
        let dir = tempfile::tempdir().unwrap();
        let spec = scratch_spec(dir.path());
        let store = Store::open_spec(&spec).unwrap();
        let path = VPath::parse(std::ffi::OsStr::new("/p")).unwrap();
        let version = fsynced(&store, &path, &bytes(9_000, 11));
        let copy = dead_copy(&store);
        lose(&store, &version);
        // Another process replaying it: the replay lock and the file's lock.
        let replay =
            crate::store::lock::FileLock::exclusive(&store.layout.locks().join("redo")).unwrap();
        let file = flock(
            OpenOptions::new().read(true).open(&copy).unwrap(),
            &copy,
            FlockArg::LockExclusiveNonblock,
        )
        .unwrap()
        .unwrap();
        let opener = std::thread::spawn(move || {
            let reader = Store::open_spec(&spec).unwrap();
            reader.current(&path).unwrap().map(|v| v.id)
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!opener.is_finished(), "the opener waits for the replay");
        // The replayer is gone (its locks with it): the opener replays.
        drop(file);
        drop(replay);
        assert_eq!(opener.join().unwrap(), Some(version.id));
    }

    #[test]
    fn blocks_made_durable_by_a_filesystem_flush_are_known_after_it() {
        let (_dir, store) = scratch();
        let path = VPath::parse(std::ffi::OsStr::new("/big")).unwrap();
        // 12 MiB of 4 KiB blocks: past the record's 8 MiB, thousands of
        // block files to flush in place, so one filesystem flush instead.
        let version = {
            let held = store.writer_lock().unwrap();
            let mut file = store.file_write(&held, false);
            file.read_from(&mut &bytes(12 << 20, 13)[..]).unwrap();
            let content = file.finish(Attrs::default()).unwrap();
            store.commit_locked(&held, &path, content, false).unwrap()
        };
        store.make_durable(std::slice::from_ref(&version)).unwrap();
        // The next durable point of it copies no block and flushes none: a
        // record of its text alone.
        store.make_durable(std::slice::from_ref(&version)).unwrap();
        let len = store.redo_record_bytes();
        assert!(
            len > 0 && len < (1 << 20),
            "a record of the version's text only ({len} bytes)"
        );
    }

    #[test]
    fn a_checkpoint_empties_the_redo_file_and_known_blocks_are_not_copied_again() {
        let (_dir, store) = scratch();
        let path = VPath::parse(std::ffi::OsStr::new("/big")).unwrap();
        let data = bytes(40_000, 6);
        fsynced(&store, &path, &data);
        let file = own_file(&store);
        let first = store.redo_record_bytes();
        assert!(
            first > 40_000,
            "the new blocks' bytes are in the record ({first})"
        );
        // The same content again: its blocks are known durable now.
        let held = store.writer_lock().unwrap();
        let again = store.current(&path).unwrap().unwrap();
        store.make_durable(std::slice::from_ref(&again)).unwrap();
        drop(held);
        let second = store.redo_record_bytes() - first;
        assert!(
            second < 4_000,
            "a record of known blocks holds only the version ({second})"
        );
        store.checkpoint_redo().unwrap();
        assert_eq!(fs::metadata(&file).unwrap().len(), 0);
        drop(store);
        assert!(!file.exists(), "a closed store leaves no redo file");
    }
}
