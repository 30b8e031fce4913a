//! The supervisor: commands that touch peers run in a child process (the
//! worker, this same binary run again), so the command the caller started
//! ends when its work is done even if a call to a peer is stuck in the kernel.
//!
//! Why a second process. A call on a hung sshfs or NFS peer can sleep in the
//! kernel uninterruptibly (`D` state): once sshfs has read a FUSE request, the
//! calling thread waits for its answer and no signal, SIGKILL included, wakes
//! it. [`crate::sync::remote`] already gives up on such a call after
//! `sync.timeout`, but a process cannot finish exiting while one of its
//! threads is in that state: `exit` (and `kill -9`) leaves it unreaped, its
//! pipes open and its parent waiting until the remote filesystem answers.
//!
//! So the process the caller started (the supervisor) does no remote I/O. It
//! starts the worker with the caller's own stdin, stdout and stderr (terminal
//! detection and progress bars work as before), forwards SIGINT, SIGTERM and
//! SIGHUP to it, relays its systemd readiness (`READY=1`, so `NotifyAccess=main`
//! keeps working for the mount), and exits with the worker's exit code as soon
//! as the worker reports it on a pipe the two share. The worker reports right
//! before it exits, after pointing its stdin, stdout and stderr at /dev/null,
//! so `x=$(globofs status)` sees the end of the output at once; a worker
//! ending by one of the forwarded signals reports that from its signal
//! handler, and the supervisor then ends by the same signal. A worker stuck in
//! the kernel is left behind: it ends when the remote filesystem answers (or
//! its mount is aborted), holding nothing the caller waits for.
//!
//! The worker is marked by the environment variable [`ENV`] (the pipe's file
//! descriptor and the supervisor's pid), which it removes at once: it is never
//! supervised twice, and what it runs does not inherit the mark. It dies with
//! the supervisor (`PR_SET_PDEATHSIG`, SIGKILL), so `kill -9` of the command
//! still ends the work as it did when it was one process.

// FFI: inherited descriptors by number, signal handlers, _exit and real-time signals have no safe wrapper; every block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

/// Marks a worker: `FD:PID`, the status pipe's write end and the supervisor.
pub const ENV: &str = "GLOBOFS_SUPERVISOR";

/// Worker to supervisor: the worker is ready (systemd `READY=1`).
const MSG_READY: u8 = b'r';
/// Worker to supervisor: the exit code follows (one byte).
const MSG_EXIT: u8 = b'x';
/// Worker to supervisor: the worker ends by this signal (one byte).
const MSG_SIGNAL: u8 = b's';

/// The signals the supervisor forwards and the worker reports.
const FORWARDED: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// How often the supervisor looks whether the worker is gone without a word.
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// How long the supervisor waits, after the worker's report, for it to be
/// gone (it normally is within milliseconds; a stuck one is left behind).
const REAP_WAIT: Duration = Duration::from_secs(2);

/// In a worker: the status pipe's write end (unset elsewhere). Set once,
/// before the signal handler is installed; the handler reads it with
/// `OnceLock::get`, one atomic load, which is async-signal-safe.
static STATUS: OnceLock<OwnedFd> = OnceLock::new();
/// In a worker: /dev/null, opened in advance for the signal handler.
static NULL: OnceLock<OwnedFd> = OnceLock::new();

/// Called first in `main`, before any thread exists: when this process is a
/// supervised worker, takes the mark out of the environment, arranges to die
/// with the supervisor and to report signals; returns whether it is one.
pub fn enter_worker() -> bool {
    let Some(value) = std::env::var_os(ENV) else {
        return false;
    };
    // SAFETY: remove_var races with any other thread reading or writing the
    // environment; this runs first in `main` (see `cli::main`), before the
    // process has started a thread, so nothing else can touch it meanwhile.
    unsafe { std::env::remove_var(ENV) };
    let Some((fd, supervisor)) = parse_mark(&value) else {
        eprintln!("globofs: ignoring {ENV}={value:?}: not FD:PID");
        return false;
    };
    // The descriptor must be one we inherited (not closed, not reused).
    // SAFETY: F_GETFD on a bare number only reads its descriptor flags (a
    // number that is not open gives EBADF); nothing is owned or borrowed, so
    // there is no safe wrapper to use until we know it is open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        eprintln!("globofs: ignoring {ENV}: descriptor {fd} is not open");
        return false;
    }
    // SAFETY: the descriptor is open (just checked) and was inherited from
    // the supervisor for this purpose only; no other code of this process
    // knows its number, so this is its one owner.
    let status = unsafe { OwnedFd::from_raw_fd(fd) };
    // Programs the worker runs (fusermount3) must not hold the pipe.
    let _ = fcntl(
        &status,
        FcntlArg::F_SETFD(FdFlag::from_bits_truncate(flags) | FdFlag::FD_CLOEXEC),
    );
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if nix::unistd::getppid() != Pid::from_raw(supervisor) {
        // The supervisor died before the line above: end as it did.
        // SAFETY: _exit ends the process at once; no thread but this one
        // exists yet and nothing of ours needs flushing.
        unsafe { libc::_exit(137) };
    }
    // Kept for the process's life (a failed open leaves it unset: the
    // worker then keeps the caller's stdio, as it must).
    if let Ok(null) = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    ) {
        let _ = NULL.set(null);
    }
    let _ = STATUS.set(status);
    let mut forwarded = SigSet::empty();
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    for signal in FORWARDED {
        forwarded.add(signal);
        // SAFETY: the handler makes only async-signal-safe calls (dup2,
        // write, raise, and atomic loads of the two descriptors set above);
        // SA_RESETHAND puts the default action back before it runs.
        let _ = unsafe { nix::sys::signal::sigaction(signal, &action) };
    }
    // The supervisor had them blocked when it started us, and exec keeps
    // the mask: take them again (a signal already waiting arrives now).
    let _ = forwarded.thread_unblock();
    true
}

fn parse_mark(value: &std::ffi::OsStr) -> Option<(RawFd, libc::pid_t)> {
    let (fd, pid) = value.to_str()?.split_once(':')?;
    let fd: RawFd = fd.parse().ok()?;
    let pid: libc::pid_t = pid.parse().ok()?;
    (fd > 2 && pid > 0).then_some((fd, pid))
}

/// A forwarded signal in the worker: release the caller's stdio, tell the
/// supervisor, and end by the signal as the process would have without us.
extern "C" fn on_signal(signal: libc::c_int) {
    release_stdio();
    send(&[MSG_SIGNAL, signal as u8]);
    // SA_RESETHAND restored the default action; the raised signal is taken
    // when the handler returns. (The handler is installed for the forwarded
    // signals only, which all have a name.)
    if let Ok(signal) = Signal::try_from(signal) {
        let _ = nix::sys::signal::raise(signal);
    }
}

/// Points stdin, stdout and stderr at /dev/null (async-signal-safe).
fn release_stdio() {
    let Some(null) = NULL.get() else {
        return;
    };
    let _ = nix::unistd::dup2_stdin(null);
    let _ = nix::unistd::dup2_stdout(null);
    let _ = nix::unistd::dup2_stderr(null);
}

/// Writes one message to the supervisor (async-signal-safe). A supervisor
/// that is gone is no error (std ignores SIGPIPE; the write fails with EPIPE).
/// A pipe write of fewer than PIPE_BUF bytes is all or nothing.
fn send(message: &[u8]) -> bool {
    let Some(status) = STATUS.get() else {
        return false;
    };
    nix::unistd::write(status, message).is_ok_and(|written| written == message.len())
}

/// Tells systemd (Type=notify) that the service is up: in a supervised
/// worker through the supervisor (which tells systemd), elsewhere directly
/// when NOTIFY_SOCKET is set.
pub fn notify_ready() {
    if !worker_ready() {
        notify_systemd_ready();
    }
}

/// In a worker: tells the supervisor the service is ready (it tells systemd).
/// Returns false when this process is not a supervised worker.
fn worker_ready() -> bool {
    if STATUS.get().is_none() {
        return false;
    }
    send(&[MSG_READY]);
    true
}

/// Sends `READY=1` to systemd's NOTIFY_SOCKET, when it is set (a path, or an
/// abstract name written with a leading `@`).
fn notify_systemd_ready() {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(sock) => sock,
        Err(err) => {
            tracing::warn!(error = %err, "sd_notify");
            return;
        }
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(socket.as_os_str()).to_vec();
    let result = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|addr| sock.send_to_addr(b"READY=1\n", &addr))
    } else {
        sock.send_to(b"READY=1\n", std::path::Path::new(&socket))
    };
    if let Err(err) = result {
        tracing::warn!(error = %err, "sd_notify READY=1");
    }
}

/// In a worker, right before it exits with `code`: flushes what it printed,
/// lets go of the caller's stdio and reports the code. A no-op elsewhere.
pub fn finish(code: i32) {
    if STATUS.get().is_none() {
        return;
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    release_stdio();
    send(&[MSG_EXIT, code.clamp(0, 255) as u8]);
}

/// In the supervisor: runs this command again as a worker and waits for its
/// result. Returns the worker's exit code, or `None` when no worker could be
/// started (the caller then runs the command itself). When the worker ends by
/// a signal, so does this process (this call does not return then).
pub fn supervise() -> Option<i32> {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => {
            eprintln!(
                "globofs: warning: running without a supervisor (cannot find this program: {err})"
            );
            return None;
        }
    };
    let (status_read, status_write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(pipe) => pipe,
        Err(err) => {
            eprintln!("globofs: warning: running without a supervisor (pipe: {err})");
            return None;
        }
    };
    // The worker inherits the write end (and nothing else of ours).
    if fcntl(&status_write, FcntlArg::F_SETFD(FdFlag::empty())).is_err() {
        return None;
    }
    // Block the forwarded signals before the worker starts, so none that
    // arrives meanwhile is lost; they are read from a signalfd below. (The
    // worker inherits the mask and unblocks them in `enter_worker`.)
    let mut signals = SigSet::empty();
    for signal in FORWARDED {
        signals.add(signal);
    }
    let Ok(old_mask) = signals.thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK) else {
        return None;
    };
    let signal_fd =
        match SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
            Ok(fd) => fd,
            Err(err) => {
                eprintln!("globofs: warning: running without a supervisor (signalfd: {err})");
                let _ = old_mask.thread_set_mask();
                return None;
            }
        };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from("globofs"));
    let mut command = Command::new(exe);
    command
        .arg0(arg0)
        .args(args)
        .env(
            ENV,
            format!("{}:{}", status_write.as_raw_fd(), std::process::id()),
        )
        // Readiness goes through us: systemd takes it from the main pid only.
        .env_remove("NOTIFY_SOCKET");
    let child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            eprintln!(
                "globofs: warning: running without a supervisor (cannot start the worker: {err})"
            );
            let _ = old_mask.thread_set_mask();
            return None;
        }
    };
    drop(status_write);
    let outcome = wait_for(child, &status_read, &signal_fd);
    match outcome {
        Outcome::Code(code) => Some(code),
        Outcome::Signal(signal) => end_by_signal(signal),
    }
}

/// How the worker ended, as the supervisor passes it on.
enum Outcome {
    Code(i32),
    Signal(i32),
}

impl Outcome {
    fn of(status: ExitStatus) -> Outcome {
        match (status.code(), status.signal()) {
            (Some(code), _) => Outcome::Code(code),
            (None, Some(signal)) => Outcome::Signal(signal),
            (None, None) => Outcome::Code(3),
        }
    }
}

/// Forwards signals and waits for the worker's report, or for the worker to
/// be gone without one (a signal we did not forward, a crash).
fn wait_for(mut child: Child, status: &OwnedFd, signal_fd: &SignalFd) -> Outcome {
    let pid = child.id() as libc::pid_t;
    let mut message: Vec<u8> = Vec::new();
    let mut lingering = Lingering::default();
    let wait = PollTimeout::try_from(CHECK_EVERY).unwrap_or(PollTimeout::MAX);
    loop {
        let mut fds = [
            PollFd::new(status.as_fd(), PollFlags::POLLIN),
            PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN),
        ];
        let ready = match poll(&mut fds, wait) {
            Ok(ready) => ready,
            Err(nix::errno::Errno::EINTR) => continue,
            // Cannot wait for the report: wait for the worker itself.
            Err(_) => return Outcome::of(child.wait().unwrap_or(ExitStatus::from_raw(3 << 8))),
        };
        let reported = fds[0].revents().is_some_and(|events| !events.is_empty());
        while let Ok(Some(info)) = signal_fd.read_signal() {
            // Only the forwarded signals are read here, and they have names.
            if let Ok(signal) = Signal::try_from(info.ssi_signo as libc::c_int) {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
            }
        }
        if reported {
            let mut buf = [0u8; 64];
            match nix::unistd::read(status, &mut buf) {
                Ok(0) => {
                    // Every descriptor of the worker is closed: it is gone,
                    // or nearly; its status tells how it ended.
                    return Outcome::of(child.wait().unwrap_or(ExitStatus::from_raw(3 << 8)));
                }
                Ok(n) => message.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(_) => return Outcome::of(child.wait().unwrap_or(ExitStatus::from_raw(3 << 8))),
            }
            while let Some(&kind) = message.first() {
                match kind {
                    MSG_READY => {
                        message.remove(0);
                        notify_systemd_ready();
                    }
                    MSG_EXIT | MSG_SIGNAL if message.len() >= 2 => {
                        let value = i32::from(message[1]);
                        reap(&mut child);
                        return if kind == MSG_EXIT {
                            Outcome::Code(value)
                        } else {
                            Outcome::Signal(value)
                        };
                    }
                    MSG_EXIT | MSG_SIGNAL => break,
                    _ => {
                        message.remove(0);
                    }
                }
            }
            continue;
        }
        if ready == 0 {
            // No word for a while: is the worker gone without one?
            match lingering.check(&mut child) {
                Gone::Reaped(status) => return Outcome::of(status),
                Gone::Lingering(status) => {
                    eprintln!(
                        "globofs: the worker process {pid} ended without a report and is stuck in the kernel on a peer's filesystem; it goes away when that filesystem answers"
                    );
                    return Outcome::of(status);
                }
                Gone::No => {}
            }
        }
    }
}

/// After the worker's report: waits a little for it to be gone, so the next
/// command does not find its locks still held; leaves a stuck one behind.
fn reap(child: &mut Child) {
    let pid = child.id();
    let deadline = Instant::now() + REAP_WAIT;
    let mut lingering = Lingering::default();
    while Instant::now() < deadline {
        match lingering.check(child) {
            Gone::Reaped(_) => return,
            Gone::Lingering(_) => break,
            Gone::No => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    eprintln!(
        "globofs: a call to a peer is still stuck in the kernel; its process {pid} goes away when the peer's filesystem answers"
    );
}

/// Whether the worker is gone.
enum Gone {
    No,
    Reaped(ExitStatus),
    /// Its main thread exited, another thread cannot: it stays unreaped.
    Lingering(ExitStatus),
}

/// A main thread that exited stays a zombie until every thread has; that
/// takes microseconds, unless a thread sleeps uninterruptibly in a call on a
/// hung peer. So a worker is lingering when it stays so for a while.
#[derive(Default)]
struct Lingering {
    zombie_since: Option<Instant>,
}

/// How long an unreaped zombie main thread must last to count as lingering.
const LINGER_CONFIRM: Duration = Duration::from_millis(150);

impl Lingering {
    fn check(&mut self, child: &mut Child) -> Gone {
        if let Ok(Some(status)) = child.try_wait() {
            return Gone::Reaped(status);
        }
        let Some(status) = zombie_main_thread(child.id() as libc::pid_t) else {
            self.zombie_since = None;
            return Gone::No;
        };
        // Exited meanwhile, the ordinary way?
        if let Ok(Some(status)) = child.try_wait() {
            return Gone::Reaped(status);
        }
        let since = *self.zombie_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= LINGER_CONFIRM {
            Gone::Lingering(status)
        } else {
            Gone::No
        }
    }
}

/// The wait status of a worker whose main thread has exited (a zombie, with
/// the exit status in the kernel's `stat`), whether or not others have.
fn zombie_main_thread(pid: libc::pid_t) -> Option<ExitStatus> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: fields after the last ')' start at field 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if !matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    // Field 52: the exit status in waitpid's form.
    let raw: i32 = fields
        .get(49)
        .and_then(|f| f.parse().ok())
        .unwrap_or(3 << 8);
    Some(ExitStatus::from_raw(raw))
}

/// Ends this process by `signal`, as the worker ended: its default action
/// back (std ignores SIGPIPE, for one), unblocked, raised. If the signal does
/// not end the process, it exits as a shell would report it.
fn end_by_signal(signal: i32) -> ! {
    match Signal::try_from(signal) {
        Ok(named) => {
            // SAFETY: SIG_DFL installs no handler of ours, so no code runs
            // in signal context and nothing is shared with one.
            let _ = unsafe { nix::sys::signal::signal(named, SigHandler::SigDfl) };
            let mut set = SigSet::empty();
            set.add(named);
            let _ = set.thread_unblock();
            let _ = nix::sys::signal::raise(named);
        }
        Err(_) => raise_unnamed(signal),
    }
    std::process::exit(128 + signal)
}

/// [`end_by_signal`] for a real-time signal, which nix's `Signal` does not
/// name (a worker can be killed by one): the same steps through libc.
fn raise_unnamed(signal: i32) {
    // SAFETY: the set is initialised by sigemptyset before use; SIG_DFL
    // installs no handler; the calls take only that set and a plain number
    // (an invalid one gives EINVAL and changes nothing).
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
    }
}
