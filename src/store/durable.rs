//! Making versions durable without flushing the store's whole filesystem
//! (FORMAT §14): a durable commit (an `fsync` through the mount) flushes the
//! files and directories its version depends on, and nothing else: its block
//! files and the directories naming them, the version file, the path's
//! `versions/` tree up to the store, its log, its outbound spool entries and
//! the journal's last segment. The same for an `fsync` of a directory, which
//! makes every version this process committed lazily since the last one
//! durable (a superset of what POSIX asks: the directory's entries).
//!
//! Beyond [`TARGETED_MAX`] files and directories one `syncfs` is cheaper
//! than that many calls, and is used instead.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{IoContext, Store, StoreError, Version};
use crate::ids::VersionId;
use crate::layout::VPath;

/// Files and directories flushed one by one, at most; past this, `syncfs`.
pub const TARGETED_MAX: usize = 4096;

/// Lazy commits remembered for a directory `fsync`, at most; past this the
/// next one flushes the filesystem.
const LAZY_MAX: usize = 4096;

/// What a durable point must flush.
#[derive(Default)]
pub(super) struct Flush {
    pub(super) files: BTreeSet<PathBuf>,
    pub(super) dirs: BTreeSet<PathBuf>,
}

impl Flush {
    pub(super) fn len(&self) -> usize {
        self.files.len() + self.dirs.len()
    }

    /// `dir` and each directory above it up to `top` (included): a name
    /// made in any of them (by `create_dirs`) is durable once its parent is.
    pub(super) fn dirs_from(&mut self, dir: &Path, top: &Path) {
        let mut at = Some(dir);
        while let Some(dir) = at {
            if !self.dirs.insert(dir.to_path_buf()) || dir == top || !dir.starts_with(top) {
                return;
            }
            at = dir.parent();
        }
    }

    /// Flushes files (data and the size that reaches it), then directories.
    /// A file or directory that is not there (a block never pulled here, a
    /// peer without an outbound entry) has nothing to flush.
    pub(super) fn run(self) -> Result<(), StoreError> {
        for file in &self.files {
            match File::open(file) {
                Ok(handle) => handle.sync_data().at(file)?,
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(StoreError::io(file, err)),
            }
        }
        for dir in &self.dirs {
            match File::open(dir) {
                Ok(handle) => handle.sync_all().at(dir)?,
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(StoreError::io(dir, err)),
            }
        }
        Ok(())
    }
}

/// Lazy commits of this process not made durable yet.
#[derive(Default)]
pub(super) struct Lazy {
    versions: std::collections::HashSet<(VPath, VersionId)>,
    /// More than [`LAZY_MAX`] were made since the last durable point.
    overflowed: bool,
}

impl Store {
    /// Makes `versions` durable in the layout itself (their blocks, version
    /// files, logs, journal lines and outbound entries), flushing only what
    /// they depend on: the redo checkpoint, and a durable point too large
    /// for a redo record.
    pub(super) fn flush_durable(&self, versions: &[Version]) -> Result<(), StoreError> {
        self.forget_lazy_all(versions);
        let mut flush = Flush::default();
        for version in versions {
            self.depends_on(version, &mut flush);
            if flush.len() > TARGETED_MAX {
                return super::sync_filesystem(&self.layout.dir);
            }
        }
        if let Some(segment) = super::journal::last_segment(self.journal.dir())? {
            flush.files.insert(segment);
            flush.dirs_from(self.journal.dir(), &self.layout.dir);
        }
        flush.run()
    }

    /// `versions` are durable now: no directory `fsync` needs them.
    pub(super) fn forget_lazy_all(&self, versions: &[Version]) {
        let mut lazy = crate::lock(&self.lazy);
        for version in versions {
            lazy.versions.remove(&(version.path.clone(), version.id));
        }
    }

    /// Makes every version this process committed lazily durable (an `fsync`
    /// of a directory: its new and removed entries are such versions).
    pub fn make_lazy_durable(&self) -> Result<(), StoreError> {
        let taken = std::mem::take(&mut *crate::lock(&self.lazy));
        if taken.overflowed {
            super::sync_filesystem(&self.layout.dir)?;
            // Everything is on disk: so are the redo file's versions.
            return self.checkpoint_redo();
        }
        let mut versions = Vec::with_capacity(taken.versions.len());
        for (path, id) in &taken.versions {
            match self.read_version(path, *id) {
                Ok(version) => versions.push(version),
                // Pruned or unreadable since: nothing of it to keep.
                Err(err) if err.is_not_found() => {}
                Err(err) => return Err(err),
            }
        }
        self.make_durable(&versions)
    }

    /// Remembers a lazy commit for the next [`Store::make_lazy_durable`].
    pub(super) fn committed_lazily(&self, version: &Version) {
        let mut lazy = crate::lock(&self.lazy);
        if lazy.overflowed {
            return;
        }
        if lazy.versions.len() >= LAZY_MAX {
            lazy.versions = Default::default();
            lazy.overflowed = true;
            return;
        }
        lazy.versions.insert((version.path.clone(), version.id));
    }

    /// Whether `version` is known to be a lazy commit of this process that
    /// nothing made durable since (after an overflow nothing is known).
    pub(super) fn is_lazy(&self, version: &Version) -> bool {
        crate::lock(&self.lazy)
            .versions
            .contains(&(version.path.clone(), version.id))
    }

    /// Forgets a lazy commit that is gone (coalesced away).
    pub(super) fn forget_lazy(&self, version: &Version) {
        crate::lock(&self.lazy)
            .versions
            .remove(&(version.path.clone(), version.id));
    }

    /// Adds what `version` depends on to `flush`.
    fn depends_on(&self, version: &Version, flush: &mut Flush) {
        let top = &self.layout.dir;
        let path_dir = self.path_dir(&version.path);
        let versions = path_dir.join("versions");
        flush.files.insert(versions.join(version.id.to_string()));
        flush.files.insert(versions.join("log"));
        flush.dirs_from(&versions, top);
        // Not the path's block links: hints, made again by gc (FORMAT §7).
        let mut seen = std::collections::HashSet::new();
        for hash in &version.hashes {
            if !seen.insert(*hash) || flush.len() > TARGETED_MAX {
                continue;
            }
            let Some(located) = self.blocks.locate(hash, None) else {
                continue;
            };
            if let Some(dir) = located.path.parent() {
                flush.dirs_from(dir, top);
            }
            flush.files.insert(located.path);
        }
        let sharing = self.sharing();
        if sharing
            .ignore
            .as_ref()
            .is_some_and(|rules| rules.is_match(&version.path))
        {
            return;
        }
        for peer in &sharing.peers {
            let dir = version
                .path
                .disk_path(&self.layout.outbound(*peer))
                .join("versions");
            flush.files.insert(dir.join("log"));
            flush.dirs_from(&dir, top);
        }
    }
}
