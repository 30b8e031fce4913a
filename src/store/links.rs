//! Hard links in the store: which names form a link group, and every change
//! that keeps a group whole (link, a commit through one name, unlink, rename,
//! a name leaving the group). docs/FORMAT.md §11 "Hard links" is the rule.
//!
//! Every name of a group is an ordinary `file` version at its own path with
//! the same hash lines and attributes, plus `link-group G` and the sorted
//! list of every name (`link` keys, parsed in `posix.rs`). A reader that
//! ignores the keys therefore sees identical bytes at every name. A change
//! through one name writes a new version at every name under one writer lock.
//!
//! A group is *linked* on a reader only while the current versions of all its
//! listed names agree on the group id, the list, the content and the
//! attributes ([`linked_names_by`]); otherwise (a crash between the versions
//! of one change, concurrent changes on two nodes, an older node's edit at one
//! name) every name shows as a file of its own, and the next change through a
//! name writes that name alone, without the keys.

use std::collections::{BTreeMap, HashMap};

use super::posix::{LINKS_MAX, LinkGroup, Posix};
use super::{Content, Kind, Store, StoreError, Version, WriterLock};
use crate::ids::VersionId;
use crate::layout::VPath;

/// Versions a rename writes at names it did not move (their group's list
/// changed): each name with its new content.
pub(super) type Others = Vec<(VPath, Content)>;

/// Whether two versions say the same as members of one group: same group and
/// list, same content, same attributes.
pub fn agree(a: &Version, b: &Version) -> bool {
    let without_links = |posix: &Posix| Posix {
        links: None,
        ..posix.clone()
    };
    a.kind == Kind::File
        && b.kind == Kind::File
        && a.posix.links.is_some()
        && a.posix.links == b.posix.links
        && a.size == b.size
        && a.block_size == b.block_size
        && a.hashes == b.hashes
        && a.mode == b.mode
        && a.mtime == b.mtime
        && without_links(&a.posix) == without_links(&b.posix)
}

/// The group `version` (the current version at its path) is linked in: its
/// group id and every name, when the current versions of all the names it
/// lists agree with it (`live` answers a path's live version). `None` for a
/// file of its own, a group of one name, or a group whose names disagree.
pub fn linked_names_by(
    version: &Version,
    live: impl Fn(&VPath) -> Result<Option<Version>, StoreError>,
) -> Result<Option<LinkGroup>, StoreError> {
    let Some(links) = version.posix.links.as_deref() else {
        return Ok(None);
    };
    if version.kind != Kind::File || links.names.len() < 2 || !links.names.contains(&version.path) {
        return Ok(None);
    }
    for name in &links.names {
        if *name == version.path {
            continue;
        }
        match live(name)? {
            Some(other) if agree(version, &other) => {}
            _ => return Ok(None),
        }
    }
    Ok(Some(links.clone()))
}

/// The first of the versions a commit published (the one at the path it was
/// asked for).
pub fn first(made: Vec<Version>) -> Result<Version, StoreError> {
    made.into_iter()
        .next()
        .ok_or_else(|| StoreError::Internal("a commit published no version".into()))
}

/// `names` with `with` added and `without` removed, sorted, each once.
fn edited(names: &[VPath], with: Option<&VPath>, without: Option<&VPath>) -> Vec<VPath> {
    let mut out: Vec<VPath> = names
        .iter()
        .filter(|name| Some(*name) != without)
        .cloned()
        .chain(with.cloned())
        .collect();
    out.sort();
    out.dedup();
    out
}

impl Store {
    /// The group `version` (current at its path, read from this store) is
    /// linked in (see [`linked_names_by`]).
    pub fn linked_names(&self, version: &Version) -> Result<Option<LinkGroup>, StoreError> {
        linked_names_by(version, |path| self.live(path))
    }

    /// `link(2)`: `new` becomes another name of the file at `existing`. Every
    /// name of the group gets a new version with the new list; the new name's
    /// is written last. Returns the version at `new`.
    pub fn link(&self, existing: &VPath, new: &VPath) -> Result<Version, StoreError> {
        let mut made = self.link_each(existing, new)?;
        made.pop()
            .ok_or_else(|| StoreError::Internal("link wrote no version".into()))
    }

    /// [`Store::link`], returning every version it published (the new
    /// name's last).
    pub fn link_each(&self, existing: &VPath, new: &VPath) -> Result<Vec<Version>, StoreError> {
        let _held = self.writer_lock()?;
        let source = self
            .live(existing)?
            .ok_or_else(|| StoreError::NotFound(existing.clone()))?;
        if source.kind != Kind::File || existing.is_root() {
            return Err(StoreError::NotLinkable(existing.clone()));
        }
        if new.is_root() || self.live(new)?.is_some() {
            return Err(StoreError::Exists(new.clone()));
        }
        self.check_parent(new)?;
        let (group, names) = match self.linked_names(&source)? {
            Some(links) => (links.group, links.names),
            // A file of its own (or in a group that no longer holds): the
            // group is named by the version that is linked now.
            None => (source.id, vec![existing.clone()]),
        };
        if names.len() >= LINKS_MAX {
            return Err(StoreError::TooManyLinks(existing.clone()));
        }
        let names = edited(&names, Some(new), None);
        let mut content = Content::of(&source);
        content.posix.links = Some(Box::new(LinkGroup {
            group,
            names: names.clone(),
        }));
        names
            .iter()
            .filter(|name| *name != new)
            .chain([new])
            .map(|name| self.commit_held(name, content.clone(), false))
            .collect()
    }

    /// A commit of `content` (which carries `path`'s link keys) at `path`: at
    /// every name of the group when `path` is linked in that very group, else
    /// at `path` alone without the keys. Returns the versions, `path`'s first.
    pub(super) fn commit_linked(
        &self,
        path: &VPath,
        mut content: Content,
        durable: bool,
    ) -> Result<Vec<Version>, StoreError> {
        let wanted = content.posix.links.as_ref().map(|links| links.group);
        let group = match self.live(path)? {
            Some(current) => self.linked_names(&current)?,
            None => None,
        };
        let Some(group) = group.filter(|group| Some(group.group) == wanted) else {
            content.posix.links = None;
            return Ok(vec![self.commit_held(path, content, durable)?]);
        };
        content.posix.links = Some(Box::new(group.clone()));
        let mut made = vec![self.commit_held(path, content.clone(), durable)?];
        for name in group.names.iter().filter(|name| *name != path) {
            made.push(self.commit_held(name, content.clone(), durable)?);
        }
        Ok(made)
    }

    /// `path` (current version `version`) leaves its group, if it is linked
    /// in one: every other name gets a new version listing the rest (a name
    /// left alone loses the keys). `path` itself is not written: the caller
    /// writes what replaces it (a tombstone, a rename's target, ...).
    pub(super) fn leave_group(
        &self,
        _held: &WriterLock,
        path: &VPath,
        version: &Version,
    ) -> Result<(), StoreError> {
        let Some(group) = self.linked_names(version)? else {
            return Ok(());
        };
        let rest = edited(&group.names, None, Some(path));
        let mut content = Content::of(version);
        content.posix.links = (rest.len() >= 2).then(|| {
            Box::new(LinkGroup {
                group: group.group,
                names: rest.clone(),
            })
        });
        for name in &rest {
            self.commit_held(name, content.clone(), false)?;
        }
        Ok(())
    }

    /// The link keys of the versions a rename writes (`moves`: from, to and
    /// the moved version), and the names outside the move whose list changes:
    /// a moved name is renamed in its group's list. Returns the content for
    /// each move (in order) and the versions to write at names not moved.
    pub(super) fn renamed_groups(
        &self,
        moves: &[(VPath, VPath, Version)],
    ) -> Result<(Vec<Content>, Others), StoreError> {
        let renamed: HashMap<&VPath, &VPath> = moves.iter().map(|(f, t, _)| (f, t)).collect();
        let mut groups: BTreeMap<VersionId, (LinkGroup, Vec<VPath>)> = BTreeMap::new();
        let mut contents = Vec::with_capacity(moves.len());
        for (_, _, version) in moves {
            let mut content = Content::of(version);
            content.posix.links = None;
            if let Some(group) = self.linked_names(version)? {
                let mut names: Vec<VPath> = group
                    .names
                    .iter()
                    .map(|name| renamed.get(name).map_or(name, |to| *to).clone())
                    .collect();
                names.sort();
                names.dedup();
                content.posix.links = Some(Box::new(LinkGroup {
                    group: group.group,
                    names: names.clone(),
                }));
                groups.entry(group.group).or_insert((group, names));
            }
            contents.push(content);
        }
        let mut others = Vec::new();
        for (group, (old, names)) in groups {
            for name in old.names.iter().filter(|name| !renamed.contains_key(name)) {
                if let Some(current) = self.live(name)? {
                    let mut content = Content::of(&current);
                    content.posix.links = Some(Box::new(LinkGroup {
                        group,
                        names: names.clone(),
                    }));
                    others.push((name.clone(), content));
                }
            }
        }
        Ok((contents, others))
    }

    /// Writes the versions [`Store::renamed_groups`] decided for names a
    /// rename did not move.
    pub(super) fn commit_others(
        &self,
        _held: &WriterLock,
        others: Others,
    ) -> Result<(), StoreError> {
        for (name, content) in others {
            self.commit_held(&name, content, false)?;
        }
        Ok(())
    }

    /// Whether `a` and `b` are names of one linked file (a rename between
    /// them does nothing, as rename(2) says).
    pub(super) fn same_file(&self, a: &Version, b: &VPath) -> Result<bool, StoreError> {
        Ok(self
            .linked_names(a)?
            .is_some_and(|group| group.names.contains(b)))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::store::Attrs;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::store::scratch_spec(dir.path());
        (dir, Store::open_spec(&spec).unwrap())
    }

    fn path(text: &str) -> VPath {
        VPath::from_escaped(text).unwrap()
    }

    fn group_of(store: &Store, at: &str) -> Option<Vec<VPath>> {
        let version = store.live(&path(at)).unwrap()?;
        store.linked_names(&version).unwrap().map(|g| g.names)
    }

    fn write(store: &Store, at: &str, data: &[u8]) -> Version {
        store
            .write_file(&path(at), &mut Cursor::new(data), Attrs::default(), false)
            .unwrap()
    }

    #[test]
    fn a_link_writes_every_name_with_the_sorted_list() {
        let (_dir, store) = store();
        let first = write(&store, "b", b"hello");
        let made = store.link(&path("b"), &path("a")).unwrap();
        let links = made.posix.links.as_deref().unwrap();
        assert_eq!(links.group, first.id);
        assert_eq!(links.names, vec![path("a"), path("b")]);
        assert_eq!(group_of(&store, "b"), Some(vec![path("a"), path("b")]));
        let b = store.live(&path("b")).unwrap().unwrap();
        assert_eq!((b.hashes.clone(), b.size), (made.hashes.clone(), 5));
        // A third name joins the same group.
        store.link(&path("a"), &path("c")).unwrap();
        assert_eq!(group_of(&store, "b").unwrap().len(), 3);
        assert_eq!(
            store
                .live(&path("c"))
                .unwrap()
                .unwrap()
                .posix
                .links
                .unwrap()
                .group,
            first.id
        );
    }

    #[test]
    fn links_of_what_is_not_a_file_or_onto_a_name_are_refused() {
        let (_dir, store) = store();
        write(&store, "f", b"x");
        write(&store, "g", b"y");
        store.mkdir(&path("d"), 0o755).unwrap();
        store.symlink(&path("s"), b"f").unwrap();
        assert!(matches!(
            store.link(&path("d"), &path("d2")),
            Err(StoreError::NotLinkable(_))
        ));
        assert!(matches!(
            store.link(&path("s"), &path("s2")),
            Err(StoreError::NotLinkable(_))
        ));
        assert!(matches!(
            store.link(&path("f"), &path("g")),
            Err(StoreError::Exists(_))
        ));
        assert!(matches!(
            store.link(&path("nope"), &path("n2")),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(group_of(&store, "f"), None);
    }

    #[test]
    fn a_change_through_one_name_is_written_at_every_name() {
        let (_dir, store) = store();
        write(&store, "a", b"one");
        store.link(&path("a"), &path("b")).unwrap();
        store
            .change_attrs(&path("b"), |content| content.mode = 0o600)
            .unwrap();
        let a = store.live(&path("a")).unwrap().unwrap();
        assert_eq!(a.mode, 0o600);
        assert_eq!(group_of(&store, "a"), Some(vec![path("a"), path("b")]));
    }

    #[test]
    fn unlink_and_rename_keep_the_rest_linked() {
        let (_dir, store) = store();
        write(&store, "a", b"one");
        store.link(&path("a"), &path("b")).unwrap();
        store.link(&path("a"), &path("c")).unwrap();
        store.remove(&path("b")).unwrap();
        assert_eq!(group_of(&store, "a"), Some(vec![path("a"), path("c")]));
        store.rename(&path("c"), &path("z"), false).unwrap();
        assert_eq!(group_of(&store, "a"), Some(vec![path("a"), path("z")]));
        assert_eq!(group_of(&store, "z"), Some(vec![path("a"), path("z")]));
        // A rename between two names of one file does nothing.
        store.rename(&path("a"), &path("z"), false).unwrap();
        assert_eq!(group_of(&store, "a"), Some(vec![path("a"), path("z")]));
        // A whole new file written at a name (`globofs put`) replaces that
        // name alone.
        store.link(&path("a"), &path("p")).unwrap();
        write(&store, "p", b"replaced");
        assert_eq!(group_of(&store, "a"), Some(vec![path("a"), path("z")]));
        assert_eq!(group_of(&store, "p"), None);
        // The last name but one leaving: the other is a file of its own.
        store.remove(&path("a")).unwrap();
        let z = store.live(&path("z")).unwrap().unwrap();
        assert_eq!(z.posix.links, None);
    }

    #[test]
    fn names_that_disagree_are_files_of_their_own() {
        let (_dir, store) = store();
        write(&store, "a", b"one");
        store.link(&path("a"), &path("b")).unwrap();
        // What a node that ignores the keys does: a plain write at one name.
        let mut current = Content::of(&store.live(&path("b")).unwrap().unwrap());
        current.mode = 0o700;
        let held = store.writer_lock().unwrap();
        store.commit_held(&path("b"), current, false).unwrap();
        assert_eq!(group_of(&store, "a"), None);
        assert_eq!(group_of(&store, "b"), None);
        // The next change through a name writes that name alone.
        drop(held);
        store
            .change_attrs(&path("a"), |content| content.mode = 0o640)
            .unwrap();
        assert_eq!(store.live(&path("b")).unwrap().unwrap().mode, 0o700);
        assert_eq!(store.live(&path("a")).unwrap().unwrap().posix.links, None);
    }
}
