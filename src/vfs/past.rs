//! The read-only history view of the mount, `<mount>/<history_dir>/`
//! (`.globofs` unless the spec's `mount.history_dir` names another, or
//! turns it off with ""):
//!
//! ```text
//! .globofs/at/                       recent points (one per hour with
//!                                    changes, the last sync passes)
//! .globofs/at/<TIME>/...             the volume's tree at TIME (any time
//!                                    `when.rs` parses, listed or not)
//! .globofs/versions/<path>/          every name below a directory (deleted
//!                                    ones too); for a file, its versions:
//! .globofs/versions/<file>/<RFC 3339 time>_<version id>
//! ```
//!
//! The past is decided by `store/past.rs`; this module owns the view's
//! inode numbers (all at or above [`VIRTUAL_BASE`], which the inode table,
//! counting up from the root, never reaches), its open handles, and the
//! answers to lookup, getattr, readdir, open, read and readlink for them.
//! Nothing is computed until the view is used: no walk at mount start, and
//! `at/` is listed from the journal only when listed. The view's inodes
//! live while the kernel holds references on them (lookups and readdirplus
//! entries, less FORGETs); those only a plain readdir named are swept after
//! [`SWEEP_EVERY`] new ones, so memory follows what the kernel keeps. Every change inside
//! it is refused with EROFS (see [`Vfs::child`] and [`Vfs::path_of`]).
//! The view's name at the root hides a real entry of that name.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use super::error::{VfsError, VfsResult};
use super::types::{Attr, DirEntry, NodeKind, Opened};
use super::{ROOT_INO, Vfs};
use crate::ids::VersionId;
use crate::layout::VPath;
use crate::store::{Kind, Version};
use crate::when::{Moment, version_time};

/// The lowest inode number (and file handle) of the view.
pub const VIRTUAL_BASE: u64 = 1 << 62;

/// How many recent points `at/` lists at most.
const MAX_POINTS: usize = 48;
/// Journal lines `at/` reads at most to find them.
const MAX_JOURNAL_LINES: usize = 2_000_000;

/// Whether an inode number (or file handle) belongs to the view.
pub fn is_virtual(ino: u64) -> bool {
    ino >= VIRTUAL_BASE
}

/// What a virtual inode stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Place {
    /// `<history_dir>/`
    Top,
    /// `at/`
    AtList,
    /// `at/<time>/<path>` (the root: `at/<time>` itself).
    At { time: String, path: VPath },
    /// `versions/<path>` (the root: `versions` itself).
    Versions { path: VPath },
    /// `versions/<path>/<time>_<id>`
    Version { path: VPath, id: VersionId },
}

/// One inode of the view: what it stands for, the version it shows, and
/// how many references the kernel holds on it.
struct Node {
    place: Place,
    version: Option<Version>,
    lookups: u64,
    /// The sweep generation in which it was last handed out.
    touched: u64,
}

#[derive(Default)]
struct Table {
    next: u64,
    by_ino: HashMap<u64, Node>,
    by_place: HashMap<Place, u64>,
    next_fh: u64,
    handles: HashMap<u64, Version>,
    /// The current sweep generation, and inodes made since the last sweep.
    generation: u64,
    made: usize,
}

/// After how many new inodes the view drops those the kernel holds no
/// reference on (listed by a plain readdir, never looked up) and that were
/// not handed out since the previous sweep.
const SWEEP_EVERY: usize = 65_536;

impl Table {
    /// Drops inodes without references that no reply of the current
    /// generation named, then starts a new generation. An inode a reply is
    /// naming right now (allocated, its reference not yet counted) is of the
    /// current generation and stays.
    fn sweep(&mut self) {
        let generation = self.generation;
        let gone: Vec<u64> = self
            .by_ino
            .iter()
            .filter(|(_, node)| node.lookups == 0 && node.touched < generation)
            .map(|(&ino, _)| ino)
            .collect();
        for ino in gone {
            if let Some(node) = self.by_ino.remove(&ino) {
                self.by_place.remove(&node.place);
            }
        }
        self.generation += 1;
        self.made = 0;
    }
}

/// Where the times of recent sync passes come from (the mount wires it to
/// sync's records; the view has no other way to know of passes).
pub type PassTimes = Box<dyn Fn() -> Vec<u64> + Send + Sync>;

/// How many recent sync passes `at/` lists at most.
const MAX_PASSES: usize = 8;

/// The view: its name at the root and its tables.
pub struct PastView {
    name: Vec<u8>,
    table: std::sync::Mutex<Table>,
    started: SystemTime,
    passes: Option<PassTimes>,
}

impl PastView {
    pub fn new(name: Vec<u8>) -> PastView {
        PastView {
            name,
            table: std::sync::Mutex::new(Table::default()),
            started: SystemTime::now(),
            passes: None,
        }
    }

    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The inode of `place`, remembering `version` as what it shows; with
    /// `lookup`, the reply hands the kernel a reference (counted here, in the
    /// same step as finding the inode, so a FORGET of an earlier reference
    /// cannot drop it meanwhile).
    fn ino(&self, place: Place, version: Option<Version>, lookup: bool) -> u64 {
        let mut table = crate::lock(&self.table);
        if let Some(&ino) = table.by_place.get(&place) {
            let generation = table.generation;
            if let Some(node) = table.by_ino.get_mut(&ino) {
                node.version = version;
                node.touched = generation;
                node.lookups += u64::from(lookup);
            }
            return ino;
        }
        if table.made >= SWEEP_EVERY {
            table.sweep();
        }
        let ino = VIRTUAL_BASE + table.next;
        table.next += 1;
        table.made += 1;
        let generation = table.generation;
        table.by_place.insert(place.clone(), ino);
        table.by_ino.insert(
            ino,
            Node {
                place,
                version,
                lookups: u64::from(lookup),
                touched: generation,
            },
        );
        ino
    }

    fn place(&self, ino: u64) -> VfsResult<(Place, Option<Version>)> {
        crate::lock(&self.table)
            .by_ino
            .get(&ino)
            .map(|node| (node.place.clone(), node.version.clone()))
            .ok_or_else(|| VfsError::new(libc::ENOENT, format!("inode {ino}: not in the view")))
    }

    /// The kernel took a reference without a lookup (readdirplus).
    pub(super) fn remember(&self, ino: u64) {
        if let Some(node) = crate::lock(&self.table).by_ino.get_mut(&ino) {
            node.lookups += 1;
        }
    }

    /// The kernel dropped `count` references: an inode it holds none of is
    /// forgotten (an open handle keeps its own copy of the version).
    pub(super) fn forget(&self, ino: u64, count: u64) {
        let mut table = crate::lock(&self.table);
        let Some(node) = table.by_ino.get_mut(&ino) else {
            return;
        };
        node.lookups = node.lookups.saturating_sub(count);
        if node.lookups == 0
            && let Some(node) = table.by_ino.remove(&ino)
        {
            table.by_place.remove(&node.place);
        }
    }

    /// How many inodes the view holds now.
    pub fn inodes(&self) -> usize {
        crate::lock(&self.table).by_ino.len()
    }

    #[cfg(test)]
    pub(super) fn sweep_now(&self) {
        crate::lock(&self.table).sweep();
    }
}

/// The name of a kept version in `versions/<path>/`.
pub fn version_name(id: VersionId) -> String {
    format!("{}_{id}", version_time(id))
}

fn read_only() -> VfsError {
    VfsError::new(libc::EROFS, "the history view is read-only".to_string())
}

fn not_found(what: impl std::fmt::Display) -> VfsError {
    VfsError::new(libc::ENOENT, format!("{what}: not in the history view"))
}

impl Vfs {
    /// The view, when the mount has one.
    fn view(&self) -> Option<&PastView> {
        self.past.as_ref()
    }

    /// Whether `name` in `parent` is the view's own name at the root.
    pub(super) fn is_view_name(&self, parent: u64, name: &[u8]) -> bool {
        parent == ROOT_INO && self.view().is_some_and(|view| view.name == name)
    }

    /// The error for a change at `parent`/`name` the view refuses: inside
    /// it, or of its name at the root.
    pub(super) fn refused_in_view(&self, parent: u64, name: &OsStr) -> Option<VfsError> {
        (is_virtual(parent) || self.is_view_name(parent, name.as_bytes())).then(read_only)
    }

    /// The view's answer to a lookup, if it is the view's to give.
    pub(super) fn past_lookup(&self, parent: u64, name: &OsStr) -> Option<VfsResult<Attr>> {
        let view = self.view()?;
        if self.is_view_name(parent, name.as_bytes()) {
            let ino = view.ino(Place::Top, None, true);
            return Some(Ok(self.view_dir(ino)));
        }
        if !is_virtual(parent) {
            return None;
        }
        Some(self.view_lookup(view, parent, name.as_bytes()))
    }

    fn view_lookup(&self, view: &PastView, parent: u64, name: &[u8]) -> VfsResult<Attr> {
        let text = || String::from_utf8_lossy(name).into_owned();
        let (place, _) = view.place(parent)?;
        match place {
            Place::Top => match name {
                b"at" => Ok(self.view_dir(view.ino(Place::AtList, None, true))),
                b"versions" => {
                    let place = Place::Versions {
                        path: VPath::root(),
                    };
                    Ok(self.view_dir(view.ino(place, None, true)))
                }
                _ => Err(not_found(text())),
            },
            Place::AtList => {
                let time = std::str::from_utf8(name).map_err(|_| not_found(text()))?;
                let moment: Moment = time.parse().map_err(|_| not_found(text()))?;
                let root = self.store.current_at(&VPath::root(), &moment)?;
                let place = Place::At {
                    time: time.to_string(),
                    path: VPath::root(),
                };
                let ino = view.ino(place, root.clone(), true);
                Ok(self.past_attr(ino, root.as_ref()))
            }
            Place::At { time, path } => {
                let moment = moment_of(&time)?;
                let child = path
                    .join(name)
                    .map_err(|err| VfsError::new(libc::EINVAL, err.to_string()))?;
                let version = self
                    .store
                    .live_at(&child, &moment)?
                    .ok_or_else(|| not_found(format!("{child} at {time}")))?;
                let ino = view.ino(Place::At { time, path: child }, Some(version.clone()), true);
                Ok(self.past_attr(ino, Some(&version)))
            }
            Place::Versions { path } => {
                let child = path
                    .join(name)
                    .map_err(|err| VfsError::new(libc::EINVAL, err.to_string()))?;
                if !self.lists_names(&path)? {
                    // A file's versions: `<time>_<id>`.
                    let id = std::str::from_utf8(name)
                        .ok()
                        .and_then(|name| name.rsplit_once('_'))
                        .and_then(|(_, id)| id.parse::<VersionId>().ok())
                        .filter(|id| version_name(*id).as_bytes() == name)
                        .ok_or_else(|| not_found(text()))?;
                    let version = match self.store.read_version(&path, id) {
                        Ok(version) if version.kind == Kind::File => version,
                        Ok(_) => return Err(not_found(text())),
                        Err(err) if err.is_not_found() => return Err(not_found(text())),
                        Err(err) => return Err(err.into()),
                    };
                    let ino = view.ino(Place::Version { path, id }, Some(version.clone()), true);
                    return Ok(self.past_attr(ino, Some(&version)));
                }
                if self.store.version_ids(&child)?.is_empty() {
                    return Err(not_found(child));
                }
                Ok(self.view_dir(view.ino(Place::Versions { path: child }, None, true)))
            }
            Place::Version { .. } => Err(VfsError::new(
                libc::ENOTDIR,
                format!("{}: not a directory", text()),
            )),
        }
    }

    /// The view's answer to a getattr, if `ino` is the view's.
    pub(super) fn past_getattr(&self, ino: u64) -> Option<VfsResult<Attr>> {
        if !is_virtual(ino) {
            return None;
        }
        let view = self.view()?;
        Some(view.place(ino).map(|(place, version)| match place {
            Place::At { .. } | Place::Version { .. } => self.past_attr(ino, version.as_ref()),
            _ => self.view_dir(ino),
        }))
    }

    /// The view's listing of `ino`, if it is the view's.
    pub(super) fn past_readdir(&self, ino: u64) -> Option<VfsResult<Vec<DirEntry>>> {
        if !is_virtual(ino) {
            return None;
        }
        let view = self.view()?;
        Some(self.view_readdir(view, ino))
    }

    fn view_readdir(&self, view: &PastView, ino: u64) -> VfsResult<Vec<DirEntry>> {
        let (place, _) = view.place(ino)?;
        let dir = |name: &str, place: Place| DirEntry {
            name: name.as_bytes().to_vec(),
            attr: self.view_dir(view.ino(place, None, false)),
        };
        match place {
            Place::Top => Ok(vec![
                dir("at", Place::AtList),
                dir(
                    "versions",
                    Place::Versions {
                        path: VPath::root(),
                    },
                ),
            ]),
            Place::AtList => {
                let mut out = Vec::new();
                for time in self.recent_points()? {
                    let moment = moment_of(&time)?;
                    let root = self.store.current_at(&VPath::root(), &moment)?;
                    let place = Place::At {
                        time: time.clone(),
                        path: VPath::root(),
                    };
                    let ino = view.ino(place, root.clone(), false);
                    out.push(DirEntry {
                        name: time.into_bytes(),
                        attr: self.past_attr(ino, root.as_ref()),
                    });
                }
                Ok(out)
            }
            Place::At { time, path } => {
                let moment = moment_of(&time)?;
                let entries = self.store.list_dir_at(&path, &moment)?;
                let mut out = Vec::with_capacity(entries.len());
                for entry in entries {
                    let Ok(child) = path.join(&entry.name) else {
                        continue;
                    };
                    let place = Place::At {
                        time: time.clone(),
                        path: child,
                    };
                    let ino = view.ino(place, Some(entry.version.clone()), false);
                    out.push(DirEntry {
                        attr: self.past_attr(ino, Some(&entry.version)),
                        name: entry.name,
                    });
                }
                Ok(out)
            }
            Place::Versions { path } => {
                if !self.lists_names(&path)? {
                    let mut out = Vec::new();
                    for version in self.store.versions(&path)? {
                        if version.kind != Kind::File {
                            continue;
                        }
                        let name = version_name(version.id);
                        let place = Place::Version {
                            path: path.clone(),
                            id: version.id,
                        };
                        let ino = view.ino(place, Some(version.clone()), false);
                        out.push(DirEntry {
                            name: name.into_bytes(),
                            attr: self.past_attr(ino, Some(&version)),
                        });
                    }
                    return Ok(out);
                }
                // Every name the directory ever had (deleted ones too).
                let entries = self.store.list_dir_by(
                    &path,
                    |_| None,
                    |child| match self.store.current(child)? {
                        // The directory itself, deleted since: listed all the same.
                        Some(v) if child == &path => Ok(Some(Version {
                            kind: Kind::Dir,
                            ..v
                        })),
                        other => Ok(other),
                    },
                )?;
                let mut out = Vec::with_capacity(entries.len());
                for entry in entries {
                    let Ok(child) = path.join(&entry.name) else {
                        continue;
                    };
                    if path.is_root() && self.is_view_name(ROOT_INO, &entry.name) {
                        continue;
                    }
                    out.push(DirEntry {
                        attr: self.view_dir(view.ino(Place::Versions { path: child }, None, false)),
                        name: entry.name,
                    });
                }
                Ok(out)
            }
            Place::Version { .. } => Err(VfsError::new(
                libc::ENOTDIR,
                format!("inode {ino}: not a directory"),
            )),
        }
    }

    /// Whether `versions/<path>` lists names (a directory: the root, or a
    /// path whose newest live version is a directory, deleted since or not)
    /// rather than a file's versions.
    fn lists_names(&self, path: &VPath) -> VfsResult<bool> {
        if path.is_root() {
            return Ok(true);
        }
        let versions = self.store.versions(path)?;
        Ok(versions
            .iter()
            .rev()
            .find(|v| v.kind.is_live())
            .is_some_and(|v| v.kind == Kind::Dir))
    }

    /// Lists the times `passes` gives (Unix seconds of recent sync passes)
    /// in `at/` too.
    pub fn with_pass_times(mut self, passes: PassTimes) -> Vfs {
        if let Some(view) = self.past.as_mut() {
            view.passes = Some(passes);
        }
        self
    }

    /// Points worth listing in `at/`, newest first: the end of each of the
    /// most recent hours in which some version this node holds was made
    /// (from the journal, read only now) and the last sync passes.
    fn recent_points(&self) -> VfsResult<Vec<String>> {
        let mut points: BTreeSet<u64> = self
            .recent_hours()?
            .into_iter()
            .map(|hour| (hour + 1) * 3600)
            .take(MAX_POINTS)
            .collect();
        if let Some(passes) = self.view().and_then(|view| view.passes.as_ref()) {
            points.extend(passes().into_iter().take(MAX_PASSES));
        }
        Ok(points
            .iter()
            .rev()
            .map(|&secs| crate::when::rfc3339(secs, 0))
            .collect())
    }

    /// The most recent hours (Unix seconds / 3600) in which some version in
    /// the journal was made, newest first.
    fn recent_hours(&self) -> VfsResult<Vec<u64>> {
        let dir = self.store.journal().dir().to_path_buf();
        let mut at = crate::store::journal::Position::default();
        let mut hours = BTreeSet::new();
        let mut read = 0;
        while read < MAX_JOURNAL_LINES {
            let batch = crate::store::journal::read(&dir, &at, 65_536)?;
            if batch.lines.is_empty() {
                break;
            }
            read += batch.lines.len();
            for line in &batch.lines {
                if let Some(id) = line
                    .split(' ')
                    .next()
                    .and_then(|id| id.parse::<VersionId>().ok())
                {
                    hours.insert(id.secs / 3600);
                }
            }
            at = batch.next;
            if batch.stuck.is_some() {
                break;
            }
        }
        Ok(hours.into_iter().rev().take(MAX_POINTS).collect())
    }

    /// The kernel took a reference on a view inode without a lookup.
    pub(super) fn past_remember(&self, ino: u64) {
        if let Some(view) = self.view() {
            view.remember(ino);
        }
    }

    /// The kernel dropped references on a view inode.
    pub(super) fn past_forget(&self, ino: u64, count: u64) {
        if let Some(view) = self.view() {
            view.forget(ino, count);
        }
    }

    #[cfg(test)]
    pub(super) fn past_sweep_now(&self) {
        if let Some(view) = self.view() {
            view.sweep_now();
        }
    }

    /// How many inodes the history view holds (0 without a view).
    pub fn view_inodes(&self) -> usize {
        self.view().map_or(0, PastView::inodes)
    }

    /// Opens a file of the view for reading (EROFS for writing).
    pub(super) fn past_open(&self, ino: u64, write: bool) -> Option<VfsResult<Opened>> {
        if !is_virtual(ino) {
            return None;
        }
        let view = self.view()?;
        Some((|| {
            if write {
                return Err(read_only());
            }
            let (place, version) = view.place(ino)?;
            let version = match (place, version) {
                (Place::At { .. } | Place::Version { .. }, Some(v)) if v.kind == Kind::File => v,
                (Place::At { .. } | Place::Version { .. }, Some(v)) if v.kind == Kind::Dir => {
                    return Err(VfsError::new(
                        libc::EISDIR,
                        format!("{}: a directory", v.path),
                    ));
                }
                (Place::At { .. } | Place::Version { .. }, _) => {
                    return Err(VfsError::new(
                        libc::EINVAL,
                        format!("inode {ino}: not a file"),
                    ));
                }
                _ => {
                    return Err(VfsError::new(
                        libc::EISDIR,
                        format!("inode {ino}: a directory"),
                    ));
                }
            };
            let mut table = crate::lock(&view.table);
            let fh = VIRTUAL_BASE + table.next_fh;
            table.next_fh += 1;
            table.handles.insert(fh, version);
            Ok(Opened {
                fh,
                backing: None,
                shares_cache: false,
                // A past version never changes: the kernel may keep its pages.
                keep_cache: true,
                stale_attrs: false,
            })
        })())
    }

    /// Reads from a handle of the view (blocks not here are pulled from
    /// peers by the store's read, as for any read).
    pub(super) fn past_read(&self, fh: u64, offset: u64, size: u32) -> Option<VfsResult<Vec<u8>>> {
        if !is_virtual(fh) {
            return None;
        }
        let view = self.view()?;
        let version = crate::lock(&view.table).handles.get(&fh).cloned();
        Some((|| {
            let version = version
                .ok_or_else(|| VfsError::new(libc::EBADF, format!("no open file handle {fh}")))?;
            let want = u64::from(size).min(version.size.saturating_sub(offset)) as usize;
            let mut buf = vec![0u8; want];
            let mut done = 0;
            while done < want {
                let n = self
                    .store
                    .read_at(&version, offset + done as u64, &mut buf[done..])?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            buf.truncate(done);
            Ok(buf)
        })())
    }

    /// Closes a handle of the view; `false` when `fh` is not the view's.
    pub(super) fn past_release(&self, fh: u64) -> bool {
        if !is_virtual(fh) {
            return false;
        }
        if let Some(view) = self.view() {
            crate::lock(&view.table).handles.remove(&fh);
        }
        true
    }

    /// A symlink's target in the view.
    pub(super) fn past_readlink(&self, ino: u64) -> Option<VfsResult<Vec<u8>>> {
        if !is_virtual(ino) {
            return None;
        }
        let view = self.view()?;
        Some(view.place(ino).and_then(|(_, version)| match version {
            Some(v) if v.kind == Kind::Symlink => Ok(v.target.unwrap_or_default()),
            _ => Err(VfsError::new(
                libc::EINVAL,
                format!("inode {ino}: not a symbolic link"),
            )),
        }))
    }

    /// A directory of the view's own (`.globofs`, `at`, `versions/...`).
    fn view_dir(&self, ino: u64) -> Attr {
        let time = self
            .view()
            .map_or(SystemTime::UNIX_EPOCH, |view| view.started);
        Attr {
            ino,
            kind: NodeKind::Dir,
            size: 0,
            perm: 0o555,
            mtime: time,
            nlink: 2,
            uid: self.uid,
            gid: self.gid,
            atime: time,
            ctime: time,
            rdev: 0,
            blocks: 0,
        }
    }

    /// A past version as the view shows it: its own attributes, no write
    /// permission (a directory without a version then: a plain one).
    fn past_attr(&self, ino: u64, version: Option<&Version>) -> Attr {
        let Some(version) = version else {
            return self.view_dir(ino);
        };
        let kind = match version.kind {
            Kind::Dir => NodeKind::Dir,
            Kind::Symlink => NodeKind::Symlink,
            _ => NodeKind::File,
        };
        let keep = self.ownership == crate::spec::Ownership::Keep;
        let changed =
            SystemTime::UNIX_EPOCH + std::time::Duration::new(version.id.secs, version.id.nanos);
        let perm = if kind == NodeKind::Symlink {
            0o777
        } else {
            (version.mode & 0o7555) as u16
        };
        Attr {
            ino,
            kind,
            size: if kind == NodeKind::Symlink {
                version.target.as_ref().map_or(0, |t| t.len() as u64)
            } else {
                version.size
            },
            perm,
            mtime: version.mtime.to_system(),
            nlink: if kind == NodeKind::Dir { 2 } else { 1 },
            uid: version.posix.uid.filter(|_| keep).unwrap_or(self.uid),
            gid: version.posix.gid.filter(|_| keep).unwrap_or(self.gid),
            atime: version
                .posix
                .atime
                .map_or(version.mtime.to_system(), |t| t.to_system()),
            ctime: changed,
            rdev: 0,
            blocks: version.size.div_ceil(512),
        }
    }
}

/// The moment an `at/` name stands for (it parsed when it was looked up).
fn moment_of(time: &str) -> VfsResult<Moment> {
    time.parse().map_err(|_| not_found(format!("at/{time}")))
}
