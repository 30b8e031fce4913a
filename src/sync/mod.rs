//! Sync between nodes through files only: we push our new versions into each
//! peer's `spool/inbound/<our id>/` (only we write there), and apply what each
//! peer pushed into our `spool/inbound/<peer>/` by parsing, checking and
//! rewriting it into `root/`.
//!
//! One pass ([`sync_once`], `globofs sync`, and the mount every interval):
//! check each peer, push our journal to every reachable one ([`push`]), apply
//! every peer's inbound journal ([`apply`]), and push again if applying made
//! anything new (relays, conflict copies, resurrected directories). Work is
//! found through journals read from remembered positions, so a pass with
//! nothing new reads a few small files per peer and never walks a tree.
//!
//! Every operation on a peer's store runs on that peer's [`Remote`] with a
//! deadline; a missing, unmounted or hung peer is reported away and its queue
//! waits. State files and spool names are listed in [`state`].

mod apply;
pub mod copies;
pub mod evict;
pub mod full_check;
mod mirror;
mod push;
pub mod remote;
pub mod repair;
mod safe;
pub mod state;
mod status;

use std::sync::Arc;

pub use evict::{EvictReport, drop_tree, shrink_to};
pub use mirror::{MirrorReport, mirror};
pub use remote::{Away, PeerFetcher, Remote};
pub use repair::{RepairReport, repair};
pub use status::{
    CopiesStatus, InboundStuck, PeerStatus, Status, count_local_blocks, status, status_with,
};

use crate::ids::NodeId;
use crate::spec::Spec;
use crate::store::gc::PeerApplied;
use crate::store::{Store, StoreError};

/// Errors of the sync layer: our own store failing. Trouble with a peer is
/// not an error of the pass; it is reported per peer in [`SyncReport`].
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one pass did with one peer.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PeerReport {
    pub peer: String,
    pub reachable: bool,
    /// Why the peer was away (missing, unmounted, hung, not the right store...).
    pub away: Option<String>,
    /// Versions written into the peer's inbound spool.
    pub pushed: u64,
    /// Versions from the peer new to us, through its journal.
    pub applied: u64,
    /// Versions new to us that a full check took from the peer's `root/`
    /// (what its journal to us did not deliver).
    pub repaired: u64,
    /// Conflict copies made while applying the peer's versions.
    pub conflicts: u64,
    /// Directories re-created because a peer's deletion hid live entries.
    pub resurrected: u64,
    /// Blocks copied into the peer's spool (`replicate: true`, or for `copies`).
    pub blocks_replicated: u64,
    /// Blocks taken in from the peer (its eager `%blocks`, or pulled to relay).
    pub blocks_received: u64,
    /// Our journal segments in the peer's spool trimmed after its ack.
    pub trimmed: u64,
    /// Inbound input refused (each logged), the rest applied.
    pub refused: Vec<String>,
    /// Things that stopped this pass with this peer (retried next pass).
    pub errors: Vec<String>,
    /// Damage found and worked around, for a person to look at (a skipped
    /// torn journal line, a damaged inbound version file, a spool made again,
    /// versions a full check had to repair). Printed; never silent.
    pub warnings: Vec<String>,
    /// Notes (another process busy, a first push...).
    pub notes: Vec<String>,
    /// The nonce of another store of this node found in the peer's spool for
    /// us (replaced or not).
    #[serde(skip)]
    old_spool: Option<String>,
    /// Applying stopped at a bad complete line of the peer's journal.
    #[serde(skip)]
    stuck: bool,
    /// Something was found damaged (a full check runs in the same pass).
    #[serde(skip)]
    damaged: bool,
    /// The peer's spool for us was found holding our nonce (or was given it).
    #[serde(skip)]
    spool_ours: bool,
}

impl PeerReport {
    fn new(peer: NodeId) -> PeerReport {
        PeerReport {
            peer: peer.to_string(),
            ..PeerReport::default()
        }
    }

    fn refuse(&mut self, why: String) {
        tracing::warn!(peer = %self.peer, "refused: {why}");
        self.refused.push(why);
    }

    fn error(&mut self, why: String) {
        tracing::warn!(peer = %self.peer, "sync error: {why}");
        self.errors.push(why);
    }

    /// Damage found: warned, and a full check with this peer follows.
    fn damage(&mut self, why: String) {
        self.damaged = true;
        self.warn(why);
    }

    fn warn(&mut self, why: String) {
        tracing::warn!(peer = %self.peer, "{why}");
        self.warnings.push(why);
    }

    fn note(&mut self, why: String) {
        tracing::info!(peer = %self.peer, "{why}");
        self.notes.push(why);
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SyncReport {
    pub peers: Vec<PeerReport>,
    /// What the pass did for `copies` (absent: `copies` is 1, or nothing
    /// changed since this syncer's last census).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copies: Option<copies::CopiesReport>,
}

impl SyncReport {
    pub fn pushed(&self) -> u64 {
        self.peers.iter().map(|p| p.pushed).sum()
    }
    pub fn applied(&self) -> u64 {
        self.peers.iter().map(|p| p.applied).sum()
    }
    pub fn conflicts(&self) -> u64 {
        self.peers.iter().map(|p| p.conflicts).sum()
    }
    pub fn unreachable(&self) -> u64 {
        self.peers.iter().filter(|p| !p.reachable).count() as u64
    }
    pub fn refused(&self) -> u64 {
        self.peers.iter().map(|p| p.refused.len() as u64).sum()
    }
    pub fn errors(&self) -> u64 {
        self.peers.iter().map(|p| p.errors.len() as u64).sum()
    }

    pub fn peer(&self, id: NodeId) -> Option<&PeerReport> {
        let id = id.to_string();
        self.peers.iter().find(|p| p.peer == id)
    }
}

/// Why a full check runs after damage in an inbound spool.
const DAMAGE: &str = "damage found while applying";

/// Runs sync passes for one node; keeps its peers' remotes (and any stuck
/// worker) from one pass to the next. The mount holds one.
#[derive(Debug)]
pub struct Syncer {
    remotes: Vec<Arc<Remote>>,
    /// Replace spools an earlier store of this node left at peers (`sync --take-over`).
    take_over: bool,
    /// Run a full check with every reachable peer in each pass (`sync --full`).
    full: bool,
    /// How often a pass runs a full check with a peer on its own (`sync.full_check`).
    full_every: Option<std::time::Duration>,
    /// `copies`: how many nodes must hold every block of the current tree.
    copies: u32,
    /// When the last `copies` census ran, and on what (skipped while nothing
    /// changed: our journal, the reachable peers).
    copies_seen: std::sync::Mutex<Option<CopiesSeen>>,
}

/// What the last `copies` census of a [`Syncer`] saw.
#[derive(Debug, Clone)]
struct CopiesSeen {
    /// Our journal was read through here (what changed since is looked at).
    journal: crate::store::journal::Position,
    reachable: Vec<NodeId>,
    /// When the whole tree was last counted.
    whole_at: std::time::Instant,
    /// Files with blocks still short then.
    short: std::collections::BTreeSet<crate::layout::VPath>,
}

impl Syncer {
    pub fn new(spec: &Spec) -> Syncer {
        Syncer {
            remotes: remote::remotes(spec),
            take_over: false,
            full: false,
            full_every: spec.full_check,
            copies: spec.copies,
            copies_seen: std::sync::Mutex::new(None),
        }
    }

    /// Every pass also compares whole version sets with every reachable peer.
    pub fn full(mut self) -> Syncer {
        self.full = true;
        self
    }

    /// This node's store replaces an earlier one that is gone: push into
    /// spools it left at peers (other nonce) by replacing them.
    pub fn taking_over(mut self) -> Syncer {
        self.take_over = true;
        self
    }

    /// A block fetcher sharing this syncer's remotes (and their away state).
    pub fn fetcher(&self) -> PeerFetcher {
        PeerFetcher::with_remotes(self.remotes.clone())
    }

    /// One pass: push to every reachable peer, apply every peer's inbound spool,
    /// push again if applying produced anything.
    pub fn pass(&self, store: &Store) -> Result<SyncReport, SyncError> {
        // Versions a killed writer published but never journaled are journaled
        // now, so this pass pushes them.
        store.recover_interrupted()?;
        // Our digests follow our journal, so peers comparing with us (their
        // full checks) read them current.
        crate::store::digest::refresh(store)?;
        let mut reports: Vec<PeerReport> = self
            .remotes
            .iter()
            .map(|remote| PeerReport::new(remote.id()))
            .collect();
        for (remote, report) in self.remotes.iter().zip(reports.iter_mut()) {
            match remote.check(true) {
                Ok(()) => report.reachable = true,
                Err(away) => {
                    tracing::info!(peer = %remote.id(), why = %away.why, "peer away");
                    report.away = Some(away.why);
                }
            }
        }
        let take_over = if self.take_over {
            state::TakeOver::Any.save(store.layout())?;
            Some(state::TakeOver::Any)
        } else {
            state::TakeOver::load(store.layout())?
        };
        self.push_all(store, &mut reports, take_over.as_ref())?;
        if let Some(take_over) = &take_over {
            settle_take_over(store, take_over, &mut reports)?;
        }
        let mut produced = false;
        for (index, remote) in self.remotes.iter().enumerate() {
            let relay = if self.remotes.len() > 1 && reports[index].reachable {
                Some(remote.as_ref())
            } else {
                None
            };
            let before = store_journal_mark(store)?;
            // Push trouble (a refused spool) does not make the apply fail.
            let errors_before = reports[index].errors.len();
            let source = reports[index].reachable.then_some(remote.as_ref());
            apply::apply(store, remote.id(), source, relay, &mut reports[index])?;
            let applied_some = store_journal_mark(store)? != before;
            produced |= applied_some;
            push::settle_resend(store, remote.id(), applied_some)?;
            if reports[index].reachable {
                let why = self.full_check_due(store, remote.id(), &reports[index])?;
                if let Some(why) = why {
                    let checked =
                        self.check_fully(store, remote, relay, &why, &mut reports[index])?;
                    produced |= checked;
                }
            }
            let mut times = state::PeerTimes::load(store.layout(), remote.id())?;
            if reports[index].errors.len() == errors_before {
                times.last_apply = Some(state::now_secs());
                times.save(store.layout(), remote.id())?;
            }
        }
        if produced {
            self.push_all(store, &mut reports, None)?;
        }
        let copies = self.ensure_copies(store, &mut reports)?;
        Ok(SyncReport {
            peers: reports,
            copies,
        })
    }

    /// `copies` above 1: after the pushes, copies blocks of the current tree
    /// held by fewer nodes into peers' spools ([`copies::ensure`]). The first
    /// census of a syncer walks the whole current tree, and so does one after
    /// the reachable peers changed or `sync.full_check` (or an hour) passed:
    /// peers' own eviction keeps their copies, but a peer's store can be
    /// lost. In between, a census looks only at the paths our journal names
    /// since the last one (our writes and what we applied) and the files
    /// still short then; a pass with neither does nothing.
    fn ensure_copies(
        &self,
        store: &Store,
        reports: &mut [PeerReport],
    ) -> Result<Option<copies::CopiesReport>, SyncError> {
        if self.copies <= 1 {
            return Ok(None);
        }
        let reachable: Vec<NodeId> = self
            .remotes
            .iter()
            .zip(reports.iter())
            .filter(|(_, report)| report.reachable)
            .map(|(remote, _)| remote.id())
            .collect();
        let recheck = self
            .full_every
            .unwrap_or(std::time::Duration::from_secs(3600));
        let last = self
            .copies_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let journal_dir = store.journal().dir();
        let (only, journal, whole_at) = match last {
            Some(last) if last.reachable == reachable && last.whole_at.elapsed() < recheck => {
                match changed_since(journal_dir, &last.journal)? {
                    Some((mut paths, through)) => {
                        paths.extend(last.short.iter().cloned());
                        if paths.is_empty() {
                            let mut seen =
                                self.copies_seen.lock().unwrap_or_else(|e| e.into_inner());
                            if let Some(seen) = seen.as_mut() {
                                seen.journal = through;
                            }
                            return Ok(None);
                        }
                        (Some(paths), through, last.whole_at)
                    }
                    None => (None, journal_end(store)?, std::time::Instant::now()),
                }
            }
            _ => (None, journal_end(store)?, std::time::Instant::now()),
        };
        let accepting: Vec<bool> = reports
            .iter()
            .map(|report| report.reachable && report.errors.is_empty() && report.spool_ours)
            .collect();
        let report = copies::ensure(
            store,
            &self.remotes,
            &accepting,
            reports,
            self.copies,
            only.as_ref(),
        )?;
        *self.copies_seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(CopiesSeen {
            journal,
            reachable,
            whole_at,
            short: report.short_paths.clone(),
        });
        Ok(Some(report))
    }

    /// Why a full check with `peer` runs in this pass, if one does.
    fn full_check_due(
        &self,
        store: &Store,
        peer: NodeId,
        report: &PeerReport,
    ) -> Result<Option<String>, SyncError> {
        if self.full {
            return Ok(Some("on demand".to_string()));
        }
        // A bad complete line alone does not: it stays an error of every pass
        // (exit 3, STUCK in status) until a person runs `sync --full`.
        if report.damaged {
            return Ok(Some(DAMAGE.to_string()));
        }
        let Some(every) = self.full_every else {
            return Ok(None);
        };
        match full_check::FullCheck::load(store, peer)? {
            Some(last) if state::now_secs().saturating_sub(last.at) >= every.as_secs() => {
                Ok(Some("interval".to_string()))
            }
            Some(_) => Ok(None),
            None => {
                // The first check of a peer waits one interval (not every
                // node's first pass at once); until then the clock starts here.
                full_check::FullCheck::schedule(store, peer)?;
                Ok(None)
            }
        }
    }

    /// Runs a full check with one peer; after a complete one asked for with
    /// `--full`, an inbound reader stuck at a bad line moves past it
    /// (everything the damaged part named was in the peer's `root/`).
    /// Whether it changed our store.
    fn check_fully(
        &self,
        store: &Store,
        remote: &Remote,
        relay: Option<&Remote>,
        why: &str,
        report: &mut PeerReport,
    ) -> Result<bool, SyncError> {
        let before = store_journal_mark(store)?;
        let journal_dir = store.layout().inbound(remote.id()).join(state::JOURNAL);
        // Where the peer's journal to us ends before we look: all it named is
        // in the peer's root/ by then.
        let resume = apply::resume_point(&journal_dir)?;
        let rebuild = why != DAMAGE;
        let result = full_check::full_check(store, remote, relay, why, rebuild, report)?;
        // Only a check a person asked for moves a reader past a bad line.
        if result.complete && report.stuck && self.full {
            if let Some(resume) = resume {
                let position_file = state::apply_position(store.layout(), remote.id());
                let old = crate::store::journal::Position::load(&position_file)?;
                if (resume.segment, resume.offset) > (old.segment, old.offset) {
                    resume.save(&position_file)?;
                    resume.save(&state::ack_file(store.layout(), remote.id()))?;
                    report
                        .errors
                        .retain(|e| !e.starts_with("inbound journal stuck"));
                    report.stuck = false;
                    report.warn(format!(
                        "{}: skipped the damaged part from segment {} offset {} to segment {} offset {}: a full check took every version it named from the peer's root/",
                        journal_dir.display(),
                        old.segment,
                        old.offset,
                        resume.segment,
                        resume.offset
                    ));
                    // What the peer pushed after that point applies as usual.
                    apply::apply(store, remote.id(), Some(remote), relay, report)?;
                }
            }
        }
        Ok(store_journal_mark(store)? != before)
    }

    fn push_all(
        &self,
        store: &Store,
        reports: &mut [PeerReport],
        take_over: Option<&state::TakeOver>,
    ) -> Result<(), SyncError> {
        for (remote, report) in self.remotes.iter().zip(reports.iter_mut()) {
            if !report.reachable || !report.errors.is_empty() {
                continue;
            }
            match push::push(store, remote, report, take_over) {
                Ok(true) => {
                    let mut times = state::PeerTimes::load(store.layout(), remote.id())?;
                    times.last_push = Some(state::now_secs());
                    times.save(store.layout(), remote.id())?;
                }
                Ok(false) => {}
                Err(push::PushError::Away(away)) => {
                    report.reachable = false;
                    report.away = Some(away.why);
                }
                Err(push::PushError::Store(err)) => return Err(err.into()),
            }
        }
        Ok(())
    }
}

/// After the pushes of a pass with a take-over pending: pins it to the earlier
/// store's nonce once one of its spools was seen, and ends it once every peer's
/// spool holds ours.
fn settle_take_over(
    store: &Store,
    take_over: &state::TakeOver,
    reports: &mut [PeerReport],
) -> Result<(), SyncError> {
    if reports.iter().all(|report| report.spool_ours) {
        state::TakeOver::clear(store.layout())?;
        if let Some(report) = reports.first_mut() {
            report.note("take-over done: every peer's spool for this node holds our nonce".into());
        }
        return Ok(());
    }
    if *take_over == state::TakeOver::Any {
        if let Some(theirs) = reports.iter().find_map(|report| report.old_spool.clone()) {
            state::TakeOver::Nonce(theirs).save(store.layout())?;
        }
    }
    for report in reports.iter_mut().filter(|report| !report.spool_ours) {
        report.note(
            "take-over pending: this peer's spool is taken over by a later pass once it is reachable and has applied the earlier store's journal".into(),
        );
    }
    Ok(())
}

/// Where our own journal ends now, as a reader's position.
fn journal_end(store: &Store) -> Result<crate::store::journal::Position, StoreError> {
    let (segment, offset) = crate::store::journal::end(store.journal().dir())?.unwrap_or((0, 0));
    Ok(crate::store::journal::Position {
        nonce: store.meta().nonce.clone(),
        segment,
        offset,
    })
}

/// The paths our journal names after `from`, and where it was read through;
/// `None` when it cannot be followed from there (restarted, a bad line):
/// the whole tree is counted instead.
fn changed_since(
    dir: &std::path::Path,
    from: &crate::store::journal::Position,
) -> Result<
    Option<(
        std::collections::BTreeSet<crate::layout::VPath>,
        crate::store::journal::Position,
    )>,
    StoreError,
> {
    let mut paths = std::collections::BTreeSet::new();
    let mut position = from.clone();
    loop {
        let batch = crate::store::journal::read(dir, &position, 4096)?;
        if batch.restarted || batch.stuck.is_some() {
            return Ok(None);
        }
        if batch.lines.is_empty() {
            return Ok(Some((paths, batch.next)));
        }
        for line in &batch.lines {
            match push::parse_line(line) {
                Ok((_, path)) => {
                    paths.insert(path);
                }
                Err(_) => return Ok(None),
            }
        }
        position = batch.next;
    }
}

/// Where our own journal ends (to tell whether applying journaled anything).
fn store_journal_mark(store: &Store) -> Result<(u64, u64), StoreError> {
    let dir = store.journal().dir();
    let last = crate::store::journal::segments(dir)?.last().copied();
    Ok(match last {
        Some(number) => {
            let path = dir.join(format!("{number:016}"));
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            (number, len)
        }
        None => (0, 0),
    })
}

/// How far each peer has applied our journal, and why some are away.
#[derive(Clone, Debug, Default)]
pub struct PeersApplied {
    pub applied: Vec<PeerApplied>,
    /// Peers not reachable now (their remembered progress is used), with why.
    pub away: Vec<(NodeId, String)>,
}

/// How far each peer of `spec` has applied our journal, for `prune`
/// ([`Store::prune`]): remembered in `state/pushed/<peer>` by push, refreshed
/// from the peer's ack when it is reachable.
pub fn applied_by_peers(store: &Store, spec: &Spec) -> Result<PeersApplied, SyncError> {
    let mut out = PeersApplied::default();
    for remote in remote::remotes(spec) {
        let (through, note) = push::applied_through(store, &remote)?;
        out.applied.push(PeerApplied {
            peer: remote.id(),
            through,
        });
        if let Some(why) = note {
            out.away.push((remote.id(), why));
        }
    }
    Ok(out)
}

/// One sync pass for `store` with the peers of `spec`.
pub fn sync_once(store: &Store, spec: &Spec) -> Result<SyncReport, SyncError> {
    Syncer::new(spec).pass(store)
}
