//! The inode table: an inode number per path the kernel was told of, the
//! kernel's reference count, and what the kernel may cache of each inode.

use std::collections::HashMap;

use super::ROOT_INO;
use crate::ids::VersionId;
use crate::layout::VPath;
use crate::store::Version;
use crate::store::posix::LinkGroup;

/// A version as an inode remembers it: a 64-bit fingerprint of its id (the
/// inode table has an entry per inode the kernel knows, 100,000s of them, and
/// only ever asks "the same version as before?").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Seen(u64);

impl Seen {
    pub(super) fn of(id: &crate::ids::VersionId) -> Seen {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut hasher);
        Seen(hasher.finish())
    }
}

pub(super) struct Node {
    pub(super) path: VPath,
    pub(super) lookups: u64,
    /// The version whose bytes the kernel's page cache of this inode may hold
    /// (`None`: unknown, the next open must drop the cache).
    pub(super) cached: Option<Seen>,
    /// Bumped by anything that may put other bytes in the page cache (a
    /// writer opening or closing, a change from elsewhere), so a reader that
    /// raced with it does not vouch for the cache.
    pub(super) epoch: u64,
    /// Set once the inode lost its name (unlinked, or replaced by a rename)
    /// while the kernel still holds it: the version it showed then, which an
    /// open or `fstat` by inode still gets, as on a local file system (boxed:
    /// the table holds an entry per inode the kernel knows, 100,000s of them).
    pub(super) gone: Option<Box<Version>>,
    /// The committed version whose attributes the kernel was last given for
    /// this inode (`None`: a writer's, or none yet). An open that serves
    /// another version has the kernel drop them: its cached size would cut
    /// the new bytes short or read past their end.
    pub(super) described: Option<Seen>,
    /// The link group this inode stands for (every name of a hard-linked
    /// file shares one inode, see `links.rs`), and its names other than `path`
    /// that the kernel was told of.
    pub(super) group: Option<VersionId>,
    pub(super) aliases: Vec<VPath>,
}

impl Node {
    pub(super) fn new(path: &VPath) -> Node {
        Node {
            path: path.clone(),
            lookups: 0,
            cached: None,
            epoch: 0,
            gone: None,
            described: None,
            group: None,
            aliases: Vec::new(),
        }
    }
}

#[derive(Default)]
pub(super) struct Inodes {
    pub(super) next: u64,
    pub(super) by_ino: HashMap<u64, Node>,
    pub(super) by_path: HashMap<VPath, u64>,
    /// The inode of each link group the kernel was told of.
    pub(super) by_group: HashMap<VersionId, u64>,
}

impl Inodes {
    pub(super) fn ino_for(&mut self, path: &VPath) -> u64 {
        if path.is_root() {
            return ROOT_INO;
        }
        if let Some(ino) = self.by_path.get(path) {
            return *ino;
        }
        self.next += 1;
        let ino = self.next;
        self.by_ino.insert(ino, Node::new(path));
        self.by_path.insert(path.clone(), ino);
        ino
    }

    /// The inode of `path` (a new one if it has none), with one more kernel
    /// reference counted, in one step: a reply naming it is on its way.
    pub(super) fn referenced(&mut self, path: &VPath) -> u64 {
        let ino = self.ino_for(path);
        if let Some(node) = self.by_ino.get_mut(&ino) {
            node.lookups += 1;
        }
        ino
    }

    /// The inode of `path`, whose current version is linked in `group`
    /// (`None`: a file of its own): every name of a group gets the group's
    /// one inode; a name whose grouping changed since (linked or unlinked
    /// elsewhere) moves to the inode it now belongs to.
    pub(super) fn ino_in(&mut self, path: &VPath, group: Option<&LinkGroup>) -> u64 {
        if path.is_root() {
            return ROOT_INO;
        }
        let key = group.map(|g| g.group);
        if let Some(&ino) = self.by_path.get(path) {
            let claimed = key.and_then(|key| self.by_group.get(&key)).copied();
            let Some(node) = self.by_ino.get_mut(&ino) else {
                return ino;
            };
            if node.group == key {
                return ino;
            }
            if node.aliases.is_empty() && claimed.is_none_or(|other| other == ino) {
                // Its only name: the inode follows the grouping.
                if let Some(old) = node.group.take() {
                    if self.by_group.get(&old) == Some(&ino) {
                        self.by_group.remove(&old);
                    }
                }
                node.group = key;
                if let Some(key) = key {
                    self.by_group.insert(key, ino);
                }
                return ino;
            }
            self.unname(path);
        }
        if let Some(group) = group {
            if let Some(&ino) = self.by_group.get(&group.group) {
                if let Some(node) = self.by_ino.get_mut(&ino) {
                    if node.gone.is_none() && group.names.contains(&node.path) {
                        if node.path != *path && !node.aliases.contains(path) {
                            node.aliases.push(path.clone());
                        }
                        self.by_path.insert(path.clone(), ino);
                        return ino;
                    }
                }
            }
        }
        let ino = self.ino_for(path);
        if let (Some(key), Some(node)) = (key, self.by_ino.get_mut(&ino)) {
            node.group = Some(key);
            self.by_group.insert(key, ino);
        }
        ino
    }

    /// [`Inodes::ino_in`] with one more kernel reference counted.
    pub(super) fn referenced_in(&mut self, path: &VPath, group: Option<&LinkGroup>) -> u64 {
        let ino = self.ino_in(path, group);
        if let Some(node) = self.by_ino.get_mut(&ino) {
            node.lookups += 1;
        }
        ino
    }

    /// `path` stops being a name of its inode. Returns the inode when it has
    /// no name left (the caller decides what it shows from then on).
    pub(super) fn unname(&mut self, path: &VPath) -> Option<u64> {
        let ino = self.by_path.remove(path)?;
        let Some(node) = self.by_ino.get_mut(&ino) else {
            return Some(ino);
        };
        if let Some(at) = node.aliases.iter().position(|alias| alias == path) {
            node.aliases.remove(at);
            return None;
        }
        if node.path == *path && !node.aliases.is_empty() {
            node.path = node.aliases.remove(0);
            return None;
        }
        Some(ino)
    }

    /// Drops `ino`'s entry and every name that leads to it.
    pub(super) fn drop_node(&mut self, ino: u64) -> bool {
        let Some(node) = self.by_ino.remove(&ino) else {
            return false;
        };
        for name in std::iter::once(&node.path).chain(&node.aliases) {
            if self.by_path.get(name) == Some(&ino) {
                self.by_path.remove(name);
            }
        }
        if let Some(group) = node.group {
            if self.by_group.get(&group) == Some(&ino) {
                self.by_group.remove(&group);
            }
        }
        true
    }

    /// `ino` lost its name; it showed `version` until then (`None`: nothing to
    /// keep showing, it goes at once).
    pub(super) fn orphan(&mut self, ino: u64, version: Option<Version>) {
        match version {
            Some(version) => {
                if let Some(node) = self.by_ino.get_mut(&ino) {
                    node.gone = Some(Box::new(version));
                }
            }
            None => {
                self.drop_node(ino);
            }
        }
    }

    /// Counts a reference to `ino` at `path`, bringing its entry back if the
    /// kernel's FORGET of earlier references removed it.
    pub(super) fn adopt(&mut self, ino: u64, path: &VPath) {
        let node = self.by_ino.entry(ino).or_insert_with(|| Node::new(path));
        node.lookups += 1;
        self.by_path.entry(path.clone()).or_insert(ino);
    }

    /// Moves `from` (and everything below it) to `to`.
    pub(super) fn rename(&mut self, from: &VPath, to: &VPath, replaced: Option<Version>) {
        let moved: Vec<(VPath, u64)> = self
            .by_path
            .iter()
            .filter(|(path, _)| path.starts_with(from))
            .map(|(path, ino)| (path.clone(), *ino))
            .collect();
        if let Some(old) = self.unname(to) {
            // The replaced target keeps its inode (for the kernel's references
            // and open handles), but loses its name (its other names, if
            // hard-linked, keep it).
            self.orphan(old, replaced);
        }
        for (path, ino) in moved {
            self.by_path.remove(&path);
            let mut new_path = to.clone();
            for name in &path.names()[from.names().len()..] {
                if let Ok(child) = new_path.join(name) {
                    new_path = child;
                }
            }
            if let Some(node) = self.by_ino.get_mut(&ino) {
                // One of the names of a hard-linked file, or its first.
                match node.aliases.iter_mut().find(|alias| **alias == path) {
                    Some(alias) => *alias = new_path.clone(),
                    None => node.path = new_path.clone(),
                }
            }
            self.by_path.insert(new_path, ino);
        }
    }
}
