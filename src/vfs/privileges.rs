//! What a change takes away from a file: its setuid bit, its setgid bit
//! when the group may execute it, and its file capability
//! (`security.capability`), as Linux file systems drop them on a write, a
//! truncation or a change of owner by a process without `CAP_FSETID` (a
//! change of owner drops them whoever makes it).
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

use super::Vfs;
use super::error::VfsResult;
use super::locks::lock;
use crate::store::Version;

/// The extended attribute a file capability is stored in.
const CAPABILITY: &[u8] = b"security.capability";

/// Whether a file with `mode` and these extended attributes holds something
/// a change must drop.
pub(super) fn held(mode: u32, xattrs: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>) -> bool {
    let group_exec_setgid = libc::S_ISGID | libc::S_IXGRP;
    mode & libc::S_ISUID != 0
        || mode & group_exec_setgid == group_exec_setgid
        || xattrs.contains_key(CAPABILITY)
}

/// Whether `version` (a file) holds a privilege a change must drop.
pub(super) fn held_by(version: &Version) -> bool {
    version.kind == crate::store::Kind::File && held(version.mode, &version.posix.xattrs)
}

/// Drops the privileges of `mode` and `xattrs`; whether anything changed.
pub(super) fn drop_from(
    mode: &mut u32,
    xattrs: &mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
) -> bool {
    if !held(*mode, xattrs) {
        return false;
    }
    *mode &= !libc::S_ISUID;
    if *mode & libc::S_IXGRP != 0 {
        // Without group execute, setgid marks mandatory locking: kept.
        *mode &= !libc::S_ISGID;
    }
    xattrs.remove(CAPABILITY);
    true
}

impl Vfs {
    /// A write by a process without `CAP_FSETID` (the kernel's
    /// `FUSE_WRITE_KILL_SUIDGID`): [`Vfs::write`], dropping the file's
    /// privileges in its write state (they go into the next commit with the
    /// bytes). Returns the bytes written and whether the mode or the
    /// capability changed (then the kernel's attributes are stale).
    pub fn write_unprivileged(&self, fh: u64, offset: u64, data: &[u8]) -> VfsResult<(u32, bool)> {
        let dirty = self.writers_state(fh)?;
        let mut guard = lock(&dirty);
        let state = &mut *guard;
        let written = state
            .cache
            .write(&self.store, state.base.as_ref(), offset, data)?;
        let dropped = state
            .base
            .as_mut()
            .filter(|base| base.kind == crate::store::Kind::File)
            .is_some_and(|base| drop_from(&mut base.mode, &mut base.posix.xattrs));
        if dropped {
            state.cache.attributes_changed(false);
        }
        Ok((written, dropped))
    }

    /// Drops the privileges of `ino` (an open of it with `O_TRUNC` by a
    /// process without `CAP_FSETID`): in its write state when it is open for
    /// writing, else as a new version. Whether anything changed.
    pub fn drop_privileges(&self, ino: u64) -> VfsResult<bool> {
        if !self.holds_privileges(ino)? {
            return Ok(false);
        }
        self.change_attrs(ino, false, |content| {
            drop_from(&mut content.mode, &mut content.posix.xattrs);
        })?;
        Ok(true)
    }

    /// Whether `ino` is a file holding a privilege: as its open writers have
    /// it, else as its current version.
    pub(super) fn holds_privileges(&self, ino: u64) -> VfsResult<bool> {
        if let Some(dirty) = self.dirty_of(ino) {
            if let Some(base) = lock(&dirty).base.as_ref() {
                return Ok(held_by(base));
            }
        }
        let path = self.path_of(ino)?;
        Ok(self.live(&path)?.as_ref().is_some_and(held_by))
    }
}
