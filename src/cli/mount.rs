//! `globofs mount`: reconcile, mount in the foreground, follow the node's journal
//! so changes made by other processes (and applied from peers) show up, and
//! unmount cleanly on SIGINT or SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

use super::Failure;
use crate::layout::VPath;
use crate::spec::Spec;
use crate::store::{Store, journal};
use crate::vfs::Vfs;

/// How often the mount reads the node's journal for changes made elsewhere.
const POLL: Duration = Duration::from_millis(500);

pub fn mount(spec: &Spec, mountpoint: Option<PathBuf>, threads: usize) -> Result<(), Failure> {
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
    std::fs::create_dir_all(&mountpoint)
        .map_err(|err| Failure::runtime(format!("{}: {err}", mountpoint.display())))?;
    let store = Arc::new(Store::open_spec(spec)?);
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
    tracing::info!(mountpoint = %mountpoint.display(), node = %spec.node, "mounted");
    notify_ready();

    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = Arc::clone(&stop);
        let vfs = Arc::clone(&vfs);
        let mounted = Arc::clone(&mounted);
        let journal_dir = store.layout().journal();
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || follow_journal(&journal_dir, &vfs, &mounted, &stop))
            .map_err(|err| Failure::runtime(format!("starting the journal reader: {err}")))?
    };

    let signal = signals
        .wait()
        .map_err(|err| Failure::runtime(format!("waiting for signals: {err}")))?;
    tracing::info!(?signal, "unmounting");
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    match Arc::try_unwrap(mounted) {
        Ok(mounted) => mounted
            .unmount()
            .map_err(|err| Failure::runtime(format!("unmounting: {err}")))?,
        Err(_) => {
            return Err(Failure::runtime(
                "unmounting: the mount is still in use internally",
            ));
        }
    }
    Ok(())
}

/// Reads the node's journal from its end and invalidates what changed.
fn follow_journal(dir: &Path, vfs: &Vfs, mounted: &crate::fuse::Mounted, stop: &AtomicBool) {
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
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(POLL);
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
        for line in &batch.lines {
            let Some((_, path)) = line.split_once(' ') else {
                continue;
            };
            if let Ok(path) = VPath::from_escaped(path) {
                let (ino, entry) = vfs.changed(&path);
                mounted.invalidate(ino, entry);
            }
        }
        position = batch.next;
    }
}

/// A mount left behind by a killed process answers ENOTCONN: detach it.
fn recover_stale_mount(mountpoint: &Path) -> Result<(), Failure> {
    match std::fs::metadata(mountpoint) {
        Err(err) if err.raw_os_error() == Some(libc::ENOTCONN) => {
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
        _ => Ok(()),
    }
}

/// Tells systemd (Type=notify) that the mount is up, when NOTIFY_SOCKET is set.
fn notify_ready() {
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
