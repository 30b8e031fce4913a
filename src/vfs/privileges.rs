//! What a change takes away from a file, as Linux file systems decide it:
//! a write, a truncation or an `fallocate` by a process without
//! `CAP_FSETID` drops the setuid bit, the setgid bit when the group may
//! execute the file or the process is not in the file's group (setgid
//! without group execute marks mandatory locking), and the file capability
//! (`security.capability`); a change of owner drops setuid whoever makes it,
//! and setgid by the same rule.
//!
//! The mount asks the kernel for `FUSE_HANDLE_KILLPRIV_V2`, which leaves
//! the setuid and setgid bits to the mount (the kernel still removes a
//! capability itself): in return the kernel caches "nothing to drop" per
//! inode instead of asking for `security.capability` before every
//! `write(2)` (one round trip per write: half of all requests of a `tar
//! xf`). A new handle of a file that holds a privilege is not served by FUSE
//! passthrough, so its writes come here with the kernel's "drop" flag; a
//! passthrough writer's write to a file that gained one meanwhile arrives as
//! a setattr that sets nothing (the adapter's `setattr`).

use super::error::VfsResult;
use super::locks::lock;
use super::{Vfs, WriteAt, Written};
use crate::store::Version;

/// The extended attribute a file capability is stored in.
const CAPABILITY: &[u8] = b"security.capability";

/// Who makes a change, as far as dropping privileges goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changer {
    /// The process has `CAP_FSETID`.
    pub fsetid: bool,
    /// Its filesystem group and supplementary groups.
    pub fsgid: u32,
    pub groups: Vec<u32>,
}

impl Changer {
    fn in_group(&self, gid: u32) -> bool {
        self.fsgid == gid || self.groups.contains(&gid)
    }

    /// Whether a change by this process leaves setgid on an entry of group
    /// `gid` that the change does not otherwise strip of it: only when it
    /// is in that group or has `CAP_FSETID` (Linux's rule, for writes and
    /// for `posix_acl_update_mode` alike).
    pub(super) fn keeps_setgid(&self, gid: u32) -> bool {
        self.fsetid || self.in_group(gid)
    }
}

/// Whether a file with `mode` and these extended attributes holds something
/// a change may drop.
pub(super) fn held(mode: u32, xattrs: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>) -> bool {
    mode & (libc::S_ISUID | libc::S_ISGID) != 0 || xattrs.contains_key(CAPABILITY)
}

/// Whether `version` (a file) holds something a change may drop.
pub(super) fn held_by(version: &Version) -> bool {
    version.kind == crate::store::Kind::File && held(version.mode, &version.posix.xattrs)
}

/// Drops what a change by `changer` takes from a file of group `gid` with
/// `mode` and `xattrs`; whether anything changed.
pub(super) fn drop_from(
    mode: &mut u32,
    xattrs: &mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    gid: u32,
    changer: &Changer,
) -> bool {
    let before = *mode;
    *mode &= !libc::S_ISUID;
    let group_exec = *mode & libc::S_IXGRP != 0;
    if group_exec || !changer.keeps_setgid(gid) {
        *mode &= !libc::S_ISGID;
    }
    let capability = xattrs.remove(CAPABILITY).is_some();
    *mode != before || capability
}

/// [`drop_from`] on a version's mode and attributes.
fn drop_from_version(version: &mut Version, changer: &Changer) -> bool {
    let gid = version.posix.gid.unwrap_or(0);
    drop_from(&mut version.mode, &mut version.posix.xattrs, gid, changer)
}

impl Vfs {
    /// A write by a process without `CAP_FSETID` (the kernel's
    /// `FUSE_WRITE_KILL_SUIDGID`): [`Vfs::write`], dropping the file's
    /// privileges in its write state (they go into the next commit with the
    /// bytes); `changer` is asked only when the file holds one. Returns the
    /// bytes written and whether the mode or the capability changed (then
    /// the kernel's attributes are stale).
    pub fn write_unprivileged(
        &self,
        fh: u64,
        at: WriteAt,
        data: &[u8],
        changer: impl FnOnce() -> Changer,
    ) -> VfsResult<(Written, bool)> {
        let dirty = self.writers_state(fh)?;
        let mut guard = lock(&dirty);
        let state = &mut *guard;
        let written = state
            .cache
            .write_at(&self.store, state.base.as_ref(), at, data)?;
        let dropped = match state.base.as_mut().filter(|base| held_by(base)) {
            Some(base) => drop_from_version(base, &changer()),
            None => false,
        };
        if dropped {
            state.cache.attributes_changed(false);
        }
        Ok((written, dropped))
    }

    /// Drops what a change by `changer` takes from `ino` (an `O_TRUNC`
    /// open or an `fallocate` by a process without `CAP_FSETID`): in its
    /// write state when it is open for writing, else as a new version.
    /// Whether anything changed.
    pub fn drop_privileges(&self, ino: u64, changer: &Changer) -> VfsResult<bool> {
        if !self.holds_privileges(ino)? {
            return Ok(false);
        }
        let mut dropped = false;
        self.change_attrs(ino, false, |content| {
            let gid = content.posix.gid.unwrap_or(0);
            dropped = drop_from(&mut content.mode, &mut content.posix.xattrs, gid, changer);
        })?;
        Ok(dropped)
    }

    /// Whether `ino` is a file holding something a change may drop: as its
    /// open writers have it, else as its current version.
    pub fn holds_privileges(&self, ino: u64) -> VfsResult<bool> {
        if let Some(dirty) = self.dirty_of(ino) {
            if let Some(base) = lock(&dirty).base.as_ref() {
                return Ok(held_by(base));
            }
        }
        let path = self.path_of(ino)?;
        Ok(self.live(&path)?.as_ref().is_some_and(held_by))
    }
}
