//! Directory listings: readdir, open directories and their paged listings, readlink.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Vfs;
use super::error::{VfsError, VfsResult};
use super::inodes::Seen;
use super::locks::lock;
use super::types::{DirEntry, NodeKind};
use crate::layout::VPath;
use crate::store::Kind;

impl Vfs {
    /// The entries of a directory (without `.` and `..`).
    pub fn readdir(&self, ino: u64) -> VfsResult<Vec<DirEntry>> {
        if let Some(answer) = self.past_readdir(ino) {
            return answer;
        }
        let path = self.path_of(ino)?;
        // One look at the journal for the whole listing.
        let at = self.versions.fresh();
        let entries = self.store.list_dir_by(
            &path,
            |child| self.versions.known(child, at),
            |child| self.versions.live_at(&self.store, child, at),
        )?;
        let mut numbered = Vec::with_capacity(entries.len());
        // Hard-linked entries' groups, read before the inode table's lock.
        let groups: Vec<_> = entries
            .iter()
            .map(|entry| self.link_group(&entry.version))
            .collect();
        {
            let mut inodes = lock(&self.inodes);
            for (entry, group) in entries.into_iter().zip(groups) {
                let Ok(child) = path.join(&entry.name) else {
                    continue;
                };
                if self.is_view_name(ino, &entry.name) {
                    // Hidden by the history view of that name.
                    continue;
                }
                let child_ino = inodes.ino_in(&child, group.as_ref());
                if let Some(node) = inodes.by_ino.get_mut(&child_ino) {
                    node.described = Some(Seen::of(&entry.version.id));
                }
                numbered.push((child_ino, entry));
            }
        }
        // Outside the inode table's lock: a subdirectory's attributes read its entries.
        let mut out: Vec<DirEntry> = numbered
            .into_iter()
            .map(|(child_ino, entry)| DirEntry {
                attr: self.attr_of(child_ino, &entry.version),
                name: entry.name,
            })
            .collect();
        let created: Vec<(VPath, u64)> = lock(&self.created)
            .iter()
            .filter(|(p, _)| p.parent().as_ref() == Some(&path))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (child, child_ino) in created {
            let name = child.file_name().unwrap_or_default().to_vec();
            if out.iter().any(|e| e.name == name) {
                continue;
            }
            if let Some(attr) = self.writer_attr(child_ino) {
                out.push(DirEntry { name, attr });
            }
        }
        for entry in &mut out {
            if let Some(attr) = self.writer_attr(entry.attr.ino) {
                entry.attr = attr;
            }
        }
        Ok(out)
    }

    /// Opens a directory for listing.
    pub fn opendir(&self, ino: u64) -> VfsResult<u64> {
        let attr = self.getattr(ino)?;
        if attr.kind != NodeKind::Dir {
            return Err(VfsError::new(
                libc::ENOTDIR,
                format!("inode {ino}: not a directory"),
            ));
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.open_dirs).insert(fh, (ino, attr));
        Ok(fh)
    }

    /// The listing of an open directory: read at offset 0, then served from memory.
    pub fn listing(&self, fh: u64, ino: u64, offset: u64) -> VfsResult<Arc<Vec<DirEntry>>> {
        if offset > 0 {
            if let Some(listing) = lock(&self.listings).get(&fh) {
                return Ok(Arc::clone(listing));
            }
        }
        let listing = match self.readdir(ino) {
            Ok(entries) => {
                let listing = Arc::new(entries);
                if let Ok(dir) = self.path_of(ino) {
                    self.ahead.listed(&dir, &listing);
                }
                listing
            }
            // Removed since it was opened: an open directory that is gone lists
            // as empty, as on a local file system.
            Err(err) if err.errno() == libc::ENOENT => Arc::new(Vec::new()),
            Err(err) => return Err(err),
        };
        lock(&self.listings).insert(fh, Arc::clone(&listing));
        Ok(listing)
    }

    pub fn releasedir(&self, fh: u64) {
        lock(&self.listings).remove(&fh);
        lock(&self.open_dirs).remove(&fh);
    }

    pub fn readlink(&self, ino: u64) -> VfsResult<Vec<u8>> {
        if let Some(answer) = self.past_readlink(ino) {
            return answer;
        }
        let path = self.path_of(ino)?;
        match self.live(&path)? {
            Some(version) if version.kind == Kind::Symlink => {
                Ok(version.target.unwrap_or_default())
            }
            Some(_) => Err(VfsError::new(
                libc::EINVAL,
                format!("{path}: not a symbolic link"),
            )),
            None => Err(VfsError::new(
                libc::ENOENT,
                format!("{path}: no such symbolic link"),
            )),
        }
    }
}
