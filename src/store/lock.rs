//! Local locks between the processes of one node (a mount, a `sync`, a `gc`):
//! `flock(2)` on files under `state/locks/`, released when the process dies.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{IoContext, StoreError};

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    fn take(path: &Path, operation: libc::c_int) -> Result<FileLock, StoreError> {
        let open = || {
            OpenOptions::new()
                .create(true)
                // Only flocked, never read: private, so no other user can
                // open one and hold this node's lock (docs/FORMAT.md section 18).
                .mode(0o600)
                .truncate(false)
                .read(true)
                .write(true)
                .open(path)
        };
        let file = match open() {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    crate::layout::create_dirs(parent).at(parent)?;
                }
                open().at(path)?
            }
            Err(err) => return Err(StoreError::io(path, err)),
        };
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), operation) };
            if rc == 0 {
                return Ok(FileLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(StoreError::io(path, err));
            }
        }
    }

    /// Waits for a shared lock.
    pub fn shared(path: &Path) -> Result<FileLock, StoreError> {
        FileLock::take(path, libc::LOCK_SH)
    }

    /// Waits for an exclusive lock.
    pub fn exclusive(path: &Path) -> Result<FileLock, StoreError> {
        FileLock::take(path, libc::LOCK_EX)
    }

    /// Takes an exclusive lock if free now.
    pub fn try_exclusive(path: &Path) -> Result<Option<FileLock>, StoreError> {
        match FileLock::take(path, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(lock) => Ok(Some(lock)),
            Err(StoreError::Io { source, .. })
                if source.raw_os_error() == Some(libc::EWOULDBLOCK) =>
            {
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }
}
