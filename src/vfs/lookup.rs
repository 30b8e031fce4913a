//! Names to inodes and their attributes: lookup, getattr, forget, and what the
//! kernel is told of an inode (committed, being written, or gone).

use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::error::{VfsError, VfsResult};
use super::handles::Handle;
use super::inodes::Seen;
use super::locks::Ranked;
use super::locks::lock;
use super::types::{Attr, NodeKind};
use super::{ROOT_INO, Vfs};
use crate::layout::VPath;
use crate::spec::Ownership;
use crate::store::posix::SpecialKind;
use crate::store::{Kind, Version};

impl Vfs {
    pub(super) fn attr_of(&self, ino: u64, version: &Version) -> Attr {
        let special = version.posix.special.filter(|_| version.kind == Kind::File);
        let kind = match (version.kind, special.map(|s| s.kind)) {
            (Kind::Dir, _) => NodeKind::Dir,
            (Kind::Symlink, _) => NodeKind::Symlink,
            (_, Some(SpecialKind::Fifo)) => NodeKind::Fifo,
            (_, Some(SpecialKind::Socket)) => NodeKind::Socket,
            (_, Some(SpecialKind::Char)) => NodeKind::CharDevice,
            (_, Some(SpecialKind::Block)) => NodeKind::BlockDevice,
            _ => NodeKind::File,
        };
        let rdev = special.map_or(0, |s| libc::makedev(s.major, s.minor) as u32);
        let size = match version.kind {
            Kind::Symlink => version.target.as_ref().map_or(0, |t| t.len() as u64),
            Kind::Dir => 0,
            _ => version.size,
        };
        let (uid, gid) = self.owner_of(version);
        let mtime = version.mtime.to_system();
        let mut attr = Attr {
            ino,
            kind,
            size,
            perm: (version.mode & 0o7777) as u16,
            mtime,
            nlink: if kind == NodeKind::Dir { 2 } else { 1 },
            uid,
            gid,
            atime: version.posix.atime.map_or(mtime, |t| t.to_system()),
            ctime: changed_at(version),
            rdev,
            blocks: super::sparse::stored_blocks(version),
        };
        if kind == NodeKind::Dir {
            self.derive_dir_attr(&version.path, Some(version), &mut attr);
        } else if let Some((names, newest)) = self.link_info(version) {
            // One inode, whichever name it was reached by: the group's count
            // and its latest change.
            attr.nlink = names;
            attr.ctime = changed_at(&newest);
        }
        attr
    }

    /// The owner and group this mount shows for `version`: what it records
    /// (`mount.ownership: keep`; the mounting user when it records none, as
    /// versions written before owners were recorded), or always the mounting
    /// user (`mount-user`).
    pub(super) fn owner_of(&self, version: &Version) -> (u32, u32) {
        match self.ownership {
            Ownership::Keep => (
                version.posix.uid.unwrap_or(self.uid),
                version.posix.gid.unwrap_or(self.gid),
            ),
            Ownership::MountUser => (self.uid, self.gid),
        }
    }

    pub(super) fn root_attr(&self) -> Attr {
        match self.live(&VPath::root()).ok().flatten() {
            Some(version) => {
                let mut attr = self.attr_of(ROOT_INO, &version);
                attr.kind = NodeKind::Dir;
                attr
            }
            None => {
                let created = self.store.meta().created;
                let time =
                    SystemTime::UNIX_EPOCH + std::time::Duration::new(created.secs, created.nanos);
                let mut attr = Attr {
                    ino: ROOT_INO,
                    kind: NodeKind::Dir,
                    size: 0,
                    perm: 0o755,
                    mtime: time,
                    nlink: 2,
                    uid: self.uid,
                    gid: self.gid,
                    atime: time,
                    ctime: time,
                    rdev: 0,
                    blocks: 0,
                };
                self.derive_dir_attr(&VPath::root(), None, &mut attr);
                attr
            }
        }
    }

    /// The attributes of `ino` while writers have it open (its size as written).
    pub(super) fn writer_attr(&self, ino: u64) -> Option<Attr> {
        let dirty = self.dirty_of(ino)?;
        // Unlinked while open: no links left (checked before taking the state's lock).
        let named = self.path_of(ino).is_ok_and(|path| {
            path.is_root() || lock(&self.inodes).by_path.get(&path) == Some(&ino)
        });
        let dirty = lock(&dirty);
        let cache = &dirty.cache;
        let perm = dirty.base.as_ref().map_or(0o644, |b| b.mode as u16);
        // One `fstat` for the size, times and blocks of a direct cache.
        let meta = cache.direct.then(|| cache.file.metadata().ok()).flatten();
        let size = match &meta {
            Some(meta) if cache.direct => meta.len(),
            _ => cache.size,
        };
        // The base's mtime (a new file's: when it was made) until something
        // is written after the last commit.
        let committed = dirty.base.as_ref().filter(|b| b.id.secs > 0);
        let written = cache.last_change_by(meta.as_ref());
        let mtime = match (written, &dirty.base) {
            (Some(time), _) => time,
            (None, Some(base)) => base.mtime.to_system(),
            (None, None) => SystemTime::now(),
        };
        let (uid, gid) = match &dirty.base {
            Some(base) => self.owner_of(base),
            None => (self.uid, self.gid),
        };
        let ctime = match (written, committed) {
            (Some(time), _) => time,
            (None, Some(base)) => changed_at(base),
            (None, None) => mtime,
        };
        // An attribute change waiting for the commit moved it too.
        let ctime = cache.attrs_changed().map_or(ctime, |at| at.max(ctime));
        let atime = dirty
            .base
            .as_ref()
            .and_then(|b| b.posix.atime)
            .map_or(mtime, |t| t.to_system());
        Some(Attr {
            ino,
            kind: NodeKind::File,
            size,
            perm,
            mtime,
            nlink: if named {
                dirty.base.as_ref().map_or(1, |base| self.link_count(base))
            } else {
                0
            },
            uid,
            gid,
            atime,
            ctime,
            rdev: 0,
            blocks: super::sparse::cache_blocks(cache, dirty.base.as_ref(), meta.as_ref()),
        })
    }

    /// Looks up `name` in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> VfsResult<Attr> {
        if let Some(answer) = self.past_lookup(parent, name) {
            return answer;
        }
        let _names = self.resolving();
        let path = self.child(parent, name)?;
        match self.current_or_pending(&path)? {
            Some(version) => {
                let group = self.link_group(&version);
                let ino = lock(&self.inodes).referenced_in(&path, group.as_ref());
                Ok(self
                    .writer_attr(ino)
                    .unwrap_or_else(|| self.shown(ino, &version)))
            }
            None => {
                let Some(ino) = lock(&self.created).get(&path).copied() else {
                    return Err(VfsError::new(
                        libc::ENOENT,
                        format!("{path}: no such file or directory"),
                    ));
                };
                // The reply hands the kernel a reference: count it before
                // answering, in one step with finding the inode, so a FORGET the
                // kernel sends meanwhile (for an earlier reference) cannot drop
                // an inode this reply is about to name.
                lock(&self.inodes).adopt(ino, &path);
                match self.writer_attr(ino) {
                    Some(attr) => Ok(attr),
                    None => {
                        self.forget(ino, 1);
                        Err(VfsError::new(
                            libc::ENOENT,
                            format!("{path}: no such file or directory"),
                        ))
                    }
                }
            }
        }
    }

    /// The kernel took a reference to `ino` without a lookup (readdirplus).
    pub fn remember(&self, ino: u64) {
        if super::past::is_virtual(ino) {
            self.past_remember(ino);
            return;
        }
        if let Some(node) = lock(&self.inodes).by_ino.get_mut(&ino) {
            node.lookups += 1;
        }
    }

    /// The kernel dropped `count` references to `ino`.
    pub fn forget(&self, ino: u64, count: u64) {
        if super::past::is_virtual(ino) {
            self.past_forget(ino, count);
            return;
        }
        // Lock order: a handle's lock is never taken while `inodes` is held
        // (a commit holds its handle and then looks up paths).
        let open = self.is_open(ino);
        let mut inodes = lock(&self.inodes);
        let drop_it = match inodes.by_ino.get_mut(&ino) {
            Some(node) => {
                node.lookups = node.lookups.saturating_sub(count);
                node.lookups == 0
            }
            None => false,
        };
        if drop_it && !open && ino != ROOT_INO && inodes.drop_node(ino) {
            self.forgotten.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Inodes forgotten since the last call (the kernel drops whole trees of
    /// them when it reclaims memory; the mount then hands the freed memory back).
    pub fn take_forgotten(&self) -> u64 {
        self.forgotten.swap(0, Ordering::Relaxed)
    }

    pub fn getattr(&self, ino: u64) -> VfsResult<Attr> {
        if ino == ROOT_INO {
            return Ok(self.root_attr());
        }
        if let Some(answer) = self.past_getattr(ino) {
            return answer;
        }
        if let Some(attr) = self.writer_attr(ino) {
            return Ok(attr);
        }
        let _names = self.resolving();
        let found = match self.path_of(ino) {
            Ok(path) => self.live(&path)?,
            Err(_) => None,
        };
        match found {
            Some(version) => Ok(self.shown(ino, &version)),
            None => self
                .orphan_attr(ino)
                .ok_or_else(|| VfsError::new(libc::ENOENT, format!("inode {ino}: gone"))),
        }
    }

    /// The attributes of `version` for `ino`, as handed to the kernel now.
    pub(super) fn shown(&self, ino: u64, version: &Version) -> Attr {
        if let Some(node) = lock(&self.inodes).by_ino.get_mut(&ino) {
            node.described = Some(Seen::of(&version.id));
        }
        self.attr_of(ino, version)
    }

    /// Whether the kernel may hold attributes of `ino` other than `id`'s
    /// (and is told to drop them: [`Opened::stale_attrs`]).
    pub(super) fn describes_other(&self, ino: u64, id: crate::ids::VersionId) -> bool {
        let mut inodes = lock(&self.inodes);
        let Some(node) = inodes.by_ino.get_mut(&ino) else {
            return false;
        };
        let other = node.described != Some(Seen::of(&id));
        if other {
            // Its next GETATTR (through the handle, or by path) describes it anew.
            node.described = None;
        }
        other
    }

    /// The attributes of an inode that lost its name while it is still open
    /// (`fstat` of an unlinked file or a removed directory), with no links.
    pub(super) fn orphan_attr(&self, ino: u64) -> Option<Attr> {
        let handles: Vec<Arc<Ranked<Handle>>> = lock(&self.handles).values().cloned().collect();
        let from_file = handles.iter().find_map(|handle| {
            let handle = lock(handle);
            let base = handle.base.as_ref().filter(|_| handle.ino == ino)?;
            Some(self.shown(ino, base))
        });
        let mut attr = from_file
            .or_else(|| self.gone_version(ino).map(|v| self.shown(ino, &v)))
            .or_else(|| {
                lock(&self.open_dirs)
                    .values()
                    .find(|(dir, _)| *dir == ino)
                    .map(|(_, attr)| attr.clone())
            })?;
        attr.nlink = 0;
        Some(attr)
    }
}

/// When `version` was made: its id's time (the change time of what it shows);
/// now for one not committed yet.
pub(super) fn changed_at(version: &Version) -> SystemTime {
    if version.id.secs == 0 {
        return SystemTime::now();
    }
    SystemTime::UNIX_EPOCH + std::time::Duration::new(version.id.secs, version.id.nanos)
}
