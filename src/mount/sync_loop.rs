//! The sync loop while mounted: a pass every `sync.interval` and shortly
//! after local changes (the journal follower nudges it), then, with
//! `cache.max_size`, shrinking the local blocks; every `retention.every`, the
//! store's upkeep ([`super::maintain`]). It works from a [`Plan`]
//! that a reload of the spec replaces whole (see [`super::reload`]); a plan
//! without peers makes no passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::POLL;
use super::maintain;
use crate::store::Store;
use crate::sync::Syncer;

/// Wait after a local change before syncing, so a burst of writes goes in one pass.
const DEBOUNCE: Duration = Duration::from_secs(1);

/// Wait after a new plan (a reload) before its first pass, so a burst of
/// reloads makes one pass.
const SETTLE: Duration = Duration::from_secs(1);

/// What the spec says about the loop.
pub(super) struct Settings {
    /// `sync.interval`.
    pub interval: Duration,
    /// `cache.max_size` and how many other nodes must hold a block before it
    /// is evicted (`cache.min_copies`, or `copies` when that is more), when
    /// the cache is bounded.
    pub cache: Option<(u64, u32)>,
    /// Whether there are peers to sync with at all.
    pub syncing: bool,
    /// `retention.every`: how often to prune and collect garbage.
    pub upkeep_every: Option<Duration>,
    /// The spec in force (its retention rule and peers, for the upkeep).
    pub spec: Arc<crate::spec::Spec>,
}

/// What the loop works from: the syncer of the spec in force and its settings.
pub(super) struct Plan {
    pub syncer: Arc<Syncer>,
    pub settings: Settings,
}

/// The plan in force, shared with the reload.
pub(super) type SharedPlan = Arc<Mutex<Arc<Plan>>>;

fn current(plan: &SharedPlan) -> Arc<Plan> {
    Arc::clone(&plan.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Starts the `sync` thread; it ends soon after `stop` is set.
pub(super) fn spawn(
    plan: SharedPlan,
    store: Arc<Store>,
    kicked: mpsc::Receiver<()>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sync".into())
        .spawn(move || run(&plan, &store, &kicked, &stop))
}

/// Runs a sync pass every `interval`, and shortly after local changes; with
/// `cache` (`max_size`, `min_copies`), shrinks the local blocks after a pass,
/// at most every [`crate::sync::evict::CACHE_CHECK_EVERY`]. A new plan gets
/// its first pass [`SETTLE`] after it is seen.
fn run(plan: &SharedPlan, store: &Store, kicked: &mpsc::Receiver<()>, stop: &AtomicBool) {
    let mut next = Instant::now();
    let mut cache_checked: Option<Instant> = None;
    let mut in_force = current(plan);
    let mut upkeep = maintain::Schedule::starting(in_force.settings.upkeep_every);
    while !stop.load(Ordering::Relaxed) {
        let latest = current(plan);
        if !Arc::ptr_eq(&latest, &in_force) {
            in_force = latest;
            next = Instant::now() + SETTLE;
            upkeep.again(in_force.settings.upkeep_every);
        }
        let syncer = in_force.syncer.as_ref();
        let settings = &in_force.settings;
        if upkeep.due() {
            maintain::upkeep(store, &settings.spec);
            upkeep.again(settings.upkeep_every);
        }
        let now = Instant::now();
        if !settings.syncing {
            // No peers (yet): nothing to pass; local changes are no reason either.
            next = now + settings.interval;
        }
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
            if let Some((max_size, min_copies)) = settings.cache {
                let due = cache_checked
                    .is_none_or(|at| at.elapsed() >= crate::sync::evict::CACHE_CHECK_EVERY);
                if due && !stop.load(Ordering::Relaxed) {
                    cache_checked = Some(Instant::now());
                    shrink_cache(syncer, store, max_size, min_copies);
                }
            }
            next = Instant::now() + settings.interval;
            // Changes the pass itself made are not a reason for another pass.
            while kicked.try_recv().is_ok() {}
            continue;
        }
        let wait = (next - now).min(POLL);
        match kicked.recv_timeout(wait) {
            Ok(()) => {
                next = next.min(Instant::now() + DEBOUNCE);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
}

/// Evicts local blocks down to `max_size`, keeping `min_copies` elsewhere.
fn shrink_cache(syncer: &Syncer, store: &Store, max_size: u64, min_copies: u32) {
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
