//! A per-process cache of paths' current versions, kept true by the node's journal.
//!
//! Deciding a path's current version reads its `versions/` directory and its
//! version files; the mount asks for it on every lookup, getattr and open. Every
//! change that can move a path's current version is journaled before the call
//! that made it returns (a local commit, a version imported from a peer), by
//! whichever process of the node made it. So the cache reads the journal's new
//! lines before it answers (one `fstat` of the open segment when nothing moved)
//! and forgets the paths they name: an answer from it is as fresh as reading the
//! version files at the start of the call.
//!
//! A fill races with a change made meanwhile: a fill is kept only if no journal
//! line was taken in between. While the journal cannot be read to its end (a
//! line being written, a damaged line, a segment that went away) the cache is
//! not used at all. An entry is trusted for [`MAX_AGE`] at most, which bounds
//! what a version published without its journal line (a writer killed between
//! the two) can hide. The cache holds at most [`MAX_ENTRIES`] paths, and no
//! version of more than [`MAX_HASHES`] blocks; it starts again empty when full.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::dir_times::{DirInfo, DirTimes};
use super::journal::{self, Position};
use super::{Store, StoreError, Version};
use crate::ids::VersionId;
use crate::layout::VPath;
use crate::lock;

/// Paths remembered at most (about 900 bytes each with the map and allocator
/// overhead, so a few MiB).
pub const MAX_ENTRIES: usize = 4096;

/// How long an entry is trusted without a journal line naming its path.
pub const MAX_AGE: Duration = Duration::from_secs(5);

/// Versions with more blocks than this are not kept (32 bytes of hash each).
pub const MAX_HASHES: usize = 256;

/// Journal lines taken per read.
const BATCH: usize = 10_000;

/// Where the cache stands in the node's journal.
struct Tail {
    position: Position,
    /// The segment `position` is in, open: growth shows in one `fstat`.
    segment: Option<File>,
}

/// A path's live version, when it was read, and the id of the version of
/// this process's commit that put it there, if one did.
type Entry = (Option<Version>, Instant, Option<VersionId>);

/// Current versions (`Store::live`) of recently asked paths.
pub struct LiveCache {
    dir: PathBuf,
    tail: Mutex<Tail>,
    /// Each path's live version, when it was read, and, for an entry a
    /// commit of this process put there, that version's id: its own journal
    /// line leaves it in place (every other line naming the path removes it).
    entries: Mutex<HashMap<VPath, Entry>>,
    /// Bumped (under the `entries` lock) whenever journal lines are taken.
    generation: AtomicU64,
    /// Directories' derived times, told of the same journal lines.
    dirs: DirTimes,
}

impl LiveCache {
    /// A cache for `store`, starting at the end of its journal (what is there
    /// already is what the version files say now).
    pub fn new(store: &Store) -> LiveCache {
        let cache = LiveCache {
            dir: store.layout().journal(),
            tail: Mutex::new(Tail {
                position: Position::default(),
                segment: None,
            }),
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            dirs: DirTimes::default(),
        };
        if let Err(err) = cache.refresh() {
            tracing::warn!(error = %err, "reading the journal; the version cache starts empty");
        }
        cache
    }

    /// The current version of `path` if it is live (as [`Store::live`]).
    pub fn live(&self, store: &Store, path: &VPath) -> Result<Option<Version>, StoreError> {
        self.live_at(store, path, self.fresh())
    }

    /// Reads the journal's new lines: the point to answer from with
    /// [`LiveCache::live_at`], or `None` when nothing cached may be trusted now.
    /// Many answers for one request (a listing) share one such point.
    pub fn fresh(&self) -> Option<u64> {
        match self.refresh() {
            Ok(Some(generation)) => Some(generation),
            // Lines we cannot read yet: unsure what changed.
            Ok(None) => {
                self.forget_all();
                None
            }
            Err(err) => {
                tracing::debug!(error = %err, "reading the journal; not caching");
                self.forget_all();
                None
            }
        }
    }

    /// [`LiveCache::live`] as fresh as the point `at` from [`LiveCache::fresh`].
    pub fn live_at(
        &self,
        store: &Store,
        path: &VPath,
        at: Option<u64>,
    ) -> Result<Option<Version>, StoreError> {
        let Some(generation) = at else {
            return store.live(path);
        };
        if let Some(found) = self.known(path, at) {
            return Ok(found);
        }
        let found = store.live(path)?;
        if found.as_ref().is_some_and(|v| v.hashes.len() > MAX_HASHES) {
            return Ok(found);
        }
        let mut entries = lock(&self.entries);
        if self.generation.load(Ordering::Acquire) == generation {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(path.clone(), (found.clone(), Instant::now(), None));
        }
        Ok(found)
    }

    /// `version` was just published at `path` by this process as the one
    /// head its path has now (not forked), and the path's log is still
    /// locked: no later version of the path has a journal line yet, so the
    /// entry is true until a line other than its own names the path (an
    /// older line read after it only drops it early).
    pub(super) fn committed(&self, path: &VPath, version: &Version) {
        if version.hashes.len() > MAX_HASHES {
            return;
        }
        let found = Some(version.clone()).filter(|v| v.kind.is_live());
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(path.clone(), (found, Instant::now(), Some(version.id)));
    }

    /// Whether `id` is the version of `path` a commit of this process put
    /// in the cache (as [`LiveCache::committed`] says it before journaling).
    pub fn committed_here(&self, path: &VPath, id: VersionId) -> bool {
        lock(&self.entries)
            .get(path)
            .is_some_and(|(_, _, own)| *own == Some(id))
    }

    /// What the cache holds for `path` as fresh as the point `at`, without
    /// reading anything: `None` when it does not know.
    pub fn known(&self, path: &VPath, at: Option<u64>) -> Option<Option<Version>> {
        at?;
        match lock(&self.entries).get(path) {
            Some((found, since, _)) if since.elapsed() < MAX_AGE => Some(found.clone()),
            _ => None,
        }
    }

    /// What the entries of directory `dir` (current version `own`; `None`
    /// for a root without one) say of its times and links (see
    /// [`super::dir_times`]), as fresh as the journal.
    pub fn dir_info(
        &self,
        store: &Store,
        dir: &VPath,
        own: Option<&Version>,
    ) -> Result<DirInfo, StoreError> {
        let at = self.fresh();
        // Entries not remembered are read without being remembered: a
        // directory's summary holds what it needs of them, and filling this
        // cache with every entry of the directories stat-ed would push out
        // the paths in use.
        self.dirs.info(
            store,
            dir,
            own,
            at.is_some(),
            &|child| match self.known(child, at) {
                Some(found) => Ok(found),
                None => store.live(child),
            },
        )
    }

    /// The directories' summaries (for tests that age them).
    #[cfg(test)]
    pub(super) fn dirs(&self) -> &DirTimes {
        &self.dirs
    }

    /// Forgets every path (the next answers come from the version files).
    pub fn forget_all(&self) {
        let mut entries = lock(&self.entries);
        entries.clear();
        self.dirs.forget_all();
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// How many paths are remembered.
    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the journal's new lines, forgetting the paths they name; returns
    /// the generation the entries are at afterwards, or `None` when the journal
    /// could not be read to its end (then nothing cached may be trusted).
    fn refresh(&self) -> Result<Option<u64>, StoreError> {
        let mut tail = lock(&self.tail);
        if !self.moved(&tail)? {
            return Ok(Some(self.generation.load(Ordering::Acquire)));
        }
        let mut trusted = true;
        loop {
            let open = tail.segment.as_ref();
            let batch =
                match open.and_then(|f| journal::read_open(f, &self.dir, &tail.position, BATCH)) {
                    Some(batch) => batch,
                    None => journal::read(&self.dir, &tail.position, BATCH)?,
                };
            let more = batch.lines.len() >= BATCH;
            if !batch.warnings.is_empty() {
                trusted = false;
            }
            if !batch.lines.is_empty() || batch.restarted {
                let mut entries = lock(&self.entries);
                if batch.restarted {
                    entries.clear();
                    self.dirs.forget_all();
                }
                for line in &batch.lines {
                    match line
                        .split_once(' ')
                        .and_then(|(id, path)| Some((id, VPath::from_escaped(path).ok()?)))
                    {
                        Some((id, path)) => {
                            let own = entries.get(&path).and_then(|(_, _, own)| *own);
                            if own.is_none_or(|own| own.to_string() != id) {
                                entries.remove(&path);
                            }
                            self.dirs.changed(&path);
                        }
                        // A line this version cannot read: trust nothing.
                        None => {
                            entries.clear();
                            self.dirs.forget_all();
                        }
                    }
                }
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            if batch.next.segment != tail.position.segment || tail.segment.is_none() {
                tail.segment = File::open(self.segment_path(batch.next.segment)).ok();
            }
            tail.position = batch.next;
            if !more {
                break;
            }
        }
        if let Some(meta) = self.segment_meta(&tail)? {
            if meta.nlink() == 0 {
                // The segment we stood in went away (the journal was re-created
                // shorter): read it again from the start next time.
                tail.position = Position::default();
                tail.segment = None;
                trusted = false;
            } else if meta.len() != tail.position.offset {
                // A line being written, or a damaged one the reader stops at.
                trusted = false;
            }
        }
        Ok(trusted.then(|| self.generation.load(Ordering::Acquire)))
    }

    /// The open segment's metadata (one `fstat`), if a segment is open.
    fn segment_meta(&self, tail: &Tail) -> Result<Option<std::fs::Metadata>, StoreError> {
        tail.segment
            .as_ref()
            .map(|segment| {
                segment
                    .metadata()
                    .map_err(|err| StoreError::io(&self.dir, err))
            })
            .transpose()
    }

    fn segment_path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number:016}"))
    }

    /// Whether the journal may hold lines past the tail.
    fn moved(&self, tail: &Tail) -> Result<bool, StoreError> {
        let Some(meta) = self.segment_meta(tail)? else {
            return Ok(true);
        };
        if meta.nlink() == 0 || meta.len() != tail.position.offset {
            return Ok(true);
        }
        // A writer goes on in a new segment when this one is full, and also
        // when it found this one's last line torn (perhaps while another
        // process was still writing it).
        Ok(self.segment_path(tail.position.segment + 1).exists())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Attrs;
    use crate::store::journal::SEGMENT_BYTES;
    use std::ffi::OsStr;
    use std::io::Cursor;
    use std::io::Write;
    use std::sync::Arc;

    /// A node's store opened twice: two processes of one node.
    fn two_handles() -> (tempfile::TempDir, Store, Store) {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::store::scratch_spec(dir.path());
        let here = Store::open_spec(&spec).unwrap();
        let other = Store::open_spec(&spec).unwrap();
        (dir, here, other)
    }

    fn path(text: &str) -> VPath {
        VPath::parse(OsStr::new(text)).unwrap()
    }

    fn put(store: &Store, at: &VPath, data: &[u8]) -> Version {
        store
            .write_file(at, &mut Cursor::new(data), Attrs::default(), false)
            .unwrap()
    }

    fn id_of(found: Option<Version>) -> Option<crate::ids::VersionId> {
        found.map(|v| v.id)
    }

    #[test]
    fn changes_by_another_process_are_seen_at_once() {
        let (_dir, here, other) = two_handles();
        let (a, b) = (path("/a"), path("/b"));
        let first = put(&here, &a, b"one");
        let cache = LiveCache::new(&here);
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), Some(first.id));
        assert_eq!(id_of(cache.live(&here, &b).unwrap()), None);
        let second = put(&other, &a, b"two");
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), Some(second.id));
        let made = put(&other, &b, b"new");
        assert_eq!(id_of(cache.live(&here, &b).unwrap()), Some(made.id));
        other.rename(&a, &path("/c"), false).unwrap();
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), None);
        let moved = cache.live(&here, &path("/c")).unwrap().unwrap();
        assert_eq!(moved.hashes, second.hashes);
        other.remove(&b).unwrap();
        assert_eq!(id_of(cache.live(&here, &b).unwrap()), None);
    }

    #[test]
    fn a_listing_decides_only_the_entries_the_cache_does_not_know() {
        let (_dir, here, other) = two_handles();
        let dir = path("/d");
        here.mkdir(&dir, 0o755).unwrap();
        for i in 0..40 {
            put(&here, &path(&format!("/d/f{i}")), b"x");
        }
        let cache = LiveCache::new(&here);
        let decided = std::sync::atomic::AtomicUsize::new(0);
        let list = || {
            let at = cache.fresh();
            here.list_dir_by(
                &dir,
                |child| cache.known(child, at),
                |child| {
                    decided.fetch_add(1, Ordering::Relaxed);
                    cache.live_at(&here, child, at)
                },
            )
            .unwrap()
        };
        let first = list();
        assert_eq!(first.len(), 40);
        // The directory itself and each of its 40 entries.
        assert_eq!(decided.swap(0, Ordering::Relaxed), 41);
        let second = list();
        let names = |entries: &[crate::store::Entry]| -> Vec<Vec<u8>> {
            entries.iter().map(|e| e.name.clone()).collect()
        };
        assert_eq!(names(&second), names(&first));
        // Only the directory goes through `live` (it answers from memory too).
        assert_eq!(decided.swap(0, Ordering::Relaxed), 1);
        // Another process changes one entry: only that one is decided again.
        let changed = put(&other, &path("/d/f7"), b"changed");
        let third = list();
        assert_eq!(decided.swap(0, Ordering::Relaxed), 2);
        let f7 = third.iter().find(|e| e.name == b"f7").unwrap();
        assert_eq!(f7.version.id, changed.id);
    }

    #[test]
    fn answers_from_memory_until_a_journal_line_names_the_path() {
        let (_dir, here, other) = two_handles();
        let (a, b) = (path("/a"), path("/b"));
        let first = put(&here, &a, b"one");
        let cache = LiveCache::new(&here);
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), Some(first.id));
        // Behind the journal's back (no process of a node does this): the
        // cache still answers, so it did not read the version files again.
        std::fs::remove_dir_all(here.versions_dir(&a)).unwrap();
        assert_eq!(here.live(&a).unwrap().map(|v| v.id), None);
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), Some(first.id));
        // A change to another path forgets only that path.
        put(&other, &b, b"other");
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), Some(first.id));
        // A line naming the path forgets it.
        let again = put(&other, &a, b"again");
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), Some(again.id));
    }

    #[test]
    fn follows_the_journal_into_its_next_segment() {
        let (_dir, here, other) = two_handles();
        let a = path("/a");
        let first = put(&here, &a, b"one");
        let cache = LiveCache::new(&here);
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), Some(first.id));
        // Fill the segment with lines naming another path, up to its limit.
        let line = format!("{} {}", first.id, path("/filler").escaped());
        let lines = vec![line.clone(); 4096];
        let per_append = 4096 * (line.len() as u64 + 10);
        for _ in 0..SEGMENT_BYTES.div_ceil(per_append) {
            other.journal().append(&lines).unwrap();
        }
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), Some(first.id));
        let segments = journal::segments(&here.layout().journal()).unwrap();
        // The next change starts a new segment; the cache must look there.
        let second = put(&other, &a, b"two");
        assert_eq!(
            journal::segments(&here.layout().journal()).unwrap().len(),
            segments.len() + 1
        );
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), Some(second.id));
    }

    #[test]
    fn a_commit_of_this_process_stays_known_across_its_own_line_and_not_past_another() {
        let (_dir, here, other) = two_handles();
        let a = path("/a");
        let cache = Arc::new(LiveCache::new(&here));
        here.tell_commits(&cache);
        let first = put(&here, &a, b"one");
        // Its own journal line, read now, leaves the entry the commit made.
        let at = cache.fresh();
        assert_eq!(id_of(cache.known(&a, at).unwrap()), Some(first.id));
        let gone = here.remove(&a).unwrap();
        let at = cache.fresh();
        assert_eq!(cache.known(&a, at).map(|found| found.is_none()), Some(true));
        let again = put(&here, &a, b"again");
        assert!(gone.id < again.id);
        // A version from another process: its line drops the entry.
        let theirs = put(&other, &a, b"two");
        let at = cache.fresh();
        assert!(cache.known(&a, at).is_none());
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), Some(theirs.id));
    }

    /// The latest segment of `store`'s journal.
    fn last_segment(store: &Store) -> PathBuf {
        let dir = store.layout().journal();
        let last = *journal::segments(&dir).unwrap().last().unwrap();
        dir.join(format!("{last:016}"))
    }

    fn append_raw(file: &std::path::Path, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
        f.write_all(bytes).unwrap();
    }

    #[test]
    fn a_line_still_being_written_turns_the_cache_off() {
        let (_dir, here, _other) = two_handles();
        let a = path("/a");
        let first = put(&here, &a, b"one");
        let cache = LiveCache::new(&here);
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), Some(first.id));
        // Half a line: whatever it will say, nothing cached may be trusted.
        append_raw(&last_segment(&here), b"0123abcd 1700000000.0000000");
        std::fs::remove_dir_all(here.versions_dir(&a)).unwrap();
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), None);
    }

    #[test]
    fn a_segment_started_before_the_last_one_was_full_is_followed() {
        let (_dir, here, other) = two_handles();
        let a = path("/a");
        let first = put(&here, &a, b"one");
        let cache = LiveCache::new(&here);
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), Some(first.id));
        // A writer that sees a torn last line starts the next segment early;
        // here the segment then reads as complete again, as it does when the
        // "torn" line was another process's append still being written.
        let segment = last_segment(&here);
        let len = std::fs::metadata(&segment).unwrap().len();
        append_raw(&segment, b"x");
        let second = put(&other, &a, b"two");
        assert_ne!(last_segment(&here), segment, "no new segment was started");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(len)
            .unwrap();
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), Some(second.id));
    }

    #[test]
    fn a_journal_made_anew_is_read_from_its_start() {
        let (_dir, here, other) = two_handles();
        let a = path("/a");
        let first = put(&here, &a, b"one");
        let cache = LiveCache::new(&here);
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), Some(first.id));
        let dir = here.layout().journal();
        for number in journal::segments(&dir).unwrap() {
            std::fs::remove_file(dir.join(format!("{number:016}"))).unwrap();
        }
        let second = put(&other, &a, b"two");
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), Some(second.id));
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), Some(second.id));
    }

    #[test]
    fn an_entry_is_trusted_for_a_bounded_time() {
        let (_dir, here, _other) = two_handles();
        let a = path("/a");
        let first = put(&here, &a, b"one");
        let cache = LiveCache::new(&here);
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), Some(first.id));
        // A version published without its journal line (its writer killed
        // between the two) shows once the entry is too old.
        std::fs::remove_dir_all(here.versions_dir(&a)).unwrap();
        let mut entries = lock(&cache.entries);
        let entry = entries.get_mut(&a).unwrap();
        entry.1 = Instant::now() - MAX_AGE;
        drop(entries);
        assert_eq!(id_of(cache.live(&here, &a).unwrap()), None);
    }

    #[test]
    fn holds_a_bounded_number_of_paths() {
        let (_dir, here, _other) = two_handles();
        let cache = LiveCache::new(&here);
        for n in 0..MAX_ENTRIES + 10 {
            cache.live(&here, &path(&format!("/absent-{n}"))).unwrap();
        }
        assert!(cache.len() <= MAX_ENTRIES, "{} paths held", cache.len());
        assert!(!cache.is_empty());
    }
}
