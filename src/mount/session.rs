//! The FUSE session: mounting the adapter ([`crate::fuse::GloboFs`]) with
//! fuser, telling the kernel to drop what it caches of changed paths, and
//! whether the session is still running. Taking it down is [`super::teardown`].

// FFI: fuser's session guard is read out to disarm its second unmount (no API for it); every block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use fuser::{Config, INodeNo, MountOption};

use crate::fuse::GloboFs;
use crate::vfs::Vfs;

/// The thread that serves the session, with its result.
pub(super) type SessionThread = JoinHandle<std::io::Result<()>>;

/// A mounted filesystem served by background threads.
pub(super) struct Session {
    /// `None` once it has been taken for teardown.
    background: Option<fuser::BackgroundSession>,
    notifier: fuser::Notifier,
}

impl Session {
    /// Mounts `vfs` at `mountpoint` with `threads` request threads; `name`
    /// (the node) shows in the mount table as `globofs:NAME`.
    pub(super) fn start(
        vfs: Arc<Vfs>,
        mountpoint: &Path,
        threads: usize,
        name: &str,
    ) -> std::io::Result<Session> {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName(format!("globofs:{name}")),
            MountOption::Subtype("globofs".into()),
            MountOption::DefaultPermissions,
            // Every file may come from another machine: a setuid binary or a
            // device node a peer pushed must not act here (docs/POSIX.md).
            MountOption::NoSuid,
            MountOption::NoDev,
        ];
        if nix::unistd::geteuid().is_root() {
            config.acl = fuser::SessionACL::All;
        }
        config.n_threads = Some(threads.max(1));
        config.clone_fd = threads > 1;
        let fs = GloboFs::new(vfs);
        let for_fs = fs.notifier_slot();
        let session = fuser::Session::new(fs, mountpoint, &config)?;
        let notifier = session.notifier();
        let _ = for_fs.set(notifier.clone());
        let background = session.spawn()?;
        Ok(Session {
            background: Some(background),
            notifier,
        })
    }

    /// What the journal follower uses to have the kernel drop stale caches.
    pub(super) fn invalidator(&self) -> Invalidator {
        Invalidator {
            notifier: self.notifier.clone(),
        }
    }

    /// Whether the session has ended (the file system was unmounted from outside).
    pub(super) fn ended(&self) -> bool {
        self.background
            .as_ref()
            .is_none_or(|session| session.guard.is_finished())
    }

    /// The session's thread, for teardown; `None` when taken already. The
    /// rest of fuser's session is leaked on purpose, see [`disarm`].
    pub(super) fn take_thread(&mut self) -> Option<SessionThread> {
        self.background.take().map(disarm)
    }
}

/// Tells the kernel to drop cached data and names of changed paths.
pub(super) struct Invalidator {
    notifier: fuser::Notifier,
}

impl Invalidator {
    /// Drops the kernel's pages and attributes of `ino`, and the name
    /// `entry` (parent inode, name) points at.
    pub(super) fn invalidate(&self, ino: Option<u64>, entry: Option<(u64, Vec<u8>)>) {
        if let Some(ino) = ino {
            let _ = self.notifier.inval_inode(INodeNo(ino), 0, 0);
        }
        if let Some((parent, name)) = entry {
            let _ = self
                .notifier
                .inval_entry(INodeNo(parent), OsStr::from_bytes(&name));
        }
    }

    /// Drops the listing and attributes the kernel keeps of directory `ino`
    /// (a name in it came or went elsewhere). Dropping a name the kernel
    /// never looked up does not tell every kernel that the directory changed,
    /// and the mount has the kernel cache listings across opens.
    pub(super) fn invalidate_listing(&self, ino: u64) {
        let _ = self.notifier.inval_inode(INodeNo(ino), 0, 0);
    }
}

/// The session's thread, with the rest of the session leaked on purpose.
///
/// fuser's session owns a mount handle that unmounts when it is dropped. By
/// then the mount is gone already (this code unmounted it, or someone did from
/// outside), and fuser's test for that reads the device's POLLERR the wrong way
/// round, so it unmounted a second time: EINVAL, logged as "Unmount failed" on
/// every stop, or, had something been mounted at that place meanwhile, that.
/// What is leaked is a little memory and the FUSE device's descriptor, which
/// the process closes when it exits right after.
fn disarm(session: fuser::BackgroundSession) -> SessionThread {
    let session = std::mem::ManuallyDrop::new(session);
    // SAFETY: the guard is moved out once; the session it was in is never
    // used or dropped after, so nothing reads or drops the guard twice.
    unsafe { std::ptr::read(&session.guard) }
}

/// Waits for a session's thread.
pub(super) fn join(thread: SessionThread) -> std::io::Result<()> {
    thread
        .join()
        .map_err(|_| std::io::Error::other("the FUSE session thread panicked"))?
}
