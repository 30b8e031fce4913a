//! Digests of this node's version sets, kept in its own store so that a peer
//! can compare whole trees cheaply (anti-entropy, `src/sync/full_check.rs`).
//!
//! Every volume path that has children holds `root/<path>/%digest`:
//!
//! ```text
//! globofs-digest 1
//! own <sha-256 of the path's own version ids>
//! <d|f> <tree digest of the child> <child's disk name>
//! ```
//!
//! `own` is the SHA-256 of the path's canonical version ids (ascending, each
//! followed by `\n`). A child line gives the child's *tree digest*, `d` when
//! the child has a `%digest` of its own (it has children), `f` otherwise; lines
//! are sorted by disk name. A path's tree digest is the SHA-256 of its
//! `%digest` file, or, for a path without children, of the text
//! `own <hex>\n`. Two nodes whose `root/` hold the same version sets (ignored
//! paths left out) have the same root digest; where they differ, the files say
//! which children to descend into.
//!
//! Kept up to date by [`refresh`] (each sync pass): it reads our journal from
//! `state/digest`'s position, and `state/digest-dirty` (paths prune changed),
//! and rewrites the files of the changed paths and of their ancestors only.
//! A store without that state (older releases, or a changed `ignore`) is
//! digested once from a walk of `root/`. Files are written whole (temp file,
//! rename), so a peer reads an old or a new one, never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::journal::{self, Position, write_atomic};
use super::lock::FileLock;
use super::{IoContext, Store, StoreError, version_ids_in};
use crate::ids::VersionId;
use crate::layout::{VPath, is_hashed_name, name_from_disk};

/// The digest file's name inside `root/<path>/`.
pub const DIGEST_FILE: &str = "%digest";
const MAGIC: &str = "globofs-digest 1";
/// Largest digest file read (about 600,000 children).
pub const MAX_DIGEST_BYTES: u64 = 64 << 20;
/// Journal lines read per batch while refreshing.
const BATCH: usize = 4096;

/// One child line of a digest file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildDigest {
    /// The child has children of its own (and a `%digest`).
    pub has_children: bool,
    /// The child's tree digest (64 hex).
    pub tree: String,
}

/// A parsed `%digest` file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirDigest {
    /// Digest of the path's own version ids.
    pub own: String,
    /// Children by disk name.
    pub children: BTreeMap<OsString, ChildDigest>,
}

impl DirDigest {
    /// The file's text (canonical: one spelling per content).
    pub fn to_text(&self) -> String {
        let mut text = format!("{MAGIC}\nown {}\n", self.own);
        for (name, child) in &self.children {
            let kind = if child.has_children { 'd' } else { 'f' };
            text.push_str(&format!(
                "{kind} {} {}\n",
                child.tree,
                name.to_string_lossy()
            ));
        }
        text
    }

    /// This path's tree digest.
    pub fn tree(&self) -> String {
        if self.children.is_empty() {
            leaf_tree(&self.own)
        } else {
            sha_hex(self.to_text().as_bytes())
        }
    }

    /// Parses a digest file; `None` if it is not one (torn, foreign, damaged).
    pub fn parse(bytes: &[u8]) -> Option<DirDigest> {
        let text = std::str::from_utf8(bytes).ok()?;
        let body = text.strip_suffix('\n')?;
        let mut lines = body.split('\n');
        if lines.next()? != MAGIC {
            return None;
        }
        let own = lines.next()?.strip_prefix("own ")?;
        if !is_hex64(own) {
            return None;
        }
        let mut digest = DirDigest {
            own: own.to_string(),
            children: BTreeMap::new(),
        };
        for line in lines {
            let (kind, rest) = line.split_once(' ')?;
            let (tree, name) = rest.split_once(' ')?;
            let has_children = match kind {
                "d" => true,
                "f" => false,
                _ => return None,
            };
            if !is_hex64(tree) || name.is_empty() || name.contains('/') {
                return None;
            }
            digest.children.insert(
                OsString::from(name),
                ChildDigest {
                    has_children,
                    tree: tree.to_string(),
                },
            );
        }
        Some(digest)
    }
}

fn is_hex64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn sha_hex(bytes: &[u8]) -> String {
    crate::ids::BlockHash(Sha256::digest(bytes).into()).to_string()
}

/// The tree digest of a path without children.
pub fn leaf_tree(own: &str) -> String {
    sha_hex(format!("own {own}\n").as_bytes())
}

/// The `own` digest of a set of version ids (ascending).
pub fn own_digest(ids: &[VersionId]) -> String {
    let mut text = String::new();
    for id in ids {
        text.push_str(&id.to_string());
        text.push('\n');
    }
    sha_hex(text.as_bytes())
}

/// What a refresh did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Digested from a walk of the whole `root/` (no usable state).
    pub rebuilt: bool,
    /// Digest files written or removed.
    pub files: usize,
}

/// `state/digest`: how far our journal is digested, and for which `ignore`.
fn state_file(store: &Store) -> PathBuf {
    store.layout().state().join("digest")
}

/// `state/digest-dirty`: escaped paths whose version sets changed without a
/// journal line (prune), one a line.
pub fn dirty_file(store: &Store) -> PathBuf {
    store.layout().state().join("digest-dirty")
}

/// Lists `path` in [`dirty_file`]: its version set changed without a journal
/// line (prune, coalescing), so a sync pass refreshes its digest from this
/// list. A store without peers keeps no list (no sync pass would ever read
/// it, and it would only grow); a stale digest costs a full check a few
/// more remote reads, never a wrong answer (it names ids we pruned).
pub fn mark_dirty(store: &Store, path: &VPath) -> Result<(), StoreError> {
    if store.sharing().peers.is_empty() {
        return Ok(());
    }
    let dirty = dirty_file(store);
    let mut list = crate::layout::open_append(&dirty).at(&dirty)?;
    std::io::Write::write_all(&mut list, format!("{}\n", path.escaped()).as_bytes()).at(&dirty)
}

fn ignore_fingerprint(store: &Store) -> String {
    match &store.sharing().ignore {
        Some(rules) => sha_hex(rules.patterns().join("\n").as_bytes()),
        None => "-".to_string(),
    }
}

struct DigestState {
    position: Position,
    ignore: String,
}

fn load_state(path: &Path) -> Result<Option<DigestState>, StoreError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(StoreError::io(path, err)),
    };
    let mut lines = text.lines();
    let position = lines.next().and_then(Position::parse);
    let ignore = lines.next().and_then(|line| line.strip_prefix("ignore "));
    Ok(match (position, ignore) {
        (Some(position), Some(ignore)) => Some(DigestState {
            position,
            ignore: ignore.to_string(),
        }),
        _ => None,
    })
}

fn save_state(path: &Path, state: &DigestState) -> Result<(), StoreError> {
    let text = format!("{}ignore {}\n", state.position.to_text(), state.ignore);
    write_atomic(path, text.as_bytes())
}

/// Brings this store's digest files up to date with its journal.
pub fn refresh(store: &Store) -> Result<Refreshed, StoreError> {
    refresh_or_rebuild(store, false)
}

/// Digests the whole `root/` afresh from disk (what a journal that lost lines
/// would leave out is counted too); files whose content is right are kept.
pub fn rebuild_now(store: &Store) -> Result<Refreshed, StoreError> {
    refresh_or_rebuild(store, true)
}

fn refresh_or_rebuild(store: &Store, force: bool) -> Result<Refreshed, StoreError> {
    let _lock = FileLock::exclusive(&store.layout().locks().join("digest"))?;
    let state_path = state_file(store);
    let fingerprint = ignore_fingerprint(store);
    let state = load_state(&state_path)?;
    let nonce = store.meta().nonce.clone();
    let usable = state.as_ref().filter(|s| {
        !force
            && s.ignore == fingerprint
            && (s.position.nonce.is_empty() || s.position.nonce == nonce)
    });
    let Some(state) = usable else {
        // Where the journal ends now: everything before is in the walk.
        let end = journal::end(store.journal().dir())?.unwrap_or((0, 0));
        let files = rebuild(store)?;
        let _ = fs::remove_file(dirty_file(store));
        save_state(
            &state_path,
            &DigestState {
                position: Position {
                    nonce,
                    segment: end.0,
                    offset: end.1,
                },
                ignore: fingerprint,
            },
        )?;
        return Ok(Refreshed {
            rebuilt: true,
            files,
        });
    };
    let mut position = state.position.clone();
    let mut changed = BTreeSet::new();
    // Taken aside first: a prune appending meanwhile starts a new list.
    let dirty = store.layout().state().join("digest-dirty.taken");
    match fs::rename(dirty_file(store), &dirty) {
        Ok(()) => {}
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(StoreError::io(dirty_file(store), err)),
    }
    let dirty_text = match fs::read_to_string(&dirty) {
        Ok(text) => text,
        Err(err) if err.kind() == ErrorKind::NotFound => String::new(),
        Err(err) => return Err(StoreError::io(&dirty, err)),
    };
    for line in dirty_text.lines() {
        if let Ok(path) = VPath::from_escaped(line) {
            changed.insert(path);
        }
    }
    loop {
        let batch = journal::read(store.journal().dir(), &position, BATCH)?;
        for line in &batch.lines {
            if let Some((_, path)) = line.split_once(' ') {
                if let Ok(path) = VPath::from_escaped(path) {
                    changed.insert(path);
                }
            }
        }
        let done = batch.lines.is_empty() || batch.next == position;
        position = batch.next;
        if done {
            break;
        }
    }
    let files = if changed.is_empty() {
        0
    } else {
        update(store, &changed)?
    };
    if !dirty_text.is_empty() {
        let _ = fs::remove_file(&dirty);
    }
    if position != state.position {
        save_state(
            &state_path,
            &DigestState {
                position,
                ignore: fingerprint,
            },
        )?;
    }
    Ok(Refreshed {
        rebuilt: false,
        files,
    })
}

/// Reads a path's digest file in our store.
pub fn read_own(store: &Store, path: &VPath) -> Result<Option<DirDigest>, StoreError> {
    read_file(&store.path_dir(path).join(DIGEST_FILE))
}

fn read_file(file: &Path) -> Result<Option<DirDigest>, StoreError> {
    match fs::read(file) {
        Ok(bytes) => Ok(DirDigest::parse(&bytes)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) if err.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
        Err(err) => Err(StoreError::io(file, err)),
    }
}

/// The digest of `path` as it is now on disk (own ids plus children as the
/// existing file lists them), and its child line for the parent.
fn own_of(store: &Store, path: &VPath) -> Result<String, StoreError> {
    Ok(own_digest(&version_ids_in(
        &store.path_dir(path).join("versions"),
    )?))
}

/// Rewrites the digests of `changed` paths and their ancestors, deepest first.
fn update(store: &Store, changed: &BTreeSet<VPath>) -> Result<usize, StoreError> {
    let mut todo: BTreeMap<usize, BTreeSet<VPath>> = BTreeMap::new();
    for path in changed {
        let mut at = Some(path.clone());
        while let Some(path) = at {
            at = path.parent();
            let depth = path.names().len();
            if !todo.entry(depth).or_default().insert(path) {
                break; // its ancestors are in already
            }
        }
    }
    // Child lines computed so far, by parent.
    let mut lines: BTreeMap<VPath, BTreeMap<OsString, Option<ChildDigest>>> = BTreeMap::new();
    let mut files = 0;
    for (_, paths) in todo.into_iter().rev() {
        for path in paths {
            let mut digest = read_own(store, &path)?.unwrap_or_default();
            digest.own = own_of(store, &path)?;
            for (name, line) in lines.remove(&path).unwrap_or_default() {
                match line {
                    Some(line) => digest.children.insert(name, line),
                    None => digest.children.remove(&name),
                };
            }
            files += write_digest(store, &path, &digest)?;
            if let Some(parent) = path.parent() {
                let name = crate::layout::disk_name(path.file_name().unwrap_or_default());
                let line = child_line(store, &path, &digest)?;
                lines.entry(parent).or_default().insert(name, line);
            }
        }
    }
    Ok(files)
}

/// The line a parent lists for `path` (`None`: not listed: ignored, or no
/// versions and no children).
fn child_line(
    store: &Store,
    path: &VPath,
    digest: &DirDigest,
) -> Result<Option<ChildDigest>, StoreError> {
    if store.is_ignored(path) {
        return Ok(None);
    }
    if digest.children.is_empty()
        && version_ids_in(&store.path_dir(path).join("versions"))?.is_empty()
    {
        // Nothing here (never written, or pruned whole).
        return Ok(None);
    }
    Ok(Some(ChildDigest {
        has_children: !digest.children.is_empty(),
        tree: digest.tree(),
    }))
}

/// Writes (or, without children, removes) `path`'s digest file; 1 if it changed.
fn write_digest(store: &Store, path: &VPath, digest: &DirDigest) -> Result<usize, StoreError> {
    let dir = store.path_dir(path);
    let file = dir.join(DIGEST_FILE);
    if digest.children.is_empty() {
        return match fs::remove_file(&file) {
            Ok(()) => Ok(1),
            Err(err) if matches!(err.kind(), ErrorKind::NotFound) => Ok(0),
            Err(err) if err.raw_os_error() == Some(libc::ENOTDIR) => Ok(0),
            Err(err) => Err(StoreError::io(&file, err)),
        };
    }
    let text = digest.to_text();
    if fs::read(&file).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(0);
    }
    crate::layout::create_dirs(&dir).at(&dir)?;
    write_atomic(&file, text.as_bytes())?;
    Ok(1)
}

/// Digests the whole `root/` (post-order walk of our own disk); files written.
fn rebuild(store: &Store) -> Result<usize, StoreError> {
    let mut files = 0;
    digest_tree(store, &VPath::root(), &mut files)?;
    Ok(files)
}

fn digest_tree(
    store: &Store,
    path: &VPath,
    files: &mut usize,
) -> Result<Option<ChildDigest>, StoreError> {
    let mut digest = DirDigest {
        own: own_of(store, path)?,
        children: BTreeMap::new(),
    };
    for (disk, child) in children_on_disk(store, path)? {
        if let Some(line) = digest_tree(store, &child, files)? {
            digest.children.insert(disk, line);
        }
    }
    *files += write_digest(store, path, &digest)?;
    child_line(store, path, &digest)
}

/// The children of `path` in `root/`: (disk name, volume path), sorted.
pub fn children_on_disk(store: &Store, path: &VPath) -> Result<Vec<(OsString, VPath)>, StoreError> {
    let dir = store.path_dir(path);
    let mut out = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if matches!(err.kind(), ErrorKind::NotFound) => return Ok(out),
        Err(err) if err.raw_os_error() == Some(libc::ENOTDIR) => return Ok(out),
        Err(err) => return Err(StoreError::io(&dir, err)),
    };
    for entry in entries {
        let entry = entry.at(&dir)?;
        let disk = entry.file_name();
        if let Some(child) = child_path(store, path, &dir, &disk)? {
            out.push((disk, child));
        }
    }
    out.sort();
    Ok(out)
}

/// The volume path of a child named `disk` in `root/<parent>/` (`dir`).
fn child_path(
    store: &Store,
    parent: &VPath,
    dir: &Path,
    disk: &OsStr,
) -> Result<Option<VPath>, StoreError> {
    if let Some(name) = name_from_disk(disk) {
        return Ok(parent.join(&name).ok());
    }
    if is_hashed_name(disk) {
        return match store.hashed_child(&dir.join(disk)) {
            Ok(path) => Ok(path),
            Err(StoreError::Corrupt { .. }) => Ok(None),
            Err(err) => Err(err),
        };
    }
    Ok(None)
}
