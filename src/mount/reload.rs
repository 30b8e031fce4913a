//! Re-reading the spec while mounted (SIGHUP): what may change under a live
//! mount, what needs a remount, and applying the first kind.
//!
//! Live: the peers (added, removed, a new path, `replicate`, `owner`), the
//! `sync` keys (`interval`, `timeout`, `full_check`), `cache`, `ignore` and
//! `retention` (the rule and `every`, for the mount's upkeep and the next
//! `globofs prune`). The
//! volume is reconciled for the new spec first (links and spools of added
//! peers), then the store's sharing (which peers' outbound spools get new
//! versions, which paths stay local), the sync loop and the block fetcher
//! move to the new spec.
//!
//! Needs a remount: the volume directory, the node's id and major, the block
//! size, compression, `verify_reads`, `mount.history_dir` and the mount point (when it came from `mount.path`). A new
//! spec changing any of them is refused whole, with a log line naming each
//! key, and the mount goes on with the spec it has; so is a spec that does
//! not load or reconcile.

use std::sync::{Arc, Mutex, PoisonError};

use crate::ids::NodeId;
use crate::spec::Spec;
use crate::store::{BlockFetcher, Sharing, Store, StoreError};
use crate::sync::{PeerFetcher, Syncer};

use super::sync_loop::{self, Plan};

/// The block fetcher the mounted store asks, pointing at the peers of the
/// spec in force; a reload swaps what is behind it.
pub(super) struct LiveFetcher {
    current: Mutex<Arc<PeerFetcher>>,
}

impl LiveFetcher {
    pub(super) fn new(fetcher: PeerFetcher) -> LiveFetcher {
        LiveFetcher {
            current: Mutex::new(Arc::new(fetcher)),
        }
    }

    fn get(&self) -> Arc<PeerFetcher> {
        Arc::clone(&self.current.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn set(&self, fetcher: PeerFetcher) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(fetcher);
    }
}

impl BlockFetcher for LiveFetcher {
    fn fetch(
        &self,
        hash: &crate::ids::BlockHash,
        len: usize,
        origin: NodeId,
    ) -> Result<Vec<u8>, StoreError> {
        self.get().fetch(hash, len, origin)
    }

    fn held_remotely(&self, hash: &crate::ids::BlockHash, len: usize) -> bool {
        self.get().held_remotely(hash, len)
    }
}

/// The sync loop's plan for `spec`: its syncer (the peers, `sync.timeout`,
/// `sync.full_check`) and settings.
pub(super) fn plan_for(spec: &Spec, syncer: Arc<Syncer>) -> Plan {
    Plan {
        syncer,
        settings: sync_loop::Settings {
            interval: spec.sync_interval,
            cache: spec.cache_max_size.map(|max| {
                (
                    max,
                    crate::sync::copies::others_needed(spec.min_copies, spec.copies),
                )
            }),
            syncing: !spec.peers.is_empty(),
            upkeep_every: spec.maintain_every,
            spec: Arc::new(spec.clone()),
        },
    }
}

/// The keys whose change needs a remount, each with its old and new value,
/// as a log line shows them. `mountpoint_from_spec`: the mount point was
/// `mount.path` (a mount point given on the command line stays whatever the
/// spec says).
pub(super) fn needs_remount(old: &Spec, new: &Spec, mountpoint_from_spec: bool) -> Vec<String> {
    let mut refused = Vec::new();
    let mut differ = |key: &str, old: String, new: String| {
        if old != new {
            refused.push(format!("{key} ({old} -> {new})"));
        }
    };
    differ(
        "volume",
        old.volume.display().to_string(),
        new.volume.display().to_string(),
    );
    differ("node.id", old.node.to_string(), new.node.to_string());
    differ("node.major", optional(old.major), optional(new.major));
    differ(
        "block_size",
        old.block_size.to_string(),
        new.block_size.to_string(),
    );
    differ(
        "compression",
        format!("{:?}", old.compression).to_lowercase(),
        format!("{:?}", new.compression).to_lowercase(),
    );
    differ(
        "verify_reads",
        old.verify_reads.to_string(),
        new.verify_reads.to_string(),
    );
    differ(
        "mount.history_dir",
        format!("{:?}", old.history_dir),
        format!("{:?}", new.history_dir),
    );
    if mountpoint_from_spec {
        differ(
            "mount.path",
            optional(old.mount_path.as_ref().map(|p| p.display())),
            optional(new.mount_path.as_ref().map(|p| p.display())),
        );
    }
    refused
}

fn optional(value: Option<impl std::fmt::Display>) -> String {
    value.map_or_else(|| "unset".to_string(), |value| value.to_string())
}

/// What a reload changes that applies live, as words for the log line.
pub(super) fn live_changes(old: &Spec, new: &Spec) -> Vec<String> {
    let mut changes = Vec::new();
    for peer in &new.peers {
        match old.peer(peer.id) {
            None => changes.push(format!("peer {} added ({})", peer.id, peer.path.display())),
            Some(before) if before != peer => changes.push(format!("peer {} changed", peer.id)),
            Some(_) => {}
        }
    }
    for peer in &old.peers {
        if new.peer(peer.id).is_none() {
            changes.push(format!("peer {} removed", peer.id));
        }
    }
    let mut differ = |key: &str, old: String, new: String| {
        if old != new {
            changes.push(format!("{key} {old} -> {new}"));
        }
    };
    differ(
        "sync.interval",
        format!("{:?}", old.sync_interval),
        format!("{:?}", new.sync_interval),
    );
    differ(
        "sync.timeout",
        format!("{:?}", old.timeout),
        format!("{:?}", new.timeout),
    );
    differ(
        "sync.full_check",
        optional(old.full_check.map(|d| format!("{d:?}"))),
        optional(new.full_check.map(|d| format!("{d:?}"))),
    );
    differ(
        "cache.max_size",
        optional(old.cache_max_size),
        optional(new.cache_max_size),
    );
    differ(
        "cache.min_copies",
        old.min_copies.to_string(),
        new.min_copies.to_string(),
    );
    differ("copies", old.copies.to_string(), new.copies.to_string());
    differ(
        "ignore",
        format!("{:?}", old.ignore),
        format!("{:?}", new.ignore),
    );
    if old.retention != new.retention || old.maintain_every != new.maintain_every {
        changes.push("retention (the upkeep's rule and schedule)".to_string());
    }
    changes
}

/// The mount's side of a reload: the spec in force and what follows it.
pub(super) struct Reloader {
    pub current: Spec,
    pub mountpoint_from_spec: bool,
    /// The mounted store: its peers and `ignore` rules follow the spec.
    pub store: Arc<Store>,
    pub fetcher: Arc<LiveFetcher>,
    pub plan: Arc<Mutex<Arc<Plan>>>,
}

impl Reloader {
    /// Re-reads the spec file and applies it, or logs why not and keeps the
    /// spec in force. Never fails the mount.
    pub(super) fn reload(&mut self) {
        let path = self.current.source.clone();
        tracing::info!(spec = %path.display(), "SIGHUP: re-reading the spec");
        let new = match Spec::load(&path) {
            Ok(new) => new,
            Err(err) => {
                tracing::error!(
                    spec = %path.display(),
                    "reload refused, the spec does not load; still running on the spec read before:\n{err}"
                );
                return;
            }
        };
        let refused = needs_remount(&self.current, &new, self.mountpoint_from_spec);
        if !refused.is_empty() {
            tracing::error!(
                spec = %path.display(),
                "reload refused: {} changed, which needs a remount (restart the mount); still running on the spec read before",
                refused.join(", ")
            );
            return;
        }
        let changes = live_changes(&self.current, &new);
        if changes.is_empty() {
            tracing::info!(spec = %path.display(), "reload: nothing changed");
            return;
        }
        match crate::reconcile::reconcile(&new, false) {
            Ok(outcome) => {
                for warning in &outcome.warnings {
                    tracing::warn!("{warning}");
                }
            }
            Err(err) => {
                tracing::error!(
                    spec = %path.display(),
                    "reload refused, reconciling the volume for the new spec failed: {err}; still running on the spec read before"
                );
                return;
            }
        }
        let sharing = match Sharing::from_spec(&new) {
            Ok(sharing) => sharing,
            Err(err) => {
                tracing::error!(
                    spec = %path.display(),
                    "reload refused: {err}; still running on the spec read before"
                );
                return;
            }
        };
        // New versions go to the new peers, and new `ignore` rules keep
        // paths local, from the next commit on.
        self.store.set_sharing(sharing);
        let syncer = Arc::new(Syncer::new(&new));
        self.fetcher.set(syncer.fetcher());
        *self.plan.lock().unwrap_or_else(PoisonError::into_inner) =
            Arc::new(plan_for(&new, syncer));
        tracing::info!(spec = %path.display(), "reloaded: {}", changes.join(", "));
        self.current = new;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const NODE: &str = "a1a1a1a1-0000-4000-8000-0000000000a1";
    const PEER: &str = "b1b1b1b1-0000-4000-8000-0000000000b1";

    fn spec(dir: &Path, name: &str, extra: &str) -> Spec {
        let file = dir.join(name);
        std::fs::write(
            &file,
            format!("volume: /srv/v\nnode:\n  id: {NODE}\nmount:\n  path: /mnt/v\n{extra}"),
        )
        .unwrap();
        Spec::load(&file).unwrap()
    }

    #[test]
    fn what_needs_a_remount_is_named_with_old_and_new_values() {
        let dir = tempfile::tempdir().unwrap();
        let old = spec(dir.path(), "old.yaml", "block_size: 4KiB\n");
        let same = spec(
            dir.path(),
            "same.yaml",
            "block_size: 4KiB\nsync:\n  interval: 5s\n",
        );
        assert!(needs_remount(&old, &same, true).is_empty());
        let new = spec(
            dir.path(),
            "new.yaml",
            "block_size: 8KiB\ncompression: zstd\nignore:\n  - \"*.tmp\"\n",
        );
        let refused = needs_remount(&old, &new, true);
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert_eq!(refused[0], "block_size (4096 -> 8192)");
        assert_eq!(refused[1], "compression (none -> zstd)");
        // New ignore rules apply live.
        let changes = live_changes(&old, &new);
        assert!(
            changes.iter().any(|c| c.starts_with("ignore ")),
            "{changes:?}"
        );

        let moved = std::fs::read_to_string(dir.path().join("old.yaml"))
            .unwrap()
            .replace("/mnt/v", "/mnt/w");
        std::fs::write(dir.path().join("moved.yaml"), moved).unwrap();
        let moved = Spec::load(&dir.path().join("moved.yaml")).unwrap();
        assert_eq!(
            needs_remount(&old, &moved, true),
            ["mount.path (/mnt/v -> /mnt/w)"]
        );
        // A mount point from the command line stays whatever the spec says.
        assert!(needs_remount(&old, &moved, false).is_empty());
    }

    #[test]
    fn live_changes_name_peers_and_settings() {
        let dir = tempfile::tempdir().unwrap();
        let old = spec(dir.path(), "old.yaml", "");
        let new = spec(
            dir.path(),
            "new.yaml",
            &format!(
                "peers:\n  - id: {PEER}\n    path: /p\nsync:\n  interval: 5s\nretention:\n  keep_last: 3\n"
            ),
        );
        let changes = live_changes(&old, &new);
        assert_eq!(changes[0], format!("peer {PEER} added (/p)"));
        assert_eq!(changes[1], "sync.interval 30s -> 5s");
        assert!(changes[2].starts_with("retention"), "{changes:?}");
        assert_eq!(live_changes(&new, &old)[0], format!("peer {PEER} removed"));
        assert!(live_changes(&old, &old).is_empty());
        assert!(plan_for(&new, Arc::new(Syncer::new(&new))).settings.syncing);
        assert!(!plan_for(&old, Arc::new(Syncer::new(&old))).settings.syncing);
    }
}
