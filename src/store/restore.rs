//! Making the past current again: a file or a whole tree as it was at a
//! [`Moment`] (decided by `past.rs`) written back as new versions through
//! the store's one commit, so the restore syncs like any other change.
//!
//! A restored file names the blocks its old version named (nothing is
//! copied or re-read) and keeps that version's mode, mtime, owners and
//! xattrs; it is a file of its own (a hard-link group is not restored).
//! Entries that are already as they were get no new version. Entries made
//! since the moment stay, unless the restore is exact (they get tombstones)
//! or they sit below something that was not a directory then.

use std::collections::BTreeMap;

use super::{Content, Kind, Mtime, Store, StoreError, Version, past::same_state};
use crate::layout::VPath;
use crate::when::Moment;

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Restored {
    /// Paths given a new version (parents first).
    pub written: Vec<String>,
    /// Paths deleted (made since the moment; children first).
    pub removed: Vec<String>,
    /// Paths already as they were.
    pub unchanged: usize,
}

impl Store {
    /// Makes `path` current again as it was at `at`: a file (or symlink),
    /// or with `recursive` a directory and everything below it. With
    /// `exact`, what is below `path` now but was not then is deleted (and
    /// `path` itself, if it was not there then). Missing directories above
    /// `path` are restored too.
    pub fn restore_at(
        &self,
        path: &VPath,
        at: &Moment,
        recursive: bool,
        exact: bool,
    ) -> Result<Restored, StoreError> {
        let mut done = Restored::default();
        let then = if path.is_root() {
            None
        } else {
            self.lookup_at(path, at)?
        };
        let was_dir = path.is_root() || then.as_ref().is_some_and(|v| v.kind == Kind::Dir);
        if was_dir && !recursive {
            return Err(StoreError::WasADirectory {
                path: path.clone(),
                at: at.to_string(),
            });
        }
        if then.is_none() && !path.is_root() {
            if !exact || self.live(path)?.is_none() {
                return Err(StoreError::NotThen {
                    path: path.clone(),
                    at: at.to_string(),
                });
            }
            // Exact: it was not there, so it goes.
            self.remove_now(path, &mut done)?;
            crate::store::sync_filesystem(&self.layout.dir)?;
            return Ok(done);
        }
        let wanted = self.tree_at(path, at)?;
        let now = self.tree_now(path)?;
        let lock = self.writer_lock()?;
        // The directories above, as they were (they were live directories then).
        let mut ancestors = Vec::new();
        let mut dir = path.parent();
        while let Some(current) = dir.filter(|d| !d.is_root()) {
            ancestors.push(current.clone());
            dir = current.parent();
        }
        for ancestor in ancestors.into_iter().rev() {
            if self.is_dir(&ancestor)? {
                continue;
            }
            let old = self
                .live_at(&ancestor, at)?
                .ok_or_else(|| StoreError::NotThen {
                    path: ancestor.clone(),
                    at: at.to_string(),
                })?;
            if self.live(&ancestor)?.is_some() {
                self.remove_now(&ancestor, &mut done)?;
            }
            self.commit_locked(&lock, &ancestor, content_of(&old), false)?;
            done.written.push(ancestor.display());
        }
        // What goes: made since (when exact), or below what was not a directory.
        let below_non_dir = |p: &VPath| {
            wanted
                .iter()
                .any(|(w, v)| v.kind != Kind::Dir && p != w && p.starts_with(w))
        };
        let mut gone: Vec<&VPath> = now
            .keys()
            .filter(|p| !wanted.contains_key(*p) && (exact || below_non_dir(p)))
            .collect();
        gone.reverse();
        for p in gone {
            // A directory emptied above may be gone already with its entries.
            if self.live(p)?.is_some() {
                self.remove_now(p, &mut done)?;
            }
        }
        // What comes back, parents first.
        let mut dirs = Vec::new();
        for (p, old) in &wanted {
            if old.kind == Kind::Dir {
                dirs.push(p.clone());
            }
            let current = self.live(p)?;
            match &current {
                Some(current) if same_state(current, old) => {
                    done.unchanged += 1;
                    continue;
                }
                // Another kind of entry, or a file in a link group: it goes first.
                Some(current)
                    if current.kind != old.kind
                        || (current.kind == Kind::File && current.posix.links.is_some()) =>
                {
                    if current.kind == Kind::Dir {
                        // Only entries also wanted remain below it: those that
                        // are not directories now come back after it.
                        for (child, _) in self.walk(p)?.into_iter().rev() {
                            self.remove(&child)?;
                        }
                    }
                    self.remove(p)?;
                }
                _ => {}
            }
            self.commit_locked(&lock, p, content_of(old), false)?;
            done.written.push(p.display());
        }
        drop(lock);
        // Restored entries moved their directories' shown times: each
        // directory shows its own again, children first.
        for dir in dirs.iter().rev() {
            self.keep_dir_mtime(dir)?;
        }
        crate::store::sync_filesystem(&self.layout.dir)?;
        Ok(done)
    }

    /// `path` and everything below it now, by path (the root by its entries).
    fn tree_now(&self, path: &VPath) -> Result<BTreeMap<VPath, Version>, StoreError> {
        let mut tree = BTreeMap::new();
        if !path.is_root() {
            match self.live(path)? {
                Some(version) => {
                    let dir = version.kind == Kind::Dir;
                    tree.insert(path.clone(), version);
                    if !dir {
                        return Ok(tree);
                    }
                }
                None => return Ok(tree),
            }
        }
        tree.extend(self.walk(path)?);
        Ok(tree)
    }

    /// Deletes `path` and everything below it now, noting each path.
    fn remove_now(&self, path: &VPath, done: &mut Restored) -> Result<(), StoreError> {
        if self.is_dir(path)? {
            for (child, _) in self.walk(path)?.into_iter().rev() {
                self.remove(&child)?;
                done.removed.push(child.display());
            }
        }
        self.remove(path)?;
        done.removed.push(path.display());
        Ok(())
    }
}

/// The content of `old` as a new version: the same blocks and attributes,
/// in no link group.
fn content_of(old: &Version) -> Content {
    let mut content = Content::of(old);
    content.posix.links = None;
    if content.kind == Kind::Tombstone {
        content.mtime = Mtime::default();
    }
    content
}
