//! The mount's own upkeep of its store: every `retention.every` (default an
//! hour, the first that long after the mount started) it prunes by the
//! spec's retention rule, waiting for peers as `globofs prune` does, then
//! runs gc, so a store that nobody tends by hand does not grow without bound.
//! Both hold the store's gc lock exclusively while they run (writers wait:
//! they never race), and both are the same code as the commands.

use std::time::{Duration, Instant};

use crate::spec::Spec;
use crate::store::Store;

/// When the next upkeep is due, as the sync loop keeps it.
pub(super) struct Schedule {
    next: Option<Instant>,
}

impl Schedule {
    /// The first upkeep `every` after now (`None`: never).
    pub(super) fn starting(every: Option<Duration>) -> Schedule {
        Schedule {
            next: every.map(|every| Instant::now() + every),
        }
    }

    /// Whether upkeep is due now.
    pub(super) fn due(&self) -> bool {
        self.next.is_some_and(|next| Instant::now() >= next)
    }

    /// After an upkeep (or a new spec): the next one `every` from now.
    pub(super) fn again(&mut self, every: Option<Duration>) {
        self.next = every.map(|every| Instant::now() + every);
    }
}

/// Prunes `store` by `spec`'s retention, then collects garbage; logs what
/// each did (a failure is logged and tried again at the next upkeep).
pub(super) fn upkeep(store: &Store, spec: &Spec) {
    let started = Instant::now();
    let pruned = if spec.retention.keeps_all() {
        None
    } else {
        match crate::sync::applied_by_peers(store, spec)
            .map_err(|err| err.to_string())
            .and_then(|peers| {
                store
                    .prune(&spec.retention, &peers.applied)
                    .map_err(|err| err.to_string())
            }) {
            Ok(report) => Some(report),
            Err(err) => {
                tracing::warn!(error = %err, "automatic prune failed");
                None
            }
        }
    };
    match store.gc() {
        Ok(gc) => tracing::info!(
            versions_removed = pruned.as_ref().map_or(0, |p| p.versions_removed),
            versions_waiting = pruned.as_ref().map_or(0, |p| p.versions_waiting),
            blocks_deleted = gc.blocks_deleted,
            bytes_freed = gc.bytes_freed,
            millis = started.elapsed().as_millis() as u64,
            "retention upkeep (prune + gc)"
        ),
        Err(err) => tracing::warn!(error = %err, "automatic gc failed"),
    }
}
