//! The guard of a mount's FUSE connection: a small process of its own
//! (`globofs fuse-guard`, started by the mount) that aborts the connection
//! when the mount process was killed but cannot finish dying.
//!
//! Why. A mount thread telling the kernel to drop a cached name
//! (`FUSE_NOTIFY_INVAL_ENTRY`, what the journal follower sends when another
//! process of the node changed a path) waits for the directory's lock. When
//! a program holds that lock while it waits for an answer from the mount (a
//! create, an `fsync` of the directory) and the mount is killed with
//! SIGKILL, the answer never comes, the thread never gets the lock, and a
//! process with a thread in the kernel keeps its `/dev/fuse` open: the
//! connection lives on and every program using the mount hangs for good.
//! Aborting the connection (`/sys/fs/fuse/connections/<N>/abort`) fails the
//! waiting requests, the lock is released, the thread and then the process
//! end; the mount point is left dead (`ENOTCONN`), as after any kill, and
//! the next mount detaches it.
//!
//! The guard looks at the mount process every [`EVERY`]: it aborts only
//! when the process's main thread has exited (a zombie), another of its
//! threads is still there, and the connection still exists, for longer than
//! [`LINGER`]. While a thread of the mount lives, the connection number is
//! still the mount's own (it cannot have been given to a new mount). The
//! guard ends when the mount process is gone. A mount that stops normally
//! has unmounted before its main thread exits, so the guard never acts then.

// FFI: the guard is started with its descriptors closed (`close_range`) in
// the child between fork and exec, which has no safe wrapper; the block says
// why it is sound.
#![allow(unsafe_code)]

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How often the guard looks.
const EVERY: Duration = Duration::from_millis(200);
/// How long a killed mount may linger before its connection is aborted.
const LINGER: Duration = Duration::from_secs(1);
/// Where the kernel lists FUSE connections (the fusectl file system).
const CONNECTIONS: &str = "/sys/fs/fuse/connections";

/// The guard process of a running mount; stopped when dropped (the mount
/// ended normally).
pub(super) struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the guard of the FUSE connection mounted at `mountpoint` (this
/// process's own). Without one (logged) when it cannot be started: the
/// mount works without it.
pub(super) fn start(mountpoint: &Path) -> Guard {
    Guard(spawn(mountpoint))
}

fn spawn(mountpoint: &Path) -> Option<Child> {
    let connection = match std::fs::metadata(mountpoint) {
        Ok(meta) => nix::sys::stat::minor(meta.dev()),
        Err(err) => {
            tracing::debug!(error = %err, "no FUSE connection guard: cannot stat the mount point");
            return None;
        }
    };
    let exe = std::env::current_exe().ok()?;
    let mut command = Command::new(exe);
    command
        .arg("fuse-guard")
        .arg(connection.to_string())
        .arg(std::process::id().to_string())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: `close_range` and `setsid` are
    // plain system calls touching nothing of the parent's memory. Every
    // descriptor past stderr is closed so the guard holds no `/dev/fuse`
    // (it would keep the connection alive itself); its own session keeps a
    // terminal's Ctrl-C for the mount alone.
    unsafe {
        command.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            libc::setsid();
            Ok(())
        });
    }
    match command.spawn() {
        Ok(child) => Some(child),
        Err(err) => {
            tracing::debug!(error = %err, "no FUSE connection guard");
            None
        }
    }
}

/// The guard's body (`globofs fuse-guard CONNECTION PID`): watches process
/// `pid`, whose FUSE connection is number `connection`; returns when the
/// process is gone.
pub fn watch(connection: u32, pid: u32) -> i32 {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let abort = Path::new(CONNECTIONS)
        .join(connection.to_string())
        .join("abort");
    let mut lingering_since: Option<Instant> = None;
    let mut aborted = false;
    loop {
        let Some(state) = main_thread_state(&proc_dir) else {
            return 0;
        };
        let stuck = matches!(state, 'Z' | 'X') && threads(&proc_dir) >= 2;
        if !stuck {
            lingering_since = None;
        } else if !aborted {
            let since = *lingering_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= LINGER {
                aborted = true;
                abort_connection(&abort, connection, pid);
            }
        }
        std::thread::sleep(EVERY);
    }
}

/// The state letter of the main thread (`/proc/PID/stat`'s third field).
fn main_thread_state(proc_dir: &Path) -> Option<char> {
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// How many threads of the process are left.
fn threads(proc_dir: &Path) -> usize {
    std::fs::read_dir(proc_dir.join("task")).map_or(0, |tasks| tasks.count())
}

fn abort_connection(abort: &Path, connection: u32, pid: u32) {
    if !abort.exists() {
        // fusectl is not mounted (it usually is not, outside systemd).
        let _ = nix::mount::mount(
            Some("fusectl"),
            CONNECTIONS,
            Some("fusectl"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
    }
    if !abort.parent().is_some_and(Path::exists) {
        // The connection went away on its own meanwhile.
        return;
    }
    match std::fs::write(abort, b"1") {
        Ok(()) => eprintln!(
            "globofs: the mount process {pid} was killed while the kernel held one of its threads; aborted its FUSE connection {connection} so that programs waiting on the mount get an error instead of hanging"
        ),
        Err(err) => eprintln!(
            "globofs: the mount process {pid} was killed and cannot finish; programs using the mount hang until its FUSE connection is aborted: `echo 1 > {}` ({err})",
            abort.display()
        ),
    }
}
