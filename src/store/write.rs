//! Changing the tree: whole files cut into blocks from a stream, directories,
//! symlinks, removals, renames, attribute changes and restores. Each takes the
//! writer lock and ends in one [`Store::commit_locked`] per new version; a
//! whole file goes through the write pipeline of `file_write.rs`.

use std::io::Read;

use super::{Attrs, Content, Kind, Mtime, Store, StoreError, Version, WriterLock};
use crate::ids::VersionId;
use crate::layout::VPath;

impl Store {
    /// Writes a whole file from `input` as a new version of `path` (parents made
    /// as directories when missing).
    pub fn write_file(
        &self,
        path: &VPath,
        input: &mut dyn Read,
        attrs: Attrs,
        durable: bool,
    ) -> Result<Version, StoreError> {
        let lock = self.writer_lock()?;
        self.check_writable_file(path)?;
        // A new file replaces a hard-linked name: the other names stay
        // linked without it (links.rs).
        if let Some(current) = self.live(path)?.filter(|v| v.posix.links.is_some()) {
            self.leave_group(&lock, path, &current)?;
        }
        self.make_parents_locked(&lock, path, attrs.mtime)?;
        let mut file = self.file_write(&lock, durable);
        file.read_from(input)?;
        let content = file.finish(attrs)?;
        self.commit_locked(&lock, path, content, durable)
    }

    pub(super) fn check_writable_file(&self, path: &VPath) -> Result<(), StoreError> {
        if path.is_root() {
            return Err(StoreError::IsADirectory(path.clone()));
        }
        if let Some(current) = self.live(path)? {
            if current.kind == Kind::Dir {
                return Err(StoreError::IsADirectory(path.clone()));
            }
        }
        Ok(())
    }

    /// Creates missing parent directories of `path` (like `mkdir -p`).
    pub fn make_parents(&self, path: &VPath, mtime: Mtime) -> Result<(), StoreError> {
        // Commits write temp files under tmp/, which `gc` removes when it holds
        // the lock exclusively: a commit must hold it shared (taking it again in
        // a caller that already holds it is harmless: both are shared).
        let lock = self.writer_lock()?;
        self.make_parents_locked(&lock, path, mtime)
    }

    /// [`Store::make_parents`] for a caller that holds the writer lock.
    pub fn make_parents_locked(
        &self,
        held: &WriterLock,
        path: &VPath,
        mtime: Mtime,
    ) -> Result<(), StoreError> {
        let mut missing = Vec::new();
        let mut dir = path.parent();
        while let Some(current) = dir {
            if current.is_root() {
                break;
            }
            match self.live(&current)? {
                Some(v) if v.kind == Kind::Dir => break,
                Some(_) => return Err(StoreError::NotADirectory(current)),
                None => missing.push(current.clone()),
            }
            dir = current.parent();
        }
        for dir in missing.into_iter().rev() {
            self.commit_locked(held, &dir, Content::simple(Kind::Dir, 0o755, mtime), false)?;
        }
        Ok(())
    }

    /// The parent of `path` must be a live directory.
    pub(super) fn check_parent(&self, path: &VPath) -> Result<(), StoreError> {
        let parent = path
            .parent()
            .ok_or_else(|| StoreError::Exists(path.clone()))?;
        if self.is_dir(&parent)? {
            return Ok(());
        }
        Err(match self.live(&parent)? {
            Some(_) => StoreError::NotADirectory(parent),
            None => StoreError::NotFound(parent),
        })
    }

    /// Creates directory `path`.
    pub fn mkdir(&self, path: &VPath, mode: u32) -> Result<Version, StoreError> {
        self.mkdir_at(path, mode, Mtime::now())
    }

    /// Creates directory `path` with a given mtime.
    pub fn mkdir_at(&self, path: &VPath, mode: u32, mtime: Mtime) -> Result<Version, StoreError> {
        let lock = self.writer_lock()?;
        if path.is_root() || self.live(path)?.is_some() {
            return Err(StoreError::Exists(path.clone()));
        }
        self.check_parent(path)?;
        self.commit_locked(
            &lock,
            path,
            Content::simple(Kind::Dir, mode & 0o7777, mtime),
            false,
        )
    }

    /// Creates a symlink at `path` pointing to `target`.
    pub fn symlink(&self, path: &VPath, target: &[u8]) -> Result<Version, StoreError> {
        let content = Content::entry(
            Kind::Symlink,
            0o777,
            Some(target.to_vec()),
            Default::default(),
        );
        self.create_entry(path, content)
    }

    /// Creates a new directory, symlink or special file (an empty file with
    /// `posix.special`) at `path` whose parent is a directory; `Exists` when
    /// something is there.
    pub fn create_entry(&self, path: &VPath, content: Content) -> Result<Version, StoreError> {
        let lock = self.writer_lock()?;
        if path.is_root() || self.live(path)?.is_some() {
            return Err(StoreError::Exists(path.clone()));
        }
        if content.kind == Kind::Symlink {
            let target = content.target.as_deref().unwrap_or_default();
            if target.is_empty() || target.contains(&0) || target.len() > 4096 {
                return Err(StoreError::BadSymlinkTarget { path: path.clone() });
            }
        }
        self.check_parent(path)?;
        self.commit_locked(&lock, path, content, false)
    }

    /// Changes the attributes of the current version of `path` (the mount
    /// root too) in one new version: `change` edits a copy of its content.
    pub fn change_attrs(
        &self,
        path: &VPath,
        change: impl FnOnce(&mut Content),
    ) -> Result<Version, StoreError> {
        let made = self.change_attrs_each(path, change)?;
        super::links::first(made)
    }

    /// [`Store::change_attrs`], returning every version it published:
    /// `path`'s first, then those at the other names of a hard-linked file.
    pub fn change_attrs_each(
        &self,
        path: &VPath,
        change: impl FnOnce(&mut Content),
    ) -> Result<Vec<Version>, StoreError> {
        let lock = self.writer_lock()?;
        let mut content = match self.live(path)? {
            Some(current) => Content::of(&current),
            // The root before anything recorded it: a directory as shown.
            None if path.is_root() => Content::simple(Kind::Dir, 0o755, Mtime::now()),
            None => return Err(StoreError::NotFound(path.clone())),
        };
        change(&mut content);
        content.mode &= 0o7777;
        self.commit_each(&lock, path, content, false)
    }

    /// Deletes `path` (a file, a symlink, or an empty directory): a tombstone.
    pub fn remove(&self, path: &VPath) -> Result<Version, StoreError> {
        let lock = self.writer_lock()?;
        let current = self
            .live(path)?
            .ok_or_else(|| StoreError::NotFound(path.clone()))?;
        if path.is_root() {
            return Err(StoreError::RemoveRoot);
        }
        if current.kind == Kind::Dir && !self.list_dir(path)?.is_empty() {
            return Err(StoreError::NotEmpty(path.clone()));
        }
        // The other names of a hard-linked file first: a crash in between
        // leaves them linked without this name (links.rs).
        self.leave_group(&lock, path, &current)?;
        self.commit_locked(
            &lock,
            path,
            Content::simple(Kind::Tombstone, 0, Mtime::now()),
            false,
        )
    }

    /// Deletes a directory and everything below it.
    pub fn remove_tree(&self, path: &VPath) -> Result<usize, StoreError> {
        let mut removed = 0;
        let mut below = self.walk(path)?;
        below.reverse();
        for (child, _) in below {
            self.remove(&child)?;
            removed += 1;
        }
        self.remove(path)?;
        Ok(removed + 1)
    }

    /// Renames `src` to `dst` (over an existing file or empty directory, like
    /// rename(2)). No block is copied: the new versions name the same blocks.
    pub fn rename(&self, src: &VPath, dst: &VPath, no_replace: bool) -> Result<(), StoreError> {
        self.rename_keeping(src, dst, no_replace, None).map(|_| ())
    }

    /// [`Store::rename`], the new version at `dst` with mtime `keep` when
    /// given (a directory's shown mtime, FORMAT §11 "Directory times"); the
    /// versions it made at the new names and the tombstones at the old.
    pub fn rename_keeping(
        &self,
        src: &VPath,
        dst: &VPath,
        no_replace: bool,
        keep: Option<Mtime>,
    ) -> Result<Vec<Version>, StoreError> {
        let lock = self.writer_lock()?;
        let source = self
            .live(src)?
            .ok_or_else(|| StoreError::NotFound(src.clone()))?;
        if src == dst {
            return Ok(Vec::new());
        }
        if src.is_root() || dst.is_root() || dst.starts_with(src) {
            return Err(StoreError::Invalid { path: dst.clone() });
        }
        self.check_parent(dst)?;
        let target = self.live(dst)?;
        if let Some(target) = &target {
            if no_replace {
                return Err(StoreError::Exists(dst.clone()));
            }
            if self.same_file(&source, dst)? {
                // Two names of one file: rename(2) does nothing.
                return Ok(Vec::new());
            }
            match (source.kind == Kind::Dir, target.kind == Kind::Dir) {
                (false, true) => return Err(StoreError::IsADirectory(dst.clone())),
                (true, false) => return Err(StoreError::NotADirectory(dst.clone())),
                (true, true) if !self.list_dir(dst)?.is_empty() => {
                    return Err(StoreError::NotEmpty(dst.clone()));
                }
                _ => {}
            }
        }
        let mut moves = vec![(src.clone(), dst.clone(), source.clone())];
        if source.kind == Kind::Dir {
            for (child, version) in self.walk(src)? {
                let rest = &child.names()[src.names().len()..];
                let mut to = dst.clone();
                for name in rest {
                    to = to.join(name)?;
                }
                moves.push((child, to, version));
            }
        }
        // A replaced file that was hard-linked leaves its group first.
        if let Some(target) = target.filter(|t| t.kind == Kind::File) {
            self.leave_group(&lock, dst, &target)?;
        }
        // Moved names of link groups are renamed in their groups' lists.
        let (contents, others) = self.renamed_groups(&moves)?;
        let mut made = Vec::with_capacity(moves.len() * 2);
        // New versions first (parents before children), then tombstones
        // (children first), then the names of those groups that stayed.
        for ((from, to, version), mut content) in moves.iter().zip(contents) {
            content.from = Some((version.id, from.clone()));
            if let Some(mtime) = keep.filter(|_| to == dst) {
                content.mtime = mtime;
            }
            made.push(self.commit_held(to, content, false)?);
        }
        for (from, _, _) in moves.iter().rev() {
            made.push(self.commit_locked(
                &lock,
                from,
                Content::simple(Kind::Tombstone, 0, Mtime::now()),
                false,
            )?);
        }
        self.commit_others(&lock, others)?;
        Ok(made)
    }

    /// Changes mode and/or mtime: a new version with the same content.
    pub fn set_attrs(
        &self,
        path: &VPath,
        mode: Option<u32>,
        mtime: Option<Mtime>,
    ) -> Result<Version, StoreError> {
        let lock = self.writer_lock()?;
        let current = self
            .live(path)?
            .ok_or_else(|| StoreError::NotFound(path.clone()))?;
        let mut content = Content::of(&current);
        if let Some(mode) = mode {
            content.mode = mode & 0o7777;
        }
        if let Some(mtime) = mtime {
            content.mtime = mtime;
        }
        self.commit_locked(&lock, path, content, false)
    }

    /// Makes the content of an older version of `path` current again.
    pub fn restore(&self, path: &VPath, id: VersionId) -> Result<Version, StoreError> {
        let lock = self.writer_lock()?;
        let old = match self.read_version(path, id) {
            Ok(old) => old,
            Err(err) if err.is_not_found() => {
                return Err(StoreError::NoSuchVersion(path.clone(), id.to_string()));
            }
            Err(err) => return Err(err),
        };
        if old.kind.is_live() {
            self.make_parents_locked(&lock, path, Mtime::now())?;
        }
        self.commit_locked(&lock, path, Content::of(&old), true)
    }
}
