//! The spec file as written: serde and schemars types, key for key.
//!
//! Doc comments here are the JSON Schema's descriptions (what editors show).
//! Every struct denies unknown keys.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::{ByteSize, Span};

/// A GloboFS volume spec: one node's view of a volume shared with its peers.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "GloboFS volume spec")]
pub struct RawSpec {
    /// The volume directory on this node: it holds the `self` symlink, this node's
    /// store (a directory named after the node id) and one symlink per peer.
    /// An absolute, normalised path.
    pub volume: PathBuf,

    /// This node.
    pub node: RawNode,

    /// Size of the blocks new files are cut into: a power of two from 4KiB to 64MiB.
    /// Integer bytes or with a binary unit (4M = 4MiB = 4194304). Every version
    /// records the block size it was cut with, so this may change at any time.
    /// Default 1MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "ByteSize")]
    pub block_size: Option<ByteSize>,

    /// How new blocks are stored on this node's disk: `none` (default) or `zstd`.
    /// Hashes are always of the uncompressed bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Compression")]
    pub compression: Option<Compression>,

    /// Check every block against its SHA-256 when it is read (the mount,
    /// `get`, serving peers): damaged bytes are an error (EIO), never
    /// handed out. Default `true`; `false` trusts a local raw block of the
    /// right length on random-access reads (faster on slow CPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_reads: Option<bool>,

    /// Other nodes' stores, as this node sees them (local paths, NFS, sshfs...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<RawPeer>,

    /// Where `globofs mount` mounts the volume when no mount point is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "RawMount")]
    pub mount: Option<RawMount>,

    /// How often and how patiently this node syncs with its peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "RawSync")]
    pub sync: Option<RawSync>,

    /// Which old versions prune keeps (the mount's upkeep and `globofs
    /// prune`). Without a rule: `keep_last: 10`, `keep_within: 7d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "RawRetention")]
    pub retention: Option<RawRetention>,

    /// Glob patterns of paths kept local: never pushed to peers, never applied
    /// from them. A pattern starting with `/` is anchored at the volume root and
    /// matched against the path with its leading `/` and against each of its
    /// parent directories (`/secret` keeps `/secret` and everything below it;
    /// in such a pattern `*` does not cross `/`, `**` does). Any other pattern
    /// matches any name in the path or the whole path relative to the root, `*`
    /// crossing `/` (`*.swp`, `**/.DS_Store`, `build/**`). `X/**` also matches
    /// the directory `X` itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,

    /// Local block cache limits: blocks that enough other nodes hold may be evicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "RawCache")]
    pub cache: Option<RawCache>,

    /// How many nodes (this one included) must hold every block of the
    /// current tree. Each sync pass copies blocks held by fewer nodes into
    /// reachable peers' inbound spools until that many hold them; `drop` and
    /// cache eviction never take a block below it, and `status` shows what
    /// is short. Copies are counted from what the peers' stores show
    /// (`hashes/`, inbound `%blocks`). At most one more than the number of
    /// peers. Default 1: no copies are made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    #[schemars(with = "u32")]
    pub copies: Option<u32>,
}

/// This node's identity.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    /// The node's unique id: a lowercase hyphenated UUID, e.g.
    /// 68d25a11-a34a-4bbb-a29e-c9bd06ff8c53. Its store is the volume's directory of
    /// that name.
    #[schemars(extend("format" = "uuid"))]
    pub id: String,

    /// Optional major: an integer from 1 to 999999 appended to the nanoseconds of
    /// this node's version ids (1348096782.553456124 with major 100 becomes
    /// 1348096782.553456124100), so two nodes never pick the same id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 999999))]
    #[schemars(with = "u32")]
    pub major: Option<u32>,
}

/// Block storage on this node's disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Blocks are stored as they are.
    #[default]
    None,
    /// Blocks are stored as zstd frames (file name ends in `.zst`).
    Zstd,
}

/// One peer node.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    /// The peer's node id (a lowercase hyphenated UUID, not this node's).
    #[schemars(extend("format" = "uuid"))]
    pub id: String,

    /// The peer's store as this node sees it: an absolute, normalised path,
    /// conventionally `<peer volume>/<peer id>` on an NFS or sshfs mount.
    pub path: PathBuf,

    /// Push blocks along with versions to this peer (eager replication), so the
    /// peer can read our files even when we are gone. Default false: blocks are
    /// pulled lazily by readers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "bool")]
    pub replicate: Option<bool>,

    /// The local login this peer writes into our store as (over sshfs, or the
    /// uid an NFS export squashes it to): a user name or a numeric uid.
    /// `globofs reconcile` gives this node's `spool/inbound/<peer id>/` to it
    /// (owner, and the user's primary group), the only place of our store the
    /// peer needs to write. A user name must exist on this machine. Default:
    /// the inbound directory stays owned by whoever runs reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "PeerOwner")]
    pub owner: Option<PeerOwner>,
}

/// A local login: a user name or a numeric uid.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum PeerOwner {
    /// A numeric uid (need not have a passwd entry, e.g. an NFS `anonuid`).
    Uid(u32),
    /// A user name from the passwd database.
    Name(String),
}

impl std::fmt::Display for PeerOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerOwner::Uid(uid) => write!(f, "uid {uid}"),
            PeerOwner::Name(name) => write!(f, "user {name:?}"),
        }
    }
}

/// Mount settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMount {
    /// Default mount point of `globofs mount`: an absolute, normalised path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "PathBuf")]
    pub path: Option<PathBuf>,

    /// Whose files the mount shows them as. `keep` (default): the owner and
    /// group each version records, the same numeric ids on every node, as NFS
    /// does (give the nodes' users the same uids). `mount-user`: every file
    /// shown as the mounting user's, for a single-user machine whose uid
    /// differs from the other nodes'; chown is then refused, and new files
    /// still record the creating process's ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Ownership")]
    pub ownership: Option<Ownership>,

    /// The name of the read-only history view at the mount's root (the
    /// volume as it was at any time, and every kept version of each file).
    /// Default `.globofs`; `""` turns the view off. A real entry of that name
    /// at the volume root is hidden in the mount while the view has it
    /// (choose another name, or `""`, to see it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_dir: Option<String>,
}

/// How a mount shows owners (`mount.ownership`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Ownership {
    /// The recorded uid and gid of each version.
    #[default]
    Keep,
    /// Every file as the mounting user's and group's.
    MountUser,
}

/// Sync settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    /// How often a running mount syncs with its peers. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Span")]
    pub interval: Option<Span>,

    /// How long one operation on a peer's store may take before the peer is
    /// considered away. Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Span")]
    pub timeout: Option<Span>,

    /// How often a sync pass also compares this node's whole version set with
    /// each peer's (anti-entropy: digests per directory, descending only
    /// where they differ), repairing whatever a crash, a torn append or a
    /// damaged spool left out. It also runs after damage is detected and on
    /// `globofs sync --full`. `0s` turns the scheduled check off. Default 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Span")]
    pub full_check: Option<Span>,
}

/// Which versions `prune` keeps (the current version of a path is always kept).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// Keep the newest N versions of each path (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    #[schemars(with = "u32")]
    pub keep_last: Option<u32>,

    /// Keep every version younger than this (e.g. `30d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Span")]
    pub keep_within: Option<Span>,

    /// Keep every version for ever: prune removes nothing (not with
    /// `keep_last` or `keep_within`). Without any of the three, the default
    /// rule is `keep_last: 10` and `keep_within: 7d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_all: Option<bool>,

    /// Coalescing: a new version of a file written on this node drops the
    /// one it replaces when that one is younger than this and no peer was
    /// sent it yet (default `1m`; `0s`: keep every version; off with
    /// `keep_all`). A file rewritten many times a minute keeps one version
    /// a minute, not one per write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Span")]
    pub coalesce_within: Option<Span>,

    /// How often a running mount prunes by this rule and then runs gc
    /// (default `1h`, first one that long after the mount starts; `0s`: never,
    /// only `globofs prune` and `globofs gc` by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Span")]
    pub every: Option<Span>,
}

/// Local block cache.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Evict least-recently-read blocks beyond this size, when enough peers hold them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "ByteSize")]
    pub max_size: Option<ByteSize>,

    /// How many other reachable nodes must hold a block before it may be evicted
    /// here (at least 1, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    #[schemars(with = "u32")]
    pub min_copies: Option<u32>,
}
