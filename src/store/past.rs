//! The tree as it was at a past moment, decided from the versions alone.
//!
//! At a [`Moment`] a path's history is the versions whose id the moment
//! includes (ids are times, `ids.rs`); its version then is what
//! [`resolve`](super::resolve) makes current of that subset, exactly as
//! "current" is decided from the whole set. So every node that holds the
//! same versions shows the same past, whatever order they arrived in, and
//! nothing here is stored or remembered: a version pruned since is simply
//! gone from the past too.
//!
//! This module reads only. Making the past current again is `restore.rs`.

use std::collections::BTreeMap;

use super::{Entry, Kind, Store, StoreError, Version, heads, resolve};
use crate::layout::VPath;
use crate::when::Moment;

/// How one path differs between two moments (see [`Store::diff_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Not there at the first moment, there at the second.
    Added,
    /// There at the first moment, gone at the second.
    Removed,
    /// There at both, with other content or attributes.
    Changed,
}

impl Change {
    /// `A`, `D` or `M` (the letters of `git diff --name-status`).
    pub fn letter(self) -> char {
        match self {
            Change::Added => 'A',
            Change::Removed => 'D',
            Change::Changed => 'M',
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        }
    }
}

/// Whether two versions hold the same entry for a user looking at the tree:
/// kind, bytes (size and hashes, or symlink target), mode, owners, xattrs,
/// special kind and, but for a directory, the mtime. A link group's list of
/// names and a directory's own mtime do not count (a directory's entries
/// count for themselves).
pub fn same_state(a: &Version, b: &Version) -> bool {
    let posix = |v: &Version| {
        let mut posix = v.posix.clone();
        posix.links = None;
        posix
    };
    a.kind == b.kind
        && a.size == b.size
        && a.hashes == b.hashes
        && a.target == b.target
        && a.mode == b.mode
        && (a.kind == Kind::Dir || a.mtime == b.mtime)
        && posix(a) == posix(b)
}

impl Store {
    /// The version of `path` current at `at` (a tombstone if it was deleted
    /// then), or `None` when no version of it existed yet (or is kept).
    pub fn current_at(&self, path: &VPath, at: &Moment) -> Result<Option<Version>, StoreError> {
        let all = self.version_ids(path)?;
        let ids: Vec<_> = all.iter().copied().filter(|id| at.includes(*id)).collect();
        let Some(&newest) = ids.last() else {
            return Ok(None);
        };
        if ids.len() == all.len() && all.len() >= heads::MIN_VERSIONS {
            // Every version existed then: the current one, decided with the
            // remembered heads of a long history, unless versions came or
            // went meanwhile.
            let current = self.current(path)?;
            if self.version_ids(path)? == all {
                return Ok(current);
            }
        }
        // As for "current": the newest version is a head, and a directory
        // head or a sole version wins without reading the others.
        if let Some(top) = self.decided_by_newest(path, newest, ids.len())? {
            return Ok(Some(top));
        }
        let heads = heads::heads_among(self, path, &ids)?;
        Ok(resolve::resolve(&heads).current.cloned())
    }

    /// [`Store::current_at`] if it was live (not deleted) then.
    pub fn live_at(&self, path: &VPath, at: &Moment) -> Result<Option<Version>, StoreError> {
        Ok(self.current_at(path, at)?.filter(|v| v.kind.is_live()))
    }

    /// What `path` was at `at`, reached from the root: `None` unless every
    /// directory above it was a live directory then and it was live itself.
    /// The root is `Ok(None)` only when it has no version then (it is always
    /// a directory: see [`Store::is_dir_at`]).
    pub fn lookup_at(&self, path: &VPath, at: &Moment) -> Result<Option<Version>, StoreError> {
        let mut dir = VPath::root();
        let names = path.names();
        for (depth, name) in names.iter().enumerate() {
            dir = dir.join(name)?;
            let Some(version) = self.live_at(&dir, at)? else {
                return Ok(None);
            };
            if depth + 1 == names.len() {
                return Ok(Some(version));
            }
            if version.kind != Kind::Dir {
                return Ok(None);
            }
        }
        self.live_at(path, at)
    }

    /// Whether `path` was a directory at `at` (the root always was).
    pub fn is_dir_at(&self, path: &VPath, at: &Moment) -> Result<bool, StoreError> {
        if path.is_root() {
            return Ok(true);
        }
        Ok(self
            .lookup_at(path, at)?
            .is_some_and(|v| v.kind == Kind::Dir))
    }

    /// The entries directory `path` had at `at`, sorted by name (the names
    /// on disk are every name the directory ever had; each is decided at `at`).
    pub fn list_dir_at(&self, path: &VPath, at: &Moment) -> Result<Vec<Entry>, StoreError> {
        self.list_dir_by(path, |_| None, |child| self.live_at(child, at))
            .map_err(|err| then(err, at))
    }

    /// Every path below `path` at `at` (depth first, sorted), with its version.
    pub fn walk_at(&self, path: &VPath, at: &Moment) -> Result<Vec<(VPath, Version)>, StoreError> {
        super::tree::walk_with(path, |dir| self.list_dir_at(dir, at))
    }

    /// `path` and everything below it at `at`, by path; empty when it was
    /// not there. The root is listed only by its entries.
    pub fn tree_at(
        &self,
        path: &VPath,
        at: &Moment,
    ) -> Result<BTreeMap<VPath, Version>, StoreError> {
        let mut tree = BTreeMap::new();
        if !path.is_root() {
            match self.lookup_at(path, at)? {
                Some(version) if version.kind == Kind::Dir => {
                    tree.insert(path.clone(), version);
                }
                Some(version) => {
                    tree.insert(path.clone(), version);
                    return Ok(tree);
                }
                None => return Ok(tree),
            }
        }
        tree.extend(self.walk_at(path, at)?);
        Ok(tree)
    }

    /// What changed at and below `path` from `from` to `to`: each path
    /// added, removed or changed ([`same_state`]), sorted by path.
    pub fn diff_at(
        &self,
        path: &VPath,
        from: &Moment,
        to: &Moment,
    ) -> Result<Vec<(VPath, Change)>, StoreError> {
        let before = self.tree_at(path, from)?;
        let after = self.tree_at(path, to)?;
        let mut out = Vec::new();
        for (path, old) in &before {
            match after.get(path) {
                None => out.push((path.clone(), Change::Removed)),
                Some(new) if !same_state(old, new) => out.push((path.clone(), Change::Changed)),
                Some(_) => {}
            }
        }
        for path in after.keys() {
            if !before.contains_key(path) {
                out.push((path.clone(), Change::Added));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// A listing's "not there" said of the moment it was asked about.
fn then(err: StoreError, at: &Moment) -> StoreError {
    match err {
        StoreError::NotFound(path) => StoreError::NotThen {
            path,
            at: at.to_string(),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Attrs;

    fn at(secs: u64) -> Moment {
        Moment::at_instant(secs, 0)
    }

    fn clock(secs: u64) {
        crate::ids::set_test_clock(Some(std::time::Duration::from_secs(secs)));
    }

    #[test]
    fn the_past_uses_only_the_versions_of_then() {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::store::scratch_spec(dir.path());
        let store = Store::open_spec(&spec).unwrap();
        let p = |text: &str| VPath::from_escaped(text).unwrap();
        clock(1_000);
        store
            .write_file(&p("a/f"), &mut &b"one"[..], Attrs::default(), false)
            .unwrap();
        clock(2_000);
        store
            .write_file(&p("a/f"), &mut &b"two"[..], Attrs::default(), false)
            .unwrap();
        clock(3_000);
        store.remove_tree(&p("a")).unwrap();
        crate::ids::set_test_clock(None);
        assert!(store.lookup_at(&p("a/f"), &at(999)).unwrap().is_none());
        let first = store.lookup_at(&p("a/f"), &at(1_500)).unwrap().unwrap();
        assert_eq!(first.size, 3);
        assert_eq!(first.id.secs, 1_000);
        let second = store.lookup_at(&p("a/f"), &at(2_000)).unwrap().unwrap();
        assert_eq!(second.id.secs, 2_000);
        assert!(store.lookup_at(&p("a/f"), &at(3_000)).unwrap().is_none());
        assert_eq!(
            store.current_at(&p("a"), &at(3_000)).unwrap().unwrap().kind,
            Kind::Tombstone
        );
        let names: Vec<_> = store
            .walk_at(&VPath::root(), &at(2_500))
            .unwrap()
            .into_iter()
            .map(|(path, _)| path.escaped())
            .collect();
        assert_eq!(names, ["a", "a/f"]);
        assert!(
            store
                .walk_at(&VPath::root(), &at(3_000))
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            store.list_dir_at(&p("a"), &at(3_500)),
            Err(StoreError::NotThen { .. })
        ));
        let diff = store
            .diff_at(&VPath::root(), &at(1_500), &at(3_500))
            .unwrap();
        assert_eq!(
            diff,
            vec![(p("a"), Change::Removed), (p("a/f"), Change::Removed)]
        );
        let diff = store
            .diff_at(&VPath::root(), &at(1_500), &at(2_500))
            .unwrap();
        assert_eq!(diff, vec![(p("a/f"), Change::Changed)]);
    }
}
