//! Local locks between the processes of one node (a mount, a `sync`, a `gc`):
//! `flock(2)` on files under `state/locks/`, released when the process dies.
//! [`flock`] is the one place the store takes an flock (through nix's safe
//! wrapper); the per-path log locks and intent files use it too.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::Flock;
pub use nix::fcntl::FlockArg;

use super::{IoContext, StoreError};

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct FileLock {
    _file: Flock<File>,
}

/// Takes `arg` (shared, exclusive, either non-blocking) on `file`, waiting
/// through interruptions: the locked file (unlocked when dropped), or `None`
/// when a non-blocking lock is held elsewhere.
pub(crate) fn flock(
    file: File,
    path: &Path,
    arg: FlockArg,
) -> Result<Option<Flock<File>>, StoreError> {
    let mut file = file;
    loop {
        match Flock::lock(file, arg) {
            Ok(locked) => return Ok(Some(locked)),
            Err((again, nix::errno::Errno::EINTR)) => file = again,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, errno)) => return Err(StoreError::io(path, std::io::Error::from(errno))),
        }
    }
}

impl FileLock {
    fn take(path: &Path, arg: FlockArg) -> Result<Option<FileLock>, StoreError> {
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
        Ok(flock(file, path, arg)?.map(|file| FileLock { _file: file }))
    }

    /// Waits for a lock that a blocking `arg` always gets.
    fn wait(path: &Path, arg: FlockArg) -> Result<FileLock, StoreError> {
        FileLock::take(path, arg)?.ok_or_else(|| {
            StoreError::io(path, std::io::Error::from(std::io::ErrorKind::WouldBlock))
        })
    }

    /// Waits for a shared lock.
    pub fn shared(path: &Path) -> Result<FileLock, StoreError> {
        FileLock::wait(path, FlockArg::LockShared)
    }

    /// Waits for an exclusive lock.
    pub fn exclusive(path: &Path) -> Result<FileLock, StoreError> {
        FileLock::wait(path, FlockArg::LockExclusive)
    }

    /// Takes an exclusive lock if free now.
    pub fn try_exclusive(path: &Path) -> Result<Option<FileLock>, StoreError> {
        FileLock::take(path, FlockArg::LockExclusiveNonblock)
    }
}
