//! The volume spec: the YAML file a user writes, its JSON Schema, and the resolved
//! settings the rest of globofs accepts.
//!
//! [`RawSpec`] mirrors the file key for key (serde + schemars; its doc comments
//! become the schema's descriptions). [`validate`] checks a file against the
//! generated schema and then against the rules a schema cannot express, and
//! reports every problem with its line, column and key. [`Spec`] is the checked,
//! resolved form: nothing downstream sees a raw value.

mod positions;
mod raw;
pub mod units;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use positions::{Position, Segment};
pub use raw::*;
pub use validate::{Problem, Report, schema_json, validate_file, validate_text};

use crate::ids::NodeId;

/// Smallest block size a spec may choose.
pub const MIN_BLOCK_SIZE: u64 = 4 << 10;
/// Largest block size a spec may choose.
pub const MAX_BLOCK_SIZE: u64 = 64 << 20;
/// Block size when the spec names none.
pub const DEFAULT_BLOCK_SIZE: u64 = 1 << 20;
/// Largest node major (appended to the nanoseconds of version ids).
pub const MAX_MAJOR: u32 = 999_999;
/// Largest spec file `validate` reads.
pub const MAX_SPEC_BYTES: u64 = 1 << 20;

/// A peer as the spec declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub id: NodeId,
    /// The peer's store as this node sees it (a local path, NFS, sshfs...).
    pub path: PathBuf,
    /// Push blocks together with versions to this peer.
    pub replicate: bool,
    /// The local login that owns our `spool/inbound/<id>/` (`peers[].owner`).
    pub owner: Option<PeerOwner>,
}

/// Retention rule for `prune`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionRule {
    pub keep_last: Option<u32>,
    pub keep_within: Option<Duration>,
}

/// `retention.keep_last` when the spec gives no rule.
pub const DEFAULT_KEEP_LAST: u32 = 10;
/// `retention.keep_within` when the spec gives no rule.
pub const DEFAULT_KEEP_WITHIN: Duration = Duration::from_secs(7 * 24 * 3600);
/// `retention.coalesce_within` when the spec does not say.
pub const DEFAULT_COALESCE_WITHIN: Duration = Duration::from_secs(60);
/// `retention.every` when the spec does not say.
pub const DEFAULT_MAINTAIN_EVERY: Duration = Duration::from_secs(3600);

impl RetentionRule {
    /// The rule a spec's `retention` says: its keys, `keep_all` for none
    /// (every version kept), or the default rule when it names neither.
    fn resolve(raw: &raw::RawRetention) -> RetentionRule {
        if raw.keep_all == Some(true) {
            return RetentionRule::default();
        }
        if raw.keep_last.is_none() && raw.keep_within.is_none() {
            return RetentionRule {
                keep_last: Some(DEFAULT_KEEP_LAST),
                keep_within: Some(DEFAULT_KEEP_WITHIN),
            };
        }
        RetentionRule {
            keep_last: raw.keep_last,
            keep_within: raw.keep_within.map(|span| span.0),
        }
    }

    /// Whether the rule keeps every version (prune has nothing to do).
    pub fn keeps_all(&self) -> bool {
        self.keep_last.is_none() && self.keep_within.is_none()
    }
}

/// The history view's name unless `mount.history_dir` says.
pub const DEFAULT_HISTORY_DIR: &str = ".globofs";

/// The checked, resolved volume spec.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The file it was read from.
    pub source: PathBuf,
    pub volume: PathBuf,
    pub node: NodeId,
    pub major: Option<u32>,
    pub block_size: u32,
    pub compression: Compression,
    /// `verify_reads`: every block read is checked against its hash.
    pub verify_reads: bool,
    pub peers: Vec<Peer>,
    pub mount_path: Option<PathBuf>,
    /// How the mount shows owners (`mount.ownership`).
    pub ownership: Ownership,
    /// The history view's name at the mount root (`mount.history_dir`);
    /// empty: no view.
    pub history_dir: String,
    pub sync_interval: Duration,
    pub timeout: Duration,
    /// How often a pass runs a full check with each peer (`None`: only on
    /// demand and after damage).
    pub full_check: Option<Duration>,
    pub retention: RetentionRule,
    /// How young a replaced, unpushed version of this node must be to be
    /// dropped by the commit replacing it (`retention.coalesce_within`;
    /// `None`: never, with `keep_all` or `0s`).
    pub coalesce_within: Option<Duration>,
    /// How often a running mount prunes and collects garbage
    /// (`retention.every`; `None`: never).
    pub maintain_every: Option<Duration>,
    pub ignore: Vec<String>,
    pub cache_max_size: Option<u64>,
    pub min_copies: u32,
    /// `copies`: how many nodes must hold every block of the current tree
    /// (1: this node alone, nothing copied for it).
    pub copies: u32,
}

/// A spec file that failed to load: every problem found in it.
#[derive(Debug, thiserror::Error)]
#[error("{}", render_problems(.0))]
pub struct SpecError(pub Box<Report>);

fn render_problems(report: &Report) -> String {
    let lines: Vec<String> = report.problems.iter().map(Problem::to_string).collect();
    lines.join("\n")
}

impl Spec {
    /// Reads, validates and resolves the spec at `path`.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let report = validate_file(path);
        match report.spec.clone() {
            Some(raw) if report.problems.is_empty() => Ok(Spec::resolve(path, raw)),
            _ => Err(SpecError(Box::new(report))),
        }
    }

    /// Turns a raw spec that passed validation into settings.
    fn resolve(source: &Path, raw: RawSpec) -> Spec {
        let sync = raw.sync.unwrap_or_default();
        let retention = raw.retention.unwrap_or_default();
        let cache = raw.cache.unwrap_or_default();
        Spec {
            source: source.to_path_buf(),
            volume: raw.volume,
            node: raw.node.id.parse().unwrap_or(NodeId::NIL),
            major: raw.node.major,
            block_size: raw
                .block_size
                .map(|size| size.0)
                .unwrap_or(DEFAULT_BLOCK_SIZE) as u32,
            compression: raw.compression.unwrap_or_default(),
            verify_reads: raw.verify_reads.unwrap_or(true),
            peers: raw
                .peers
                .into_iter()
                .map(|peer| Peer {
                    id: peer.id.parse().unwrap_or(NodeId::NIL),
                    path: peer.path,
                    replicate: peer.replicate.unwrap_or(false),
                    owner: peer.owner,
                })
                .collect(),
            ownership: raw
                .mount
                .as_ref()
                .and_then(|mount| mount.ownership)
                .unwrap_or_default(),
            history_dir: raw
                .mount
                .as_ref()
                .and_then(|mount| mount.history_dir.clone())
                .unwrap_or_else(|| DEFAULT_HISTORY_DIR.to_string()),
            mount_path: raw.mount.and_then(|mount| mount.path),
            sync_interval: sync
                .interval
                .map(|span| span.0)
                .unwrap_or(Duration::from_secs(30)),
            timeout: sync
                .timeout
                .map(|span| span.0)
                .unwrap_or(Duration::from_secs(10)),
            full_check: match sync.full_check {
                Some(span) if span.0.is_zero() => None,
                Some(span) => Some(span.0),
                None => Some(Duration::from_secs(3600)),
            },
            retention: RetentionRule::resolve(&retention),
            coalesce_within: match (retention.keep_all, retention.coalesce_within) {
                (Some(true), _) => None,
                (_, Some(span)) if span.0.is_zero() => None,
                (_, Some(span)) => Some(span.0),
                (_, None) => Some(DEFAULT_COALESCE_WITHIN),
            },
            maintain_every: match retention.every {
                Some(span) if span.0.is_zero() => None,
                Some(span) => Some(span.0),
                None => Some(DEFAULT_MAINTAIN_EVERY),
            },
            ignore: raw.ignore,
            cache_max_size: cache.max_size.map(|size| size.0),
            min_copies: cache.min_copies.unwrap_or(1),
            copies: raw.copies.unwrap_or(1),
        }
    }

    /// The spec's peer with `id`, if declared.
    pub fn peer(&self, id: NodeId) -> Option<&Peer> {
        self.peers.iter().find(|peer| peer.id == id)
    }
}
