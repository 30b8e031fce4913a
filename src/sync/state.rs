//! What sync remembers in our own store, and the names it adds to the layout.
//!
//! In our store:
//! - `state/push/<peer>`: our position in our own `journal/` for pushes to that
//!   peer (a journal position: `<nonce> <segment> <offset>`).
//! - `state/apply/<peer>`: our position in `spool/inbound/<peer>/%journal/`.
//! - `ack/<peer>`: the same position, published for that peer to read (it trims
//!   its journal segments below the acked segment).
//! - `state/pushed/<peer>`: which part of our own journal the peer holds once
//!   its ack passes a point of our journal in its spool ([`Pushed`]; prune
//!   waits for it).
//! - `state/sync/<peer>`: `key value` lines: `last-push`, `last-apply` (Unix
//!   seconds of the last pass that completed that direction).
//! - `state/conflicts`: one escaped volume path a line, every conflict copy made
//!   here (status checks which are still live).
//! - `state/take-over`: set by `sync --take-over` until every peer's spool for
//!   us holds our nonce ([`TakeOver`]).
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
use std::io::ErrorKind;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::ids::NodeId;
use crate::layout::StoreLayout;
use crate::store::StoreError;
use crate::store::journal::write_atomic;

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

/// Set while we push our whole journal again to a peer whose spool for us was
/// made anew: up to this position of our journal, versions the peer wrote or
/// pushed to us are pushed too (the re-created store lost them).
pub fn resend_position(layout: &StoreLayout, peer: NodeId) -> PathBuf {
    layout.state().join("resend").join(peer.to_string())
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

/// A take-over of the spools an earlier store of this node left at its peers
/// (`sync --take-over`), remembered in `state/take-over` until every peer's
/// spool for us holds our nonce, so passes after a peer comes back (the
/// mount's too) go on with it instead of asking for the command again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TakeOver {
    /// No spool of the earlier store seen yet: the first one seen is taken
    /// over (file content `any`).
    Any,
    /// The earlier store's nonce: only spools holding it are replaced.
    Nonce(String),
}

impl TakeOver {
    fn file(layout: &StoreLayout) -> PathBuf {
        layout.state().join("take-over")
    }

    /// The pending take-over, if any. A file that does not read as one is
    /// ignored with a warning (a take-over needs the command again then).
    pub fn load(layout: &StoreLayout) -> Result<Option<TakeOver>, StoreError> {
        let path = TakeOver::file(layout);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(StoreError::io(&path, err)),
        };
        let word = text.trim();
        if word == "any" {
            return Ok(Some(TakeOver::Any));
        }
        if !word.is_empty() && word.len() <= 128 && word.bytes().all(|b| b.is_ascii_graphic()) {
            return Ok(Some(TakeOver::Nonce(word.to_string())));
        }
        tracing::warn!(file = %path.display(), "not a take-over (`any` or a nonce); ignored");
        Ok(None)
    }

    pub fn save(&self, layout: &StoreLayout) -> Result<(), StoreError> {
        let text = match self {
            TakeOver::Any => "any\n".to_string(),
            TakeOver::Nonce(nonce) => format!("{nonce}\n"),
        };
        write_atomic(&TakeOver::file(layout), text.as_bytes())
    }

    /// The take-over is done: every peer's spool is ours.
    pub fn clear(layout: &StoreLayout) -> Result<(), StoreError> {
        let path = TakeOver::file(layout);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
            Err(err) => Err(StoreError::io(&path, err)),
        }
    }

    /// Whether a spool holding nonce `theirs` may be replaced.
    pub fn allows(&self, theirs: &str) -> bool {
        match self {
            TakeOver::Any => true,
            TakeOver::Nonce(nonce) => nonce == theirs,
        }
    }
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

/// The times of the last completed passes with every peer this store has
/// synced with (`last-push` and `last-apply` of each `state/sync/<peer>`),
/// newest first, without repeats; unreadable files are skipped.
pub fn pass_times(layout: &StoreLayout) -> Vec<u64> {
    let Ok(dir) = fs::read_dir(layout.state().join("sync")) else {
        return Vec::new();
    };
    let mut times = std::collections::BTreeSet::new();
    for entry in dir.flatten() {
        let Some(peer) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<NodeId>().ok())
        else {
            continue;
        };
        if let Ok(peer_times) = PeerTimes::load(layout, peer) {
            times.extend(peer_times.last_push);
            times.extend(peer_times.last_apply);
        }
    }
    times.into_iter().rev().collect()
}

/// Appends one conflict copy's path to `state/conflicts`.
pub fn record_conflict(layout: &StoreLayout, escaped: &str) -> Result<(), StoreError> {
    crate::store::record_conflict(&layout.state(), escaped)
}

/// `state/pushed/<peer>`: which part of our own journal the peer holds once it
/// has applied our journal in its spool up to a given point.
pub fn pushed_file(layout: &StoreLayout, peer: NodeId) -> PathBuf {
    layout.state().join("pushed").join(peer.to_string())
}

/// Most unacknowledged marks kept; dropping one in the middle only makes
/// "applied through" smaller (later), never wrong.
const MAX_MARKS: usize = 256;

/// What `state/pushed/<peer>` says:
///
/// ```text
/// nonce <our store nonce>
/// applied <segment> <offset>
/// mark <spool segment> <spool offset> <segment> <offset>
/// ```
///
/// A `mark` line says: once the peer's `ack/<our id>` (with our nonce) is at or
/// past (spool segment, spool offset) in the journal we write into its spool,
/// the peer holds every version of our own `journal/` before (segment, offset)
/// (pushed, or skipped because it wrote them, sent them to us, or they are
/// ignored or pruned). `applied` is the furthest such point seen acknowledged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    pub nonce: String,
    /// How far the peer has applied our own journal (segment, offset), as last seen.
    pub applied: Option<(u64, u64)>,
    /// (spool position, our journal position), oldest first, not yet acknowledged.
    pub marks: Vec<((u64, u64), (u64, u64))>,
}

fn two(parts: &[&str]) -> Option<(u64, u64)> {
    Some((parts.first()?.parse().ok()?, parts.get(1)?.parse().ok()?))
}

impl Pushed {
    /// Reads the file; a missing file, or one with another nonce (our store was
    /// re-created), is empty. Unknown or bad lines are skipped.
    pub fn load(layout: &StoreLayout, peer: NodeId, nonce: &str) -> Result<Pushed, StoreError> {
        let path = pushed_file(layout, peer);
        let empty = Pushed {
            nonce: nonce.to_string(),
            ..Pushed::default()
        };
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(empty),
            Err(err) => return Err(StoreError::io(&path, err)),
        };
        let mut pushed = Pushed::default();
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["nonce", value] => pushed.nonce = value.to_string(),
                ["applied", rest @ ..] if rest.len() == 2 => pushed.applied = two(rest),
                ["mark", rest @ ..] if rest.len() == 4 => {
                    if let (Some(spool), Some(local)) = (two(&rest[..2]), two(&rest[2..])) {
                        pushed.marks.push((spool, local));
                    }
                }
                _ => {}
            }
        }
        if pushed.nonce != nonce {
            return Ok(empty);
        }
        Ok(pushed)
    }

    pub fn save(&self, layout: &StoreLayout, peer: NodeId) -> Result<(), StoreError> {
        let mut text = format!("nonce {}\n", self.nonce);
        if let Some((segment, offset)) = self.applied {
            text.push_str(&format!("applied {segment} {offset}\n"));
        }
        for ((ss, so), (ls, lo)) in &self.marks {
            text.push_str(&format!("mark {ss} {so} {ls} {lo}\n"));
        }
        write_atomic(&pushed_file(layout, peer), text.as_bytes())
    }

    /// Adds a mark (after a push batch reached `spool` covering our journal to `local`).
    /// `spool` (0, 0) means we never wrote a journal there: nothing was owed.
    pub fn add(&mut self, spool: (u64, u64), local: (u64, u64)) {
        if spool == (0, 0) && self.marks.is_empty() {
            self.applied = Some(self.applied.map_or(local, |a| a.max(local)));
            return;
        }
        if let Some(last) = self.marks.last_mut() {
            if last.0 == spool {
                // Nothing new written to the spool: the same ack covers more.
                last.1 = last.1.max(local);
                return;
            }
        }
        self.marks.push((spool, local));
        if self.marks.len() > MAX_MARKS {
            // Keep the oldest (next to be acknowledged) and the newest.
            self.marks.remove(MAX_MARKS / 2);
        }
    }

    /// Folds in the peer's ack (a position in the spool journal, with the
    /// writer nonce it saw). Returns true if anything changed.
    pub fn acknowledge(&mut self, ack_nonce: &str, ack: (u64, u64)) -> bool {
        if ack_nonce != self.nonce {
            return false;
        }
        let before = (self.applied, self.marks.len());
        while let Some(&(spool, local)) = self.marks.first() {
            if spool > ack {
                break;
            }
            self.applied = Some(self.applied.map_or(local, |a| a.max(local)));
            self.marks.remove(0);
        }
        (self.applied, self.marks.len()) != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_fold_into_applied_only_once_acknowledged() {
        let mut pushed = Pushed {
            nonce: "n".into(),
            ..Pushed::default()
        };
        pushed.add((1, 100), (1, 500));
        pushed.add((1, 100), (1, 600));
        pushed.add((2, 40), (1, 900));
        assert_eq!(pushed.marks.len(), 2);
        assert!(!pushed.acknowledge("other", (9, 9)));
        assert!(!pushed.acknowledge("n", (1, 99)));
        assert_eq!(pushed.applied, None);
        assert!(pushed.acknowledge("n", (2, 0)));
        assert_eq!(pushed.applied, Some((1, 600)));
        assert!(pushed.acknowledge("n", (2, 40)));
        assert_eq!(pushed.applied, Some((1, 900)));
        assert!(pushed.marks.is_empty());
    }

    #[test]
    fn a_file_of_another_store_nonce_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StoreLayout::new(dir.path());
        let peer: NodeId = "00000002-0000-4000-8000-000000000002".parse().unwrap();
        let mut pushed = Pushed::load(&layout, peer, "old").unwrap();
        pushed.add((1, 10), (1, 20));
        pushed.acknowledge("old", (1, 10));
        pushed.add((1, 30), (1, 40));
        pushed.save(&layout, peer).unwrap();
        let again = Pushed::load(&layout, peer, "old").unwrap();
        assert_eq!(again, pushed);
        assert_eq!(again.applied, Some((1, 20)));
        // Our store was re-created: what the old one learned says nothing.
        let fresh = Pushed::load(&layout, peer, "new").unwrap();
        assert_eq!(fresh.applied, None);
        assert!(fresh.marks.is_empty());
    }
}
