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
        let mut made = self.store.link_each(&existing, &new)?;
        for version in &made {
            self.made_here(version);
        }
        let version = made
            .pop()
            .ok_or_else(|| VfsError::new(libc::EIO, format!("{new}: the link wrote nothing")))?;
        // Open writers build on the linked version from now on: their next
        // commit is a change of the group, not of one name.
        if let Some(dirty) = self.dirty_of(ino) {
            let linked = self.live(&existing)?;
            let mut state = lock(&dirty);
            if let (Some(base), Some(linked)) = (state.base.as_mut(), linked) {
                if base.hashes == linked.hashes && base.size == linked.size {
                    *base = linked;
                }
            }
        }
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
        self.link_info(version).map_or(1, |(names, _)| names)
    }

    /// For a linked file: how many names it has, and the newest current
    /// version among them (whose id is the inode's ctime: the versions of
    /// one change at the group's names differ by the nanoseconds between them).
    pub(super) fn link_info(&self, version: &Version) -> Option<(u32, Version)> {
        version.posix.links.as_ref()?;
        let newest = std::cell::RefCell::new(version.clone());
        let group = crate::store::links::linked_names_by(version, |path| {
            let found = self.live(path)?;
            if let Some(other) = &found {
                if other.id > newest.borrow().id {
                    *newest.borrow_mut() = other.clone();
                }
            }
            Ok(found)
        })
        .ok()
        .flatten()?;
        let names = u32::try_from(group.names.len()).unwrap_or(u32::MAX);
        Some((names, newest.into_inner()))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::Store;
    use crate::vfs::ROOT_INO;

    fn vfs() -> (tempfile::TempDir, Vfs) {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::store::scratch_spec(dir.path());
        let store = Store::open_spec(&spec).unwrap();
        (dir, Vfs::new(Arc::new(store)))
    }

    fn path(name: &str) -> VPath {
        VPath::root().join(name.as_bytes()).unwrap()
    }

    fn lookup(vfs: &Vfs, name: &str) -> Attr {
        vfs.lookup(ROOT_INO, OsStr::new(name)).unwrap()
    }

    #[test]
    fn a_file_still_being_written_is_committed_and_linked() {
        let (_dir, vfs) = vfs();
        let (attr, opened) = vfs.create(ROOT_INO, OsStr::new("new"), 0o644).unwrap();
        vfs.write(opened.fh, 0, b"not closed yet").unwrap();
        let linked = vfs.link(attr.ino, ROOT_INO, OsStr::new("other")).unwrap();
        assert_eq!((linked.ino, linked.nlink), (attr.ino, 2));
        assert_eq!(vfs.read_whole(&path("other")).unwrap(), b"not closed yet");
        // Writes after the link, through the open handle, reach both names.
        vfs.write(opened.fh, 0, b"NOT").unwrap();
        vfs.commit(opened.fh, false).unwrap();
        vfs.release(opened.fh).unwrap();
        assert_eq!(vfs.read_whole(&path("other")).unwrap(), b"NOT closed yet");
        assert_eq!(vfs.read_whole(&path("new")).unwrap(), b"NOT closed yet");
    }

    #[test]
    fn a_handle_on_an_unlinked_name_writes_through_the_name_left() {
        let (_dir, vfs) = vfs();
        vfs.write_whole(&path("a"), b"before").unwrap();
        let a = lookup(&vfs, "a");
        vfs.link(a.ino, ROOT_INO, OsStr::new("b")).unwrap();
        let opened = vfs.open(a.ino, true, false).unwrap();
        vfs.unlink(ROOT_INO, OsStr::new("a")).unwrap();
        vfs.write(opened.fh, 0, b"AFTER!").unwrap();
        vfs.commit(opened.fh, false).unwrap();
        vfs.release(opened.fh).unwrap();
        assert_eq!(vfs.read_whole(&path("b")).unwrap(), b"AFTER!");
        let b = lookup(&vfs, "b");
        assert_eq!((b.ino, b.nlink), (a.ino, 1));
        assert_eq!(vfs.getattr(a.ino).unwrap().nlink, 1);
    }

    #[test]
    fn the_names_find_the_group_inode_again_after_the_kernel_forgot_it() {
        let (_dir, vfs) = vfs();
        vfs.write_whole(&path("a"), b"x").unwrap();
        let a = lookup(&vfs, "a");
        let linked = vfs.link(a.ino, ROOT_INO, OsStr::new("b")).unwrap();
        assert_eq!(linked.ino, a.ino);
        vfs.forget(a.ino, 2);
        assert!(vfs.ino_of(&path("a")).is_none() && vfs.ino_of(&path("b")).is_none());
        let (b, a) = (lookup(&vfs, "b"), lookup(&vfs, "a"));
        assert_eq!(a.ino, b.ino);
        assert_eq!(
            vfs.readdir(ROOT_INO)
                .unwrap()
                .iter()
                .map(|e| e.attr.ino)
                .max(),
            Some(a.ino)
        );
        assert!(
            vfs.readdir(ROOT_INO)
                .unwrap()
                .iter()
                .all(|e| e.attr.nlink == 2)
        );
    }

    #[test]
    fn every_name_shows_the_same_attributes_and_ctime() {
        let (_dir, vfs) = vfs();
        vfs.write_whole(&path("a"), b"x").unwrap();
        let a = lookup(&vfs, "a");
        vfs.link(a.ino, ROOT_INO, OsStr::new("b")).unwrap();
        vfs.link(a.ino, ROOT_INO, OsStr::new("c")).unwrap();
        let shown: Vec<Attr> = ["a", "b", "c"].iter().map(|n| lookup(&vfs, n)).collect();
        assert!(shown.iter().all(|attr| *attr == shown[0]), "{shown:?}");
        assert_eq!(shown[0].nlink, 3);
        assert!(shown[0].ctime > a.ctime, "the link moved ctime");
    }

    #[test]
    fn the_versions_written_at_the_other_names_are_known_as_this_mounts_own() {
        let (_dir, vfs) = vfs();
        vfs.write_whole(&path("a"), b"x").unwrap();
        let a = lookup(&vfs, "a");
        vfs.link(a.ino, ROOT_INO, OsStr::new("b")).unwrap();
        let own = |vfs: &Vfs, name: &str| {
            let id = vfs.store().live(&path(name)).unwrap().unwrap().id;
            vfs.changed_elsewhere(id, &path(name)).is_none()
        };
        assert!(own(&vfs, "a") && own(&vfs, "b"), "after the link");
        let opened = vfs.open(a.ino, true, false).unwrap();
        vfs.write(opened.fh, 0, b"y").unwrap();
        vfs.commit(opened.fh, false).unwrap();
        vfs.release(opened.fh).unwrap();
        assert!(own(&vfs, "b"), "after a write through a");
        vfs.setxattr(a.ino, OsStr::new("user.k"), b"v", 0, vfs.mount_user())
            .unwrap();
        assert!(own(&vfs, "b"), "after an xattr through a");
        assert_eq!(vfs.read_whole(&path("b")).unwrap(), b"y");
    }

    #[test]
    fn an_exchanged_name_leaves_its_group_and_its_inode() {
        let (_dir, vfs) = vfs();
        vfs.write_whole(&path("a"), b"linked").unwrap();
        vfs.write_whole(&path("c"), b"apart").unwrap();
        let a = lookup(&vfs, "a");
        vfs.link(a.ino, ROOT_INO, OsStr::new("b")).unwrap();
        let c = lookup(&vfs, "c");
        vfs.rename(
            ROOT_INO,
            OsStr::new("a"),
            ROOT_INO,
            OsStr::new("c"),
            false,
            true,
        )
        .unwrap();
        assert_eq!(vfs.read_whole(&path("a")).unwrap(), b"apart");
        assert_eq!(vfs.read_whole(&path("c")).unwrap(), b"linked");
        let (a2, b2, c2) = (lookup(&vfs, "a"), lookup(&vfs, "b"), lookup(&vfs, "c"));
        assert_eq!((a2.nlink, b2.nlink, c2.nlink), (1, 1, 1));
        assert_eq!(a2.ino, c.ino, "the inode follows its object");
        assert_eq!(b2.ino, a.ino);
        assert!(c2.ino != a.ino && c2.ino != c.ino);
    }

    #[test]
    fn links_of_directories_and_symlinks_are_eperm_and_onto_a_name_eexist() {
        let (_dir, vfs) = vfs();
        vfs.write_whole(&path("f"), b"x").unwrap();
        let dir = vfs.mkdir(ROOT_INO, OsStr::new("d"), 0o755).unwrap();
        let link = vfs.symlink(ROOT_INO, OsStr::new("s"), b"f").unwrap();
        let f = lookup(&vfs, "f");
        let errno = |r: VfsResult<Attr>| r.map_err(|e| e.errno()).unwrap_err();
        assert_eq!(
            errno(vfs.link(dir.ino, ROOT_INO, OsStr::new("d2"))),
            libc::EPERM
        );
        assert_eq!(
            errno(vfs.link(link.ino, ROOT_INO, OsStr::new("s2"))),
            libc::EPERM
        );
        assert_eq!(
            errno(vfs.link(f.ino, ROOT_INO, OsStr::new("d"))),
            libc::EEXIST
        );
        assert_eq!(lookup(&vfs, "f").nlink, 1);
    }
}
