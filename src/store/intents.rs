//! Crash recovery for publishing versions: every version a process publishes
//! into `root/` is first named in that process's *intent file*, so a process
//! killed between the publishing `link` and its journal line leaves a trace
//! that the next writer of the node finds and finishes.
//!
//! `state/intents/<pid>-<random>` belongs to one open [`Store`] of one process.
//! The process holds an exclusive `flock` on it while it lives (the lock dies
//! with the process), appends `<version id> <escaped path>\n` with one
//! `write(2)` before it publishes, and empties the file (`ftruncate`) whenever
//! none of its publications is between "intended" and "journaled". Recovery
//! ([`Store::recover_interrupted`]) looks only at intent files whose lock it can
//! take (their process is gone), and for each complete line whose version file
//! exists it journals the version again, queues it for the peers and makes the
//! log's last line name the path's current version. A journal line twice is
//! harmless (readers re-check version files); a line for a version that never
//! got published names nothing and is dropped. docs/FORMAT.md §14 describes the
//! window and the recovery.

use super::read_dir_if_present;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};

use super::lock::flock;
use super::{IoContext, Store, StoreError, append_line, flock_file, open_log};
use crate::ids::VersionId;
use crate::layout::VPath;

/// Largest intent file recovery reads (a process has a handful of commits in
/// flight at once; anything larger is not ours).
const MAX_INTENT_BYTES: u64 = 16 << 20;
/// A half-made intent file (`.new-…`, crash between create and rename) older
/// than this is removed by recovery.
const STALE_NEW_FILE: Duration = Duration::from_secs(600);

/// The intent file of one open store (created on the first publication).
#[derive(Default)]
pub struct Intents {
    own: Mutex<Option<Own>>,
}

struct Own {
    /// Locked (exclusive) while this process lives: recovery skips it.
    file: Flock<File>,
    path: PathBuf,
    /// Publications between their intent line and their journal line.
    in_flight: usize,
    /// Publications whose journaling failed: the file is kept as it is, so a
    /// later recovery (after this process) journals them.
    failed: bool,
}

impl Drop for Own {
    fn drop(&mut self) {
        if !self.failed && self.in_flight == 0 {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl std::fmt::Debug for Intents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intents").finish_non_exhaustive()
    }
}

/// One publication in progress; [`Intent::done`] once it is journaled.
#[must_use = "call done() once the version is journaled"]
pub struct Intent<'a> {
    intents: &'a Intents,
    finished: bool,
}

impl Intent<'_> {
    /// The version was journaled: its intent line is no longer needed.
    pub fn done(mut self) {
        self.finished = true;
        self.intents.finish(true);
    }
}

impl Drop for Intent<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.intents.finish(false);
        }
    }
}

impl Intents {
    /// Names `id` at `path` as about to be published. Called before the
    /// publishing `link` (and again with the next id after a clash).
    pub(super) fn begin<'a>(
        &'a self,
        store: &Store,
        id: VersionId,
        path: &VPath,
    ) -> Result<Intent<'a>, StoreError> {
        let mut own = self.own.lock().unwrap_or_else(|poison| poison.into_inner());
        if own.is_none() {
            *own = Some(create(&store.layout.intents())?);
        }
        let Some(own) = own.as_mut() else {
            return Err(StoreError::Internal("intent file vanished".to_string()));
        };
        write_line(own, id, path)?;
        own.in_flight += 1;
        Ok(Intent {
            intents: self,
            finished: false,
        })
    }

    /// Adds the id a clash moved a publication to (same intent, new name).
    pub(super) fn retarget(&self, id: VersionId, path: &VPath) -> Result<(), StoreError> {
        let mut own = self.own.lock().unwrap_or_else(|poison| poison.into_inner());
        match own.as_mut() {
            Some(own) => write_line(own, id, path),
            None => Ok(()),
        }
    }

    fn finish(&self, journaled: bool) {
        let mut own = self.own.lock().unwrap_or_else(|poison| poison.into_inner());
        let Some(own) = own.as_mut() else { return };
        own.in_flight = own.in_flight.saturating_sub(1);
        if !journaled {
            own.failed = true;
        }
        if own.in_flight == 0 && !own.failed {
            // Nothing is between publishing and journaling: forget it all.
            if let Err(err) = own.file.set_len(0) {
                tracing::warn!(file = %own.path.display(), %err, "cannot empty the intent file");
            }
        }
    }

    /// Whether `name` is this store's own intent file.
    fn is_own(&self, file: &Path) -> bool {
        let own = self.own.lock().unwrap_or_else(|poison| poison.into_inner());
        own.as_ref().is_some_and(|own| own.path == file)
    }
}

fn write_line(own: &mut Own, id: VersionId, path: &VPath) -> Result<(), StoreError> {
    let line = format!("{id} {}\n", path.escaped());
    let n = own.file.write(line.as_bytes()).at(&own.path)?;
    if n != line.len() {
        return Err(StoreError::io(
            &own.path,
            std::io::Error::new(ErrorKind::WriteZero, "short write to the intent file"),
        ));
    }
    Ok(())
}

/// Makes this process's intent file (see [`create_locked`]).
fn create(dir: &Path) -> Result<Own, StoreError> {
    let (file, path) = create_locked(dir, 0o644)?;
    Ok(Own {
        file,
        path,
        in_flight: 0,
        failed: false,
    })
}

/// Makes a file of this process in `dir` (`<pid>-<16 hex>`, mode `mode`):
/// created under a `.new-` name, locked, then renamed into place, so no
/// other process ever sees it unlocked (intent and redo files).
pub(super) fn create_locked(dir: &Path, mode: u32) -> Result<(Flock<File>, PathBuf), StoreError> {
    create_locked_as(dir, mode, true)
}

/// [`create_locked`], opened for appending or (`append` false) for writes
/// at chosen offsets.
pub(super) fn create_locked_as(
    dir: &Path,
    mode: u32,
    append: bool,
) -> Result<(Flock<File>, PathBuf), StoreError> {
    crate::layout::create_dirs(dir).at(dir)?;
    let name = format!("{}-{:016x}", std::process::id(), rand_u64());
    let path = dir.join(&name);
    let new = dir.join(format!(".new-{name}"));
    let file = OpenOptions::new()
        .create_new(true)
        .append(append)
        .write(true)
        .read(true)
        .mode(mode)
        .open(&new)
        .at(&new)?;
    fs::set_permissions(&new, fs::Permissions::from_mode(mode)).at(&new)?;
    let file = flock(file, &new, FlockArg::LockExclusive)?
        .ok_or_else(|| StoreError::io(&new, std::io::Error::from(ErrorKind::WouldBlock)))?;
    fs::rename(&new, &path).at(&path)?;
    Ok((file, path))
}

/// The files in `dir` that may belong to processes that are gone: every
/// complete name but `own`'s (half-made `.new-` files of old are removed).
pub(super) fn files_of_others(
    dir: &Path,
    own: impl Fn(&Path) -> bool,
) -> Result<Vec<PathBuf>, StoreError> {
    let Some(entries) = read_dir_if_present(dir)? else {
        return Ok(Vec::new());
    };
    let mut candidates = Vec::new();
    for entry in entries {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name.starts_with(".new-") {
            remove_stale_new(&path);
        } else if !name.starts_with('.') && !own(&path) {
            candidates.push(path);
        }
    }
    Ok(candidates)
}

/// `path` opened and locked if its process is gone (`None`: it is alive,
/// or the file went away).
pub(super) fn take_if_dead(path: &Path) -> Result<Option<Flock<File>>, StoreError> {
    let file = match OpenOptions::new().read(true).open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(StoreError::io(path, err)),
    };
    flock(file, path, FlockArg::LockExclusiveNonblock)
}

/// Removes a file that recovery finished with.
pub(super) fn remove_done(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        Err(err) => Err(StoreError::io(path, err)),
    }
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return nanos ^ u64::from(std::process::id()).rotate_left(32);
    }
    u64::from_le_bytes(bytes)
}

/// What a recovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Intent files of processes that died, read and removed.
    pub files: usize,
    /// Versions they had published, journaled again.
    pub versions: usize,
}

impl Store {
    /// Finishes what processes of this node that died left between publishing
    /// a version and journaling it (see the module docs). Cheap when nothing
    /// died: one directory listing. Called by every writer before its first
    /// publication, and by every sync pass.
    pub fn recover_interrupted(&self) -> Result<Recovered, StoreError> {
        // What only a redo record still holds goes back first: the intent
        // lines below may name versions it puts back.
        self.replay_redo()?;
        let mut found = Recovered::default();
        let candidates = files_of_others(&self.layout.intents(), |path| self.intents.is_own(path))?;
        if candidates.is_empty() {
            return Ok(found);
        }
        let _writers = self.writer_lock()?;
        for path in candidates {
            let Some(file) = take_if_dead(&path)? else {
                continue; // its process is alive
            };
            let versions = self.finish_intents(&file, &path)?;
            remove_done(&path)?;
            found.files += 1;
            found.versions += versions;
        }
        if found.versions > 0 {
            tracing::warn!(
                versions = found.versions,
                files = found.files,
                "journaled versions that processes killed while publishing had left unjournaled"
            );
        }
        Ok(found)
    }

    fn finish_intents(&self, file: &File, path: &Path) -> Result<usize, StoreError> {
        let mut text = Vec::new();
        file.take(MAX_INTENT_BYTES)
            .read_to_end(&mut text)
            .at(path)?;
        let mut done = 0;
        // Only complete lines: a torn last line was being written when the
        // process died, before its version was published.
        let complete = match text.iter().rposition(|&b| b == b'\n') {
            Some(end) => &text[..end],
            None => return Ok(0),
        };
        let mut seen = std::collections::HashSet::new();
        for line in complete.split(|&b| b == b'\n') {
            let Some((id, vpath)) = parse_intent(line) else {
                tracing::warn!(file = %path.display(), "skipping a damaged intent line");
                continue;
            };
            if !seen.insert((id, vpath.escaped())) {
                continue;
            }
            let version = match self.read_version(&vpath, id) {
                Ok(version) => version,
                Err(err) if err.is_not_found() => continue, // never published
                Err(StoreError::Corrupt { path: bad, why }) => {
                    tracing::warn!(file = %bad.display(), %why, "an interrupted publication left a torn version file; it is skipped");
                    continue;
                }
                Err(err) => return Err(err),
            };
            self.record(&version)?;
            self.end_log_with_current(&vpath)?;
            done += 1;
        }
        Ok(done)
    }

    /// Appends the current id to `path`'s log if its last line names another.
    pub(crate) fn end_log_with_current(&self, path: &VPath) -> Result<(), StoreError> {
        let log_path = self.versions_dir(path).join("log");
        // The log stays locked until it is dropped at the end.
        let log = flock_file(open_log(&log_path)?, &log_path)?;
        let Some(current) = self.current(path)? else {
            return Ok(());
        };
        let text = fs::read(&log_path).at(&log_path)?;
        let last = text
            .strip_suffix(b"\n")
            .unwrap_or(&text)
            .rsplit(|&b| b == b'\n')
            .next()
            .unwrap_or_default();
        if last != current.id.to_string().as_bytes() {
            append_line(&log, &log_path, &format!("{}\n", current.id))?;
        }
        Ok(())
    }
}

fn parse_intent(line: &[u8]) -> Option<(VersionId, VPath)> {
    let text = std::str::from_utf8(line).ok()?;
    let (id, path) = text.split_once(' ')?;
    let id = id.parse().ok()?;
    let path = VPath::from_escaped(path).ok()?;
    Some((id, path))
}

fn remove_stale_new(path: &Path) {
    let old = fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|time| time.elapsed().ok())
        .is_some_and(|age| age > STALE_NEW_FILE);
    if old {
        let _ = fs::remove_file(path);
    }
}
