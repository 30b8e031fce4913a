//! Where a store's disk space goes (`globofs du`): blocks the current tree
//! needs, blocks only old versions need, blocks nothing needs (what `gc`
//! frees), the spools, the per-path layout (directories, version files, logs)
//! and the rest. Sizes are allocated bytes (`st_blocks`), each inode counted
//! once (a block's hard links under `root/<path>/hashes/` cost no data).

use super::read_dir_if_present;
use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::ids::BlockHash;

use super::gc::{each_block, each_versions_dir};
use super::version::Kind;
use super::{IoContext, Store, StoreError, read_version_file, version_ids_in};

/// Files and allocated bytes of one kind.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Space {
    pub files: u64,
    pub bytes: u64,
}

impl Space {
    fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

/// What `globofs du` reports.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Usage {
    /// Paths with versions, and how many of them are deleted (a tombstone
    /// is current).
    pub paths: u64,
    pub deleted_paths: u64,
    /// Version files, and those that are not their path's current one.
    pub versions: u64,
    pub old_versions: u64,
    /// Blocks a current version names.
    pub live_blocks: Space,
    /// Blocks only versions that are not current name (`prune` then `gc` free them).
    pub history_blocks: Space,
    /// Blocks only an outbound spool entry names (a push not acknowledged yet).
    pub outbound_blocks: Space,
    /// Blocks nothing names (`gc` frees them).
    pub garbage_blocks: Space,
    /// The layout's own cost: `root/<path>/` directories, version files and
    /// logs, and the `hashes/` fan-out directories (not the block links,
    /// which share the blocks' inodes).
    pub layout: Space,
    pub spool_inbound: Space,
    pub spool_outbound: Space,
    /// `journal/`, `state/`, `tmp/`, `ack/` and anything else.
    pub other: Space,
    /// Everything, each inode once.
    pub total: Space,
}

/// Allocated bytes of a file or directory.
fn allocated(meta: &fs::Metadata) -> u64 {
    meta.blocks() * 512
}

/// Sums every file and directory under `dir` into `space`, each inode not
/// in `seen` yet (and records it there).
fn walk(dir: &Path, space: &mut Space, seen: &mut HashSet<(u64, u64)>) -> Result<(), StoreError> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Some(listing) = read_dir_if_present(&dir)? else {
            continue;
        };
        for item in listing {
            let item = item.at(&dir)?;
            let path = item.path();
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                // Gone while we looked (a writer's temp file, a trimmed segment).
                Err(err) if err.kind() == ErrorKind::NotFound => continue,
                Err(err) => return Err(StoreError::io(&path, err)),
            };
            if seen.insert((meta.dev(), meta.ino())) {
                space.add(allocated(&meta));
            }
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(())
}

impl Store {
    /// Where this store's space goes (reads every version file and stats
    /// every file; no lock is taken, so figures taken while writers run are
    /// a moment's view).
    pub fn usage(&self) -> Result<Usage, StoreError> {
        let mut usage = Usage::default();
        let mut live: HashSet<BlockHash> = HashSet::new();
        let mut history: HashSet<BlockHash> = HashSet::new();
        each_versions_dir(&self.layout().root(), &mut |versions| {
            let ids = version_ids_in(versions)?;
            let Some(newest) = ids.last() else {
                return Ok(());
            };
            let sample = read_version_file(&versions.join(newest.to_string()))?;
            let current = self.current(&sample.path)?;
            usage.paths += 1;
            match &current {
                Some(current) if current.kind == Kind::Tombstone => usage.deleted_paths += 1,
                Some(current) => live.extend(current.hashes.iter().copied()),
                None => {}
            }
            for id in ids {
                usage.versions += 1;
                if current.as_ref().is_some_and(|c| c.id == id) {
                    continue;
                }
                usage.old_versions += 1;
                if let Ok(version) = read_version_file(&versions.join(id.to_string())) {
                    history.extend(version.hashes);
                }
            }
            Ok(())
        })?;
        let mut outbound: HashSet<BlockHash> = HashSet::new();
        each_versions_dir(&self.layout().outbound_dir(), &mut |versions| {
            for id in version_ids_in(versions)? {
                if let Ok(version) = read_version_file(&versions.join(id.to_string())) {
                    outbound.extend(version.hashes);
                }
            }
            Ok(())
        })?;
        let mut seen: HashSet<(u64, u64)> = HashSet::new();
        let hashes = self.layout().hashes();
        walk_dirs_only(&hashes, &mut usage.layout, &mut seen)?;
        each_block(&hashes, &mut |path, hash| {
            let meta = match fs::symlink_metadata(path) {
                Ok(meta) => meta,
                Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
                Err(err) => return Err(StoreError::io(path, err)),
            };
            if !seen.insert((meta.dev(), meta.ino())) {
                return Ok(());
            }
            let bytes = allocated(&meta);
            let class = match hash {
                Some(hash) if live.contains(&hash) => &mut usage.live_blocks,
                Some(hash) if history.contains(&hash) => &mut usage.history_blocks,
                Some(hash) if outbound.contains(&hash) => &mut usage.outbound_blocks,
                _ => &mut usage.garbage_blocks,
            };
            class.add(bytes);
            Ok(())
        })?;
        walk(&self.layout().root(), &mut usage.layout, &mut seen)?;
        walk(
            &self.layout().inbound_dir(),
            &mut usage.spool_inbound,
            &mut seen,
        )?;
        walk(
            &self.layout().outbound_dir(),
            &mut usage.spool_outbound,
            &mut seen,
        )?;
        walk(&self.layout().dir, &mut usage.other, &mut seen)?;
        for space in [
            usage.live_blocks,
            usage.history_blocks,
            usage.outbound_blocks,
            usage.garbage_blocks,
            usage.layout,
            usage.spool_inbound,
            usage.spool_outbound,
            usage.other,
        ] {
            usage.total.files += space.files;
            usage.total.bytes += space.bytes;
        }
        Ok(usage)
    }
}

/// The directories of a `hashes/` tree (its fan-out), counted as `other`.
fn walk_dirs_only(
    dir: &Path,
    space: &mut Space,
    seen: &mut HashSet<(u64, u64)>,
) -> Result<(), StoreError> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let meta = match fs::symlink_metadata(&dir) {
            Ok(meta) => meta,
            Err(err) if err.kind() == ErrorKind::NotFound => continue,
            Err(err) => return Err(StoreError::io(&dir, err)),
        };
        if seen.insert((meta.dev(), meta.ino())) {
            space.add(allocated(&meta));
        }
        let listing = fs::read_dir(&dir).at(&dir)?;
        for item in listing {
            let item = item.at(&dir)?;
            if item.file_type().at(item.path())?.is_dir() {
                stack.push(item.path());
            }
        }
    }
    Ok(())
}
