//! The mount session: everything between "mount this spec there" and the
//! process leaving. It owns the FUSE session ([`session`]), the signals that
//! end it or reload its spec ([`signals`]), the threads beside it (following
//! the node's journal, [`journal`]; the sync loop, [`sync_loop`]), re-reading
//! the spec on SIGHUP ([`reload`]), the allocator and readahead settings
//! ([`tuning`]) and the one way a mount is taken down, whether by us or found
//! dead from an earlier run ([`teardown`]).
//!
//! The command line calls [`run`] and nothing else. This module uses the core
//! ([`crate::vfs`]), the fuser adapter ([`crate::fuse`]), [`crate::store`],
//! [`crate::sync`] and [`crate::supervise`] (readiness); it never calls back
//! into [`crate::cli`]: its errors are [`MountError`], which the command line
//! turns into an exit code.

mod guard;
mod journal;
mod maintain;
mod reload;
mod session;
mod signals;
mod sync_loop;
mod teardown;
mod tuning;

pub use guard::watch as watch_fuse_connection;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use crate::spec::Spec;
use crate::store::{Store, StoreError};
use crate::vfs::Vfs;

use nix::sys::signal::Signal;
use reload::{LiveFetcher, Reloader};
use session::Session;
use signals::Signals;
use teardown::Ending;

/// How often the mount reads the node's journal for changes made elsewhere,
/// and how long the main thread waits for a signal before it looks whether
/// the session was ended from outside.
const POLL: Duration = Duration::from_millis(500);

/// What `globofs mount` was asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where to mount (already chosen from the arguments or the spec).
    pub mountpoint: PathBuf,
    /// The mount point is the spec's `mount.path` (so a reload changing it
    /// is refused); false when the command line named one.
    pub mountpoint_from_spec: bool,
    /// FUSE request threads.
    pub threads: usize,
    /// How long open files are served after a stop signal when the unmount
    /// is busy (the mount is detached meanwhile).
    pub stop_grace: Duration,
}

/// Why a mount could not start or did not end cleanly.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The spec or the arguments are wrong (the command line's exit code 1).
    #[error("{0}")]
    Input(String),
    /// Something failed while working (exit code 3).
    #[error("{0}")]
    Runtime(String),
    /// Opening the store failed; the command line classifies it as it does
    /// every store error.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MountError {
    fn input(message: impl std::fmt::Display) -> MountError {
        MountError::Input(message.to_string())
    }

    fn runtime(message: impl std::fmt::Display) -> MountError {
        MountError::Runtime(message.to_string())
    }
}

/// Reconciles the volume, mounts it in the foreground, follows the node's
/// journal (so changes made by other processes and applied from peers show
/// up), syncs with the peers when there are any, re-reads the spec on SIGHUP
/// ([`reload`]: what can change live does, the rest is refused with a log
/// line) and unmounts cleanly on SIGINT or SIGTERM. Returns when the mount is
/// gone.
pub fn run(spec: &Spec, options: &Options) -> Result<(), MountError> {
    signals::hold_reloads();
    let mountpoint = options.mountpoint.as_path();
    let outcome = crate::reconcile::reconcile(spec, false).map_err(MountError::input)?;
    for warning in &outcome.warnings {
        tracing::warn!("{warning}");
    }
    teardown::recover_stale_mount(mountpoint)?;
    tuning::limit_malloc_arenas();
    std::fs::create_dir_all(mountpoint)
        .map_err(|err| MountError::runtime(format!("{}: {err}", mountpoint.display())))?;
    let syncer = Arc::new(crate::sync::Syncer::new(spec));
    let mut store = Store::open_spec(spec)?;
    let fetcher = Arc::new(LiveFetcher::new(syncer.fetcher()));
    store.set_fetcher(Arc::clone(&fetcher) as Arc<dyn crate::store::BlockFetcher>);
    let store = Arc::new(store);
    let vfs = Arc::new(
        Vfs::new(Arc::clone(&store))
            .with_ownership(spec.ownership)
            .with_history_dir(Some(&spec.history_dir))
            .with_pass_times({
                let layout = store.layout().clone();
                Box::new(move || crate::sync::state::pass_times(&layout))
            }),
    );

    // Signals go to this thread only: block them before the FUSE threads start.
    let signals = Signals::block()?;
    // Per-path block links are hints: made in batches, off close and fsync
    // (a thread started after the signals are blocked, as every thread).
    store.link_paths_later();

    let session = Session::start(
        Arc::clone(&vfs),
        mountpoint,
        options.threads,
        &spec.node.to_string(),
    )
    .map_err(|err| MountError::runtime(format!("mounting {}: {err}", mountpoint.display())))?;
    tuning::raise_readahead(mountpoint);
    // Aborts the connection if this process is killed and cannot finish
    // dying (guard.rs); ends with it otherwise.
    let _guard = guard::start(mountpoint);
    tracing::info!(mountpoint = %mountpoint.display(), node = %spec.node, "mounted");
    crate::supervise::notify_ready();

    let stop = Arc::new(AtomicBool::new(false));
    let (kick, kicked) = mpsc::channel::<()>();
    let follower = journal::spawn(
        store.layout().journal(),
        Arc::clone(&vfs),
        session.invalidator(),
        Arc::clone(&stop),
        kick,
    )
    .map_err(|err| MountError::runtime(format!("starting the journal reader: {err}")))?;
    // The loop runs whether or not there are peers now: a reload may add some.
    let plan = Arc::new(Mutex::new(Arc::new(reload::plan_for(spec, syncer))));
    let syncing = sync_loop::spawn(
        Arc::clone(&plan),
        Arc::clone(&store),
        kicked,
        Arc::clone(&stop),
    )
    .map_err(|err| MountError::runtime(format!("starting sync: {err}")))?;
    let mut reloader = Reloader {
        current: spec.clone(),
        mountpoint_from_spec: options.mountpoint_from_spec,
        store: Arc::clone(&store),
        fetcher,
        plan,
    };

    // A signal asks us to unmount (SIGHUP: to re-read the spec); `fusermount3
    // -u` or `umount` from outside ends the session on its own, and then
    // there is nothing left to serve.
    let ending = loop {
        match signals.wait(POLL)? {
            Some(Signal::SIGHUP) => reloader.reload(),
            Some(signal) => {
                tracing::info!(?signal, "unmounting");
                break Ending::Signal;
            }
            None => {}
        }
        if session.ended() {
            tracing::info!(mountpoint = %mountpoint.display(), "unmounted from outside; exiting");
            break Ending::FromOutside;
        }
    };
    stop.store(true, Ordering::Relaxed);
    let _ = follower.join();
    // Remote calls run on per-peer workers with deadlines, so this usually
    // ends soon; a long local pass (applying a big batch) is not waited for
    // past SYNC_STOP_WAIT: the store is crash-safe, and the next pass resumes.
    join_within(syncing, SYNC_STOP_WAIT);
    teardown::finish(session, ending, mountpoint, &vfs, options.stop_grace)
}

/// How long a stop waits for a sync pass in progress.
const SYNC_STOP_WAIT: Duration = Duration::from_secs(5);

/// Joins `thread` if it ends within `wait`; otherwise leaves it running (it
/// ends with the process) and says so.
fn join_within(thread: std::thread::JoinHandle<()>, wait: Duration) {
    let deadline = std::time::Instant::now() + wait;
    while !thread.is_finished() {
        if std::time::Instant::now() >= deadline {
            tracing::warn!(
                "a sync pass is still running after {wait:?}: not waiting for it (the next mount or sync resumes it)"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = thread.join();
}
