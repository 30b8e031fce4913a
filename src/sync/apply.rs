//! Applying what one peer pushed into our `spool/inbound/<peer>/`: its journal
//! there is read from our saved position; each line names a version file that is
//! opened without following any symlink, parsed strictly, checked against the
//! line, and imported into `root/` as our own copy. Blocks the peer pushed
//! eagerly are verified before they are taken in. Then the path is resolved:
//! every losing concurrent edit gets its conflict copy, and a directory a peer
//! deleted while we (or another peer) still had live entries in it is re-created.
//!
//! Hostile or damaged input (a bad path, a symlink in the spool, a malformed or
//! mismatched version file, a block whose bytes do not match) is refused and
//! logged, and the rest goes on. A complete journal line with a bad checksum
//! stops the reader there until it is repaired (never skipped): an error of
//! the pass (`sync` exits 3), and `status` shows the peer's inbound as stuck.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::path::Path;

use crate::ids::{BlockHash, NodeId, VersionId};
use crate::layout::{VPath, is_hashed_name, name_from_disk};
use crate::store::import::Imported;
use crate::store::journal::{self, Position};
use crate::store::lock::FileLock;
use crate::store::resolve::{conflict_copy, resolve};
use crate::store::version::MAX_VERSION_FILE;
use crate::store::{
    Kind, Mtime, Store, StoreError, Version, WriterLock, read_version_file, version_ids_in,
};

use super::push::{parse_line, version_names};
use super::remote::{PeerFetcher, Remote};
use super::state::{self, BLOCKS, JOURNAL};
use super::{PeerReport, safe};

/// Journal lines applied per batch (the position is saved after each).
const BATCH: usize = 256;
/// How many missing ancestors of one version are fetched before it is taken.
const MAX_PARENT_DEPTH: usize = 64;
/// How deep conflict copies of conflict copies go.
const MAX_COPY_DEPTH: usize = 3;

/// Applies everything new in `peer`'s inbound spool. `source`: the peer's
/// remote when it is reachable (missing parents are read from its `root/`);
/// `relay`: the same, when we have other peers that may need its blocks from us.
pub fn apply(
    store: &Store,
    peer: NodeId,
    source: Option<&Remote>,
    relay: Option<&Remote>,
    report: &mut PeerReport,
) -> Result<(), StoreError> {
    let layout = store.layout();
    let Some(_lock) = FileLock::try_exclusive(&state::lock_file(layout, &format!("apply-{peer}")))?
    else {
        report.note("another process of this node is applying from this peer".into());
        return Ok(());
    };
    let spool = layout.inbound(peer);
    let journal_dir = spool.join(JOURNAL);
    for dir in [&spool, &journal_dir] {
        match safe::real_dir(dir) {
            Ok(Some(true)) => {}
            Ok(None) => {
                if Position::load(&state::apply_position(layout, peer))?.segment != 0 {
                    report.damage(format!(
                        "{}: missing, though we applied from it before (deleted?); the peer makes it again at its next push",
                        dir.display()
                    ));
                }
                return Ok(());
            }
            Ok(Some(false)) => {
                let why = format!(
                    "{} is not a real directory (a symlink?); nothing applied",
                    dir.display()
                );
                report.refuse(why.clone());
                report.damage(why);
                return Ok(());
            }
            Err(err) => return Err(StoreError::io(dir, err)),
        }
    }
    for number in journal::segments(&journal_dir)? {
        let segment = journal_dir.join(format!("{number:016}"));
        let regular = fs::symlink_metadata(&segment).is_ok_and(|m| m.file_type().is_file());
        if !regular {
            let why = format!(
                "{} is not a regular file; nothing applied from this peer",
                segment.display()
            );
            report.refuse(why.clone());
            report.damage(why);
            return Ok(());
        }
    }
    let position_file = state::apply_position(layout, peer);
    let ack_file = state::ack_file(layout, peer);
    let mut position = Position::load(&position_file)?;
    if let Some(why) = regressed(&journal_dir, &position)? {
        // The journal there is shorter than where we read to (truncated, or
        // deleted and made again): read it again from its start (applying is
        // idempotent) and let a full check find what the lost part named.
        report.damage(format!("{why}; reading it again from its start"));
        position = Position::default();
        position.save(&position_file)?;
    }
    let mut applier = Applier {
        store,
        peer,
        spool: &spool,
        source,
        relay,
        relay_away: false,
        report,
        settled: None,
        waiting: Vec::new(),
    };
    let mut warned = HashSet::new();
    loop {
        let batch = journal::read(&journal_dir, &position, BATCH)?;
        for warning in &batch.warnings {
            if !warned.insert(warning.clone()) {
                continue;
            }
            if batch.stuck.is_some() && warning.contains("bad line") {
                // Nothing after it applies: this stops the pass with the peer
                // (unless a full check then takes everything; see sync/mod.rs).
                applier.report.error(format!(
                    "inbound journal stuck: {warning}; later changes from this peer wait behind it"
                ));
                applier.report.stuck = true;
            } else {
                // A torn line skipped, a trimmed segment: what it named may be lost.
                applier.report.damage(warning.clone());
            }
        }
        for line in &batch.lines {
            applier.line(line)?;
        }
        let moved = batch.next != position;
        position = batch.next;
        if moved || !ack_file.exists() {
            position.save(&position_file)?;
            position.save(&ack_file)?;
        }
        if batch.lines.is_empty() {
            break;
        }
    }
    applier.revive_waiting()?;
    if !applier.report.stuck {
        check_lingering_tail(store, peer, &journal_dir, &position, applier.report)?;
    }
    Ok(())
}

/// How long an incomplete last line must stay unchanged, over two passes,
/// before it counts as damage (a writer's one `write(2)` is seen whole far
/// sooner, even through a remote filesystem).
const LINGERING_TAIL: std::time::Duration = std::time::Duration::from_secs(1);

/// The reader waits at an incomplete last line of the latest segment (the
/// writer may be appending it now). The same bytes there, unchanged since an
/// earlier pass at least [`LINGERING_TAIL`] ago, are a cut or zero-filled
/// tail, not a write in progress: damage, reported once per tail, and a full
/// check follows. Remembered in `state/apply-tail/<peer>`.
fn check_lingering_tail(
    store: &Store,
    peer: NodeId,
    journal_dir: &Path,
    position: &Position,
    report: &mut PeerReport,
) -> Result<(), StoreError> {
    let file = store
        .layout()
        .state()
        .join("apply-tail")
        .join(peer.to_string());
    let segment = journal_dir.join(format!("{:016}", position.segment));
    let len = fs::symlink_metadata(&segment)
        .ok()
        .filter(|m| m.file_type().is_file())
        .map_or(0, |m| m.len());
    if position.segment == 0 || len <= position.offset {
        if file.exists() {
            fs::remove_file(&file).map_err(|err| StoreError::io(&file, err))?;
        }
        return Ok(());
    }
    let tail = format!("{} {} {len}", position.segment, position.offset);
    let earlier = fs::read_to_string(&file).ok();
    let age = fs::metadata(&file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default();
    match earlier.as_deref().map(str::trim_end) {
        Some(seen) if seen == tail && age >= LINGERING_TAIL => {
            report.damage(format!(
                "{}: an incomplete last line ({} bytes at offset {}) has not changed since an earlier pass (cut or zero-filled?); what it named is taken from the peer's root/",
                segment.display(),
                len - position.offset,
                position.offset
            ));
            journal::write_atomic(&file, format!("{tail} reported\n").as_bytes())?;
        }
        Some(seen) if seen == tail || seen == format!("{tail} reported") => {}
        _ => journal::write_atomic(&file, format!("{tail}\n").as_bytes())?,
    }
    Ok(())
}

struct Applier<'a> {
    store: &'a Store,
    peer: NodeId,
    spool: &'a Path,
    source: Option<&'a Remote>,
    relay: Option<&'a Remote>,
    relay_away: bool,
    report: &'a mut PeerReport,
    /// The parsed versions of the path settled last (a peer's journal names
    /// one path many times in a row: each settle then parses only the
    /// versions added since, not the whole history again).
    settled: Option<(VPath, Vec<Version>)>,
    /// Live paths whose missing parent this node never had a version of:
    /// their parents are made at the end of the pass, if still missing then
    /// (see [`Applier::revive_or_wait`]).
    waiting: Vec<VPath>,
}

impl Applier<'_> {
    /// Applies one journal line; refusals are reported, local failures returned.
    fn line(&mut self, line: &str) -> Result<(), StoreError> {
        let (id, path) = match parse_line(line) {
            Ok(parsed) => parsed,
            Err(why) => {
                let why = format!("journal line {:?}: {why}", crate::ids::clip(line, 200));
                self.report.refuse(why.clone());
                self.report
                    .damage(format!("inbound journal line refused: {why}"));
                return Ok(());
            }
        };
        if self.store.is_ignored(&path) {
            tracing::debug!(peer = %self.peer, %path, "ignored path; not applied");
            return Ok(());
        }
        let names = version_names(&path, id);
        let shown = safe::joined(self.spool, &names);
        let version = match read_inbound(self.spool, &names, &shown) {
            Ok(version) => version,
            Err(why) => {
                // A damaged spool file: the version is still in the peer's
                // root/, where a full check finds it.
                self.report.refuse(why.clone());
                self.report
                    .damage(format!("inbound version file refused: {why}"));
                return Ok(());
            }
        };
        if version.id != id || version.path != path {
            let why = format!(
                "{}: says it is version {} of {}, but the journal line names {id} of {path}",
                shown.display(),
                version.id,
                version.path
            );
            self.report.refuse(why.clone());
            self.report
                .damage(format!("inbound version file refused: {why}"));
            return Ok(());
        }
        if self.store.pruned_ids(&path)?.contains(&id) {
            tracing::debug!(%path, %id, "pruned here; not taken back");
            return Ok(());
        }
        self.take(&version)
    }

    /// Takes one checked version in: its blocks (eager ones; a relay's pull),
    /// then the import, then conflict copies and revived parents.
    fn take(&mut self, version: &Version) -> Result<(), StoreError> {
        self.take_parents(version, 0)?;
        self.take_one(version)
    }

    /// Parents of `version` we lack (not pruned here) are taken in first, from
    /// the spool or the peer's `root/`: with a parent missing, an older
    /// version would look like a concurrent head and get a false conflict
    /// copy (a version lost from a damaged spool, then its child arrives).
    fn take_parents(&mut self, version: &Version, depth: usize) -> Result<(), StoreError> {
        if version.parents.is_empty() || depth >= MAX_PARENT_DEPTH {
            return Ok(());
        }
        let held = self.store.version_ids(&version.path)?;
        let missing: Vec<VersionId> = version
            .parents
            .iter()
            .copied()
            .filter(|id| held.binary_search(id).is_err())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let pruned = self.store.pruned_ids(&version.path)?;
        for id in missing {
            if pruned.contains(&id) {
                continue;
            }
            let Some(parent) = self.find_version(&version.path, id) else {
                tracing::debug!(path = %version.path, %id, "a parent is not to be had from this peer");
                continue;
            };
            self.take_parents(&parent, depth + 1)?;
            self.take_one(&parent)?;
        }
        Ok(())
    }

    /// Version `id` of `path` from our inbound spool, else the peer's `root/`
    /// (on its worker, with the deadline), checked; `None` if neither has it.
    fn find_version(&mut self, path: &VPath, id: VersionId) -> Option<Version> {
        let names = version_names(path, id);
        let shown = safe::joined(self.spool, &names);
        let found = match read_inbound(self.spool, &names, &shown) {
            Ok(version) => Some(version),
            Err(_) => {
                let remote = self.source?;
                let root = remote.layout().root();
                remote
                    .run(move || {
                        let shown = safe::joined(&root, &names);
                        read_inbound(&root, &names, &shown).ok()
                    })
                    .ok()
                    .flatten()
            }
        };
        found.filter(|version| version.id == id && version.path == *path)
    }

    fn take_one(&mut self, version: &Version) -> Result<(), StoreError> {
        // Blocks first, under the writer lock (gc waits): a kill after them and
        // before the import leaves unreferenced blocks only, and the version is
        // applied again next pass; the other order could journal a relayed
        // version whose blocks this relay never pulled.
        let writers = self.store.writer_lock()?;
        if version.kind == Kind::File {
            self.take_eager_blocks(&writers, version)?;
            if self.relay.is_some() && !self.store.holds(version)? {
                self.relay_blocks(&writers, version)?;
            }
        }
        match self.store.import_version(version) {
            Ok(Imported::New) => self.report.applied += 1,
            Ok(Imported::Identical) => return Ok(()),
            Err(err @ StoreError::IdClash { .. }) => {
                self.report.refuse(err.to_string());
                return Ok(());
            }
            Err(err) => return Err(err),
        }
        self.settle(&version.path, 0)
    }

    /// Blocks the peer pushed eagerly (`%blocks/`), verified, into our `hashes/`.
    fn take_eager_blocks(
        &mut self,
        held: &WriterLock,
        version: &Version,
    ) -> Result<(), StoreError> {
        let blocks_dir = self.spool.join(BLOCKS);
        if !matches!(safe::real_dir(&blocks_dir), Ok(Some(true))) {
            return Ok(());
        }
        let store = self.store;
        let mut seen = HashSet::new();
        for (index, hash) in version.hashes.iter().enumerate() {
            let len = version.block_len(index);
            if !seen.insert(*hash) || store.blocks().locate(hash, Some(len)).is_some() {
                continue;
            }
            let names: Vec<OsString> = std::iter::once(OsString::from(BLOCKS))
                .chain(hash.relative_path().iter().map(OsString::from))
                .collect();
            let shown = safe::joined(self.spool, &names);
            let data = match safe::open_under(self.spool, &names)
                .and_then(|file| safe::read_bounded(file, len as u64, &shown))
            {
                Ok(data) => data,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => {
                    self.report.refuse(format!("{}: {err}", shown.display()));
                    continue;
                }
            };
            if data.len() != len || BlockHash::of(&data) != *hash {
                self.report.refuse(format!(
                    "{}: content does not match block {hash} ({} bytes, expected {len})",
                    shown.display(),
                    data.len()
                ));
                continue;
            }
            self.store.store_block(held, hash, &data)?;
            // Taken in: the copy in the spool is no longer needed.
            let _ = fs::remove_file(&shown);
            self.report.blocks_received += 1;
        }
        Ok(())
    }

    /// Pulls the version's missing blocks from the peer, so that our other peers
    /// (which may not reach it) can read them from us.
    fn relay_blocks(&mut self, held: &WriterLock, version: &Version) -> Result<(), StoreError> {
        let Some(remote) = self.relay else {
            return Ok(());
        };
        let mut seen = HashSet::new();
        for (index, hash) in version.hashes.iter().enumerate() {
            if self.relay_away {
                return Ok(());
            }
            let len = version.block_len(index);
            if !seen.insert(*hash) || self.store.blocks().locate(hash, Some(len)).is_some() {
                continue;
            }
            match PeerFetcher::fetch_from(remote, hash, len) {
                Ok(data) => {
                    self.store.store_block(held, hash, &data)?;
                    self.store.link_blocks(&version.path, &[*hash])?;
                    self.report.blocks_received += 1;
                }
                Err(away @ StoreError::PeerAway { .. }) => {
                    self.report
                        .note(format!("not relaying blocks of {}: {away}", version.path));
                    self.relay_away = true;
                }
                Err(err) => self.report.note(format!(
                    "block {hash} of {} not pulled for relaying: {err}",
                    version.path
                )),
            }
        }
        Ok(())
    }

    /// After an import at `path`: conflict copies for losing edits, and
    /// directories re-created so that nothing live is hidden.
    fn settle(&mut self, path: &VPath, depth: usize) -> Result<(), StoreError> {
        let store = self.store;
        let losers: Vec<Version> = {
            let versions = self.versions_of(path)?;
            resolve(versions).losers.into_iter().cloned().collect()
        };
        for loser in &losers {
            self.conflict_copy(loser, depth)?;
        }
        match store.current(path)? {
            Some(current) if current.kind.is_live() => self.revive_or_wait(path)?,
            _ => {
                if has_live_children(store, path)? {
                    self.revive_parents(path)?;
                    match store.mkdir_at(path, 0o755, Mtime::now()) {
                        Ok(_) => {
                            self.report.resurrected += 1;
                            self.report.note(format!(
                                "{path}: deleted by a peer while live entries remained in it; re-created"
                            ));
                        }
                        Err(err) => self.report.note(format!("{path}: not re-created: {err}")),
                    }
                }
            }
        }
        Ok(())
    }

    /// Every readable version of `path`, oldest first: those parsed at the
    /// last settle of the same path, plus the ones added since (and without
    /// the ones pruned since).
    fn versions_of(&mut self, path: &VPath) -> Result<&[Version], StoreError> {
        let ids = self.store.version_ids(path)?;
        let known = match self.settled.take() {
            Some((settled, versions)) if settled == *path => versions,
            _ => Vec::new(),
        };
        let mut known: std::collections::BTreeMap<VersionId, Version> =
            known.into_iter().map(|v| (v.id, v)).collect();
        let mut versions = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(version) = known.remove(&id) {
                versions.push(version);
                continue;
            }
            match self.store.read_version(path, id) {
                Ok(version) => versions.push(version),
                Err(err @ StoreError::Corrupt { .. }) => {
                    tracing::warn!(%path, error = %err, "skipping an unreadable version file");
                }
                Err(err) => return Err(err),
            }
        }
        let (_, versions) = self.settled.insert((path.clone(), versions));
        Ok(versions)
    }

    /// The parents of a live `path` that are not directories here: made now
    /// when one was deleted here (a peer wrote into a directory deleted
    /// meanwhile: what is live stays reachable); when one was never seen
    /// here at all, at the end of the pass instead. Its versions may come
    /// later in the same journal: a prune that dropped a directory's first
    /// version leaves the kept version of a file in it before any version
    /// of the directory, and a directory made here now would be newer than
    /// the directory's own tombstone further on, bringing a deleted tree
    /// back on every node.
    fn revive_or_wait(&mut self, path: &VPath) -> Result<(), StoreError> {
        let store = self.store;
        let mut dir = path.parent();
        while let Some(current) = dir {
            if current.is_root() || store.is_dir(&current)? {
                return match current == path.parent().unwrap_or_else(VPath::root) {
                    true => Ok(()),
                    false => self.revive_parents(path),
                };
            }
            if store.version_ids(&current)?.is_empty() {
                self.waiting.push(path.clone());
                return Ok(());
            }
            dir = current.parent();
        }
        Ok(())
    }

    /// The end of a pass: the parents of each path that waited
    /// ([`Applier::revive_or_wait`]) and is still live, made if still missing.
    fn revive_waiting(&mut self) -> Result<(), StoreError> {
        let mut seen = HashSet::new();
        for path in std::mem::take(&mut self.waiting) {
            if !seen.insert(path.clone()) {
                continue;
            }
            if self.store.current(&path)?.is_some_and(|v| v.kind.is_live()) {
                self.revive_parents(&path)?;
            }
        }
        Ok(())
    }

    /// Re-creates deleted (or never seen) parent directories of a live `path`.
    fn revive_parents(&mut self, path: &VPath) -> Result<(), StoreError> {
        let store = self.store;
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        if store.is_dir(&parent)? {
            return Ok(());
        }
        let lock = store.writer_lock()?;
        let mut missing = 0;
        let mut dir = Some(parent);
        while let Some(current) = dir {
            if current.is_root() || store.is_dir(&current)? {
                break;
            }
            missing += 1;
            dir = current.parent();
        }
        match store.make_parents_locked(&lock, path, Mtime::now()) {
            Ok(()) => {
                self.report.resurrected += missing;
                self.report.note(format!(
                    "{path}: re-created {missing} deleted parent director(ies)"
                ));
            }
            // A file where a directory belongs: the peer's directory version
            // wins once it arrives; until then the entry is not reachable.
            Err(err) => self
                .report
                .note(format!("{path}: parents not re-created: {err}")),
        }
        Ok(())
    }

    /// Imports the conflict copy of `loser`: a pure function of the losing
    /// version, so every node makes the identical copy. The copy keeps the
    /// loser's parents: when a node's later edit loses again within the same
    /// second (so its copy gets the same name), its copy supersedes the earlier
    /// copy instead of conflicting with it.
    fn conflict_copy(&mut self, loser: &Version, depth: usize) -> Result<(), StoreError> {
        let Some(copy) = conflict_copy(loser) else {
            return Ok(());
        };
        match self.store.import_version(&copy) {
            Ok(Imported::New) => {
                self.report.conflicts += 1;
                tracing::warn!(path = %loser.path, copy = %copy.path, "conflict: concurrent edits; the losing one is kept as a copy");
                state::record_conflict(self.store.layout(), &copy.path.escaped())?;
                // Copies can meet at one name; nothing may be lost there either.
                if depth < MAX_COPY_DEPTH {
                    self.settle(&copy.path, depth + 1)?;
                }
            }
            Ok(Imported::Identical) => {}
            Err(err @ StoreError::IdClash { .. }) => {
                self.report.note(format!("conflict copy: {err}"))
            }
            Err(err) => return Err(err),
        }
        Ok(())
    }
}

/// Takes in one version read and checked elsewhere (a full check reads the
/// peer's `root/`) through the same path as an inbound one; whether it was new.
pub(super) fn take_checked(
    store: &Store,
    peer: NodeId,
    source: Option<&Remote>,
    relay: Option<&Remote>,
    report: &mut PeerReport,
    version: &Version,
) -> Result<bool, StoreError> {
    if store.is_ignored(&version.path) || store.pruned_ids(&version.path)?.contains(&version.id) {
        return Ok(false);
    }
    let spool = store.layout().inbound(peer);
    let before = report.applied;
    let mut applier = Applier {
        store,
        peer,
        spool: &spool,
        source,
        relay,
        relay_away: false,
        report,
        settled: None,
        waiting: Vec::new(),
    };
    applier.take(version)?;
    applier.revive_waiting()?;
    // Counted apart from what the journal delivered.
    let taken = applier.report.applied - before;
    applier.report.applied = before;
    applier.report.repaired += taken;
    Ok(taken > 0)
}

/// Why the inbound journal no longer reaches `position` (its segment gone
/// while later ones are missing too, or shorter than the offset), if it does not.
fn regressed(journal_dir: &Path, position: &Position) -> Result<Option<String>, StoreError> {
    if position.segment == 0 {
        return Ok(None);
    }
    let segments = journal::segments(journal_dir)?;
    let Some(&last) = segments.last() else {
        return Ok(Some(format!(
            "{}: the journal we read to segment {} offset {} is gone",
            journal_dir.display(),
            position.segment,
            position.offset
        )));
    };
    if last < position.segment {
        return Ok(Some(format!(
            "{}: the journal ends at segment {last}, before segment {} where we read to",
            journal_dir.display(),
            position.segment
        )));
    }
    let file = journal_dir.join(format!("{:016}", position.segment));
    match fs::symlink_metadata(&file) {
        // Not a regular file: refused elsewhere, never opened here.
        Ok(meta) if !meta.file_type().is_file() => Ok(None),
        Ok(meta) if meta.len() < position.offset => Ok(Some(format!(
            "{}: {} bytes long, shorter than the {} we had read (truncated?)",
            file.display(),
            meta.len(),
            position.offset
        ))),
        Ok(_) if position.offset > 0 => {
            // We stopped after a whole line: if the byte before our offset is
            // no longer a newline, the file was cut and written again beneath us.
            use std::os::unix::fs::FileExt;
            let mut last = [0u8; 1];
            let read = fs::File::open(&file)
                .and_then(|handle| handle.read_at(&mut last, position.offset - 1));
            match read {
                Ok(1) if last[0] != b'\n' => Ok(Some(format!(
                    "{}: offset {} where we stopped is no longer at the end of a line (truncated and written again?)",
                    file.display(),
                    position.offset
                ))),
                _ => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

/// Where a reader of the inbound journal in `journal_dir` may go on from
/// after a complete full check: the end of its latest segment (before a torn
/// last line that is not zeros, which the writer's next segment leaves behind).
pub(super) fn resume_point(journal_dir: &Path) -> Result<Option<Position>, StoreError> {
    let Some(&last) = journal::segments(journal_dir)?.last() else {
        return Ok(None);
    };
    let file = journal_dir.join(format!("{last:016}"));
    // Never open what is not a regular file (a fifo would block the pass).
    if !fs::symlink_metadata(&file).is_ok_and(|meta| meta.file_type().is_file()) {
        return Ok(None);
    }
    let data = match fs::read(&file) {
        Ok(data) => data,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(StoreError::io(&file, err)),
    };
    let Some(nonce) = journal::segment_nonce(&file)? else {
        return Ok(None);
    };
    let after_newline = data
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |at| at + 1);
    let tail = &data[after_newline..];
    let offset = if tail.iter().all(|&b| b == 0) {
        data.len()
    } else {
        after_newline
    };
    Ok(Some(Position {
        nonce,
        segment: last,
        offset: offset as u64,
    }))
}

/// Opens, reads and parses an inbound version file; an error says why it is refused.
fn read_inbound(spool: &Path, names: &[OsString], shown: &Path) -> Result<Version, String> {
    let file = safe::open_under(spool, names).map_err(|err| err.to_string())?;
    let bytes = safe::read_bounded(file, MAX_VERSION_FILE, shown).map_err(|err| err.to_string())?;
    Version::parse(shown, &bytes).map_err(|err| err.to_string())
}

/// Whether `path` has live entries in our store (read from disk, so it works
/// while `path` itself is deleted).
fn has_live_children(store: &Store, path: &VPath) -> Result<bool, StoreError> {
    let dir = store.path_dir(path);
    let listing = match fs::read_dir(&dir) {
        Ok(listing) => listing,
        Err(_) => return Ok(false),
    };
    for item in listing.flatten() {
        let disk = item.file_name();
        let child = match name_from_disk(&disk) {
            Some(name) => match path.join(&name) {
                Ok(child) => child,
                Err(_) => continue,
            },
            None if is_hashed_name(&disk) => {
                let versions = dir.join(&disk).join("versions");
                match version_ids_in(&versions)?.last() {
                    Some(id) => match read_version_file(&versions.join(id.to_string())) {
                        Ok(version) => version.path,
                        Err(_) => continue,
                    },
                    None => continue,
                }
            }
            None => continue,
        };
        if store.live(&child)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}
