//! Following the node's journal while mounted: what other processes on this
//! machine and the sync loop (applying peers' changes) wrote shows up in the
//! mount, because the kernel is told to drop what it cached of those paths;
//! each batch of news also nudges the sync loop. A rename made elsewhere
//! moves the inodes the mount holds at the old name to the new one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::POLL;
use super::session::Invalidator;
use super::tuning::{TRIM_AFTER_FORGETS, release_freed_memory};
use crate::layout::VPath;
use crate::store::journal;
use crate::vfs::Vfs;

/// How long a rename made elsewhere is waited on for its old name's
/// tombstone before the mount stops trying to follow it.
const RENAME_WAIT: Duration = Duration::from_secs(5);

/// Starts the `journal` thread; it ends soon after `stop` is set.
pub(super) fn spawn(
    dir: PathBuf,
    vfs: Arc<Vfs>,
    invalidator: Invalidator,
    stop: Arc<AtomicBool>,
    kick: mpsc::Sender<()>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("journal".into())
        .spawn(move || follow(&dir, &vfs, &invalidator, &stop, &kick))
}

/// Reads the node's journal from its end and invalidates what changed.
fn follow(
    dir: &Path,
    vfs: &Vfs,
    invalidator: &Invalidator,
    stop: &AtomicBool,
    kick: &mpsc::Sender<()>,
) {
    let mut position = journal::Position::default();
    // Start at the end: what is already there is what the mount serves now.
    loop {
        match journal::read(dir, &position, 10_000) {
            Ok(batch) if !batch.lines.is_empty() => position = batch.next,
            Ok(batch) => {
                position = batch.next;
                break;
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading the journal");
                break;
            }
        }
    }
    // Reading a long journal to its end (here and in the version cache) used
    // buffers that are garbage now.
    release_freed_memory();
    // Renames made elsewhere whose old name still had a file at the last
    // batch (its tombstone comes after the new name's version).
    let mut renames: Vec<(VPath, VPath, Instant)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(POLL);
        if vfs.take_forgotten() >= TRIM_AFTER_FORGETS {
            release_freed_memory();
        }
        let batch = match journal::read(dir, &position, 10_000) {
            Ok(batch) => batch,
            Err(err) => {
                tracing::warn!(error = %err, "reading the journal");
                continue;
            }
        };
        for warning in &batch.warnings {
            tracing::warn!("{warning}");
        }
        if !batch.lines.is_empty() {
            let _ = kick.send(());
        }
        let mut listings = std::collections::HashSet::new();
        for line in &batch.lines {
            let Some((id, path)) = line.split_once(' ') else {
                continue;
            };
            let (Ok(id), Ok(path)) = (id.parse(), VPath::from_escaped(path)) else {
                continue;
            };
            if let Some((ino, entry)) = vfs.changed_elsewhere(id, &path) {
                if let Some((parent, _)) = &entry {
                    listings.insert(*parent);
                }
                invalidator.invalidate(ino, entry);
                if let Some(from) = vfs.renamed_from(id, &path) {
                    renames.push((from, path, Instant::now()));
                }
            }
        }
        renames.retain(|(from, to, seen)| match vfs.follow_rename(from, to) {
            Some(true) => {
                // The moved inode's attributes (its ctime) and both names.
                let (ino, entry) = vfs.changed(to);
                invalidator.invalidate(ino, entry);
                let (_, old) = vfs.changed(from);
                invalidator.invalidate(None, old);
                false
            }
            Some(false) => seen.elapsed() < RENAME_WAIT,
            None => false,
        });
        for dir in listings {
            invalidator.invalidate_listing(dir);
        }
        position = batch.next;
    }
}
