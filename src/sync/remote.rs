//! Peers as this node sees them: a [`Remote`] per peer runs every operation that
//! touches the peer's store on that peer's worker threads, with a deadline.
//!
//! A syscall stuck on a hung NFS or sshfs mount cannot be cancelled. So the
//! caller waits at most `sync.timeout`; on a timeout it marks the peer away and
//! moves on, and the stuck thread is abandoned (it ends, harmlessly, if the call
//! ever returns). While a call is still stuck the peer stays away, so a hung
//! peer costs one thread, not one per operation. Workers are never joined, and
//! they block the process's signals (a signal must reach a thread that can
//! act). A stuck thread still keeps its process from finishing its exit: that
//! is why the commands that reach peers run in a supervised child process
//! ([`crate::supervise`]), which the command leaves behind if it is stuck.
//!
//! [`PeerFetcher`] is the store's [`BlockFetcher`] over these remotes: it reads
//! a block from the writer's store first, then from any other reachable peer,
//! and returns it only after checking its length and SHA-256.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::ids::{BlockHash, NodeId};
use crate::layout::StoreLayout;
use crate::spec::{Peer, Spec};
use crate::store::{BlockFetcher, Blocks, StoreError, StoreMeta};

/// Most worker threads one peer gets (more calls queue for a free one). Enough
/// for `mirror --threads 16` to keep 16 reads in flight on one sshfs mount:
/// each read waits on the network, not on a core.
const MAX_WORKERS: usize = 64;
/// Largest `format` file read from a peer.
const MAX_FORMAT_BYTES: u64 = 4096;

/// A peer that cannot be used now, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("peer {peer} is away: {why}")]
pub struct Away {
    pub peer: NodeId,
    pub why: String,
}

type Job = Box<dyn FnOnce() + Send>;

const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

/// The worker threads of one peer.
struct Pool {
    sender: mpsc::Sender<Job>,
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
    idle: Arc<AtomicUsize>,
    workers: AtomicUsize,
    /// Calls that passed their deadline and have not returned yet.
    stuck: Arc<AtomicUsize>,
}

/// Whether the peer was checked, and until when a failed check stands.
#[derive(Clone, Debug)]
enum Health {
    Unchecked,
    Present,
    Away { why: String, until: Instant },
}

/// One peer: its store path, a deadline, and its worker threads.
pub struct Remote {
    peer: Peer,
    layout: StoreLayout,
    timeout: Duration,
    pool: Pool,
    health: Mutex<Health>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("peer", &self.peer.id)
            .field("path", &self.peer.path)
            .finish()
    }
}

impl Remote {
    pub fn new(peer: Peer, timeout: Duration) -> Remote {
        let (sender, receiver) = mpsc::channel();
        Remote {
            layout: StoreLayout::new(&peer.path),
            peer,
            timeout,
            pool: Pool {
                sender,
                receiver: Arc::new(Mutex::new(receiver)),
                idle: Arc::new(AtomicUsize::new(0)),
                workers: AtomicUsize::new(0),
                stuck: Arc::new(AtomicUsize::new(0)),
            },
            health: Mutex::new(Health::Unchecked),
        }
    }

    pub fn id(&self) -> NodeId {
        self.peer.id
    }

    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The peer's store layout (paths only; touching them needs [`Remote::run`]).
    pub fn layout(&self) -> &StoreLayout {
        &self.layout
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn away(&self, why: impl Into<String>) -> Away {
        Away {
            peer: self.peer.id,
            why: why.into(),
        }
    }

    /// How long a failed check keeps the peer away before it is tried again.
    fn retry_after(&self) -> Duration {
        (self.timeout * 3).max(Duration::from_secs(5))
    }

    fn set_health(&self, health: Health) {
        *self.health.lock().unwrap_or_else(|e| e.into_inner()) = health;
    }

    /// Marks the peer away for a while (a failed or timed-out operation).
    pub fn mark_away(&self, why: &str) {
        self.set_health(Health::Away {
            why: why.to_string(),
            until: Instant::now() + self.retry_after(),
        });
    }

    /// Runs `f` on one of the peer's workers; waits at most the timeout.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Away> {
        let stuck = self.pool.stuck.load(Ordering::SeqCst);
        if stuck > 0 {
            return Err(self.away(format!(
                "{stuck} call(s) to {} have not returned",
                self.peer.path.display()
            )));
        }
        let (tx, rx) = mpsc::sync_channel::<T>(1);
        let state = Arc::new(AtomicU8::new(RUNNING));
        let job_state = Arc::clone(&state);
        let job_stuck = Arc::clone(&self.pool.stuck);
        let job: Job = Box::new(move || {
            let out = f();
            if job_state
                .compare_exchange(RUNNING, DONE, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                // The caller gave up on us long ago; the peer may be usable again.
                job_stuck.fetch_sub(1, Ordering::SeqCst);
            }
            let _ = tx.send(out);
        });
        if self.pool.sender.send(job).is_err() {
            return Err(self.away("its worker threads are gone"));
        }
        if self.pool.idle.load(Ordering::SeqCst) == 0
            && self.pool.workers.load(Ordering::SeqCst) < MAX_WORKERS
        {
            self.spawn_worker()?;
        }
        match rx.recv_timeout(self.timeout) {
            Ok(value) => Ok(value),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if state
                    .compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    self.pool.stuck.fetch_add(1, Ordering::SeqCst);
                    let why = format!(
                        "no answer from {} within {:?}",
                        self.peer.path.display(),
                        self.timeout
                    );
                    tracing::warn!(peer = %self.peer.id, "{why}; treating the peer as away");
                    self.mark_away(&why);
                    return Err(self.away(why));
                }
                // It finished just as the deadline passed.
                rx.recv().map_err(|_| self.away("its worker failed"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(self.away("its worker failed")),
        }
    }

    fn spawn_worker(&self) -> Result<(), Away> {
        let receiver = Arc::clone(&self.pool.receiver);
        let idle = Arc::clone(&self.pool.idle);
        let short = self.peer.id.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("peer-{}", &short[..8]))
            .spawn(move || {
                block_process_signals();
                loop {
                    idle.fetch_add(1, Ordering::SeqCst);
                    let job = {
                        let receiver = receiver.lock().unwrap_or_else(|e| e.into_inner());
                        receiver.recv()
                    };
                    idle.fetch_sub(1, Ordering::SeqCst);
                    match job {
                        // A panicking job must not take the worker down with it.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                        }
                        Err(_) => break,
                    }
                }
            });
        match spawned {
            Ok(_) => {
                self.pool.workers.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            Err(err) if self.pool.workers.load(Ordering::SeqCst) == 0 => {
                Err(self.away(format!("cannot start a worker thread: {err}")))
            }
            // Others are running; the job waits for one of them.
            Err(_) => Ok(()),
        }
    }

    /// Checks that the peer's store is there and is the peer's (its `format`
    /// file names the peer). A recent result is reused; `force` checks again
    /// (unless a call is still stuck).
    pub fn check(&self, force: bool) -> Result<(), Away> {
        let health = self
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match health {
            Health::Present if !force => return Ok(()),
            Health::Away { why, until } if !force && Instant::now() < until => {
                return Err(self.away(why));
            }
            _ => {}
        }
        let dir = self.peer.path.clone();
        let format_file = self.layout.format_file();
        let peer = self.peer.id;
        let outcome = self.run(move || check_store(&dir, &format_file, peer))?;
        match outcome {
            Ok(()) => {
                self.set_health(Health::Present);
                Ok(())
            }
            Err(why) => {
                self.mark_away(&why);
                Err(self.away(why))
            }
        }
    }

    /// Whether the peer is usable now (checking it if no recent result stands).
    pub fn is_reachable(&self) -> bool {
        self.check(false).is_ok()
    }
}

/// Keeps process-wide signals (SIGINT, SIGTERM, SIGHUP) off this thread: a
/// worker may sleep uninterruptibly in a call on a hung peer, and a signal the
/// kernel picked this thread for would wait there with it instead of reaching
/// a thread that can act on it.
fn block_process_signals() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    if let Err(err) = set.thread_block() {
        tracing::debug!(error = %err, "peer worker: signals not blocked");
    }
}

/// The peer's store must be a directory whose `format` file names `peer`.
fn check_store(dir: &Path, format_file: &Path, peer: NodeId) -> Result<(), String> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(format!("{} is not a directory", dir.display())),
        Err(err) => return Err(format!("{}: {err}", dir.display())),
    }
    let file = File::open(format_file).map_err(|err| {
        if err.kind() == ErrorKind::NotFound {
            format!(
                "{} has no `format` file (not mounted, or not a store yet)",
                dir.display()
            )
        } else {
            format!("{}: {err}", format_file.display())
        }
    })?;
    let mut text = String::new();
    file.take(MAX_FORMAT_BYTES)
        .read_to_string(&mut text)
        .map_err(|err| format!("{}: {err}", format_file.display()))?;
    let meta = StoreMeta::parse(format_file, &text).map_err(|err| err.to_string())?;
    if meta.node != peer {
        return Err(format!(
            "{} is the store of node {}, not of {peer}",
            dir.display(),
            meta.node
        ));
    }
    Ok(())
}

/// All peers of a spec, as remotes.
pub fn remotes(spec: &Spec) -> Vec<Arc<Remote>> {
    spec.peers
        .iter()
        .map(|peer| Arc::new(Remote::new(peer.clone(), spec.timeout)))
        .collect()
}

/// Reads a block from a peer's `hashes/`, checking its length; the caller
/// checks the hash once the bytes are back ([`PeerFetcher::fetch_from`]).
fn read_peer_block(hashes: &Path, hash: BlockHash, len: usize) -> Result<Vec<u8>, StoreError> {
    Blocks::new(hashes).read(&hash, len, false)
}

/// Pulls blocks from peers: the version's writer first, then every other
/// reachable peer. What it returns has the right length and hash.
#[derive(Debug)]
pub struct PeerFetcher {
    remotes: Vec<Arc<Remote>>,
}

impl PeerFetcher {
    /// A fetcher over every peer of `spec` (for the mount, `get` and `mirror`).
    pub fn new(spec: &Spec) -> PeerFetcher {
        PeerFetcher {
            remotes: remotes(spec),
        }
    }

    /// A fetcher over remotes that already exist (shared with a sync pass).
    pub fn with_remotes(remotes: Vec<Arc<Remote>>) -> PeerFetcher {
        PeerFetcher { remotes }
    }

    pub fn remotes(&self) -> &[Arc<Remote>] {
        &self.remotes
    }

    /// The remotes in the order to ask them: `first` (if a peer), then the rest.
    fn ordered(&self, first: NodeId) -> Vec<&Arc<Remote>> {
        let mut order: Vec<&Arc<Remote>> =
            self.remotes.iter().filter(|r| r.id() == first).collect();
        order.extend(self.remotes.iter().filter(|r| r.id() != first));
        order
    }

    /// Fetches from one remote only.
    pub fn fetch_from(
        remote: &Remote,
        hash: &BlockHash,
        len: usize,
    ) -> Result<Vec<u8>, StoreError> {
        remote.check(false).map_err(|away| StoreError::PeerAway {
            peer: away.peer,
            why: away.why,
        })?;
        let hashes: PathBuf = remote.layout().hashes();
        let hash = *hash;
        let data = remote
            .run(move || read_peer_block(&hashes, hash, len))
            .map_err(|away| StoreError::PeerAway {
                peer: away.peer,
                why: away.why,
            })??;
        // Checked again here: the worker's answer is input like any other.
        if data.len() != len || BlockHash::of(&data) != hash {
            return Err(StoreError::BadBlock {
                hash,
                why: format!("peer {} sent bytes that do not match", remote.id()),
            });
        }
        Ok(data)
    }
}

impl BlockFetcher for PeerFetcher {
    fn fetch(&self, hash: &BlockHash, len: usize, origin: NodeId) -> Result<Vec<u8>, StoreError> {
        let mut tried = Vec::new();
        for remote in self.ordered(origin) {
            match PeerFetcher::fetch_from(remote, hash, len) {
                Ok(data) => return Ok(data),
                Err(err) => {
                    tracing::debug!(peer = %remote.id(), %hash, error = %err, "block not fetched");
                    tried.push(format!("{}: {err}", remote.id()));
                }
            }
        }
        Err(StoreError::BadBlock {
            hash: *hash,
            why: if tried.is_empty() {
                "no peers to fetch it from".into()
            } else {
                format!("no reachable peer holds it ({})", tried.join("; "))
            },
        })
    }

    fn held_remotely(&self, hash: &BlockHash, len: usize) -> bool {
        self.remotes.iter().any(|remote| {
            if remote.check(false).is_err() {
                return false;
            }
            let hashes = remote.layout().hashes();
            let hash = *hash;
            remote
                .run(move || Blocks::new(hashes).locate(&hash, Some(len)).is_some())
                .unwrap_or(false)
        })
    }
}
