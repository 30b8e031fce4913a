//! Reading the tree: a path's version files, its current version (decided from
//! the version files, never from the log), directory listings (on several
//! threads for large directories) and walks.

use super::read_dir_if_present;
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{Entry, IoContext, Kind, Store, StoreError, Version, heads, resolve, version};
use crate::ids::VersionId;
use crate::layout::{VPath, is_hashed_name, name_from_disk};

/// Threads that decide the entries of a large directory listing at once.
const LIST_THREADS: usize = 8;

/// The current version of every path, in order: from `known` (answers from
/// memory, `None` when it does not know) or else from `live`. When many paths
/// are not known, they are decided on several threads: deciding a path with a
/// cold cache is a few small random reads, and a disk serves many of those at
/// once (a listing of 1,000 entries would otherwise wait for them one after
/// another).
pub(super) fn live_all(
    paths: &[VPath],
    known: impl Fn(&VPath) -> Option<Option<Version>>,
    live: &(impl Fn(&VPath) -> Result<Option<Version>, StoreError> + Sync),
) -> Result<Vec<Option<Version>>, StoreError> {
    let mut out: Vec<Option<Option<Version>>> = paths.iter().map(known).collect();
    let missing: Vec<usize> = (0..paths.len()).filter(|i| out[*i].is_none()).collect();
    let unknown: Vec<VPath> = missing.iter().map(|i| paths[*i].clone()).collect();
    for (index, version) in missing.into_iter().zip(decide_all(&unknown, live)?) {
        out[index] = Some(version);
    }
    Ok(out.into_iter().map(Option::flatten).collect())
}

/// `live` of every path, in order, on several threads for many paths.
pub(super) fn decide_all(
    paths: &[VPath],
    live: &(impl Fn(&VPath) -> Result<Option<Version>, StoreError> + Sync),
) -> Result<Vec<Option<Version>>, StoreError> {
    if paths.len() < 4 * LIST_THREADS {
        return paths.iter().map(live).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut found: Vec<(usize, Option<Version>)> = Vec::with_capacity(paths.len());
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..LIST_THREADS)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(path) = paths.get(index) else {
                            return Ok(mine);
                        };
                        match live(path) {
                            Ok(version) => mine.push((index, version)),
                            Err(err) => {
                                // Stop the others early too.
                                next.store(paths.len(), std::sync::atomic::Ordering::Relaxed);
                                return Err(err);
                            }
                        }
                    }
                })
            })
            .collect();
        let mut first_error = None;
        for worker in workers {
            match worker.join() {
                Ok(Ok(mine)) => found.extend(mine),
                Ok(Err(err)) => {
                    first_error.get_or_insert(err);
                }
                Err(_) => {
                    first_error.get_or_insert(StoreError::Internal(
                        "a listing thread panicked".to_string(),
                    ));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    })?;
    found.sort_unstable_by_key(|(index, _)| *index);
    Ok(found.into_iter().map(|(_, version)| version).collect())
}

impl Store {
    /// The ids of all versions of `path`, ascending.
    pub fn version_ids(&self, path: &VPath) -> Result<Vec<VersionId>, StoreError> {
        version_ids_in(&self.versions_dir(path))
    }

    /// Reads one version file of `path`.
    pub fn read_version(&self, path: &VPath, id: VersionId) -> Result<Version, StoreError> {
        let file = self.versions_dir(path).join(id.to_string());
        let version = read_version_file(&file)?;
        if version.id != id || version.path != *path {
            return Err(StoreError::Corrupt {
                path: file,
                why: format!("it says it is version {} of {}", version.id, version.path),
            });
        }
        Ok(version)
    }

    /// Every version of `path`, ascending by id.
    pub fn versions(&self, path: &VPath) -> Result<Vec<Version>, StoreError> {
        let mut out = Vec::new();
        for id in self.version_ids(path)? {
            if let Some(version) = self.read_listed(path, id)? {
                out.push(version);
            }
        }
        Ok(out)
    }

    /// Reads a version file just listed. Readers take no lock, so `prune` may
    /// remove an old version between the listing and the read: such a version
    /// is gone from the history, not an error.
    pub(super) fn read_listed(
        &self,
        path: &VPath,
        id: VersionId,
    ) -> Result<Option<Version>, StoreError> {
        match self.read_version(path, id) {
            Ok(version) => Ok(Some(version)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The current version of `path` (a tombstone if deleted), or `None` when it
    /// never existed here. Decided from the version files, never from the log.
    pub fn current(&self, path: &VPath) -> Result<Option<Version>, StoreError> {
        if let Some(heads) = self.heads.by_log(self, path) {
            return Ok(resolve::resolve(&heads).current.cloned());
        }
        let stamp = heads::LogStamp::of(self, path);
        let ids = self.version_ids(path)?;
        let Some(&newest) = ids.last() else {
            return Ok(None);
        };
        // The newest version is always a head (a child's id exceeds its parents').
        // A live directory head beats every other head (resolve's rank: live, then
        // directory, then id); a newest file or symlink may still lose to an older,
        // concurrent directory head, so only a sole or directory version is decided
        // without reading the others. A long history goes to the remembered
        // heads straight away (they read only what is new, the newest included).
        if ids.len() >= heads::MIN_VERSIONS {
            let heads = self.heads.of(self, path, &ids, stamp)?;
            return Ok(resolve::resolve(&heads).current.cloned());
        }
        if let Some(top) = self.decided_by_newest(path, newest, ids.len())? {
            return Ok(Some(top));
        }
        let heads = self.heads.of(self, path, &ids, stamp)?;
        Ok(resolve::resolve(&heads).current.cloned())
    }

    /// The current version of `path` if it is live (not deleted).
    pub fn live(&self, path: &VPath) -> Result<Option<Version>, StoreError> {
        Ok(self.current(path)?.filter(|v| v.kind.is_live()))
    }

    /// The heads of `path` (parents of a new version).
    pub fn heads(&self, path: &VPath) -> Result<Vec<VersionId>, StoreError> {
        if let Some(heads) = self.heads.by_log(self, path) {
            return Ok(resolve::resolve(&heads)
                .heads
                .iter()
                .map(|v| v.id)
                .collect());
        }
        let stamp = heads::LogStamp::of(self, path);
        let ids = self.version_ids(path)?;
        match ids.len() {
            0 => Ok(Vec::new()),
            1 => Ok(ids),
            _ => {
                let heads = self.heads.of(self, path, &ids, stamp)?;
                Ok(resolve::resolve(&heads)
                    .heads
                    .iter()
                    .map(|v| v.id)
                    .collect())
            }
        }
    }

    /// Whether `path` is a live directory (the root always is).
    pub fn is_dir(&self, path: &VPath) -> Result<bool, StoreError> {
        if path.is_root() {
            return Ok(true);
        }
        Ok(self.live(path)?.is_some_and(|v| v.kind == Kind::Dir))
    }

    /// The live entries of directory `path`, sorted by name.
    pub fn list_dir(&self, path: &VPath) -> Result<Vec<Entry>, StoreError> {
        self.list_dir_by(path, |_| None, |child| self.live(child))
    }

    /// [`Store::list_dir`], taking each path's current version from `known`
    /// where it answers (the mount's cache) and deciding the rest with `live`.
    pub fn list_dir_by(
        &self,
        path: &VPath,
        known: impl Fn(&VPath) -> Option<Option<Version>>,
        live: impl Fn(&VPath) -> Result<Option<Version>, StoreError> + Sync,
    ) -> Result<Vec<Entry>, StoreError> {
        // The root is always a directory, with or without a version of its own.
        if !path.is_root() {
            match live(path)? {
                Some(v) if v.kind == Kind::Dir => {}
                Some(_) => return Err(StoreError::NotADirectory(path.clone())),
                None => return Err(StoreError::NotFound(path.clone())),
            }
        }
        let dir = self.path_dir(path);
        let mut children = Vec::new();
        let Some(listing) = read_dir_if_present(&dir)? else {
            return Ok(Vec::new());
        };
        for item in listing {
            let item = item.at(&dir)?;
            let disk = item.file_name();
            let child = match name_from_disk(&disk) {
                Some(name) => path.join(&name)?,
                None if is_hashed_name(&disk) => match self.hashed_child(&dir.join(&disk))? {
                    Some(child) => child,
                    None => continue,
                },
                None => continue,
            };
            children.push(child);
        }
        let mut entries: Vec<Entry> = live_all(&children, known, &live)?
            .into_iter()
            .zip(&children)
            .filter_map(|(version, child)| {
                Some(Entry {
                    name: child.file_name().unwrap_or_default().to_vec(),
                    version: version?,
                })
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// The path of a long-named entry, from its newest version file.
    pub(crate) fn hashed_child(&self, dir: &Path) -> Result<Option<VPath>, StoreError> {
        let ids = version_ids_in(&dir.join("versions"))?;
        match ids.last() {
            Some(id) => Ok(Some(
                read_version_file(&dir.join("versions").join(id.to_string()))?.path,
            )),
            None => Ok(None),
        }
    }

    /// The newest of `count` versions of `path` when it wins without reading
    /// the others (a directory, or the only one); `None` when the others
    /// decide (it is a file or symlink, torn, or gone since the listing).
    pub(super) fn decided_by_newest(
        &self,
        path: &VPath,
        newest: VersionId,
        count: usize,
    ) -> Result<Option<Version>, StoreError> {
        match self.read_version(path, newest) {
            Ok(top) if top.kind == Kind::Dir || count == 1 => Ok(Some(top)),
            Ok(_) => Ok(None),
            // A version file torn by a crash before it was flushed: the older ones decide.
            Err(err @ StoreError::Corrupt { .. }) => {
                tracing::warn!(path = %path, error = %err, "skipping an unreadable version file");
                Ok(None)
            }
            // Pruned (or the path's history dropped) since the listing.
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Every live path below `path` (depth first, sorted), with its version.
    pub fn walk(&self, path: &VPath) -> Result<Vec<(VPath, Version)>, StoreError> {
        walk_with(path, |dir| self.list_dir(dir))
    }
}

/// Every path below `path` that `list` shows (depth first, sorted by path),
/// with its version: the walk of the current tree and of a past one.
pub(super) fn walk_with(
    path: &VPath,
    list: impl Fn(&VPath) -> Result<Vec<Entry>, StoreError>,
) -> Result<Vec<(VPath, Version)>, StoreError> {
    let mut out = Vec::new();
    let mut stack = vec![path.clone()];
    while let Some(dir) = stack.pop() {
        for entry in list(&dir)? {
            let child = dir.join(&entry.name)?;
            if entry.version.kind == Kind::Dir {
                stack.push(child.clone());
            }
            out.push((child, entry.version));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Version ids in a `versions/` directory, ascending; other names are ignored.
pub fn version_ids_in(dir: &Path) -> Result<Vec<VersionId>, StoreError> {
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(err)
            if err.kind() == ErrorKind::NotFound || err.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Ok(Vec::new());
        }
        Err(err) => return Err(StoreError::io(dir, err)),
    };
    let mut ids = Vec::new();
    for item in listing {
        let item = item.at(dir)?;
        if let Some(id) = item
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<VersionId>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Reads and parses one version file (not following a symlink).
pub fn read_version_file(file: &Path) -> Result<Version, StoreError> {
    // Something that is not a readable version file (a directory or a
    // symlink where the file belongs, no permission) is unreadable like a
    // file of garbage: readers skip it with a warning (FORMAT §10) and gc,
    // verify and prune report it, rather than failing a whole listing.
    let unreadable = |err: std::io::Error| match err.raw_os_error() {
        Some(libc::EISDIR | libc::ELOOP | libc::EACCES | libc::EPERM) => StoreError::Corrupt {
            path: file.to_path_buf(),
            why: format!("not a readable version file: {err}"),
        },
        _ => StoreError::io(file, err),
    };
    let mut handle = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(file)
        .map_err(unreadable)?;
    // Most version files fit: one read and one at the end, not a growing series.
    let mut bytes = Vec::with_capacity(16 << 10);
    (&mut handle)
        .take(version::MAX_VERSION_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    Version::parse(file, &bytes)
}

/// Names of the user entries of a `root/` directory on disk (for tools and tests).
pub fn user_entries(dir: &Path) -> Result<Vec<OsString>, StoreError> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir).at(dir)? {
        let name = item.at(dir)?.file_name();
        if name_from_disk(&name).is_some() || is_hashed_name(&name) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}
