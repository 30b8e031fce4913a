//! The signals a mount answers: SIGINT and SIGTERM end it, SIGHUP re-reads
//! its spec. Blocked before any other thread starts, so every thread
//! inherits the mask and none takes them; the main thread reads them here
//! from a signalfd.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::MountError;

/// The stop and reload signals, blocked in this thread and every thread started after,
/// and the descriptor they are read from.
pub(super) struct Signals {
    fd: SignalFd,
}

/// Keeps a SIGHUP that arrives while the mount is still starting (reconcile,
/// opening the store) pending, instead of ending the process: [`Signals`]
/// takes it once the mount is up, as a reload. Call it first thing.
pub(super) fn hold_reloads() {
    let mut set = SigSet::empty();
    set.add(Signal::SIGHUP);
    // Failing leaves SIGHUP as it was: an early one ends the mount, as before.
    let _ = set.thread_block();
}

impl Signals {
    /// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread; call it
    /// before the session's threads start.
    pub(super) fn block() -> Result<Signals, MountError> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGHUP);
        set.thread_block()
            .map_err(|err| MountError::runtime(format!("blocking signals: {err}")))?;
        // Close-on-exec: fusermount3, run at teardown, must not hold it.
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|err| MountError::runtime(format!("blocking signals: {err}")))?;
        Ok(Signals { fd })
    }

    /// Waits up to `timeout` for one of the signals (a signal already
    /// pending is taken at once).
    pub(super) fn wait(&self, timeout: Duration) -> Result<Option<Signal>, MountError> {
        if let Some(signal) = self.take()? {
            return Ok(Some(signal));
        }
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => Ok(None),
            Ok(_) => self.take(),
            Err(err) => Err(MountError::runtime(format!("waiting for signals: {err}"))),
        }
    }

    /// The signal waiting to be read, if any.
    fn take(&self) -> Result<Option<Signal>, MountError> {
        match self.fd.read_signal() {
            Ok(Some(info)) => Ok(Signal::try_from(info.ssi_signo as libc::c_int).ok()),
            Ok(None) | Err(Errno::EINTR) => Ok(None),
            Err(err) => Err(MountError::runtime(format!("waiting for signals: {err}"))),
        }
    }
}
