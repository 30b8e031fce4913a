//! Changes to the tree: mkdir, symlink, mknod, unlink, rmdir, rename.

use std::ffi::OsStr;

use super::Vfs;
use super::attrs::Made;
use super::error::{VfsError, VfsResult};
use super::locks::lock;
use super::types::{Attr, Caller};
use crate::layout::VPath;
use crate::store::posix::{Special, SpecialKind};
use crate::store::{Content, Kind, Version};

impl Vfs {
    pub fn mkdir(&self, parent: u64, name: &OsStr, mode: u32) -> VfsResult<Attr> {
        self.mkdir_as(parent, name, mode, self.mount_user())
    }

    /// Makes a directory owned by `caller` (see [`Vfs::new_owner`]).
    pub fn mkdir_as(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> VfsResult<Attr> {
        let path = self.child(parent, name)?;
        let parent_path = self.path_of(parent)?;
        let (posix, mode) = self.new_owner(&parent_path, caller, mode, Made::Dir);
        self.new_entry(&path, Content::entry(Kind::Dir, mode, None, posix))
    }

    pub fn symlink(&self, parent: u64, name: &OsStr, target: &[u8]) -> VfsResult<Attr> {
        self.symlink_as(parent, name, target, self.mount_user())
    }

    pub fn symlink_as(
        &self,
        parent: u64,
        name: &OsStr,
        target: &[u8],
        caller: Caller,
    ) -> VfsResult<Attr> {
        let path = self.child(parent, name)?;
        let parent_path = self.path_of(parent)?;
        let (posix, _) = self.new_owner(&parent_path, caller, 0o777, Made::Symlink);
        let content = Content::entry(Kind::Symlink, 0o777, Some(target.to_vec()), posix);
        self.new_entry(&path, content)
    }

    /// `mknod(2)`: a FIFO, a unix socket's entry, a character or block device
    /// (the kernel lets only a privileged caller ask for those) or an empty
    /// regular file. The special file itself is the kernel's, local to each
    /// machine; its entry syncs like any file.
    pub fn mknod_as(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        caller: Caller,
    ) -> VfsResult<Attr> {
        let path = self.child(parent, name)?;
        let parent_path = self.path_of(parent)?;
        let (device_major, device_minor) = (libc::major(rdev.into()), libc::minor(rdev.into()));
        let special = match mode & libc::S_IFMT {
            libc::S_IFIFO => Some((SpecialKind::Fifo, 0, 0)),
            libc::S_IFSOCK => Some((SpecialKind::Socket, 0, 0)),
            libc::S_IFCHR => Some((SpecialKind::Char, device_major, device_minor)),
            libc::S_IFBLK => Some((SpecialKind::Block, device_major, device_minor)),
            libc::S_IFREG | 0 => None,
            other => {
                return Err(VfsError::new(
                    libc::EINVAL,
                    format!("{path}: mknod of file type {other:#o}"),
                ));
            }
        };
        let (mut posix, mode) = self.new_owner(&parent_path, caller, mode, Made::File);
        posix.special = special.map(|(kind, major, minor)| Special { kind, major, minor });
        let mut content = Content::entry(Kind::File, mode, None, posix);
        content.block_size = self.store.config().block_size;
        self.new_entry(&path, content)
    }

    /// Commits a new entry at `path` and hands the kernel a reference to it.
    fn new_entry(&self, path: &VPath, content: Content) -> VfsResult<Attr> {
        if lock(&self.created).contains_key(path) {
            return Err(VfsError::new(
                libc::EEXIST,
                format!("{path}: already exists"),
            ));
        }
        let version = self.store.create_entry(path, content)?;
        self.made_here(&version);
        // The reply hands the kernel a reference, as a lookup does.
        let ino = lock(&self.inodes).referenced(path);
        Ok(self.attr_of(ino, &version))
    }

    /// `path` was removed: its inode loses its name, and keeps showing
    /// `version` to whoever still holds it.
    pub(super) fn forget_name(&self, path: &VPath, version: Option<Version>) {
        let mut inodes = lock(&self.inodes);
        // A hard-linked file's other names keep the inode.
        if let Some(ino) = inodes.unname(path) {
            inodes.orphan(ino, version);
        }
    }

    /// The version an inode that lost its name still shows.
    pub(super) fn gone_version(&self, ino: u64) -> Option<Version> {
        lock(&self.inodes)
            .by_ino
            .get(&ino)
            .and_then(|node| node.gone.as_deref().cloned())
    }

    pub fn unlink(&self, parent: u64, name: &OsStr) -> VfsResult<()> {
        let path = self.child(parent, name)?;
        if let Some(ino) = lock(&self.created).remove(&path) {
            let _ = ino;
            if self.live(&path)?.is_none() {
                self.forget_name(&path, None);
                return Ok(());
            }
        }
        let version = match self.live(&path)? {
            Some(v) if v.kind == Kind::Dir => {
                return Err(VfsError::new(
                    libc::EISDIR,
                    format!("{path}: is a directory"),
                ));
            }
            Some(v) => v,
            None => {
                return Err(VfsError::new(
                    libc::ENOENT,
                    format!("{path}: no such file or directory"),
                ));
            }
        };
        let tombstone = self.store.remove(&path)?;
        self.made_here(&tombstone);
        self.forget_name(&path, Some(version));
        Ok(())
    }

    pub fn rmdir(&self, parent: u64, name: &OsStr) -> VfsResult<()> {
        let path = self.child(parent, name)?;
        let version = match self.live(&path)? {
            Some(v) if v.kind != Kind::Dir => {
                return Err(VfsError::new(
                    libc::ENOTDIR,
                    format!("{path}: not a directory"),
                ));
            }
            Some(v) => v,
            // A file created here and still open: in no version yet, but
            // there, and not a directory.
            None if lock(&self.created).contains_key(&path) => {
                return Err(VfsError::new(
                    libc::ENOTDIR,
                    format!("{path}: not a directory"),
                ));
            }
            None => {
                return Err(VfsError::new(
                    libc::ENOENT,
                    format!("{path}: no such file or directory"),
                ));
            }
        };
        // A file created in it and still open is not in the store yet, but the
        // directory is not empty (removing it would lose that file at close).
        let holds_pending = lock(&self.created)
            .keys()
            .any(|pending| pending != &path && pending.starts_with(&path));
        if holds_pending {
            return Err(VfsError::new(
                libc::ENOTEMPTY,
                format!("{path}: holds a file still being written"),
            ));
        }
        let tombstone = self.store.remove(&path)?;
        self.made_here(&tombstone);
        self.forget_name(&path, Some(version));
        Ok(())
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
        exchange: bool,
    ) -> VfsResult<()> {
        if exchange {
            return self.exchange(parent, name, new_parent, new_name);
        }
        let from = self.child(parent, name)?;
        let to = self.child(new_parent, new_name)?;
        if from == to {
            // One name: rename(2) does nothing (Linux answers this itself,
            // without asking the file system; the core is asked directly too).
            let there = lock(&self.created).contains_key(&from) || self.live(&from)?.is_some();
            return match there {
                true => Ok(()),
                false => Err(VfsError::new(
                    libc::ENOENT,
                    format!("{from}: no such file or directory"),
                )),
            };
        }
        // A file still being written through this mount: commit it first (one
        // write state for all its handles). Bound first: a commit takes the
        // `created` lock too.
        // Files created below a renamed directory too, or they would stay
        // filed under the old path until their close.
        // And a file created at the target and still open, so that the store
        // knows what the rename replaces (or refuses to: a directory onto it).
        let pending: Vec<u64> = lock(&self.created)
            .iter()
            .filter(|(path, _)| path.starts_with(&from) || **path == to)
            .map(|(_, ino)| *ino)
            .collect();
        for ino in pending {
            if let Some(dirty) = self.dirty_of(ino) {
                self.commit_dirty(ino, &dirty, false)?;
            }
        }
        // What the replaced target showed: readers that resolved the name just
        // before still open and read it (an atomic replace, as on a local disk).
        let _names = self.names.write();
        let replaced = self.live(&to)?;
        if self.same_file(&from, replaced.as_ref()) {
            // Two names of one file: rename(2) does nothing.
            return Ok(());
        }
        let keep = self.dir_mtime_to_keep(&from);
        // Ours: the journal follower must not take them for a rename made
        // elsewhere (it would move whatever inode holds the old name by then).
        for version in self.store.rename_keeping(&from, &to, no_replace, keep)? {
            self.made_here(&version);
        }
        lock(&self.inodes).rename(&from, &to, replaced);
        self.writers_follow(&to)?;
        Ok(())
    }

    /// Open write states of files now at or below `to` build on the versions
    /// the rename made there (the same bytes under the new name), as a
    /// writer goes on from its own commit: else a rename away and back would
    /// find the base replaced in the path's history and fork the writer's
    /// next commit into a conflict copy of its own file.
    fn writers_follow(&self, to: &VPath) -> VfsResult<()> {
        let states: Vec<(
            u64,
            std::sync::Arc<super::locks::Ranked<super::write_cache::Dirty>>,
        )> = lock(&self.dirty)
            .iter()
            .map(|(ino, d)| (*ino, d.clone()))
            .collect();
        for (ino, dirty) in states {
            let Ok(path) = self.path_of(ino) else {
                continue;
            };
            if !path.starts_with(to) {
                continue;
            }
            let Some(moved) = self.live(&path)? else {
                continue;
            };
            let mut state = lock(&dirty);
            if let Some(base) = state.base.as_mut() {
                let same = moved.kind == base.kind
                    && moved.hashes == base.hashes
                    && moved.size == base.size
                    && moved.from.is_some();
                if same {
                    *base = moved;
                }
            }
        }
        Ok(())
    }
}
