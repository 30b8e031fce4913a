//! What the mount does not do, and the errno each request gets: the policy
//! lives here, so the adapter only passes requests on. A volume path has one
//! name (no hard links), versions carry no owners and no extended attributes,
//! and no ioctl is understood.

use std::ffi::OsStr;

use super::Vfs;
use super::error::{VfsError, VfsResult};
use super::types::Attr;

impl Vfs {
    /// `link(2)`: EPERM, as on file systems without hard links.
    pub fn link(&self, ino: u64, _new_parent: u64, name: &OsStr) -> VfsResult<Attr> {
        Err(VfsError::new(
            libc::EPERM,
            format!(
                "hard link {:?} to inode {ino}: a volume path has one name",
                name.to_string_lossy()
            ),
        ))
    }

    /// A change of owner: only to the mounting user and group, which own
    /// every file (versions record no owners).
    pub fn chown(&self, ino: u64, uid: Option<u32>, gid: Option<u32>) -> VfsResult<()> {
        if uid.is_some_and(|u| u != self.uid()) || gid.is_some_and(|g| g != self.gid()) {
            return Err(VfsError::new(
                libc::EPERM,
                format!("inode {ino}: every file belongs to the mounting user"),
            ));
        }
        Ok(())
    }

    pub fn setxattr(&self, ino: u64, name: &OsStr, _value: &[u8], _flags: i32) -> VfsResult<()> {
        Err(no_xattrs(ino, name))
    }

    pub fn getxattr(&self, ino: u64, name: &OsStr) -> VfsResult<Vec<u8>> {
        Err(no_xattrs(ino, name))
    }

    /// The names of an inode's extended attributes, each followed by a NUL: none.
    pub fn listxattr(&self, _ino: u64) -> VfsResult<Vec<u8>> {
        Ok(Vec::new())
    }

    pub fn removexattr(&self, ino: u64, name: &OsStr) -> VfsResult<()> {
        Err(no_xattrs(ino, name))
    }

    /// Any ioctl: ENOTTY ("not a terminal"-style "no such request"), which
    /// tools take as "not supported here" and go on quietly.
    pub fn ioctl(&self, ino: u64, cmd: u32) -> VfsResult<()> {
        Err(VfsError::new(
            libc::ENOTTY,
            format!("inode {ino}: ioctl {cmd:#x} is not supported"),
        ))
    }
}

fn no_xattrs(ino: u64, name: &OsStr) -> VfsError {
    VfsError::new(
        libc::ENOTSUP,
        format!(
            "inode {ino}: extended attribute {:?}: not supported",
            name.to_string_lossy()
        ),
    )
}
