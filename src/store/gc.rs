//! Space and health: `gc` (delete blocks nothing needs), `prune` (drop old
//! versions by the retention rule) and `verify` (re-hash every block).
//!
//! Link counts are only a hint: one `root/<path>/hashes/` link serves every
//! version of a path, a store copied without `-H` has every count at 1, and a new
//! block sits at 1 until linked. So `gc` decides with a mark pass over every kept
//! version under `root/` and every version waiting in `spool/outbound/`, holding the
//! gc lock exclusively (writers hold it shared).
//!
//! `prune` removes a version only once every peer has applied our journal
//! past it (the caller passes how far each has, [`PeerApplied`], worked out by
//! the sync layer from the peers' acks); until then it is a candidate in
//! `state/prune-pending`.

use super::read_dir_if_present;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::ids::{BlockHash, NodeId, VersionId};
use crate::layout::VPath;
use crate::spec::RetentionRule;

use super::lock::FileLock;
use super::version::{Kind, Version};
use super::{Blocks, IoContext, Store, StoreError, read_version_file, version_ids_in};

/// What `gc` did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct GcReport {
    pub versions_scanned: u64,
    pub blocks_kept: u64,
    pub blocks_deleted: u64,
    pub bytes_freed: u64,
    pub path_links_deleted: u64,
    /// Missing links of kept versions' blocks under their paths, made.
    pub path_links_made: u64,
    pub temp_files_deleted: u64,
    /// Fan-out directories (`aa/bb/cc/dd`) left empty and removed, in the
    /// store's `hashes/` and under each path.
    pub empty_dirs_removed: u64,
    /// Outbound spool entries whose versions were all delivered (only their
    /// `log` and directories were left), removed.
    pub outbound_entries_removed: u64,
    /// Deleted paths of a store without peers whose every version was
    /// pruned, forgotten: their `versions/` record and empty directories.
    pub deleted_paths_forgotten: u64,
}

/// What `verify` found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub blocks_checked: u64,
    pub corrupt: Vec<String>,
    /// Referenced, not held here, but a reachable peer holds them.
    pub remote: u64,
    /// Referenced and held by no one reachable.
    pub missing: Vec<String>,
    pub bad_versions: Vec<String>,
    /// Every damaged block with what is known of it, for `verify --repair`.
    #[serde(skip)]
    pub damaged: Vec<Damaged>,
}

/// What is wrong with a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// Its file(s) in `hashes/` do not hold what the name says.
    Corrupt { files: Vec<PathBuf> },
    /// Gone from `hashes/`, but a per-path link under `root/` still names it.
    Lost,
    /// Not here, and no reachable peer holds it.
    Missing,
}

/// A damaged block.
#[derive(Debug, Clone)]
pub struct Damaged {
    pub hash: BlockHash,
    pub damage: Damage,
    /// From the kept versions naming it; `None` when none does, or when a good
    /// file of the block is here too (then only the bad file needs to go).
    pub need: Option<Need>,
}

/// What the kept versions say of a block.
#[derive(Debug, Clone)]
pub struct Need {
    pub len: usize,
    /// The writer of the first version naming it (asked first for a copy).
    pub origin: NodeId,
    /// Every path whose kept versions name it, sorted, with the newest of
    /// those versions (for messages).
    pub versions: BTreeMap<VPath, VersionId>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty() && self.bad_versions.is_empty()
    }
}

/// `<path> (version <id>), ...: block <hash> `: every path naming the block
/// (at most 4, then how many more), each with its newest kept version that
/// names it.
fn named_by(hash: &BlockHash, versions: &BTreeMap<VPath, VersionId>) -> String {
    const SHOWN: usize = 4;
    let mut pairs: Vec<String> = versions
        .iter()
        .take(SHOWN)
        .map(|(path, id)| format!("{path} (version {id})"))
        .collect();
    if versions.len() > SHOWN {
        pairs.push(format!("and {} more path(s)", versions.len() - SHOWN));
    }
    if pairs.is_empty() {
        format!("block {hash} ")
    } else {
        format!("{}: block {hash} ", pairs.join(", "))
    }
}

/// What `prune` did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PruneReport {
    /// Paths that lost versions.
    pub paths: u64,
    pub versions_removed: u64,
    /// Of those, tombstones.
    pub tombstones_removed: u64,
    /// Deleted paths removed whole (only `versions/pruned` and the log remain).
    pub paths_emptied: u64,
    /// Versions the rule drops that wait until every peer has applied past them.
    pub versions_waiting: u64,
    /// For each peer still behind, how many of the waiting versions wait for it.
    pub waiting_for: Vec<WaitingFor>,
}

/// Versions waiting for one peer.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct WaitingFor {
    pub peer: String,
    pub versions: u64,
}

/// How far one peer has applied this node's journal: a (segment, offset) in
/// our own `journal/` (every version journaled before it, the peer holds), or
/// None when nothing is known yet. Worked out by the sync layer from the
/// peer's `ack/<our id>` (see `src/sync/state.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerApplied {
    pub peer: NodeId,
    pub through: Option<(u64, u64)>,
}

/// `state/prune-pending`: the candidates of `prune` (see [`Store::prune`]).
pub const PENDING: &str = "prune-pending";

/// Header of `state/prune-pending`; lines after it are
/// `<segment> <offset> <version id> <escaped path>`.
const PENDING_MAGIC: &str = "globofs-prune-pending 1";

type Pending = HashMap<(VersionId, String), (u64, u64)>;

/// Reads the candidates; a missing file, another nonce (our store and journal
/// were re-created) or a bad header is none. Bad lines are skipped.
fn load_pending(path: &Path, nonce: &str) -> Result<Pending, StoreError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Pending::new()),
        Err(err) => return Err(StoreError::io(path, err)),
    };
    let mut lines = text.lines();
    if lines.next() != Some(&format!("{PENDING_MAGIC} {nonce}")) {
        tracing::warn!(file = %path.display(), "not our prune candidates; starting again");
        return Ok(Pending::new());
    }
    let mut out = Pending::new();
    for line in lines {
        let mut parts = line.splitn(4, ' ');
        let (Some(segment), Some(offset), Some(id), Some(escaped)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Ok(segment), Ok(offset), Ok(id)) = (segment.parse(), offset.parse(), id.parse())
        else {
            continue;
        };
        out.insert((id, escaped.to_string()), (segment, offset));
    }
    Ok(out)
}

fn save_pending(
    path: &Path,
    nonce: &str,
    entries: &[(VersionId, String, (u64, u64))],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return remove_if_present(path);
    }
    let mut text = format!("{PENDING_MAGIC} {nonce}\n");
    for (id, escaped, (segment, offset)) in entries {
        text.push_str(&format!("{segment} {offset} {id} {escaped}\n"));
    }
    super::journal::write_atomic(path, text.as_bytes())
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        Err(err) => Err(StoreError::io(path, err)),
    }
}

/// How many of the oldest versions of one path (ascending ids) the rule drops.
fn removable_prefix(all: &[Version], rule: &RetentionRule, now: SystemTime) -> usize {
    let heads: Vec<&Version> = super::resolve::resolve(all).heads;
    let older_than_rule = |version: &Version| {
        let made = SystemTime::UNIX_EPOCH + Duration::new(version.id.secs, version.id.nanos);
        rule.keep_within
            .is_some_and(|age| now.duration_since(made).is_ok_and(|d| d > age))
    };
    // A deleted path goes whole once its tombstone is older than keep_within.
    if let [head] = heads.as_slice() {
        if head.kind == Kind::Tombstone && older_than_rule(head) {
            return all.len();
        }
    }
    let keep = |index: usize, version: &Version| {
        let from_end = all.len() - index;
        heads.iter().any(|head| head.id == version.id)
            || rule.keep_last.is_some_and(|n| from_end <= n as usize)
            || (rule.keep_within.is_some() && !older_than_rule(version))
    };
    // The removable prefix ends at the first version to keep.
    all.iter()
        .enumerate()
        .position(|(i, v)| keep(i, v))
        .unwrap_or(all.len())
}

/// Calls `visit` for every `versions/` directory below `tree` with its `root/`-relative dir.
pub(super) fn each_versions_dir(
    tree: &Path,
    visit: &mut dyn FnMut(&Path) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Some(listing) = read_dir_if_present(&dir)? else {
            continue;
        };
        for item in listing {
            let item = item.at(&dir)?;
            let kind = item.file_type().at(item.path())?;
            if !kind.is_dir() {
                continue;
            }
            let name = item.file_name();
            if name == "versions" {
                visit(&item.path())?;
            } else if name != "hashes" {
                stack.push(item.path());
            }
        }
    }
    Ok(())
}

/// Every block hash named by a version file under `tree`; bad files are reported.
fn mark(
    tree: &Path,
    marked: &mut HashSet<BlockHash>,
    bad: &mut Vec<String>,
    scanned: &mut u64,
) -> Result<(), StoreError> {
    each_versions_dir(tree, &mut |versions| {
        for id in version_ids_in(versions)? {
            let file = versions.join(id.to_string());
            *scanned += 1;
            match read_version_file(&file) {
                Ok(version) => marked.extend(version.hashes),
                Err(err) => bad.push(err.to_string()),
            }
        }
        Ok(())
    })
}

/// A visitor of block files: (path, hash if the name is one).
type BlockVisitor<'a> = dyn FnMut(&Path, Option<BlockHash>) -> Result<(), StoreError> + 'a;

/// Visits every block file under a `hashes/` tree.
pub(crate) fn each_block(dir: &Path, visit: &mut BlockVisitor<'_>) -> Result<(), StoreError> {
    let mut stack = vec![(dir.to_path_buf(), String::new(), 0)];
    while let Some((path, prefix, depth)) = stack.pop() {
        let Some(listing) = read_dir_if_present(&path)? else {
            continue;
        };
        for item in listing {
            let item = item.at(&path)?;
            let name = item.file_name().to_string_lossy().into_owned();
            if depth < 4 {
                if item.file_type().at(item.path())?.is_dir() {
                    stack.push((item.path(), format!("{prefix}{name}"), depth + 1));
                }
                continue;
            }
            let stem = name.strip_suffix(".zst").unwrap_or(&name);
            visit(&item.path(), format!("{prefix}{stem}").parse().ok())?;
        }
    }
    Ok(())
}

/// Below an outbound spool `dir`, removes each `versions/` directory that
/// holds nothing but its `log` (every version in it was delivered, and no
/// code reads an outbound log), then the directories left empty (never
/// `dir` itself). Returns whether `dir` is empty now, and how many `versions/`
/// directories went.
fn remove_delivered(dir: &Path) -> Result<(bool, u64), StoreError> {
    let Some(listing) = read_dir_if_present(dir)? else {
        return Ok((true, 0));
    };
    let mut empty = true;
    let mut removed = 0;
    for item in listing {
        let item = item.at(dir)?;
        let path = item.path();
        if !item.file_type().at(&path)?.is_dir() {
            empty = false;
            continue;
        }
        if item.file_name() == "versions" {
            let only_log = read_dir_if_present(&path)?.is_some_and(|mut entries| {
                entries.all(|e| e.is_ok_and(|e| e.file_name() == "log"))
            });
            if only_log {
                match fs::remove_file(path.join("log")) {
                    Ok(()) => {}
                    Err(err) if err.kind() == ErrorKind::NotFound => {}
                    Err(err) => return Err(StoreError::io(path.join("log"), err)),
                }
                fs::remove_dir(&path).at(&path)?;
                removed += 1;
                continue;
            }
            empty = false;
            continue;
        }
        let (child_empty, child_removed) = remove_delivered(&path)?;
        removed += child_removed;
        if child_empty {
            match fs::remove_dir(&path) {
                Ok(()) => continue,
                Err(err) if err.raw_os_error() == Some(libc::ENOTEMPTY) => {}
                Err(err) => return Err(StoreError::io(&path, err)),
            }
        }
        empty = false;
    }
    Ok((empty, removed))
}

/// Forgets a deleted path whose every version was pruned, in a store without
/// peers (no peer can send its versions again, which is what the record is
/// kept for, FORMAT §15): its `versions/` (only `log` and `pruned` are
/// left), then its directory and each one above it that is left empty, up
/// to `root` (a directory that still holds a child path stays). Returns 1
/// when the record went, 0 when `versions/` held anything else.
fn forget_deleted_path(versions: &Path, root: &Path) -> Result<u64, StoreError> {
    let Some(listing) = read_dir_if_present(versions)? else {
        return Ok(0);
    };
    let mut names = Vec::new();
    for item in listing {
        let item = item.at(versions)?;
        if !item.file_type().at(item.path())?.is_file() {
            return Ok(0);
        }
        names.push(item.file_name());
    }
    if !names.iter().all(|n| n == "log" || n == "pruned") {
        return Ok(0);
    }
    for name in names {
        let file = versions.join(name);
        fs::remove_file(&file).at(&file)?;
    }
    fs::remove_dir(versions).at(versions)?;
    let mut dir = versions.parent();
    while let Some(at) = dir.filter(|d| *d != root && d.starts_with(root)) {
        let _ = fs::remove_dir(at.join("hashes"));
        match fs::remove_dir(at) {
            Ok(()) => dir = at.parent(),
            Err(err)
                if err.kind() == ErrorKind::NotFound
                    || err.raw_os_error() == Some(libc::ENOTEMPTY) =>
            {
                break;
            }
            Err(err) => return Err(StoreError::io(at, err)),
        }
    }
    Ok(1)
}

/// Removes the empty directories of the block fan-out below `dir` (four
/// levels, `aa/bb/cc/dd`), deepest first, and `dir` itself when `with_top`
/// and it is left empty; returns how many went. A directory that is not
/// empty stays (ENOTEMPTY is the answer, not an error).
fn remove_empty_dirs(dir: &Path, with_top: bool) -> Result<u64, StoreError> {
    fn walk(dir: &Path, depth: usize, removed: &mut u64) -> Result<bool, StoreError> {
        let Some(listing) = read_dir_if_present(dir)? else {
            return Ok(true);
        };
        let mut empty = true;
        for item in listing {
            let item = item.at(dir)?;
            let is_dir = item.file_type().at(item.path())?.is_dir();
            if depth < 4 && is_dir && walk(&item.path(), depth + 1, removed)? {
                match fs::remove_dir(item.path()) {
                    Ok(()) => {
                        *removed += 1;
                        continue;
                    }
                    Err(err) if err.raw_os_error() == Some(libc::ENOTEMPTY) => {}
                    Err(err) => return Err(StoreError::io(item.path(), err)),
                }
            }
            empty = false;
        }
        Ok(empty)
    }
    let mut removed = 0;
    if walk(dir, 0, &mut removed)? && with_top {
        match fs::remove_dir(dir) {
            Ok(()) => removed += 1,
            Err(err)
                if err.kind() == ErrorKind::NotFound
                    || err.raw_os_error() == Some(libc::ENOTEMPTY) => {}
            Err(err) => return Err(StoreError::io(dir, err)),
        }
    }
    Ok(removed)
}

/// Opens a file for reading without updating its access time where the
/// kernel allows it (`O_NOATIME` needs the file's owner; others open it plainly).
pub fn open_noatime(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
    {
        Err(err) if err.raw_os_error() == Some(libc::EPERM) => fs::File::open(path),
        other => other,
    }
}

/// Whether a block file (raw, or `.zst` by its name) holds the bytes of `hash`.
/// Streams: memory stays small whatever the block size.
pub fn block_file_matches(path: &Path, hash: &BlockHash) -> std::io::Result<bool> {
    use sha2::Digest;
    let file = open_noatime(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let compressed = path.extension().is_some_and(|ext| ext == "zst");
    let mut input: Box<dyn std::io::Read> = if compressed {
        Box::new(zstd::stream::read::Decoder::new(file)?)
    } else {
        Box::new(file)
    };
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buf[..n]);
    }
    let digest: [u8; 32] = hasher.finalize().into();
    Ok(BlockHash(digest) == *hash)
}

impl Store {
    /// Takes the lock writers hold shared, exclusively (gc, prune, eviction).
    pub fn gc_lock(&self) -> Result<FileLock, StoreError> {
        FileLock::exclusive(&self.layout().locks().join("gc"))
    }

    /// Deletes blocks no kept version and no outbound entry needs.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        // Queued path links first: the pass below sees them.
        self.flush_path_links();
        let _lock = self.gc_lock()?;
        let mut report = GcReport::default();
        let mut marked = HashSet::new();
        let mut bad = Vec::new();
        mark(
            &self.layout().root(),
            &mut marked,
            &mut bad,
            &mut report.versions_scanned,
        )?;
        mark(
            &self.layout().outbound_dir(),
            &mut marked,
            &mut bad,
            &mut report.versions_scanned,
        )?;
        // Blocks a redo record rebuilds others from (FORMAT §14).
        marked.extend(self.redo_bases()?);
        if !bad.is_empty() {
            // A version we cannot read might name blocks: delete nothing.
            return Err(StoreError::UnreadableVersions {
                count: bad.len(),
                first: bad[0].clone(),
            });
        }
        each_block(&self.layout().hashes(), &mut |path, hash| {
            match hash {
                Some(hash) if marked.contains(&hash) => report.blocks_kept += 1,
                Some(_) => {
                    let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                    fs::remove_file(path).at(path)?;
                    report.blocks_deleted += 1;
                    report.bytes_freed += size;
                }
                None => tracing::warn!(path = %path.display(), "not a block file; left alone"),
            }
            Ok(())
        })?;
        // Per-path links of blocks that no kept version of that path names.
        let forget = self.sharing().peers.is_empty();
        let mut emptied: Vec<PathBuf> = Vec::new();
        each_versions_dir(&self.layout().root(), &mut |versions| {
            let path_dir = versions.parent().unwrap_or(versions);
            let mut used = HashSet::new();
            let ids = version_ids_in(versions)?;
            if forget && ids.is_empty() {
                emptied.push(versions.to_path_buf());
            }
            for id in ids {
                if let Ok(version) = read_version_file(&versions.join(id.to_string())) {
                    used.extend(version.hashes);
                }
            }
            let links = path_dir.join("hashes");
            let mut removed = 0;
            let mut linked = HashSet::new();
            each_block(&links, &mut |link, hash| {
                match hash {
                    Some(hash) if !used.contains(&hash) => {
                        fs::remove_file(link).at(link)?;
                        report.path_links_deleted += 1;
                        removed += 1;
                    }
                    Some(hash) => {
                        linked.insert(hash);
                    }
                    None => {}
                }
                Ok(())
            })?;
            // Links a process left unmade (killed with them queued, FORMAT §7).
            let missing: Vec<_> = used.difference(&linked).copied().collect();
            if !missing.is_empty() {
                report.path_links_made += self.link_blocks_in(&links, &missing)?;
            }
            if removed > 0 {
                // A path with no block left loses its `hashes/` too (a commit
                // makes it again); no writer runs while the lock is held.
                report.empty_dirs_removed += remove_empty_dirs(&links, true)?;
            }
            Ok(())
        })?;
        for versions in emptied {
            report.deleted_paths_forgotten +=
                forget_deleted_path(&versions, &self.layout().root())?;
        }
        if report.blocks_deleted > 0 {
            report.empty_dirs_removed += remove_empty_dirs(&self.layout().hashes(), false)?;
        }
        // Delivered outbound entries leave their log and directories: gone
        // too (no writer queues while the lock is held exclusively).
        if let Some(peers) = read_dir_if_present(&self.layout().outbound_dir())? {
            for peer in peers {
                let peer = peer.at(self.layout().outbound_dir())?;
                if peer.file_type().at(peer.path())?.is_dir() {
                    report.outbound_entries_removed += remove_delivered(&peer.path())?.1;
                }
            }
        }
        // With the lock held exclusively no writer is running: temp files are orphans.
        let tmp = self.layout().tmp();
        if let Ok(listing) = fs::read_dir(&tmp) {
            for item in listing.flatten() {
                if fs::remove_file(item.path()).is_ok() {
                    report.temp_files_deleted += 1;
                }
            }
        }
        Ok(report)
    }

    /// Re-hashes every local block and checks every kept version's blocks.
    ///
    /// A block a kept version names that is not in `hashes/` is *remote* when it
    /// left no trace here (never pulled, or evicted by `drop` / `cache.max_size`)
    /// and a reachable peer holds it; it is *missing* when no reachable peer
    /// holds it, or when a link under `root/<path>/hashes/` still names it (the
    /// block was here and `hashes/` lost it). Block files are opened with
    /// `O_NOATIME` where allowed, so a verify pass does not make every block look
    /// recently read to `cache.max_size`.
    pub fn verify(&self, progress: &mut dyn FnMut(u64)) -> Result<VerifyReport, StoreError> {
        let _lock = self.writer_lock()?;
        let mut report = VerifyReport::default();
        let mut present = HashSet::new();
        let mut corrupt_files: HashMap<BlockHash, Vec<PathBuf>> = HashMap::new();
        each_block(&self.layout().hashes(), &mut |path, hash| {
            let Some(hash) = hash else {
                report
                    .corrupt
                    .push(format!("{}: not named like a block", path.display()));
                return Ok(());
            };
            match block_file_matches(path, &hash) {
                Ok(true) => {
                    present.insert(hash);
                }
                Ok(false) => {
                    report.corrupt.push(format!(
                        "{}: block {hash} does not match its content",
                        path.display()
                    ));
                    corrupt_files
                        .entry(hash)
                        .or_default()
                        .push(path.to_path_buf());
                }
                Err(err) => {
                    report
                        .corrupt
                        .push(format!("{}: block {hash}: {err}", path.display()));
                    corrupt_files
                        .entry(hash)
                        .or_default()
                        .push(path.to_path_buf());
                }
            }
            report.blocks_checked += 1;
            progress(report.blocks_checked);
            Ok(())
        })?;
        let mut needs: HashMap<BlockHash, Need> = HashMap::new();
        each_versions_dir(&self.layout().root(), &mut |versions| {
            for id in version_ids_in(versions)? {
                let file = versions.join(id.to_string());
                let version = match read_version_file(&file) {
                    Ok(version) => version,
                    Err(err) => {
                        report.bad_versions.push(err.to_string());
                        continue;
                    }
                };
                for (index, hash) in version.hashes.iter().enumerate() {
                    if present.contains(hash) {
                        continue;
                    }
                    let need = needs.entry(*hash).or_insert_with(|| Need {
                        len: version.block_len(index),
                        origin: version.node,
                        versions: BTreeMap::new(),
                    });
                    // Ids come in ascending order: the newest stays.
                    need.versions.insert(version.path.clone(), version.id);
                }
            }
            Ok(())
        })?;
        let mut needs: Vec<(BlockHash, Need)> = needs.into_iter().collect();
        needs.sort_by_key(|a| a.0);
        for (hash, need) in needs {
            if let Some(files) = corrupt_files.remove(&hash) {
                report.damaged.push(Damaged {
                    hash,
                    damage: Damage::Corrupt { files },
                    need: Some(need),
                });
                continue;
            }
            // A writer may have stored it after the block pass above.
            if self.blocks().locate(&hash, Some(need.len)).is_some() {
                continue;
            }
            let linked = need.versions.keys().find(|path| {
                Blocks::new(self.path_dir(path).join("hashes"))
                    .locate(&hash, None)
                    .is_some()
            });
            let (damage, why) = if let Some(path) = linked {
                (
                    Damage::Lost,
                    format!("is gone from hashes/ (a link under root{path}/hashes/ remains)"),
                )
            } else if self
                .fetcher()
                .is_some_and(|f| f.held_remotely(&hash, need.len))
            {
                report.remote += 1;
                continue;
            } else {
                (Damage::Missing, "is held by no one reachable".to_string())
            };
            report
                .missing
                .push(format!("{}{why}", named_by(&hash, &need.versions)));
            report.damaged.push(Damaged {
                hash,
                damage,
                need: Some(need),
            });
        }
        // Corrupt files left: of blocks no kept version names (garbage, but
        // damaged), or beside a good twin (a bad raw file beside a good `.zst`,
        // or the other way round), which readers could still pick.
        let mut rest: Vec<(BlockHash, Vec<PathBuf>)> = corrupt_files.into_iter().collect();
        rest.sort_by_key(|a| a.0);
        for (hash, files) in rest {
            report.damaged.push(Damaged {
                hash,
                damage: Damage::Corrupt { files },
                need: None,
            });
        }
        Ok(report)
    }

    /// Drops versions outside `rule`, in two steps so that nothing is removed
    /// before every peer holds what replaces it.
    ///
    /// A version the rule drops is first a *candidate*, remembered in
    /// `state/prune-pending` with where our `journal/` ends now (the gc lock is
    /// held exclusively, so no commit or import is half done and every version
    /// in the store is journaled before that point). It is removed by a later
    /// (or this) run once every peer of the spec has applied our journal past
    /// that point (`applied`; a peer missing there has not). So a peer that was
    /// away gets every newer version and every tombstone before the versions
    /// they replace are gone here, and can no longer bring a deleted file back.
    ///
    /// What the rule drops: the oldest versions of each path outside
    /// `keep_last` / `keep_within`, tombstones included, up to the first one to
    /// keep (only a prefix of each history goes, so every kept version's
    /// ancestry stays decidable); never a head, except that a deleted path
    /// (its one head a tombstone) goes whole once that tombstone is older than
    /// `keep_within`. Removed ids are appended to `versions/pruned` first (which
    /// stays, even when the path has nothing else left), so a copy a peer sends
    /// again is not taken back.
    pub fn prune(
        &self,
        rule: &RetentionRule,
        applied: &[PeerApplied],
    ) -> Result<PruneReport, StoreError> {
        let _lock = self.gc_lock()?;
        let mut report = PruneReport::default();
        let pending_path = self.layout().state().join(PENDING);
        let nonce = self.meta().nonce.clone();
        if rule.keep_last.is_none() && rule.keep_within.is_none() {
            // Nothing is a candidate any more.
            remove_if_present(&pending_path)?;
            return Ok(report);
        }
        let mark = super::journal::end(&self.layout().journal())?.unwrap_or((0, 0));
        let pending = load_pending(&pending_path, &nonce)?;
        let mut still_pending: Vec<(VersionId, String, (u64, u64))> = Vec::new();
        // Peers that have not applied our journal through `at`.
        let behind = |at: (u64, u64)| -> Vec<NodeId> {
            self.sharing()
                .peers
                .iter()
                .copied()
                .filter(|peer| {
                    let through = applied
                        .iter()
                        .find(|p| p.peer == *peer)
                        .and_then(|p| p.through);
                    through.is_none_or(|through| through < at)
                })
                .collect()
        };
        let mut waiting: BTreeMap<NodeId, u64> = BTreeMap::new();
        let now = SystemTime::now();
        let root = self.layout().root();
        let mut dirs: Vec<PathBuf> = Vec::new();
        each_versions_dir(&root, &mut |versions| {
            dirs.push(versions.to_path_buf());
            Ok(())
        })?;
        for versions in dirs {
            let ids = version_ids_in(&versions)?;
            if ids.is_empty() {
                continue;
            }
            let all: Vec<Version> = ids
                .iter()
                .map(|id| read_version_file(&versions.join(id.to_string())))
                .collect::<Result<_, _>>()?;
            let cut = removable_prefix(&all, rule, now);
            if cut == 0 {
                continue;
            }
            // Remove the candidates every peer has caught up with, in order;
            // the first one still waiting stops the removal (prefix rule).
            let mut go = 0;
            let mut stopped = false;
            for version in &all[..cut] {
                let key = (version.id, version.path.escaped());
                let at = pending.get(&key).copied().unwrap_or(mark);
                let late = behind(at);
                if !stopped && late.is_empty() {
                    go += 1;
                    continue;
                }
                stopped = true;
                for peer in late {
                    *waiting.entry(peer).or_default() += 1;
                }
                report.versions_waiting += 1;
                still_pending.push((key.0, key.1, at));
            }
            if go == 0 {
                continue;
            }
            let mut record = String::new();
            for version in &all[..go] {
                record.push_str(&format!("{}\n", version.id));
            }
            // The path's version set changes without a journal line: its
            // digest (anti-entropy) is refreshed from this list.
            super::digest::mark_dirty(self, &all[0].path)?;
            let pruned_path = versions.join("pruned");
            let mut file = crate::layout::open_append(&pruned_path).at(&pruned_path)?;
            std::io::Write::write_all(&mut file, record.as_bytes()).at(&pruned_path)?;
            for version in &all[..go] {
                let file = versions.join(version.id.to_string());
                fs::remove_file(&file).at(&file)?;
                report.versions_removed += 1;
                if version.kind == Kind::Tombstone {
                    report.tombstones_removed += 1;
                }
            }
            if go == all.len() {
                report.paths_emptied += 1;
            }
            report.paths += 1;
        }
        report.waiting_for = waiting
            .into_iter()
            .map(|(peer, versions)| WaitingFor {
                peer: peer.to_string(),
                versions,
            })
            .collect();
        save_pending(&pending_path, &nonce, &still_pending)?;
        Ok(report)
    }

    /// Ids pruned from `path`'s history (never to be taken back from a peer).
    pub fn pruned_ids(&self, path: &VPath) -> Result<HashSet<VersionId>, StoreError> {
        let file = self.path_dir(path).join("versions").join("pruned");
        match fs::read_to_string(&file) {
            Ok(text) => Ok(text.lines().filter_map(|line| line.parse().ok()).collect()),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(HashSet::new()),
            Err(err) => Err(StoreError::io(&file, err)),
        }
    }
}
