//! Taking a mount down, with the one unmount path ([`unmount`]) that both a
//! stop and the recovery of a dead mount left by a killed process use.

use std::path::Path;
use std::time::{Duration, Instant};

use super::MountError;
use super::session::{self, Session};
use crate::vfs::Vfs;

/// Why the session is being taken down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    /// SIGINT or SIGTERM: we unmount.
    Signal,
    /// Unmounted from outside (`fusermount3 -u`, `umount`): the session has
    /// ended on its own and only its thread is left to wait for.
    FromOutside,
}

/// Ends the session (the journal and sync threads are stopped already).
/// After a signal: unmounts, serving files still open for up to `grace`, and
/// commits what was written to those still open then.
pub(super) fn finish(
    mut session: Session,
    ending: Ending,
    mountpoint: &Path,
    vfs: &Vfs,
    grace: Duration,
) -> Result<(), MountError> {
    let Some(thread) = session.take_thread() else {
        return Ok(());
    };
    if ending == Ending::FromOutside {
        return session::join(thread)
            .map_err(|err| MountError::runtime(format!("FUSE session: {err}")));
    }
    let still_open = stop(thread, mountpoint, vfs, grace)
        .map_err(|err| MountError::runtime(format!("unmounting: {err}")))?;
    if still_open > 0 {
        // What the open files' writers wrote so far is kept as versions.
        let made = vfs.commit_all();
        tracing::warn!(
            still_open,
            committed = made,
            "leaving with files still open: what was written to them is committed (`committed` new versions); later writes to them are lost and closing them fails"
        );
    }
    Ok(())
}

/// Unmounts and waits for the session's thread. When files are still open
/// (the unmount is busy), the mount is detached from the file tree instead
/// and goes on serving the open handles until they are closed or `grace`
/// has passed; returns how many handles were still open then.
fn stop(
    thread: session::SessionThread,
    mountpoint: &Path,
    vfs: &Vfs,
    grace: Duration,
) -> std::io::Result<usize> {
    if !thread.is_finished() {
        match unmount(mountpoint, Unmount::Now) {
            Ok(()) => {}
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {
                tracing::warn!(
                    mountpoint = %mountpoint.display(),
                    open = vfs.open_handle_count(),
                    "files are still open: detached the mount; serving them until they are closed (at most {grace:?})"
                );
                unmount(mountpoint, Unmount::Detach)?;
                let deadline = Instant::now() + grace;
                while !thread.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if !thread.is_finished() {
                    // Leaving: the session thread ends with the process.
                    return Ok(vfs.open_handle_count().max(1));
                }
                // The last open file of a detached mount closed: the kernel
                // ends the connection, and the session's next read may see
                // it aborted rather than gone. Either is the end we asked for.
                return match session::join(thread) {
                    Err(err) if err.raw_os_error() == Some(libc::ECONNABORTED) => Ok(0),
                    other => other.map(|()| 0),
                };
            }
            Err(err) => return Err(err),
        }
    }
    session::join(thread)?;
    Ok(0)
}

/// A mount left behind by a killed process answers ENOTCONN: detach it.
pub(super) fn recover_stale_mount(mountpoint: &Path) -> Result<(), MountError> {
    // A stat may be answered from the kernel's cache of a mount whose daemon
    // was just killed; a statfs always asks the daemon, so it sees ENOTCONN.
    let dead = match std::fs::metadata(mountpoint) {
        Err(err) => err.raw_os_error() == Some(libc::ENOTCONN),
        Ok(_) => matches!(
            nix::sys::statfs::statfs(mountpoint),
            Err(nix::errno::Errno::ENOTCONN)
        ),
    };
    if !dead {
        return Ok(());
    }
    tracing::warn!(mountpoint = %mountpoint.display(), "a dead mount is left here; detaching it");
    match unmount(mountpoint, Unmount::Detach) {
        Ok(()) => Ok(()),
        Err(err) => {
            tracing::debug!(error = %err, "detaching the dead mount");
            Err(MountError::runtime(format!(
                "{}: a dead mount is left here and could not be detached (try `fusermount3 -uz {}`)",
                mountpoint.display(),
                mountpoint.display()
            )))
        }
    }
}

/// How [`unmount`] takes a mount away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unmount {
    /// Now, or EBUSY while files are open.
    Now,
    /// Detach it from the tree now; it goes when its last open file is closed.
    Detach,
}

/// The one unmount path: `umount2` directly; where that is refused (we are
/// not root), `fusermount3`. A busy mount is EBUSY either way.
fn unmount(mountpoint: &Path, how: Unmount) -> std::io::Result<()> {
    let flags = match how {
        Unmount::Now => nix::mount::MntFlags::empty(),
        Unmount::Detach => nix::mount::MntFlags::MNT_DETACH,
    };
    let direct = nix::mount::umount2(mountpoint, flags).map_err(std::io::Error::from);
    if direct.is_ok() || nix::unistd::geteuid().is_root() {
        return direct;
    }
    let out = std::process::Command::new("fusermount3")
        .arg(match how {
            Unmount::Now => "-u",
            Unmount::Detach => "-uz",
        })
        .arg(mountpoint)
        .output()?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    if text.contains("busy") {
        return Err(std::io::Error::from_raw_os_error(libc::EBUSY));
    }
    Err(std::io::Error::other(format!(
        "fusermount3: {}",
        text.trim()
    )))
}
