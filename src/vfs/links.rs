//! Hard links in the mount: `link(2)`, and what the rest of the core asks of
//! a hard-linked file: its group (read through the mount's version cache),
//! its link count, and whether two names are one file. The store keeps the
//! group whole (`store/links.rs`); every name of a group has the group's one
//! inode (`inodes.rs`), so the kernel, `ls -li`, `rsync -H`, `cp -a` and `tar`
//! see one file, and a handle open through one name sees writes through another.

use std::ffi::OsStr;

use super::Vfs;
use super::error::{VfsError, VfsResult};
use super::locks::lock;
use super::types::Attr;
use crate::layout::VPath;
use crate::store::posix::LinkGroup;
use crate::store::{Kind, Version};

impl Vfs {
    /// `link(2)`: `name` in `new_parent` becomes another name of `ino`.
    /// Directories and symlinks: EPERM; an existing name: EEXIST; past
    /// 65,000 names: EMLINK.
    pub fn link(&self, ino: u64, new_parent: u64, name: &OsStr) -> VfsResult<Attr> {
        let new = self.child(new_parent, name)?;
        // Bytes still being written through a handle: committed first, so
        // the new name shows them.
        if let Some(dirty) = self.dirty_of(ino) {
            self.commit_dirty(ino, &dirty, false)?;
        }
        let existing = self.path_of(ino)?;
        if lock(&self.created).contains_key(&new) {
            return Err(VfsError::new(
                libc::EEXIST,
                format!("{new}: already exists"),
            ));
        }
        match self.live(&existing)? {
            Some(version) if version.kind == Kind::File => {}
            Some(_) => {
                return Err(VfsError::new(
                    libc::EPERM,
                    format!("{existing}: only a regular file can be hard-linked"),
                ));
            }
            None => {
                return Err(VfsError::new(
                    libc::ENOENT,
                    format!("{existing}: no such file"),
                ));
            }
        }
        let _names = self.names.write();
        let version = self.store.link(&existing, &new)?;
        self.made_here(&version);
        let group = version.posix.links.as_deref();
        // The group's inode: the one the existing name has (its own group
        // from now on), handed to the kernel once more for the new name.
        let ino = {
            let mut inodes = lock(&self.inodes);
            inodes.ino_in(&existing, group);
            inodes.referenced_in(&new, group)
        };
        Ok(self.shown(ino, &version))
    }

    /// The group `version` is linked in, as this mount sees the names' current
    /// versions (`None`: a file of its own).
    pub(super) fn link_group(&self, version: &Version) -> Option<LinkGroup> {
        version.posix.links.as_ref()?;
        crate::store::links::linked_names_by(version, |path| self.live(path))
            .ok()
            .flatten()
    }

    /// `st_nlink` of a file: the names of its group, else 1.
    pub(super) fn link_count(&self, version: &Version) -> u32 {
        self.link_group(version).map_or(1, |group| {
            u32::try_from(group.names.len()).unwrap_or(u32::MAX)
        })
    }

    /// Whether `to`'s current version (`target`) is another name of the file
    /// at `from`: a rename between them does nothing.
    pub(super) fn same_file(&self, from: &VPath, target: Option<&Version>) -> bool {
        let Some(target) = target.filter(|t| t.kind == Kind::File) else {
            return false;
        };
        self.link_group(target)
            .is_some_and(|group| group.names.contains(from))
    }
}
