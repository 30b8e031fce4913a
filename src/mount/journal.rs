//! Following the node's journal while mounted: what other processes on this
//! machine and the sync loop (applying peers' changes) wrote shows up in the
//! mount, because the kernel is told to drop what it cached of those paths;
//! each batch of news also nudges the sync loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::POLL;
use super::session::Invalidator;
use super::tuning::{TRIM_AFTER_FORGETS, release_freed_memory};
use crate::layout::VPath;
use crate::store::journal;
use crate::vfs::Vfs;

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
            }
        }
        for dir in listings {
            invalidator.invalidate_listing(dir);
        }
        position = batch.next;
    }
}
