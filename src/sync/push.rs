//! Pushing to one peer: our journal is the queue. From our saved position in it,
//! each version still owed to the peer is written into the peer's
//! `spool/inbound/<our id>/<path>/versions/` (temp file + rename, then a log line
//! appended), and the batch's lines are appended to our journal in that spool
//! (`%journal/`, headed by our store nonce). Then the outbound links are removed
//! and the position saved. Re-pushing after a crash is harmless: an identical
//! version file is left as is, and applying is idempotent.
//!
//! After each batch a mark in `state/pushed/<peer>` pairs where our journal in
//! the spool ends with how far our own journal was pushed; the peer's ack,
//! read at the end of the pass, turns marks into "the peer holds our journal
//! through here", which `prune` waits for ([`applied_through`]).
//!
//! Not pushed to peer P: paths matching `ignore`, versions P wrote (but for
//! conflict copies), versions P pushed to us (P has them), and versions pruned
//! here since.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::ids::{BlockHash, NodeId, VersionId};
use crate::layout::VPath;
use crate::store::journal::{self, JournalWriter, Position};
use crate::store::lock::FileLock;
use crate::store::{Blocks, Kind, Store, StoreError};

use super::remote::{Away, Remote};
use super::state::{self, BLOCKS, JOURNAL, NONCE, TMP_PREFIX};
use super::{PeerReport, safe};

/// Journal lines handled per batch (one journal append in the peer's spool each).
const BATCH: usize = 512;

#[derive(Debug)]
pub enum PushError {
    Away(Away),
    Store(StoreError),
}

impl From<Away> for PushError {
    fn from(away: Away) -> PushError {
        PushError::Away(away)
    }
}

impl From<StoreError> for PushError {
    fn from(err: StoreError) -> PushError {
        PushError::Store(err)
    }
}

/// Parses a journal line `<version id> <escaped path>`.
pub fn parse_line(line: &str) -> Result<(VersionId, VPath), String> {
    let (id, path) = line
        .split_once(' ')
        .ok_or_else(|| format!("journal line {:?} has no path", crate::ids::clip(line, 80)))?;
    let id: VersionId = id.parse()?;
    // The volume root (its mode, owner, xattrs) is a path like any other: its
    // escaped form is empty.
    let path = VPath::from_escaped(path).map_err(|err| err.why)?;
    Ok((id, path))
}

/// The names below a spool directory of a version file of `path`.
pub fn version_names(path: &VPath, id: VersionId) -> Vec<OsString> {
    let mut names: Vec<OsString> = path
        .names()
        .iter()
        .map(|name| crate::layout::disk_name(name))
        .collect();
    names.push("versions".into());
    names.push(id.to_string().into());
    names
}

/// Pushes what is queued for `remote`. Returns true when the queue was emptied.
pub fn push(
    store: &Store,
    remote: &Remote,
    report: &mut PeerReport,
    take_over: Option<&state::TakeOver>,
) -> Result<bool, PushError> {
    let peer = remote.id();
    let layout = store.layout();
    let Some(_running) =
        FileLock::try_exclusive(&state::lock_file(layout, &format!("push-{peer}.run")))?
    else {
        report.note("another process of this node (the mount, or another sync) is pushing to this peer; nothing pushed by this run".into());
        return Ok(false);
    };
    let our_id = store.meta().node;
    let nonce = store.meta().nonce.clone();
    let spool = remote.layout().inbound(our_id);
    let mut check = {
        let spool = spool.clone();
        let nonce = nonce.clone();
        remote.run(move || ensure_nonce(&spool, &nonce))?
    };
    if let Ok(NonceCheck::Other(theirs)) = &check {
        report.old_spool = Some(theirs.clone());
    }
    let replace = match (take_over, &check) {
        (Some(take_over), Ok(NonceCheck::Other(theirs))) => take_over.allows(theirs),
        _ => false,
    };
    if let (true, Ok(NonceCheck::Other(theirs))) = (replace, &check) {
        report.note(format!(
            "{}: replacing what store {theirs} of this node left there (--take-over)",
            spool.display()
        ));
        let spool = spool.clone();
        let nonce = nonce.clone();
        let theirs = theirs.clone();
        let ack = remote.layout().acks().join(our_id.to_string());
        check = remote.run(move || take_over_spool(&spool, &nonce, &theirs, &ack))?;
    }
    let made_anew = matches!(check, Ok(NonceCheck::Written | NonceCheck::Recreated));
    report.spool_ours = matches!(
        check,
        Ok(NonceCheck::Ours | NonceCheck::Written | NonceCheck::Recreated)
    );
    match check {
        Ok(NonceCheck::Ours) => {}
        Ok(NonceCheck::Recreated) => report.warn(format!(
            "{} was missing although the peer's store lists this node: made it again; everything the peer may lack is pushed again",
            spool.display()
        )),
        Ok(NonceCheck::Written) => report.note(format!(
            "first push: wrote our nonce into {}",
            spool.display()
        )),
        Ok(NonceCheck::NoSpool) => {
            report.error(format!(
                "{} does not exist, and the peer's store does not list this node ({our_id}) as a peer (no spool/outbound/{our_id} there): add this node to the peer's spec and run `globofs reconcile` there; nothing pushed",
                spool.display()
            ));
            return Ok(false);
        }
        Ok(NonceCheck::Other(theirs)) => {
            report.error(format!(
                "{} holds nonce {theirs:?}, not ours ({nonce}): another store claims node id {our_id} (a cloned disk?); refusing to push to this peer. If this node's store was made anew and the old one is gone for good, run `globofs sync --take-over` once",
                spool.join(NONCE).display()
            ));
            return Ok(false);
        }
        Err(err) => {
            report.error(format!("{}: {err}", spool.display()));
            return Ok(false);
        }
    }
    let position_file = state::push_position(layout, peer);
    let mut position = Position::load(&position_file)?;
    let replicate = remote.peer().replicate;
    let mut pushed = state::Pushed::load(layout, peer, &nonce)?;
    let resend_file = state::resend_position(layout, peer);
    // Made anew, rather than new: we pushed to it before. (A peer we never
    // pushed to gets our whole journal anyway.)
    let known = position != Position::default() || pushed.applied.is_some();
    if made_anew && known {
        // We had pushed to this peer, and its spool for us is new: its store
        // was re-created (a replaced disk) and holds nothing of ours. Push our
        // whole journal again, including what it once wrote or sent us.
        let end = journal::end(store.journal().dir())?.unwrap_or((0, 0));
        report.note(format!(
            "{} was made anew (the peer's store re-created?): pushing our whole journal again",
            spool.display()
        ));
        let until = Position {
            nonce: nonce.clone(),
            segment: end.0,
            offset: end.1,
        };
        until.save(&resend_file)?;
        position = Position::default();
        position.save(&position_file)?;
        pushed = state::Pushed {
            nonce: nonce.clone(),
            ..state::Pushed::default()
        };
        pushed.save(layout, peer)?;
    }
    let resend_until = match fs::metadata(&resend_file) {
        Ok(_) => Some(Position::load(&resend_file)?),
        Err(_) => None,
    }
    .map(|p| (p.segment, p.offset));
    loop {
        let batch = journal::read(store.journal().dir(), &position, BATCH)?;
        for warning in &batch.warnings {
            report.note(warning.clone());
        }
        if batch.lines.is_empty() {
            if batch.next != position {
                batch.next.save(&position_file)?;
            }
            break;
        }
        let mut lines = Vec::new();
        let mut delivered = Vec::new();
        // Resending to a re-created peer: it has nothing, whoever wrote it.
        let resending =
            resend_until.is_some_and(|until| (position.segment, position.offset) < until);
        for line in &batch.lines {
            let (id, path) = match parse_line(line) {
                Ok(parsed) => parsed,
                Err(why) => {
                    report.note(format!("our journal: {why}; skipped"));
                    continue;
                }
            };
            if store.is_ignored(&path) {
                continue;
            }
            let names = version_names(&path, id);
            delivered.push(safe::joined(&layout.outbound(peer), &names));
            if !resending
                && fs::symlink_metadata(safe::joined(&layout.inbound(peer), &names)).is_ok()
            {
                // The peer pushed it to us: it has it.
                continue;
            }
            let version = match store.read_version(&path, id) {
                Ok(version) => version,
                Err(err) if err.is_not_found() => continue,
                Err(err) => {
                    report.note(format!("{err}; not pushed"));
                    continue;
                }
            };
            // The peer wrote it, so it has it; but a conflict copy carries the
            // loser's writer and is made by whoever saw the conflict, so every
            // node must get every copy (the copies converge as a union).
            if !resending && version.node == peer && version.conflict_of.is_none() {
                continue;
            }
            if replicate && version.kind == Kind::File {
                replicate_blocks(store, remote, &spool, &version, None, report)?;
            }
            let dir = safe::joined(&spool, &names[..names.len() - 1]);
            let text = version.to_text();
            let written = remote.run(move || write_version(&dir, id, &text))?;
            match written {
                Ok(_) => {}
                Err(err) => {
                    report.error(format!("writing version {id} of {path}: {err}"));
                    return Ok(false);
                }
            }
            lines.push(format!("{id} {}", path.escaped()));
        }
        let count = lines.len() as u64;
        let writer = JournalWriter::new(
            spool.join(JOURNAL),
            state::lock_file(layout, &format!("push-{peer}")),
            &nonce,
        );
        // Append (if anything is owed) and see where our journal there ends:
        // once the peer acks that point, it holds everything up to batch.next.
        let appended = remote.run(move || {
            writer.append(&lines)?;
            journal::end(writer.dir())
        })?;
        let spool_end = match appended {
            Ok(end) => end.unwrap_or((0, 0)),
            Err(err) => {
                report.error(format!(
                    "appending to our journal in the peer's spool: {err}"
                ));
                return Ok(false);
            }
        };
        if batch.next.nonce == nonce {
            pushed.add(spool_end, (batch.next.segment, batch.next.offset));
            pushed.save(layout, peer)?;
        }
        for link in delivered {
            match fs::remove_file(&link) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => report.note(format!("{}: {err}", link.display())),
            }
        }
        report.pushed += count;
        position = batch.next;
        position.save(&position_file)?;
    }
    // Nothing was marked for where we stand (nothing new to push, or a store
    // from before marks existed): mark it against where our spool journal ends.
    let here = (position.segment, position.offset);
    let marked = pushed.marks.last().map(|m| m.1).max(pushed.applied);
    if position.nonce == nonce && marked.is_none_or(|m| m < here) {
        let dir = spool.join(JOURNAL);
        match remote.run(move || journal::end(&dir))? {
            Ok(end) => {
                pushed.add(end.unwrap_or((0, 0)), here);
                pushed.save(layout, peer)?;
            }
            Err(err) => report.note(format!(
                "reading where our journal in the peer's spool ends: {err}"
            )),
        }
    }
    trim(store, remote, our_id, &nonce, &spool, &mut pushed, report)?;
    Ok(true)
}

/// Empties our spool at a peer that an earlier store of this node (nonce
/// `theirs`) wrote (all of it ours to remove: only we write under it), then
/// claims it with our nonce. The peer's reader sees a journal with a new nonce
/// and reads it from its start. Refused while the peer has not applied all of
/// the old store's journal (its `ack` for us says how far it got): those
/// versions exist nowhere else now.
fn take_over_spool(spool: &Path, nonce: &str, theirs: &str, ack: &Path) -> io::Result<NonceCheck> {
    let end = journal::end(&spool.join(JOURNAL)).map_err(io::Error::other)?;
    if let Some(end) = end {
        let applied = read_ack(ack)
            .filter(|at| at.nonce == theirs)
            .map(|at| (at.segment, at.offset));
        if applied.is_none_or(|at| at < end) {
            return Err(io::Error::other(format!(
                "not taken over: the peer has applied the old store's journal only to {applied:?} of {end:?}; run `globofs sync` on the peer first, then --take-over again"
            )));
        }
    }
    for entry in fs::read_dir(spool)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_name() == NONCE {
            continue;
        }
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    write_replacing(spool, &spool.join(NONCE), format!("{nonce}\n").as_bytes())?;
    Ok(NonceCheck::Written)
}

/// After applying from `peer`, while we push our whole journal again to it
/// (its store was made anew): what we just took from its spool came from its
/// old store, which the new one lacks, so the resend goes on to our journal's
/// end. A pass that applied nothing from it, with the resend pushed through,
/// ends the resend.
pub(super) fn settle_resend(
    store: &Store,
    peer: NodeId,
    applied_some: bool,
) -> Result<(), StoreError> {
    let file = state::resend_position(store.layout(), peer);
    if fs::symlink_metadata(&file).is_err() {
        return Ok(());
    }
    let mut until = Position::load(&file)?;
    if applied_some {
        if let Some((segment, offset)) = journal::end(store.journal().dir())? {
            until.segment = segment;
            until.offset = offset;
            until.save(&file)?;
        }
        return Ok(());
    }
    let pushed = Position::load(&state::push_position(store.layout(), peer))?;
    if (pushed.segment, pushed.offset) >= (until.segment, until.offset) {
        match fs::remove_file(&file) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            Err(err) => return Err(StoreError::io(&file, err)),
        }
    }
    Ok(())
}

/// What the peer's `%nonce` for us says.
enum NonceCheck {
    Ours,
    Written,
    /// Our spool there was gone although the peer lists us: made again.
    Recreated,
    Other(String),
    NoSpool,
}

/// Whether the store holding `spool` (`<store>/spool/inbound/<us>`) lists us
/// as a peer: its `spool/outbound/<us>/` exists (reconcile makes both).
fn peer_lists_us(spool: &Path) -> bool {
    let (Some(name), Some(inbound)) = (spool.file_name(), spool.parent()) else {
        return false;
    };
    let Some(spools) = inbound.parent() else {
        return false;
    };
    fs::symlink_metadata(spools.join("outbound").join(name)).is_ok_and(|meta| meta.is_dir())
}

fn ensure_nonce(spool: &Path, nonce: &str) -> io::Result<NonceCheck> {
    match fs::symlink_metadata(spool) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                "not a directory (refusing to write through it)",
            ));
        }
        Err(err) if err.kind() == ErrorKind::NotFound => {
            // Deleted (by hand, a restore, a cleanup) while the peer's store
            // still lists us: make it again and claim it; the caller resends.
            if !peer_lists_us(spool) {
                return Ok(NonceCheck::NoSpool);
            }
            match fs::create_dir(spool) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err),
            }
            fs::set_permissions(spool, fs::Permissions::from_mode(0o755))?;
            let file = spool.join(NONCE);
            write_replacing(spool, &file, format!("{nonce}\n").as_bytes())?;
            return Ok(NonceCheck::Recreated);
        }
        Err(err) => return Err(err),
    }
    let file = spool.join(NONCE);
    match File::open(&file) {
        Ok(handle) => {
            let mut text = String::new();
            handle.take(256).read_to_string(&mut text)?;
            let theirs = text.trim();
            if theirs == nonce {
                Ok(NonceCheck::Ours)
            } else {
                Ok(NonceCheck::Other(theirs.to_string()))
            }
        }
        Err(err) if err.kind() == ErrorKind::NotFound => {
            write_replacing(spool, &file, format!("{nonce}\n").as_bytes())?;
            Ok(NonceCheck::Written)
        }
        Err(err) => Err(err),
    }
}

/// Writes `bytes` at `dest` through a `%tmp-` file in `dir` and a rename.
fn write_replacing(dir: &Path, dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!("{TMP_PREFIX}{}-{name}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        crate::layout::set_file_mode(&file)?;
        file.sync_data()?;
        fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes one version file into the peer's spool and appends it to the log
/// there; leaves an identical file alone. Runs on the peer's worker.
fn write_version(dir: &Path, id: VersionId, text: &str) -> io::Result<bool> {
    crate::layout::create_dirs(dir)?;
    let dest = dir.join(id.to_string());
    if let Ok(existing) = fs::read(&dest) {
        if existing == text.as_bytes() {
            return Ok(false);
        }
    }
    write_replacing(dir, &dest, text.as_bytes())?;
    let mut log = crate::layout::open_append(&dir.join("log"))?;
    let line = format!("{id}\n");
    let n = log.write(line.as_bytes())?;
    if n != line.len() {
        return Err(io::Error::new(ErrorKind::WriteZero, "short append to log"));
    }
    Ok(true)
}

/// `copies`: copies the chosen blocks of current versions into the peer's
/// spool `%blocks/` through the `replicate` path, then delivers each version
/// again (an identical version file there is left alone) with a line of our
/// journal in the spool, so that the peer's apply meets the version and takes
/// the blocks into its `hashes/` (a version it applied before would not be
/// looked at again). Returns the blocks written (none while another process
/// of this node is pushing to the peer).
pub fn copy_blocks(
    store: &Store,
    remote: &Remote,
    versions: &[(&crate::store::Version, HashSet<BlockHash>)],
    report: &mut PeerReport,
) -> Result<u64, PushError> {
    let peer = remote.id();
    let layout = store.layout();
    let Some(_running) =
        FileLock::try_exclusive(&state::lock_file(layout, &format!("push-{peer}.run")))?
    else {
        report.note("another process of this node is pushing to this peer; no blocks copied for `copies` by this run".into());
        return Ok(0);
    };
    let our_id = store.meta().node;
    let nonce = store.meta().nonce.clone();
    let spool = remote.layout().inbound(our_id);
    let before = report.blocks_replicated;
    for chunk in versions.chunks(BATCH) {
        let mut lines = Vec::new();
        for (version, only) in chunk {
            replicate_blocks(store, remote, &spool, version, Some(only), report)?;
            let names = version_names(&version.path, version.id);
            let dir = safe::joined(&spool, &names[..names.len() - 1]);
            let text = version.to_text();
            let id = version.id;
            if let Err(err) = remote.run(move || write_version(&dir, id, &text))? {
                report.error(format!(
                    "writing version {id} of {} (for `copies`): {err}",
                    version.path
                ));
                return Ok(report.blocks_replicated - before);
            }
            lines.push(format!("{id} {}", version.path.escaped()));
        }
        let writer = JournalWriter::new(
            spool.join(JOURNAL),
            state::lock_file(layout, &format!("push-{peer}")),
            &nonce,
        );
        if let Err(err) = remote.run(move || writer.append(&lines))? {
            report.error(format!(
                "appending to our journal in the peer's spool (for `copies`): {err}"
            ));
            break;
        }
    }
    Ok(report.blocks_replicated - before)
}

/// Copies the version's local blocks the peer lacks into its spool's `%blocks/`
/// (with `only`, just those of them).
fn replicate_blocks(
    store: &Store,
    remote: &Remote,
    spool: &Path,
    version: &crate::store::Version,
    only: Option<&HashSet<BlockHash>>,
    report: &mut PeerReport,
) -> Result<(), PushError> {
    let mut seen = HashSet::new();
    for (index, hash) in version.hashes.iter().enumerate() {
        if !seen.insert(*hash) || only.is_some_and(|only| !only.contains(hash)) {
            continue;
        }
        let len = version.block_len(index);
        if store.blocks().locate(hash, Some(len)).is_none() {
            continue;
        }
        let data = match store.blocks().read(hash, len, true) {
            Ok(data) => data,
            Err(err) => {
                report.note(format!("not replicated: {err}"));
                continue;
            }
        };
        let peer_hashes = remote.layout().hashes();
        let blocks_dir = spool.join(BLOCKS);
        let hash = *hash;
        match remote.run(move || write_spool_block(&peer_hashes, &blocks_dir, hash, &data))? {
            Ok(true) => report.blocks_replicated += 1,
            Ok(false) => {}
            Err(err) => report.note(format!("replicating block {hash}: {err}")),
        }
    }
    Ok(())
}

fn write_spool_block(
    peer_hashes: &Path,
    blocks_dir: &Path,
    hash: BlockHash,
    data: &[u8],
) -> io::Result<bool> {
    if Blocks::new(peer_hashes)
        .locate(&hash, Some(data.len()))
        .is_some()
    {
        return Ok(false);
    }
    let dest = blocks_dir.join(hash.relative_path());
    if fs::metadata(&dest).is_ok_and(|m| m.len() == data.len() as u64) {
        return Ok(false);
    }
    let dir = dest.parent().unwrap_or(blocks_dir).to_path_buf();
    crate::layout::create_dirs(&dir)?;
    write_replacing(&dir, &dest, data)?;
    Ok(true)
}

/// Reads the peer's ack: remembers how far it has applied our journal
/// (`state/pushed/<peer>`), and trims our journal segments in its spool below it.
#[allow(clippy::too_many_arguments)]
fn trim(
    store: &Store,
    remote: &Remote,
    our_id: NodeId,
    nonce: &str,
    spool: &Path,
    pushed: &mut state::Pushed,
    report: &mut PeerReport,
) -> Result<(), PushError> {
    let ack_path: PathBuf = remote.layout().acks().join(our_id.to_string());
    let ack = remote.run(move || read_ack(&ack_path))?;
    let Some(ack) = ack else {
        return Ok(());
    };
    if pushed.acknowledge(&ack.nonce, (ack.segment, ack.offset)) {
        pushed.save(store.layout(), remote.id())?;
    }
    if ack.nonce != nonce || ack.segment <= 1 {
        return Ok(());
    }
    let writer = JournalWriter::new(
        spool.join(JOURNAL),
        state::lock_file(store.layout(), &format!("push-{}", remote.id())),
        nonce,
    );
    match remote.run(move || writer.trim_before(ack.segment))? {
        Ok(n) => report.trimmed += n as u64,
        Err(err) => report.note(format!("trimming our journal in the peer's spool: {err}")),
    }
    Ok(())
}

/// The peer's published apply position for us, if readable.
pub(super) fn read_ack(path: &Path) -> Option<Position> {
    let file = File::open(path).ok()?;
    let mut text = String::new();
    file.take(512).read_to_string(&mut text).ok()?;
    Position::parse(&text)
}

/// A position in our own journal, if known.
pub type Through = Option<(u64, u64)>;

/// How far `remote`'s peer has applied our journal (a position in our own
/// `journal/`): what `state/pushed/<peer>` remembers, brought up to date with
/// the peer's ack when the peer is reachable. The note says why it is stale.
pub fn applied_through(
    store: &Store,
    remote: &Remote,
) -> Result<(Through, Option<String>), StoreError> {
    let layout = store.layout();
    let nonce = &store.meta().nonce;
    let peer = remote.id();
    // A push to this peer running in another process updates the file itself.
    let Some(_running) =
        FileLock::try_exclusive(&state::lock_file(layout, &format!("push-{peer}.run")))?
    else {
        let pushed = state::Pushed::load(layout, peer, nonce)?;
        return Ok((pushed.applied, None));
    };
    let mut pushed = state::Pushed::load(layout, peer, nonce)?;
    if let Err(away) = remote.check(true) {
        return Ok((pushed.applied, Some(away.why)));
    }
    let ack_path = remote.layout().acks().join(store.meta().node.to_string());
    match remote.run(move || read_ack(&ack_path)) {
        Ok(Some(ack)) => {
            if pushed.acknowledge(&ack.nonce, (ack.segment, ack.offset)) {
                pushed.save(layout, remote.id())?;
            }
            Ok((pushed.applied, None))
        }
        Ok(None) => Ok((pushed.applied, None)),
        Err(away) => Ok((pushed.applied, Some(away.why))),
    }
}
