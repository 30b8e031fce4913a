//! The signals that end a mount (SIGINT, SIGTERM, SIGHUP): blocked before
//! any other thread starts, so every thread inherits the mask and only the
//! main thread, waiting here, takes them.

use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

use super::MountError;

/// The stop signals, blocked in this thread and every thread started after.
pub(super) struct Signals {
    set: SigSet,
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
        Ok(Signals { set })
    }

    /// Waits up to `timeout` for one of the signals.
    pub(super) fn wait(&self, timeout: Duration) -> Result<Option<Signal>, MountError> {
        let timeout = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: the set and the timeout are valid for the call; no siginfo is asked for.
        let signal =
            unsafe { libc::sigtimedwait(self.set.as_ref(), std::ptr::null_mut(), &timeout) };
        if signal >= 0 {
            return Ok(Signal::try_from(signal).ok());
        }
        match nix::errno::Errno::last() {
            nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR => Ok(None),
            err => Err(MountError::runtime(format!("waiting for signals: {err}"))),
        }
    }
}
