//! `renameat2(RENAME_EXCHANGE)`: two names swap what they name, in the store
//! (`Store::exchange`, one writer lock) and in the inode table (each inode,
//! and every inode below it, follows its object to the other name), while
//! the name table is held so no lookup sees half a swap.

use std::ffi::OsStr;

use super::Vfs;
use super::error::VfsResult;
use super::inodes::Inodes;
use super::locks::lock;
use crate::layout::VPath;

impl Vfs {
    /// Swaps `name` in `parent` and `new_name` in `new_parent`.
    pub(super) fn exchange(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
    ) -> VfsResult<()> {
        let a = self.child(parent, name)?;
        let b = self.child(new_parent, new_name)?;
        // Files still being written below either name: committed first, so
        // their bytes move with them.
        self.commit_pending_below(&a)?;
        self.commit_pending_below(&b)?;
        let keep = (self.dir_mtime_to_keep(&a), self.dir_mtime_to_keep(&b));
        let _names = self.names.write();
        self.store.exchange(&a, &b, keep)?;
        let mut inodes = lock(&self.inodes);
        // An exchanged hard link leaves its group: its name leaves the
        // group's inode (the next lookup gives it one of its own).
        for name in [&a, &b] {
            let shared = inodes
                .by_path
                .get(name)
                .and_then(|ino| inodes.by_ino.get(ino))
                .is_some_and(|node| !node.aliases.is_empty());
            if shared {
                inodes.unname(name);
            }
        }
        swap_paths(&mut inodes, &a, &b);
        Ok(())
    }

    /// Commits the files created below (or at) `path` and not committed yet.
    pub(super) fn commit_pending_below(&self, path: &VPath) -> VfsResult<()> {
        let pending: Vec<u64> = lock(&self.created)
            .iter()
            .filter(|(created, _)| created.starts_with(path))
            .map(|(_, ino)| *ino)
            .collect();
        for ino in pending {
            if let Some(dirty) = self.dirty_of(ino) {
                self.commit_dirty(ino, &dirty, false)?;
            }
        }
        Ok(())
    }
}

/// The inodes at or below `a` move below `b`, and those at or below `b` below `a`.
fn swap_paths(inodes: &mut Inodes, a: &VPath, b: &VPath) {
    let below = |inodes: &Inodes, top: &VPath| -> Vec<(VPath, u64)> {
        inodes
            .by_path
            .iter()
            .filter(|(path, _)| path.starts_with(top))
            .map(|(path, ino)| (path.clone(), *ino))
            .collect()
    };
    let from_a = below(inodes, a);
    let from_b = below(inodes, b);
    for (path, _) in from_a.iter().chain(&from_b) {
        inodes.by_path.remove(path);
    }
    let moved = |from: &VPath, to: &VPath, path: &VPath| -> VPath {
        let mut out = to.clone();
        for name in &path.names()[from.names().len()..] {
            if let Ok(child) = out.join(name) {
                out = child;
            }
        }
        out
    };
    let placed: Vec<(VPath, u64)> = from_a
        .iter()
        .map(|(path, ino)| (moved(a, b, path), *ino))
        .chain(from_b.iter().map(|(path, ino)| (moved(b, a, path), *ino)))
        .collect();
    for (path, ino) in placed {
        if let Some(node) = inodes.by_ino.get_mut(&ino) {
            node.path = path.clone();
        }
        inodes.by_path.insert(path, ino);
    }
}
