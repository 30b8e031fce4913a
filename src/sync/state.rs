//! What sync remembers in our own store, and the names it adds to the layout.
//!
//! In our store:
//! - `state/push/<peer>`: our position in our own `journal/` for pushes to that
//!   peer (a journal position: `<nonce> <segment> <offset>`).
//! - `state/apply/<peer>`: our position in `spool/inbound/<peer>/%journal/`.
//! - `ack/<peer>`: the same position, published for that peer to read (it trims
//!   its journal segments below the acked segment).
//! - `state/sync/<peer>`: `key value` lines: `last-push`, `last-apply` (Unix
//!   seconds of the last pass that completed that direction).
//! - `state/conflicts`: one escaped volume path a line, every conflict copy made
//!   here (status checks which are still live).
//! - `state/locks/push-<peer>` (the journal lock for our journal in that peer's
//!   spool), `state/locks/push-<peer>.run` and `state/locks/apply-<peer>` (one
//!   process of this node pushes to / applies from a peer at a time).
//!
//! In a peer's store, under `spool/inbound/<our id>/` (only we write there):
//! `%nonce` (our store nonce), `%journal/` (our journal of what we pushed),
//! `%blocks/aa/bb/cc/dd/<rest>` (eagerly replicated blocks), `%tmp-*` (our temp
//! files, renamed into place), and `<path>/versions/{log,<id>}` per pushed version.

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::ids::NodeId;
use crate::layout::StoreLayout;
use crate::store::journal::write_atomic;
use crate::store::{IoContext, StoreError};

/// The spool entry holding the pusher's store nonce.
pub const NONCE: &str = "%nonce";
/// The spool directory holding the pusher's journal.
pub const JOURNAL: &str = "%journal";
/// The spool directory holding eagerly replicated blocks.
pub const BLOCKS: &str = "%blocks";
/// Prefix of the pusher's temp files in a spool.
pub const TMP_PREFIX: &str = "%tmp-";

pub fn push_position(layout: &StoreLayout, peer: NodeId) -> PathBuf {
    layout.state().join("push").join(peer.to_string())
}

pub fn apply_position(layout: &StoreLayout, peer: NodeId) -> PathBuf {
    layout.state().join("apply").join(peer.to_string())
}

pub fn ack_file(layout: &StoreLayout, peer: NodeId) -> PathBuf {
    layout.acks().join(peer.to_string())
}

pub fn conflicts_file(layout: &StoreLayout) -> PathBuf {
    layout.state().join("conflicts")
}

pub fn lock_file(layout: &StoreLayout, name: &str) -> PathBuf {
    layout.locks().join(name)
}

fn times_file(layout: &StoreLayout, peer: NodeId) -> PathBuf {
    layout.state().join("sync").join(peer.to_string())
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// When sync last completed each direction with a peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerTimes {
    pub last_push: Option<u64>,
    pub last_apply: Option<u64>,
}

impl PeerTimes {
    pub fn load(layout: &StoreLayout, peer: NodeId) -> Result<PeerTimes, StoreError> {
        let path = times_file(layout, peer);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(PeerTimes::default()),
            Err(err) => return Err(StoreError::io(&path, err)),
        };
        let mut values = BTreeMap::new();
        for line in text.lines() {
            if let Some((key, value)) = line.split_once(' ') {
                if let Ok(value) = value.parse::<u64>() {
                    values.insert(key.to_string(), value);
                }
            }
        }
        Ok(PeerTimes {
            last_push: values.get("last-push").copied(),
            last_apply: values.get("last-apply").copied(),
        })
    }

    pub fn save(&self, layout: &StoreLayout, peer: NodeId) -> Result<(), StoreError> {
        let mut text = String::new();
        if let Some(at) = self.last_push {
            text.push_str(&format!("last-push {at}\n"));
        }
        if let Some(at) = self.last_apply {
            text.push_str(&format!("last-apply {at}\n"));
        }
        write_atomic(&times_file(layout, peer), text.as_bytes())
    }
}

/// Appends one conflict copy's path to `state/conflicts`.
pub fn record_conflict(layout: &StoreLayout, escaped: &str) -> Result<(), StoreError> {
    let path = conflicts_file(layout);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).at(dir)?;
    }
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .at(&path)?;
    file.write_all(format!("{escaped}\n").as_bytes()).at(&path)
}
