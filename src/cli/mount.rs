//! `globofs mount`: reconcile, mount in the foreground, follow the node's journal
//! so changes made by other processes (and applied from peers) show up, and
//! unmount cleanly on SIGINT or SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

use super::Failure;
use crate::layout::VPath;
use crate::spec::Spec;
use crate::store::{Store, journal};
use crate::vfs::Vfs;

/// How often the mount reads the node's journal for changes made elsewhere.
const POLL: Duration = Duration::from_millis(500);

pub fn mount(
    spec: &Spec,
    mountpoint: Option<PathBuf>,
    threads: usize,
    stop_grace: Duration,
) -> Result<(), Failure> {
    let mountpoint = mountpoint
        .or_else(|| spec.mount_path.clone())
        .ok_or_else(|| {
            Failure::input("no mount point: give one or set `mount.path` in the spec")
        })?;
    let outcome = crate::reconcile::reconcile(spec, false).map_err(Failure::input)?;
    for warning in &outcome.warnings {
        tracing::warn!("{warning}");
    }
    recover_stale_mount(&mountpoint)?;
    limit_malloc_arenas();
    std::fs::create_dir_all(&mountpoint)
        .map_err(|err| Failure::runtime(format!("{}: {err}", mountpoint.display())))?;
    let syncer = Arc::new(crate::sync::Syncer::new(spec));
    let mut store = Store::open_spec(spec)?;
    store.set_fetcher(Arc::new(syncer.fetcher()));
    let store = Arc::new(store);
    let vfs = Arc::new(Vfs::new(Arc::clone(&store)));

    // Signals go to this thread only: block them before the FUSE threads start.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGHUP);
    signals
        .thread_block()
        .map_err(|err| Failure::runtime(format!("blocking signals: {err}")))?;

    let mounted = crate::fuse::mount(
        Arc::clone(&vfs),
        &mountpoint,
        threads,
        &spec.node.to_string(),
    )
    .map_err(|err| Failure::runtime(format!("mounting {}: {err}", mountpoint.display())))?;
    let mounted = Arc::new(mounted);
    raise_readahead(&mountpoint);
    tracing::info!(mountpoint = %mountpoint.display(), node = %spec.node, "mounted");
    notify_ready();

    let stop = Arc::new(AtomicBool::new(false));
    let (kick, kicked) = mpsc::channel::<()>();
    let poller = {
        let stop = Arc::clone(&stop);
        let vfs = Arc::clone(&vfs);
        let mounted = Arc::clone(&mounted);
        let journal_dir = store.layout().journal();
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || follow_journal(&journal_dir, &vfs, &mounted, &stop, &kick))
            .map_err(|err| Failure::runtime(format!("starting the journal reader: {err}")))?
    };
    let syncing = if spec.peers.is_empty() {
        None
    } else {
        let stop = Arc::clone(&stop);
        let store = Arc::clone(&store);
        let interval = spec.sync_interval;
        let cache = spec.cache_max_size.map(|max| (max, spec.min_copies));
        Some(
            std::thread::Builder::new()
                .name("sync".into())
                .spawn(move || sync_loop(&syncer, &store, interval, cache, &kicked, &stop))
                .map_err(|err| Failure::runtime(format!("starting sync: {err}")))?,
        )
    };

    // A signal asks us to unmount; `fusermount3 -u` or `umount` from outside
    // ends the session on its own, and then there is nothing left to serve.
    let from_outside = loop {
        if let Some(signal) = wait_for_signal(&signals, POLL)? {
            tracing::info!(?signal, "unmounting");
            break false;
        }
        if mounted.ended() {
            tracing::info!(mountpoint = %mountpoint.display(), "unmounted from outside; exiting");
            break true;
        }
    };
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    if let Some(syncing) = syncing {
        // Remote calls run on per-peer workers with deadlines, so this ends soon.
        let _ = syncing.join();
    }
    let mounted = match Arc::try_unwrap(mounted) {
        Ok(mounted) => mounted,
        Err(_) => {
            return Err(Failure::runtime(
                "unmounting: the mount is still in use internally",
            ));
        }
    };
    if from_outside {
        return mounted
            .join()
            .map_err(|err| Failure::runtime(format!("FUSE session: {err}")));
    }
    let still_open = mounted
        .stop(&mountpoint, &vfs, stop_grace)
        .map_err(|err| Failure::runtime(format!("unmounting: {err}")))?;
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

/// Waits up to `timeout` for one of `signals` (blocked in every thread).
fn wait_for_signal(signals: &SigSet, timeout: Duration) -> Result<Option<Signal>, Failure> {
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: the set and the timeout are valid for the call; no siginfo is asked for.
    let signal = unsafe { libc::sigtimedwait(signals.as_ref(), std::ptr::null_mut(), &timeout) };
    if signal >= 0 {
        return Ok(Signal::try_from(signal).ok());
    }
    match nix::errno::Errno::last() {
        nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR => Ok(None),
        err => Err(Failure::runtime(format!("waiting for signals: {err}"))),
    }
}

/// Wait after a local change before syncing, so a burst of writes goes in one pass.
const DEBOUNCE: Duration = Duration::from_secs(1);

/// Runs a sync pass every `interval`, and shortly after local changes; with
/// `cache` (`max_size`, `min_copies`), shrinks the local blocks after a pass,
/// at most every [`crate::sync::evict::CACHE_CHECK_EVERY`].
fn sync_loop(
    syncer: &crate::sync::Syncer,
    store: &Store,
    interval: Duration,
    cache: Option<(u64, u32)>,
    kicked: &mpsc::Receiver<()>,
    stop: &AtomicBool,
) {
    let mut next = std::time::Instant::now();
    let mut cache_checked: Option<std::time::Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let now = std::time::Instant::now();
        if now >= next {
            match syncer.pass(store) {
                Ok(report) => tracing::info!(
                    pushed = report.pushed(),
                    applied = report.applied(),
                    conflicts = report.conflicts(),
                    unreachable = report.unreachable(),
                    "sync"
                ),
                Err(err) => tracing::warn!(error = %err, "sync pass failed"),
            }
            if let Some((max_size, min_copies)) = cache {
                let due = cache_checked
                    .is_none_or(|at| at.elapsed() >= crate::sync::evict::CACHE_CHECK_EVERY);
                if due && !stop.load(Ordering::Relaxed) {
                    cache_checked = Some(std::time::Instant::now());
                    let fetcher = syncer.fetcher();
                    match crate::sync::shrink_to(store, fetcher.remotes(), max_size, min_copies) {
                        Ok(report) if report.evicted > 0 || report.kept_too_few_copies > 0 => {
                            tracing::info!(
                                evicted = report.evicted,
                                bytes_freed = report.bytes_freed,
                                kept = report.kept_too_few_copies,
                                local_bytes = report.local_bytes_after,
                                "cache.max_size"
                            )
                        }
                        Ok(_) => {}
                        Err(err) => tracing::warn!(error = %err, "cache eviction failed"),
                    }
                }
            }
            next = std::time::Instant::now() + interval;
            // Changes the pass itself made are not a reason for another pass.
            while kicked.try_recv().is_ok() {}
            continue;
        }
        let wait = (next - now).min(POLL);
        match kicked.recv_timeout(wait) {
            Ok(()) => {
                next = next.min(std::time::Instant::now() + DEBOUNCE);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
}

/// Reads the node's journal from its end and invalidates what changed.
fn follow_journal(
    dir: &Path,
    vfs: &Vfs,
    mounted: &crate::fuse::Mounted,
    stop: &AtomicBool,
    kick: &mpsc::Sender<()>,
) {
    let mut position = journal::Position::default();
    // Start at the end: what is already there is what the mount serves now.
    loop {
        match journal::read(dir, &position, 10_000) {
            Ok(batch) if !batch.lines.is_empty() => position = batch.next,
            Ok(batch) => {
                position = batch.next;
                break;
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading the journal");
                break;
            }
        }
    }
    // Reading a long journal to its end (here and in the version cache) used
    // buffers that are garbage now.
    release_freed_memory();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(POLL);
        if vfs.take_forgotten() >= TRIM_AFTER_FORGETS {
            release_freed_memory();
        }
        let batch = match journal::read(dir, &position, 10_000) {
            Ok(batch) => batch,
            Err(err) => {
                tracing::warn!(error = %err, "reading the journal");
                continue;
            }
        };
        for warning in &batch.warnings {
            tracing::warn!("{warning}");
        }
        if !batch.lines.is_empty() {
            let _ = kick.send(());
        }
        for line in &batch.lines {
            let Some((id, path)) = line.split_once(' ') else {
                continue;
            };
            let (Ok(id), Ok(path)) = (id.parse(), VPath::from_escaped(path)) else {
                continue;
            };
            if let Some((ino, entry)) = vfs.changed_elsewhere(id, &path) {
                mounted.invalidate(ino, entry);
            }
        }
        position = batch.next;
    }
}

/// After the kernel forgets this many inodes (memory reclaim drops whole
/// trees), the mount gives the memory they held back to the system.
const TRIM_AFTER_FORGETS: u64 = 4096;

/// Returns freed heap memory to the system: without it the allocator keeps
/// what a forgotten tree of inodes used, and a tree listed again afterwards
/// lands beside it rather than in it.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// glibc gives busy threads arenas of their own (up to eight per core), each
/// keeping the memory freed into it: with request threads and listing threads
/// that is tens of MiB of resident memory held for nothing. Two arenas serve
/// the mount's few contended allocations just as well.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; it is called before the
    // mount's threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// FUSE mounts start with the kernel's default readahead (128 KiB), which caps
/// sequential reads at one small request per round trip; ask for 1 MiB (a block).
fn raise_readahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(mountpoint) else {
        return;
    };
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    match std::fs::write(&knob, "1024") {
        Ok(()) => tracing::debug!(%knob, "readahead 1 MiB"),
        Err(err) => tracing::debug!(%knob, error = %err, "readahead left at the default"),
    }
}

/// A mount left behind by a killed process answers ENOTCONN: detach it.
fn recover_stale_mount(mountpoint: &Path) -> Result<(), Failure> {
    // A stat may be answered from the kernel's cache of a mount whose daemon
    // was just killed; a statfs always asks the daemon, so it sees ENOTCONN.
    let dead = match std::fs::metadata(mountpoint) {
        Err(err) => err.raw_os_error() == Some(libc::ENOTCONN),
        Ok(_) => matches!(
            nix::sys::statfs::statfs(mountpoint),
            Err(nix::errno::Errno::ENOTCONN)
        ),
    };
    match dead {
        true => {
            tracing::warn!(mountpoint = %mountpoint.display(), "a dead mount is left here; detaching it");
            let detached = nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH)
                .is_ok()
                || std::process::Command::new("fusermount3")
                    .args(["-u", "-z"])
                    .arg(mountpoint)
                    .status()
                    .is_ok_and(|s| s.success());
            if detached {
                Ok(())
            } else {
                Err(Failure::runtime(format!(
                    "{}: a dead mount is left here and could not be detached (try `fusermount3 -uz {}`)",
                    mountpoint.display(),
                    mountpoint.display()
                )))
            }
        }
        false => Ok(()),
    }
}

/// Tells systemd (Type=notify) that the mount is up, when NOTIFY_SOCKET is set
/// (in a supervised worker: tells the supervisor, which tells systemd).
pub(super) fn notify_ready() {
    if crate::supervise::worker_ready() {
        return;
    }
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
        sock.send_to(b"READY=1\n", Path::new(&socket))
    };
    if let Err(err) = result {
        tracing::warn!(error = %err, "sd_notify READY=1");
    }
}
