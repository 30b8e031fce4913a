//! `globofs status`: per peer, whether it is reachable, how much waits in each
//! direction, and when sync last completed; plus the open conflict copies.
//! A peer whose inbound journal has a bad complete line is shown as stuck
//! there (apply waits at it for good), with what waits behind it counted.
//! Cheap: journals are counted from the saved positions, conflicts from
//! `state/conflicts`. The one walk is the block count (blocks named by the
//! current tree that are not local): one version read per live path (like
//! `ls -R`) and one `stat` per distinct block; `--no-blocks` skips it. With
//! `copies` above 1 the same walk also counts each block's holders on every
//! reachable peer (one `stat` per block and peer, see [`super::copies`]).

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;

use crate::ids::NodeId;
use crate::layout::VPath;
use crate::spec::Spec;
use crate::store::journal::{self, Position};
use crate::store::{Store, StoreError};

use super::copies::{Census, Check, Shortfall};
use super::push::{parse_line, version_names};
use super::remote::remotes;
use super::state::{self, JOURNAL, PeerTimes};
use super::{SyncError, safe};

/// One peer's state as seen from here.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeerStatus {
    pub peer: String,
    pub path: String,
    pub reachable: bool,
    pub away: Option<String>,
    /// Lines of our journal not yet handled for this peer, less those push
    /// skips without reading a version (ignored paths, versions the peer
    /// pushed to us): an upper bound of the versions still to push.
    pub queued_outbound: u64,
    /// Lines the peer pushed that we have not applied yet (with those waiting
    /// behind a bad line, not counting the bad lines themselves).
    pub unapplied_inbound: u64,
    /// Set when applying from the peer is stopped at a bad complete line of
    /// its journal in our inbound spool: nothing after it is applied until the
    /// peer repairs it (`sync` reports an error every pass).
    pub inbound_stuck: Option<InboundStuck>,
    /// Unix seconds of the last completed push / apply.
    pub last_push: Option<u64>,
    pub last_apply: Option<u64>,
    /// The last full check (anti-entropy) with this peer, if one ran.
    pub full_check: Option<super::full_check::FullCheck>,
}

/// Where and why applying from a peer is stopped.
#[derive(Clone, Debug, serde::Serialize)]
pub struct InboundStuck {
    /// The journal segment file (disk path).
    pub segment: String,
    /// Byte offset of the bad line in it.
    pub offset: u64,
    pub reason: String,
}

/// The node's sync state.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Status {
    pub node: String,
    pub peers: Vec<PeerStatus>,
    /// Conflict copies made here that are still live (escaped volume paths).
    pub open_conflicts: Vec<String>,
    /// Distinct blocks the current versions name (None: not counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_blocks: Option<u64>,
    /// Of those, not in our `hashes/` (evicted, never pulled, or lost): a read
    /// pulls them from a peer; `verify` tells remote from missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_blocks: Option<u64>,
    /// `copies` above 1 (and blocks counted): what is under-replicated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copies: Option<CopiesStatus>,
}

/// Distinct blocks named by the current file versions, and how many of them
/// are not local.
pub fn count_local_blocks(store: &Store) -> Result<(u64, u64), StoreError> {
    let mut seen = std::collections::HashSet::new();
    let mut missing = 0;
    for (_, version) in store.walk(&VPath::root())? {
        if version.kind != crate::store::Kind::File {
            continue;
        }
        for (index, hash) in version.hashes.iter().enumerate() {
            if seen.insert(*hash)
                && store
                    .blocks()
                    .locate(hash, Some(version.block_len(index)))
                    .is_none()
            {
                missing += 1;
            }
        }
    }
    Ok((seen.len() as u64, missing))
}

/// Counts the journal lines after `from` that `wanted` accepts, reading past
/// bad complete lines (a reader stops at the first: returned too).
fn count_lines(
    dir: &std::path::Path,
    from: &Position,
    mut wanted: impl FnMut(&str) -> bool,
) -> Result<(u64, Option<journal::Stuck>), StoreError> {
    let mut position = from.clone();
    let mut count = 0;
    let mut first_stuck = None;
    let mut passed = std::collections::HashSet::new();
    loop {
        let batch = journal::read(dir, &position, 10_000)?;
        count += batch.lines.iter().filter(|line| wanted(line)).count() as u64;
        if let Some(stuck) = batch.stuck {
            if !passed.insert((stuck.segment, stuck.offset)) {
                // Met again (the journal was re-read from its start): done.
                return Ok((count, first_stuck));
            }
            // Count what waits behind it: go on from the next line.
            position = Position {
                nonce: batch.next.nonce.clone(),
                segment: stuck.segment,
                offset: stuck.past,
            };
            first_stuck.get_or_insert(stuck);
            continue;
        }
        if batch.lines.is_empty() {
            return Ok((count, first_stuck));
        }
        position = batch.next;
    }
}

/// Whether a line of our journal is still owed to `peer`, as far as push can
/// tell without reading the version file: not an ignored path, and not a
/// version `peer` pushed to us (one `lstat`). Unparsable lines count (push
/// reports them).
fn owed(store: &Store, peer: NodeId, line: &str) -> bool {
    let Ok((id, path)) = parse_line(line) else {
        return true;
    };
    if store.is_ignored(&path) {
        return false;
    }
    let names = version_names(&path, id);
    fs::symlink_metadata(safe::joined(&store.layout().inbound(peer), &names)).is_err()
}

pub fn status(store: &Store, spec: &Spec) -> Result<Status, SyncError> {
    status_with(store, spec, true)
}

/// The node's sync state; `count_blocks` adds the block counts (a tree walk).
pub fn status_with(store: &Store, spec: &Spec, count_blocks: bool) -> Result<Status, SyncError> {
    let layout = store.layout();
    let mut peers = Vec::new();
    let all = remotes(spec);
    for remote in &all {
        let peer = remote.id();
        let away = remote.check(true).err().map(|away| away.why);
        let push_from = Position::load(&state::push_position(layout, peer))?;
        let apply_from = Position::load(&state::apply_position(layout, peer))?;
        let times = PeerTimes::load(layout, peer)?;
        let journal_dir = layout.inbound(peer).join(JOURNAL);
        let (queued_outbound, _) = count_lines(store.journal().dir(), &push_from, |line| {
            owed(store, peer, line)
        })?;
        let (unapplied_inbound, stuck) = count_lines(&journal_dir, &apply_from, |_| true)?;
        peers.push(PeerStatus {
            peer: peer.to_string(),
            path: remote.peer().path.display().to_string(),
            reachable: away.is_none(),
            away,
            queued_outbound,
            unapplied_inbound,
            inbound_stuck: stuck.map(|stuck| InboundStuck {
                segment: journal_dir
                    .join(format!("{:016}", stuck.segment))
                    .display()
                    .to_string(),
                offset: stuck.offset,
                reason: stuck.reason,
            }),
            last_push: times.last_push,
            last_apply: times.last_apply,
            full_check: super::full_check::FullCheck::load(store, peer)?,
        });
    }
    Ok(Status {
        node: store.meta().node.to_string(),
        peers,
        open_conflicts: open_conflicts(store)?,
        current_blocks: None,
        missing_blocks: None,
        copies: None,
    }
    .with_blocks(store, count_blocks)?
    .with_copies(store, &all, spec.copies, count_blocks)?)
}

/// `copies` as `status` counts it: the current tree's blocks held by fewer
/// nodes than the spec asks, counted from our store and each reachable
/// peer's (a peer that is away counts for nothing).
#[derive(Clone, Debug, serde::Serialize)]
pub struct CopiesStatus {
    /// The spec's `copies`.
    pub wanted: u32,
    /// Distinct blocks of the current tree (paths matching `ignore` left out).
    pub blocks: u64,
    /// What falls short, in all and per top-level prefix.
    pub under_replicated: Shortfall,
    /// Peers whose copies were not counted, with why.
    pub not_counted: Vec<String>,
}

/// Conflict copies listed in `state/conflicts` that are still live.
fn open_conflicts(store: &Store) -> Result<Vec<String>, StoreError> {
    let file = state::conflicts_file(store.layout());
    let text = match fs::read_to_string(&file) {
        Ok(text) => text,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(StoreError::io(&file, err)),
    };
    let mut open = BTreeSet::new();
    for line in text.lines() {
        let Ok(path) = VPath::from_escaped(line) else {
            continue;
        };
        if path.is_root() {
            continue;
        }
        if let Some(version) = store.live(&path)? {
            if version.conflict_of.is_some() {
                // Volume paths, as everywhere else in the output.
                open.insert(format!("/{line}"));
            }
        }
    }
    Ok(open.into_iter().collect())
}

/// A per-peer gauge: name, help text, value.
type Metric = (&'static str, &'static str, fn(&PeerStatus) -> Option<u64>);

impl Status {
    fn with_copies(
        mut self,
        store: &Store,
        remotes: &[std::sync::Arc<super::Remote>],
        copies: u32,
        count: bool,
    ) -> Result<Status, StoreError> {
        if count && copies > 1 {
            let census = Census::take(store, remotes, &VPath::root(), Check::Present)?;
            self.copies = Some(CopiesStatus {
                wanted: copies,
                blocks: census.tree.blocks.len() as u64,
                under_replicated: census.shortfall(copies),
                not_counted: census.count.away_lines(),
            });
        }
        Ok(self)
    }

    fn with_blocks(mut self, store: &Store, count: bool) -> Result<Status, StoreError> {
        if count {
            let (current, missing) = count_local_blocks(store)?;
            self.current_blocks = Some(current);
            self.missing_blocks = Some(missing);
        }
        Ok(self)
    }

    /// Node-exporter textfile format.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let metrics: [Metric; 8] = [
            (
                "globofs_peer_reachable",
                "Whether the peer's store is reachable (1) or away (0).",
                |p| Some(u64::from(p.reachable)),
            ),
            (
                "globofs_peer_queued_outbound",
                "Journal lines not yet pushed to the peer (ignored paths not counted).",
                |p| Some(p.queued_outbound),
            ),
            (
                "globofs_peer_unapplied_inbound",
                "Lines the peer pushed that are not applied yet.",
                |p| Some(p.unapplied_inbound),
            ),
            (
                "globofs_peer_inbound_stuck",
                "Whether applying the peer's changes is stopped at a bad journal line (1) or not (0).",
                |p| Some(u64::from(p.inbound_stuck.is_some())),
            ),
            (
                "globofs_peer_last_push_timestamp_seconds",
                "When a push to the peer last completed.",
                |p| p.last_push,
            ),
            (
                "globofs_peer_last_apply_timestamp_seconds",
                "When applying the peer's changes last completed.",
                |p| p.last_apply,
            ),
            (
                "globofs_peer_full_check_timestamp_seconds",
                "When the last full check (anti-entropy) with the peer ran.",
                |p| p.full_check.as_ref().filter(|c| c.ran).map(|c| c.at),
            ),
            (
                "globofs_peer_full_check_repaired",
                "Versions the last full check took from the peer or offered to it.",
                |p| {
                    p.full_check
                        .as_ref()
                        .filter(|c| c.ran)
                        .map(|c| c.taken + c.offered)
                },
            ),
        ];
        for (name, help, value) in metrics {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
            for peer in &self.peers {
                if let Some(v) = value(peer) {
                    out.push_str(&format!(
                        "{name}{{node=\"{}\",peer=\"{}\"}} {v}\n",
                        self.node, peer.peer
                    ));
                }
            }
        }
        out.push_str(
            "# HELP globofs_open_conflicts Conflict copies made here that are still live.\n# TYPE globofs_open_conflicts gauge\n",
        );
        out.push_str(&format!(
            "globofs_open_conflicts{{node=\"{}\"}} {}\n",
            self.node,
            self.open_conflicts.len()
        ));
        if let Some(copies) = &self.copies {
            out.push_str(&format!(
                "# HELP globofs_under_replicated_blocks Blocks of the current tree held by fewer nodes than `copies`.\n# TYPE globofs_under_replicated_blocks gauge\nglobofs_under_replicated_blocks{{node=\"{}\"}} {}\n",
                self.node, copies.under_replicated.blocks
            ));
            out.push_str(&format!(
                "# HELP globofs_under_replicated_bytes Bytes of those blocks.\n# TYPE globofs_under_replicated_bytes gauge\nglobofs_under_replicated_bytes{{node=\"{}\"}} {}\n",
                self.node, copies.under_replicated.bytes
            ));
        }
        if let (Some(current), Some(missing)) = (self.current_blocks, self.missing_blocks) {
            out.push_str(&format!(
                "# HELP globofs_current_blocks Distinct blocks named by the current tree.\n# TYPE globofs_current_blocks gauge\nglobofs_current_blocks{{node=\"{}\"}} {current}\n",
                self.node
            ));
            out.push_str(&format!(
                "# HELP globofs_missing_blocks Blocks of the current tree that are not local (pulled from peers on read).\n# TYPE globofs_missing_blocks gauge\nglobofs_missing_blocks{{node=\"{}\"}} {missing}\n",
                self.node
            ));
        }
        out
    }

    /// Human-readable lines.
    pub fn to_text(&self) -> String {
        let mut out = format!("node {}\n", self.node);
        for peer in &self.peers {
            let when = |at: Option<u64>| at.map_or("never".to_string(), |at| format!("{at}"));
            out.push_str(&format!(
                "peer {} ({}): {}; {} queued out, {} unapplied in{}; last push {}, last apply {}\n",
                peer.peer,
                peer.path,
                match &peer.away {
                    None => "reachable".to_string(),
                    Some(why) => format!("away ({why})"),
                },
                peer.queued_outbound,
                peer.unapplied_inbound,
                match &peer.inbound_stuck {
                    None => String::new(),
                    Some(stuck) => format!(
                        " (STUCK at a bad line: {} offset {}: {})",
                        stuck.segment, stuck.offset, stuck.reason
                    ),
                },
                when(peer.last_push),
                when(peer.last_apply),
            ));
            if let Some(check) = peer.full_check.as_ref().filter(|c| !c.ran) {
                out.push_str(&format!(
                    "  full check: none yet (the first waits one sync.full_check interval from {})\n",
                    check.at
                ));
            }
            if let Some(check) = peer.full_check.as_ref().filter(|c| c.ran) {
                out.push_str(&format!(
                    "  full check {}: {} ({}); {} dirs, {} paths compared; took {}, offered {}{}\n",
                    check.at,
                    if check.complete {
                        "complete"
                    } else {
                        "cut short"
                    },
                    check.why,
                    check.dirs,
                    check.paths,
                    check.taken,
                    check.offered,
                    if check.walked {
                        "; the peer keeps no digests (older globofs): its tree was listed"
                    } else {
                        ""
                    }
                ));
            }
        }
        if let (Some(current), Some(missing)) = (self.current_blocks, self.missing_blocks) {
            out.push_str(&format!(
                "blocks: {current} in the current tree, {missing} not local (missing here; pulled from peers on read)\n"
            ));
        }
        if let Some(copies) = &self.copies {
            let short = &copies.under_replicated;
            out.push_str(&format!(
                "copies: {} wanted; {} of {} blocks ({} bytes) held by fewer nodes\n",
                copies.wanted, short.blocks, copies.blocks, short.bytes
            ));
            for prefix in &short.prefixes {
                out.push_str(&format!(
                    "  under-replicated {}: {} blocks, {} bytes\n",
                    prefix.prefix, prefix.blocks, prefix.bytes
                ));
            }
            for why in &copies.not_counted {
                out.push_str(&format!("  not counted: {why}\n"));
            }
        }
        out.push_str(&format!("open conflicts: {}\n", self.open_conflicts.len()));
        for path in &self.open_conflicts {
            out.push_str(&format!("  {path}\n"));
        }
        out
    }
}
