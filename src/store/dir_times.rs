//! Derived directory times and link counts (FORMAT §11, "Directory times"):
//! a directory's entries are separate paths, so a create, removal or rename
//! in it writes no version of the directory itself. What changed its
//! namespace last is read from its direct children's versions instead, and
//! remembered per directory in this process, kept true by the node's journal
//! (through [`super::live_cache::LiveCache`], which reads it).
//!
//! A child's *namespace change* is the latest version in its current
//! version's ancestry that created, removed or moved the name: a tombstone,
//! a version with `from` (a rename's target), a version without parents, or
//! one none of whose present parents is live (a create after a delete). A
//! version listing parents none of which is present any more (pruned) tells
//! nothing, unless it is a conflict copy (`conflict-of`: its parents are
//! the loser's, at another path), which is a create. A version with `from` whose source is the same name in the
//! directory's own `from` path (its entries moved along with it in one
//! rename) is not a change of the directory. The directory's *changed* time
//! is the highest such id over its children.
//!
//! Cheap: the ancestry of a child is walked only while it can beat what was
//! found already (a version's ids are above its parents', so nothing below
//! the best so far can matter), the children are taken newest first, and a
//! child changed since (a journal line named it) is walked only back to the
//! version remembered for it. A directory is rebuilt whole when a child's
//! change lowered the best time (a concurrent edit beat a delete), when its
//! own `from` changed, after [`MAX_AGE`], or when the journal cannot be
//! trusted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Kind, Store, StoreError, Version};
use crate::ids::VersionId;
use crate::layout::VPath;
use crate::lock;

/// How long a directory's summary is kept without a full rebuild (bounds
/// what a version published without its journal line can hide).
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// Children (and directories) remembered over all directories at most
/// (about 150 bytes each, so 150 MB at most); all summaries are dropped
/// when more would be held (a tree of more entries than this is summed up
/// afresh at each look, as every tree was past 200,000 before).
const MAX_CHILDREN: usize = 1_000_000;

/// Children marked changed in one directory before the whole directory is
/// rebuilt instead.
const MAX_MARKS: usize = 1024;

/// What a directory's entries say about it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirInfo {
    /// The latest namespace change among its direct children.
    pub changed: Option<VersionId>,
    /// Live subdirectories.
    pub subdirs: u64,
    /// Live entries.
    pub entries: u64,
}

/// One child as last decided.
#[derive(Clone, Copy, Debug)]
struct Child {
    /// Its current version, when it was read.
    current: Option<VersionId>,
    live: bool,
    dir: bool,
    /// Its latest namespace change found (a lower bound if `cut`).
    changed: Option<VersionId>,
    /// The walk stopped at versions that could not beat the directory's
    /// best: `changed` may be lower than the truth (never above the best).
    cut: bool,
}

#[derive(Default)]
struct Summary {
    children: HashMap<VPath, Child>,
    best: Option<VersionId>,
    subdirs: u64,
    entries: u64,
    /// The directory's own `from` path this summary was made for.
    moved_from: Option<VPath>,
    built: Option<Instant>,
}

impl Summary {
    fn info(&self) -> DirInfo {
        DirInfo {
            changed: self.best,
            subdirs: self.subdirs,
            entries: self.entries,
        }
    }

    fn add(&mut self, path: VPath, child: Child) {
        self.subdirs += u64::from(child.live && child.dir);
        self.entries += u64::from(child.live);
        self.best = self.best.max(child.changed);
        self.children.insert(path, child);
    }

    fn remove(&mut self, path: &VPath) -> Option<Child> {
        let child = self.children.remove(path)?;
        self.subdirs -= u64::from(child.live && child.dir);
        self.entries -= u64::from(child.live);
        Some(child)
    }
}

#[derive(Default)]
struct Marks {
    children: HashSet<VPath>,
    all: bool,
}

#[derive(Default)]
struct Slots {
    /// Per directory; its mutex is held while the summary is brought up to date.
    dirs: HashMap<VPath, Arc<Mutex<Summary>>>,
    /// Children named by journal lines since their directory was last brought up to date.
    marks: HashMap<VPath, Marks>,
    children: usize,
}

/// See the module documentation.
#[derive(Default)]
pub struct DirTimes {
    slots: Mutex<Slots>,
}

impl DirTimes {
    /// A journal line named `path`: its parent's summary must look at it again.
    pub fn changed(&self, path: &VPath) {
        let Some(parent) = path.parent() else {
            return;
        };
        let mut slots = lock(&self.slots);
        if !slots.dirs.contains_key(&parent) {
            return;
        }
        let marks = slots.marks.entry(parent).or_default();
        if !marks.all {
            marks.children.insert(path.clone());
            if marks.children.len() > MAX_MARKS {
                marks.children.clear();
                marks.all = true;
            }
        }
    }

    /// Makes every summary old enough to be built anew at its next use.
    #[cfg(test)]
    fn age_all(&self) {
        let slots = lock(&self.slots);
        for slot in slots.dirs.values() {
            lock(slot).built = Instant::now().checked_sub(MAX_AGE);
        }
    }

    /// Forgets every directory.
    pub fn forget_all(&self) {
        let mut slots = lock(&self.slots);
        *slots = Slots::default();
    }

    /// The summary of directory `dir` (whose current version is `own`, `None`
    /// for a root without one); `cached` says whether the journal may be
    /// trusted now (else it is decided afresh and not kept). `live` answers a
    /// child's live version (the mount's cache).
    pub fn info(
        &self,
        store: &Store,
        dir: &VPath,
        own: Option<&Version>,
        cached: bool,
        live: &(impl Fn(&VPath) -> Result<Option<Version>, StoreError> + Sync),
    ) -> Result<DirInfo, StoreError> {
        let moved_from = own.and_then(|v| v.from.as_ref()).map(|(_, p)| p.clone());
        if !cached {
            return Ok(build(store, dir, moved_from, live, Summary::default())?.info());
        }
        let slot = {
            let mut slots = lock(&self.slots);
            Arc::clone(slots.dirs.entry(dir.clone()).or_default())
        };
        let mut summary = lock(&slot);
        let marks = lock(&self.slots).marks.remove(dir).unwrap_or_default();
        // A directory counts as one more entry (an empty one costs too).
        let old_len = summary.children.len() + usize::from(summary.built.is_some());
        let fresh = summary.built.is_some_and(|built| built.elapsed() < MAX_AGE)
            && summary.moved_from == moved_from
            && !marks.all;
        let updated = match fresh {
            true => update(store, &mut summary, marks.children),
            false => Ok(false),
        };
        let brought = match updated {
            Ok(true) => Ok(()),
            Ok(false) => {
                let previous = std::mem::take(&mut *summary);
                build(store, dir, moved_from, live, previous).map(|built| *summary = built)
            }
            Err(err) => Err(err),
        };
        if let Err(err) = brought {
            // Half brought up to date: built anew next time.
            summary.built = None;
            return Err(err);
        }
        let info = summary.info();
        let new_len = summary.children.len() + 1;
        drop(summary);
        let mut slots = lock(&self.slots);
        slots.children = (slots.children + new_len).saturating_sub(old_len);
        if slots.children > MAX_CHILDREN {
            *slots = Slots::default();
        }
        Ok(info)
    }
}

impl Store {
    /// Makes directory `dir` show its own `mtime` again when a change of
    /// its entries came after its version (as `put` of a tree needs: it
    /// writes a directory before what is in it): the same attributes in a
    /// new, later version. `None` when nothing needed writing.
    pub fn keep_dir_mtime(&self, dir: &VPath) -> Result<Option<Version>, StoreError> {
        let Some(own) = self.live(dir)?.filter(|v| v.kind == Kind::Dir) else {
            return Ok(None);
        };
        let info =
            DirTimes::default().info(self, dir, Some(&own), false, &|child| self.live(child))?;
        if info.changed.is_none_or(|changed| changed < own.id) {
            return Ok(None);
        }
        self.set_attrs(dir, None, Some(own.mtime)).map(Some)
    }
}

/// Decides every child of `dir` afresh.
fn build(
    store: &Store,
    dir: &VPath,
    moved_from: Option<VPath>,
    live: &(impl Fn(&VPath) -> Result<Option<Version>, StoreError> + Sync),
    previous: Summary,
) -> Result<Summary, StoreError> {
    // What was decided before still holds for a child whose current version
    // is the same (its ancestry cannot change), if it was decided whole.
    let reusable = |path: &VPath, version: &Option<Version>| -> Option<Child> {
        let id = version.as_ref()?.id;
        let child = previous.children.get(path)?;
        (previous.moved_from == moved_from && child.current == Some(id) && !child.cut)
            .then_some(*child)
    };
    let paths: Vec<VPath> = super::digest::children_on_disk(store, dir)?
        .into_iter()
        .map(|(_, path)| path)
        .collect();
    let lives = super::tree::decide_all(&paths, live)?;
    // Each child's upper bound: its live version's id, or its newest version id.
    let mut todo: Vec<(VersionId, VPath, Option<Version>)> = Vec::with_capacity(paths.len());
    for (path, version) in paths.into_iter().zip(lives) {
        let bound = match &version {
            Some(v) => Some(v.id),
            None => store.version_ids(&path)?.last().copied(),
        };
        if let Some(bound) = bound {
            todo.push((bound, path, version));
        }
    }
    todo.sort_by_key(|item| std::cmp::Reverse(item.0));
    let mut summary = Summary {
        moved_from: moved_from.clone(),
        built: Some(Instant::now()),
        ..Summary::default()
    };
    for (bound, path, version) in todo {
        if let Some(child) = reusable(&path, &version) {
            summary.add(path, child);
            continue;
        }
        let live_child = version.is_some();
        let dir_child = version.as_ref().is_some_and(|v| v.kind == Kind::Dir);
        if summary.best.is_some_and(|best| bound <= best) {
            summary.add(
                path,
                Child {
                    current: version.map(|v| v.id),
                    live: live_child,
                    dir: dir_child,
                    changed: None,
                    cut: true,
                },
            );
            continue;
        }
        let current = match version {
            Some(v) => Some(v),
            None => store.current(&path)?,
        };
        let Some(current) = current else {
            continue;
        };
        let child = decide(
            store,
            &path,
            current,
            None,
            summary.best,
            &summary.moved_from,
        )?;
        summary.add(path, child);
    }
    Ok(summary)
}

/// Brings `summary` up to date for the children `changed` names; `false`
/// when it must be rebuilt instead.
fn update(
    store: &Store,
    summary: &mut Summary,
    changed: HashSet<VPath>,
) -> Result<bool, StoreError> {
    for path in changed {
        let old = summary.remove(&path);
        let Some(current) = store.current(&path)? else {
            if old.is_some_and(|o| o.changed.is_some() && o.changed == summary.best) {
                return Ok(false);
            }
            continue;
        };
        let memo = old.and_then(|o| o.current.map(|id| (id, o)));
        let child = decide(
            store,
            &path,
            current,
            memo,
            summary.best,
            &summary.moved_from,
        )?;
        if let Some(old) = old {
            if old.changed.is_some() && old.changed == summary.best && child.changed < old.changed {
                return Ok(false);
            }
        }
        summary.add(path, child);
    }
    Ok(true)
}

/// One child's state from its current version `top`: its latest namespace
/// change, walking its ancestry back to versions above `floor` only, and
/// stopping at `memo` (the version last decided for it).
fn decide(
    store: &Store,
    path: &VPath,
    top: Version,
    memo: Option<(VersionId, Child)>,
    floor: Option<VersionId>,
    moved_from: &Option<VPath>,
) -> Result<Child, StoreError> {
    let mut child = Child {
        current: Some(top.id),
        live: top.kind.is_live(),
        dir: top.kind == Kind::Dir,
        changed: None,
        cut: false,
    };
    let mut seen: HashSet<VersionId> = HashSet::new();
    let mut stack = vec![top];
    while let Some(version) = stack.pop() {
        if floor.is_some_and(|floor| version.id <= floor) {
            child.cut = true;
            continue;
        }
        if let Some((_, source)) = &version.from {
            let moved_along = moved_from.is_some()
                && source.parent().as_ref() == moved_from.as_ref()
                && source.file_name() == path.file_name();
            if !moved_along {
                child.changed = child.changed.max(Some(version.id));
            }
            continue;
        }
        if version.kind == Kind::Tombstone || version.parents.is_empty() {
            child.changed = child.changed.max(Some(version.id));
            continue;
        }
        let mut live_parent = false;
        let mut present = false;
        for parent in &version.parents {
            if let Some((id, old)) = &memo {
                if id == parent {
                    present = true;
                    if old.live {
                        live_parent = true;
                        child.changed = child.changed.max(old.changed);
                        child.cut |= old.cut;
                    }
                    continue;
                }
            }
            let read = match store.read_version(path, *parent) {
                Ok(read) => read,
                // Pruned, or unreadable: it tells nothing.
                Err(err) if err.is_not_found() => continue,
                Err(StoreError::Corrupt { .. }) => continue,
                Err(err) => return Err(err),
            };
            present = true;
            if read.kind.is_live() {
                live_parent = true;
                if seen.insert(read.id) {
                    stack.push(read);
                }
            }
        }
        if (present || version.conflict_of.is_some()) && !live_parent {
            // A create after a delete, or a conflict copy (its parents are
            // the loser's, at another path).
            child.changed = child.changed.max(Some(version.id));
        }
    }
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Attrs;
    use crate::store::live_cache::LiveCache;
    use std::ffi::OsStr;
    use std::io::Cursor;

    fn path(text: &str) -> VPath {
        VPath::parse(OsStr::new(text)).unwrap()
    }

    fn put(store: &Store, at: &str, data: &[u8]) -> Version {
        store
            .write_file(&path(at), &mut Cursor::new(data), Attrs::default(), false)
            .unwrap()
    }

    fn node() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::store::scratch_spec(dir.path());
        let store = Store::open_spec(&spec).unwrap();
        (dir, store)
    }

    /// The directory's info decided from nothing remembered.
    fn afresh(store: &Store, dir: &str) -> DirInfo {
        let dir = path(dir);
        let own = store.live(&dir).unwrap();
        DirTimes::default()
            .info(store, &dir, own.as_ref(), false, &|child| store.live(child))
            .unwrap()
    }

    fn cached(cache: &LiveCache, store: &Store, dir: &str) -> DirInfo {
        let dir = path(dir);
        let own = store.live(&dir).unwrap();
        cache.dir_info(store, &dir, own.as_ref()).unwrap()
    }

    #[test]
    fn creates_removals_and_renames_count_content_changes_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::store::scratch_spec(dir.path());
        let store = Store::open_spec(&spec).unwrap();
        store.mkdir(&path("/d"), 0o755).unwrap();
        store.mkdir(&path("/e"), 0o755).unwrap();
        assert_eq!(afresh(&store, "/d"), DirInfo::default());
        let made = put(&store, "/d/f", b"one");
        assert_eq!(afresh(&store, "/d").changed, Some(made.id));
        assert_eq!(afresh(&store, "/d").entries, 1);
        // Rewrites and attribute changes are not namespace changes.
        for i in 0..20 {
            put(&store, "/d/f", format!("edit {i}").as_bytes());
        }
        store.set_attrs(&path("/d/f"), Some(0o600), None).unwrap();
        assert_eq!(afresh(&store, "/d").changed, Some(made.id));
        let sub = store.mkdir(&path("/d/sub"), 0o755).unwrap();
        let info = afresh(&store, "/d");
        assert_eq!(
            (info.changed, info.subdirs, info.entries),
            (Some(sub.id), 1, 2)
        );
        let gone = store.remove(&path("/d/sub")).unwrap();
        assert_eq!(afresh(&store, "/d").changed, Some(gone.id));
        assert_eq!(afresh(&store, "/d").subdirs, 0);
        // A create after a delete counts; the later edits do not.
        let again = store.mkdir(&path("/d/sub"), 0o755).unwrap();
        assert_eq!(afresh(&store, "/d").changed, Some(again.id));
        store.rename(&path("/d/f"), &path("/e/f"), false).unwrap();
        let moved_in = store.current(&path("/e/f")).unwrap().unwrap();
        let moved_out = store.current(&path("/d/f")).unwrap().unwrap();
        assert_eq!(afresh(&store, "/e").changed, Some(moved_in.id));
        assert_eq!(afresh(&store, "/d").changed, Some(moved_out.id));
        assert_eq!(moved_out.kind, Kind::Tombstone);
        // A directory moved with its entries: they moved with it.
        store.rename(&path("/d"), &path("/e/d"), false).unwrap();
        let moved = store.live(&path("/e/d")).unwrap().unwrap();
        let info = afresh(&store, "/e/d");
        assert!(
            info.changed.is_none_or(|changed| changed < moved.id),
            "{info:?}"
        );
        assert_eq!((info.subdirs, info.entries), (1, 1));
    }

    #[test]
    fn what_is_remembered_follows_every_change_as_a_fresh_decision_does() {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::store::scratch_spec(dir.path());
        let here = Store::open_spec(&spec).unwrap();
        // Another process of the node: its changes reach the cache through
        // the journal only.
        let other = Store::open_spec(&spec).unwrap();
        here.mkdir(&path("/d"), 0o755).unwrap();
        for i in 0..40 {
            put(&here, &format!("/d/f{i}"), b"x");
        }
        let cache = LiveCache::new(&here);
        let mut state: u64 = 7;
        for step in 0..200 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let writer = if state & 1 == 0 { &here } else { &other };
            let n = (state >> 8) % 12;
            let name = format!("/d/f{n}");
            match (state >> 16) % 6 {
                0 | 1 => {
                    put(writer, &name, format!("step {step}").as_bytes());
                }
                2 => {
                    let _ = writer.remove(&path(&name));
                }
                3 => {
                    let _ = writer.rename(&path(&name), &path(&format!("/d/f{}", n + 1)), false);
                }
                4 => {
                    let _ = writer.mkdir(&path(&format!("/d/s{n}")), 0o755);
                }
                _ => {
                    let _ = writer.remove(&path(&format!("/d/s{n}")));
                }
            }
            assert_eq!(
                cached(&cache, &here, "/d"),
                afresh(&here, "/d"),
                "step {step}"
            );
            if step % 7 == 0 {
                // Built anew from what it remembers.
                cache.dirs().age_all();
            }
        }
    }

    #[test]
    fn a_change_of_one_entry_is_decided_without_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::store::scratch_spec(dir.path());
        let store = Store::open_spec(&spec).unwrap();
        store.mkdir(&path("/d"), 0o755).unwrap();
        for i in 0..50 {
            put(&store, &format!("/d/f{i}"), b"x");
        }
        let times = DirTimes::default();
        let dir_path = path("/d");
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let live = |child: &VPath| {
            asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            store.live(child)
        };
        let first = times.info(&store, &dir_path, None, true, &live).unwrap();
        assert_eq!(first.entries, 50);
        assert_eq!(asked.swap(0, std::sync::atomic::Ordering::Relaxed), 50);
        let made = put(&store, "/d/new", b"y");
        times.changed(&path("/d/new"));
        let second = times.info(&store, &dir_path, None, true, &live).unwrap();
        assert_eq!((second.entries, second.changed), (51, Some(made.id)));
        // Brought up to date from the one entry named, not listed again.
        assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn an_edit_that_beats_a_delete_lowers_the_time_as_a_fresh_decision_does() {
        let (_a_dir, a) = node();
        let (_b_dir, b) = node();
        let f = path("/f");
        let first = a
            .write_file(&f, &mut Cursor::new(b"one"), Attrs::default(), false)
            .unwrap();
        b.import_version(&first).unwrap();
        let cache = LiveCache::new(&a);
        let deleted = a.remove(&f).unwrap();
        let info = cache.dir_info(&a, &VPath::root(), None).unwrap();
        assert_eq!(info.changed, Some(deleted.id));
        // The peer edited the file meanwhile: its edit beats the delete.
        let edit = b
            .write_file(&f, &mut Cursor::new(b"two"), Attrs::default(), false)
            .unwrap();
        a.import_version(&edit).unwrap();
        assert_eq!(a.live(&f).unwrap().map(|v| v.id), Some(edit.id));
        let info = cache.dir_info(&a, &VPath::root(), None).unwrap();
        assert_eq!(info.changed, Some(first.id));
        assert_eq!(info.entries, 1);
        let fresh = DirTimes::default()
            .info(&a, &VPath::root(), None, false, &|child| a.live(child))
            .unwrap();
        assert_eq!(info, fresh);
    }
}
