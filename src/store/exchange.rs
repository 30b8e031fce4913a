//! `renameat2(RENAME_EXCHANGE)` in the store: two existing names swap what
//! they name (files, directories with everything below them, or one of
//! each), under one writer lock. Like a rename (FORMAT §11), every new
//! version names the blocks it had and records `from`; an entry below one
//! side that the other side has no entry for gets a tombstone.

use std::collections::HashSet;

use super::{Content, Kind, Mtime, Store, StoreError, Version};
use crate::layout::VPath;

impl Store {
    /// Swaps `a` and `b` (both must exist; neither may hold the other); the
    /// version that moves `a`'s content gets mtime `keep.0` when given, and
    /// `b`'s `keep.1` (a directory's shown mtime, FORMAT §11).
    pub fn exchange(
        &self,
        a: &VPath,
        b: &VPath,
        keep: (Option<Mtime>, Option<Mtime>),
    ) -> Result<(), StoreError> {
        let lock = self.writer_lock()?;
        let first = self
            .live(a)?
            .ok_or_else(|| StoreError::NotFound(a.clone()))?;
        let second = self
            .live(b)?
            .ok_or_else(|| StoreError::NotFound(b.clone()))?;
        if a == b {
            return Ok(());
        }
        if a.is_root() || b.is_root() || a.starts_with(b) || b.starts_with(a) {
            return Err(StoreError::Invalid { path: b.clone() });
        }
        if self.same_file(&first, b)? {
            // Two names of one file: nothing to swap.
            return Ok(());
        }
        // An exchanged name leaves its link group (the other names stay
        // linked without it); what it receives is a file of its own.
        for (path, version) in [(a, &first), (b, &second)] {
            if version.kind == Kind::File {
                self.leave_group(&lock, path, version)?;
            }
        }
        // Each side's entries, top first, with where they go.
        let into_b = self.moves(a, b, first, keep.0)?;
        let into_a = self.moves(b, a, second, keep.1)?;
        let targets: HashSet<VPath> = into_b
            .iter()
            .chain(&into_a)
            .map(|(_, to, _)| to.clone())
            .collect();
        // The side that becomes a directory first, so no entry is written
        // below a name that is a file (a file's side after the tombstones).
        let (early, late) = if into_a[0].2.kind == Kind::Dir {
            (&into_a, &into_b)
        } else {
            (&into_b, &into_a)
        };
        for (from, to, version) in early {
            self.commit_moved(&lock, from, to, version)?;
        }
        // Entries left behind where nothing takes their place: children first.
        let mut gone: Vec<&VPath> = into_a
            .iter()
            .chain(&into_b)
            .map(|(from, _, _)| from)
            .filter(|from| !targets.contains(*from))
            .collect();
        gone.sort_by_key(|path| std::cmp::Reverse(path.names().len()));
        for path in gone {
            self.commit_locked(
                &lock,
                path,
                Content::simple(Kind::Tombstone, 0, Mtime::now()),
                false,
            )?;
        }
        for (from, to, version) in late {
            self.commit_moved(&lock, from, to, version)?;
        }
        Ok(())
    }

    /// `top` (at `from`) and every live entry below it, each with its path
    /// under `to`: parents before children.
    fn moves(
        &self,
        from: &VPath,
        to: &VPath,
        mut top: Version,
        keep: Option<Mtime>,
    ) -> Result<Vec<(VPath, VPath, Version)>, StoreError> {
        if let Some(mtime) = keep {
            top.mtime = mtime;
        }
        let dir = top.kind == Kind::Dir;
        let mut out = vec![(from.clone(), to.clone(), top)];
        if dir {
            for (child, version) in self.walk(from)? {
                let mut target = to.clone();
                for name in &child.names()[from.names().len()..] {
                    target = target.join(name)?;
                }
                out.push((child, target, version));
            }
        }
        Ok(out)
    }

    fn commit_moved(
        &self,
        lock: &super::WriterLock,
        from: &VPath,
        to: &VPath,
        version: &Version,
    ) -> Result<Version, StoreError> {
        let mut content = Content::of(version);
        content.from = Some((version.id, from.clone()));
        // Whatever moves is a file of its own at its new name.
        content.posix.links = None;
        self.commit_locked(lock, to, content, false)
    }
}
