//! The heads of paths, remembered per process, so deciding the current
//! version of a file saved thousands of times reads only the version files
//! added since the last look instead of all of them, and a file this process
//! just committed is decided without reading anything.
//!
//! A version supersedes its parents, and through them their parents; but the
//! parents of a present version are themselves superseded by it directly, so the
//! heads of a path (FORMAT §10) are exactly its readable versions whose id no
//! readable version lists as a parent. That set is updated one new version at a
//! time: its parents join the superseded ids, it joins the heads, and heads it
//! supersedes leave. A history that lost versions since (prune, or a file gone)
//! is decided afresh. Only what parses counts, as for a full decision: a
//! version that does not parse yet (torn) is not remembered and is read again
//! next time.
//!
//! Listing `versions/` is itself the cost once a history is long (a file
//! made and removed at every commit, as SQLite's journal is). Every
//! publication of a version (a commit, an import, a recovery) appends to the
//! path's `versions/log` under its lock, so the log's identity and length
//! (its *stamp*) change with every version added. Remembered heads carry the
//! stamp the log had before the listing they came from, and are used
//! without listing while the log still has it and their files are there,
//! for at most [`MAX_AGE`] after that listing (what bounds a version a killed writer published
//! without its log line, as the live cache's own bound does). A commit of
//! this process, under the log lock, takes its own version in and moves the
//! stamp on, keeping the listing's age.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use std::collections::{HashMap, HashSet};

use crate::ids::VersionId;
use crate::layout::VPath;
use crate::lock;

use super::{Store, StoreError, Version};

/// Histories shorter than this are decided by reading them whole when
/// nothing remembered answers (cheap); longer ones always go through the
/// remembered heads.
pub const MIN_VERSIONS: usize = 16;

/// Version ids remembered over all paths at most (about 60 bytes each); the
/// memory starts again empty when it would hold more.
const MAX_IDS: usize = 200_000;

/// Paths remembered at most (the memory starts again empty past it).
const MAX_PATHS: usize = 16_384;

/// How long remembered heads are used without listing `versions/` again.
pub const MAX_AGE: Duration = Duration::from_secs(5);

/// What identifies a path's `versions/log` as it is: a version added
/// appends a line, so the stamp moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogStamp {
    dev: u64,
    ino: u64,
    len: u64,
}

impl LogStamp {
    pub fn of_meta(meta: &std::fs::Metadata) -> LogStamp {
        LogStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
        }
    }

    /// The stamp of `path`'s log now (`None` when it has none).
    pub fn of(store: &Store, path: &VPath) -> Option<LogStamp> {
        std::fs::metadata(store.versions_dir(path).join("log"))
            .ok()
            .map(|meta| LogStamp::of_meta(&meta))
    }
}

#[derive(Default)]
struct Known {
    /// The log's stamp before the listing these heads came from, and when
    /// that listing was made.
    stamp: Option<(LogStamp, Instant)>,
    /// Readable version ids taken in, ascending.
    ids: Vec<VersionId>,
    /// Every parent id those versions list.
    superseded: HashSet<VersionId>,
    /// Those versions that nothing in `superseded` names.
    heads: Vec<Version>,
}

/// See the module documentation.
#[derive(Default)]
pub struct Heads {
    known: std::sync::Mutex<(HashMap<VPath, Known>, usize)>,
}

impl Heads {
    /// The remembered heads of `path` if its log still has the stamp they
    /// were read at, and they are younger than [`MAX_AGE`]: no listing.
    pub fn by_log(&self, store: &Store, path: &VPath) -> Option<Vec<Version>> {
        let stamp = LogStamp::of(store, path)?;
        let guard = lock(&self.known);
        let known = guard.0.get(path)?;
        match known.stamp {
            // A head whose file went away (a damaged disk, a repair) is
            // decided afresh at once.
            Some((seen, listed))
                if seen == stamp
                    && listed.elapsed() < MAX_AGE
                    && known.heads.iter().all(|head| {
                        store.versions_dir(path).join(head.id.to_string()).exists()
                    }) =>
            {
                Some(known.heads.clone())
            }
            _ => None,
        }
    }

    /// Forgets what is remembered of `path` (a version file was put there
    /// without a line in its log: a replay).
    pub fn forget(&self, path: &VPath) {
        let mut guard = lock(&self.known);
        let (paths, total) = &mut *guard;
        if let Some(known) = paths.remove(path) {
            *total -= known.ids.len();
        }
    }

    /// `version` was just published at `path` by this process and logged,
    /// under the log's lock: the log went from `before` to `after`. Heads
    /// remembered at `before` take it in and are at `after` now. `first`:
    /// `path` had no version file when it was listed under that lock, so
    /// `version` is its whole history now (a new path: the next look at it,
    /// a directory's times after a create among them, reads nothing).
    pub fn committed(
        &self,
        path: &VPath,
        version: &Version,
        before: LogStamp,
        after: LogStamp,
        first: bool,
    ) {
        let mut guard = lock(&self.known);
        let (paths, total) = &mut *guard;
        if first && !paths.contains_key(path) {
            make_room(paths, total, 1);
            let known = Known {
                stamp: Some((after, Instant::now())),
                ids: vec![version.id],
                superseded: version.parents.iter().copied().collect(),
                heads: vec![version.clone()],
            };
            *total += 1;
            paths.insert(path.clone(), known);
            return;
        }
        let Some(known) = paths.get_mut(path) else {
            return;
        };
        match known.stamp {
            Some((seen, listed)) if seen == before => {
                known.superseded.extend(version.parents.iter().copied());
                let superseded = &known.superseded;
                known.heads.retain(|head| !superseded.contains(&head.id));
                if !superseded.contains(&version.id) {
                    known.heads.push(version.clone());
                }
                if let Err(at) = known.ids.binary_search(&version.id) {
                    known.ids.insert(at, version.id);
                    *total += 1;
                }
                known.stamp = Some((after, listed));
            }
            _ => known.stamp = None,
        }
    }

    /// The heads of `path`, whose version files are `ids` (ascending) now,
    /// listed when its log had `stamp`.
    pub fn of(
        &self,
        store: &Store,
        path: &VPath,
        ids: &[VersionId],
        stamp: Option<LogStamp>,
    ) -> Result<Vec<Version>, StoreError> {
        // A short history is remembered only with its log's stamp: then
        // the next answers, and this process's own commits, read nothing.
        if ids.len() < MIN_VERSIONS && stamp.is_none() {
            let mut fresh = Known::default();
            take_in(store, path, &mut fresh, ids)?;
            return Ok(fresh.heads);
        }
        let mut guard = lock(&self.known);
        let (paths, total) = &mut *guard;
        let mut known = paths.remove(path).unwrap_or_default();
        *total -= known.ids.len();
        let new = match added_since(&known.ids, ids) {
            Some(new) => new,
            None => {
                // Versions went away (pruned): decide afresh.
                known = Known::default();
                ids.to_vec()
            }
        };
        let torn = take_in(store, path, &mut known, &new)?;
        // A torn version is read again next time: no listing is skipped
        // while one is there.
        known.stamp = stamp.filter(|_| !torn).map(|stamp| (stamp, Instant::now()));
        let heads = known.heads.clone();
        make_room(paths, total, known.ids.len());
        if known.ids.len() <= MAX_IDS {
            *total += known.ids.len();
            paths.insert(path.clone(), known);
        }
        Ok(heads)
    }
}

/// Empties the memory when `adding` more ids would pass [`MAX_IDS`] or one
/// more path [`MAX_PATHS`].
fn make_room(paths: &mut HashMap<VPath, Known>, total: &mut usize, adding: usize) {
    if *total + adding > MAX_IDS || paths.len() >= MAX_PATHS {
        paths.clear();
        *total = 0;
    }
}

/// The heads among versions `ids` of `path` alone (the path's history up
/// to a moment: `past.rs`), read afresh and not remembered.
pub(super) fn heads_among(
    store: &Store,
    path: &VPath,
    ids: &[VersionId],
) -> Result<Vec<Version>, StoreError> {
    let mut fresh = Known::default();
    take_in(store, path, &mut fresh, ids)?;
    Ok(fresh.heads)
}

/// Reads versions `ids` of `path` into `known`; true if one was torn
/// (unreadable, skipped).
fn take_in(
    store: &Store,
    path: &VPath,
    known: &mut Known,
    ids: &[VersionId],
) -> Result<bool, StoreError> {
    let mut added = Vec::new();
    let mut torn = false;
    for &id in ids {
        match store.read_version(path, id) {
            Ok(version) => {
                known.superseded.extend(version.parents.iter().copied());
                added.push(id);
                known.heads.push(version);
            }
            // Pruned or replaced since the listing.
            Err(err) if err.is_not_found() => {}
            Err(err @ StoreError::Corrupt { .. }) => {
                tracing::warn!(path = %path, error = %err, "skipping an unreadable version file");
                torn = true;
            }
            Err(err) => return Err(err),
        }
    }
    let superseded = &known.superseded;
    known.heads.retain(|head| !superseded.contains(&head.id));
    if !added.is_empty() {
        known.ids.extend(added);
        known.ids.sort_unstable();
        known.ids.dedup();
    }
    Ok(torn)
}

/// The ids of `now` not in `known` (both ascending), in one pass; `None` when
/// some id of `known` is no longer in `now`.
fn added_since(known: &[VersionId], now: &[VersionId]) -> Option<Vec<VersionId>> {
    let mut added = Vec::new();
    let mut known = known.iter().peekable();
    for id in now {
        if known.peek() == Some(&id) {
            known.next();
        } else {
            added.push(*id);
        }
    }
    known.peek().is_none().then_some(added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Attrs;
    use std::io::Cursor;

    fn store() -> (tempfile::TempDir, crate::spec::Spec, Store) {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::store::scratch_spec(dir.path());
        let mut store = Store::open_spec(&spec).unwrap();
        // Long histories: every version kept (no coalescing).
        store.config_mut().coalesce = None;
        (dir, spec, store)
    }

    fn write(store: &Store, path: &VPath, bytes: &[u8]) -> Version {
        store
            .write_file(path, &mut Cursor::new(bytes), Attrs::default(), false)
            .unwrap()
    }

    /// The current version as a full read of every version file decides it.
    fn decided_whole(store: &Store, path: &VPath) -> Option<VersionId> {
        let all = store.versions(path).unwrap();
        crate::store::resolve::resolve(&all).current.map(|v| v.id)
    }

    #[test]
    fn a_long_history_is_decided_as_a_full_read_decides_it_at_every_step() {
        let (_dir, spec, store) = store();
        let path = VPath::from_escaped("f").unwrap();
        // Another process of the node writes too: its versions show up in the
        // listing only.
        let other = Store::open_spec(&spec).unwrap();
        for i in 0..(MIN_VERSIONS * 3) {
            let writer = if i % 3 == 0 { &other } else { &store };
            let made = write(writer, &path, format!("version {i}").as_bytes());
            let current = store.current(&path).unwrap().map(|v| v.id);
            assert_eq!(current, Some(made.id), "step {i}");
            assert_eq!(current, decided_whole(&store, &path), "step {i}");
            assert_eq!(store.heads(&path).unwrap(), vec![made.id], "step {i}");
        }
    }

    #[test]
    fn a_new_path_is_decided_from_memory_until_another_process_adds_to_it() {
        let (_dir, spec, store) = store();
        let other = Store::open_spec(&spec).unwrap();
        let path = VPath::from_escaped("new").unwrap();
        let made = write(&store, &path, b"first");
        // The version file, damaged in place: only a read would notice.
        let file = store.versions_dir(&path).join(made.id.to_string());
        let whole = std::fs::read(&file).unwrap();
        std::fs::write(&file, &whole[..whole.len() / 2]).unwrap();
        assert_eq!(store.current(&path).unwrap().map(|v| v.id), Some(made.id));
        assert_eq!(other.current(&path).unwrap(), None, "a reader sees it torn");
        std::fs::write(&file, &whole).unwrap();
        // Another process's version moves the log on: listed again.
        let theirs = write(&other, &path, b"second");
        assert_eq!(store.current(&path).unwrap().map(|v| v.id), Some(theirs.id));
        assert_eq!(store.heads(&path).unwrap(), vec![theirs.id]);
    }

    #[test]
    fn versions_gone_from_a_long_history_are_decided_afresh() {
        let (_dir, _spec, store) = store();
        let path = VPath::from_escaped("f").unwrap();
        let mut made = Vec::new();
        for i in 0..(MIN_VERSIONS + 4) {
            made.push(write(&store, &path, format!("v{i}").as_bytes()));
        }
        assert_eq!(
            store.current(&path).unwrap().unwrap().id,
            made.last().unwrap().id
        );
        // The newest version file goes away (as a prune or a damaged disk
        // could do): the one before is current again.
        let newest = made.pop().unwrap();
        std::fs::remove_file(store.versions_dir(&path).join(newest.id.to_string())).unwrap();
        assert_eq!(
            store.current(&path).unwrap().unwrap().id,
            made.last().unwrap().id
        );
        assert_eq!(
            store.current(&path).unwrap().map(|v| v.id),
            decided_whole(&store, &path)
        );
    }

    #[test]
    fn a_torn_newest_version_is_read_again_once_it_is_whole() {
        let (_dir, spec, store) = store();
        // Another process reads (the writer knows its own version whole).
        let reader = Store::open_spec(&spec).unwrap();
        let path = VPath::from_escaped("f").unwrap();
        let mut last = None;
        for i in 0..MIN_VERSIONS {
            last = Some(write(&store, &path, format!("v{i}").as_bytes()));
        }
        let before = last.unwrap();
        let newest = write(&store, &path, b"newest");
        let file = store.versions_dir(&path).join(newest.id.to_string());
        let whole = std::fs::read(&file).unwrap();
        std::fs::write(&file, &whole[..whole.len() / 2]).unwrap();
        assert_eq!(reader.current(&path).unwrap().unwrap().id, before.id);
        std::fs::write(&file, &whole).unwrap();
        assert_eq!(reader.current(&path).unwrap().unwrap().id, newest.id);
    }
}
