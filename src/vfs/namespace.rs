//! Changes to the tree: mkdir, symlink, unlink, rmdir, rename, setattr.

use std::ffi::OsStr;
use std::time::SystemTime;

use super::Vfs;
use super::error::{VfsError, VfsResult};
use super::locks::lock;
use super::types::Attr;
use crate::layout::VPath;
use crate::store::{Kind, Mtime, Version};

impl Vfs {
    pub fn mkdir(&self, parent: u64, name: &OsStr, mode: u32) -> VfsResult<Attr> {
        let path = self.child(parent, name)?;
        let version = self.store.mkdir(&path, mode)?;
        self.made_here(&version);
        // The reply hands the kernel a reference, as a lookup does.
        let ino = lock(&self.inodes).referenced(&path);
        Ok(self.attr_of(ino, &version))
    }

    pub fn symlink(&self, parent: u64, name: &OsStr, target: &[u8]) -> VfsResult<Attr> {
        let path = self.child(parent, name)?;
        let version = self.store.symlink(&path, target)?;
        self.made_here(&version);
        // The reply hands the kernel a reference, as a lookup does.
        let ino = lock(&self.inodes).referenced(&path);
        Ok(self.attr_of(ino, &version))
    }

    /// `path` was removed: its inode loses its name, and keeps showing
    /// `version` to whoever still holds it.
    pub(super) fn forget_name(&self, path: &VPath, version: Option<Version>) {
        let mut inodes = lock(&self.inodes);
        if let Some(ino) = inodes.by_path.remove(path) {
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
            return Err(VfsError::new(
                libc::EINVAL,
                "RENAME_EXCHANGE is not supported",
            ));
        }
        let from = self.child(parent, name)?;
        let to = self.child(new_parent, new_name)?;
        // A file still being written through this mount: commit it first (one
        // write state for all its handles). Bound first: a commit takes the
        // `created` lock too.
        // Files created below a renamed directory too, or they would stay
        // filed under the old path until their close.
        let pending: Vec<u64> = lock(&self.created)
            .iter()
            .filter(|(path, _)| path.starts_with(&from))
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
        self.store.rename(&from, &to, no_replace)?;
        lock(&self.inodes).rename(&from, &to, replaced);
        Ok(())
    }

    /// chmod / utimens / truncate by path.
    pub fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        mode: Option<u32>,
        size: Option<u64>,
        mtime: Option<SystemTime>,
    ) -> VfsResult<Attr> {
        if let Some(size) = size {
            self.truncate(ino, fh, size)?;
        }
        if mode.is_some() || mtime.is_some() {
            let path = self.path_of(ino)?;
            if path.is_root() {
                return Err(VfsError::new(
                    libc::EPERM,
                    "the mount's root directory keeps its mode and times",
                ));
            }
            // Open writers' writes first, so the attribute change applies on top of them.
            if let Some(dirty) = self.dirty_of(ino) {
                self.commit_dirty(ino, &dirty, false)?;
            }
            let version = self.store.set_attrs(
                &path,
                mode.map(|m| m & 0o7777),
                mtime.map(Mtime::from_system),
            )?;
            self.made_here(&version);
            // Open writers keep the new mode for their next commit.
            if let Some(dirty) = self.dirty_of(ino) {
                if let Some(base) = lock(&dirty).base.as_mut() {
                    base.mode = version.mode;
                    base.mtime = version.mtime;
                }
            }
        }
        self.getattr(ino)
    }
}
