//! What the mount does not do, and the errno each request gets: the policy
//! lives here, so the adapter only passes requests on: renameat2 flags it
//! does not know, and ioctls (none is understood). Hard links are `links.rs`.

use super::Vfs;
use super::error::{VfsError, VfsResult};

impl Vfs {
    /// renameat2 flags other than RENAME_NOREPLACE and RENAME_EXCHANGE
    /// (RENAME_WHITEOUT, overlayfs's, and anything newer): EINVAL, as a file
    /// system that does not know them answers.
    pub fn rename_flags(&self, flags: u32) -> VfsResult<()> {
        let known = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE;
        if flags & !known != 0 {
            return Err(VfsError::new(
                libc::EINVAL,
                format!("rename flags {flags:#x} are not supported"),
            ));
        }
        Ok(())
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
