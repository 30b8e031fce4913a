//! The links of each path's blocks under `root/<path>/hashes/` (FORMAT §7),
//! made off the commit path. They are reference-count hints for people and
//! tools: no reader of the store depends on them (blocks are read from the
//! store's `hashes/`, gc counts from version files), so a process that asks
//! for it ([`Store::link_paths_later`], the mount) has each commit queue its
//! path's new links, and a thread of its own makes them in batches: after
//! [`BATCH_WAIT`], at once past [`BATCH_WAKE`] queued commits. Past
//! [`QUEUE_MAX`] a commit links its own (memory stays bounded); `gc`, and
//! closing the store, make every queued link first.
//!
//! A version dropped before its links were made (coalesced, pruned) gets
//! none; a process killed with links queued leaves them missing, and the
//! next `gc` makes every missing link of a kept version (FORMAT §15).

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use super::{Store, StoreError, copy_block, link_block};
use crate::ids::{BlockHash, VersionId};
use crate::layout::VPath;

/// How long queued links wait for more to join them.
const BATCH_WAIT: Duration = Duration::from_millis(500);

/// Queued commits that wake the linking thread before [`BATCH_WAIT`].
const BATCH_WAKE: usize = 4096;

/// Queued commits at most; past this a commit makes its links itself.
const QUEUE_MAX: usize = 65_536;

/// Links of one path from which they are made on several threads.
const PARALLEL_LINKS_MIN: usize = 64;

/// One commit's links to make.
struct Queued {
    path: VPath,
    id: VersionId,
    hashes: Vec<BlockHash>,
}

#[derive(Default)]
struct Queue {
    /// Links are queued (a thread makes them); otherwise each commit links.
    later: bool,
    entries: Vec<Queued>,
}

/// The queue shared by a store and its linking thread.
#[derive(Default)]
pub(super) struct PathLinks {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl PathLinks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self) -> Vec<Queued> {
        std::mem::take(&mut self.lock().entries)
    }
}

impl Store {
    /// Links `hashes` under `root/<path>/hashes/` (one link per block per path).
    pub fn link_blocks(&self, path: &VPath, hashes: &[BlockHash]) -> Result<(), StoreError> {
        self.link_blocks_in(&self.path_dir(path).join("hashes"), hashes)
            .map(|_| ())
    }

    /// Links each of `hashes` held here under `dir` (a path's `hashes/`)
    /// that is not there yet; how many links it made.
    pub(super) fn link_blocks_in(
        &self,
        dir: &Path,
        hashes: &[BlockHash],
    ) -> Result<u64, StoreError> {
        let mut done = std::collections::HashSet::new();
        let unique: Vec<&BlockHash> = hashes.iter().filter(|hash| done.insert(**hash)).collect();
        // A large file in small blocks: links made by a thread per share of
        // `hashes/aa/` (most of the time goes to making fan-out directories,
        // which run side by side in different parents).
        let made = super::pipeline::run_grouped(
            &unique,
            super::pipeline::default_workers(),
            PARALLEL_LINKS_MIN,
            |hash| usize::from(hash.0[0]),
            |share| {
                let mut made = 0u64;
                for hash in share {
                    made += u64::from(self.link_one(dir, hash)?);
                }
                Ok::<u64, StoreError>(made)
            },
        )?;
        Ok(made.into_iter().sum())
    }

    /// Links `hash` under `dir` when it is held here; whether it made a link.
    fn link_one(&self, dir: &Path, hash: &BlockHash) -> Result<bool, StoreError> {
        let Some(located) = self.blocks.locate(hash, None) else {
            // Not local (a version applied from a peer): linked when pulled.
            return Ok(false);
        };
        let mut link = dir.join(hash.relative_path()).into_os_string();
        if located.compressed {
            link.push(".zst");
        }
        let link = std::path::PathBuf::from(link);
        if !link_block(&located.path, &link)? {
            tracing::debug!(%hash, dir = %dir.display(), "block has too many links; storing a copy");
            copy_block(&located.path, &link)?;
        }
        Ok(true)
    }

    /// Has this store's commits queue their paths' block links for a
    /// thread of its own from now on (the mount).
    pub fn link_paths_later(self: &Arc<Store>) {
        {
            let mut queue = self.path_links.lock();
            if queue.later {
                return;
            }
            queue.later = true;
        }
        let links = Arc::clone(&self.path_links);
        let store = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("path-links".into())
            .spawn(move || link_in_batches(&links, &store));
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "no thread for path links: each commit makes its own");
            self.path_links.lock().later = false;
        }
    }

    /// The block links of a version just published: queued when a thread
    /// makes them ([`Store::link_paths_later`]), else made now.
    pub(super) fn link_after_commit(
        &self,
        path: &VPath,
        id: VersionId,
        hashes: &[BlockHash],
    ) -> Result<(), StoreError> {
        if hashes.is_empty() {
            return Ok(());
        }
        {
            let mut queue = self.path_links.lock();
            if queue.later && queue.entries.len() < QUEUE_MAX {
                queue.entries.push(Queued {
                    path: path.clone(),
                    id,
                    hashes: hashes.to_vec(),
                });
                if queue.entries.len() == BATCH_WAKE {
                    self.path_links.wake.notify_one();
                }
                return Ok(());
            }
        }
        self.link_blocks(path, hashes)
    }

    /// Makes every queued block link now (before `gc`, at close).
    pub fn flush_path_links(&self) {
        let entries = self.path_links.take();
        if !entries.is_empty() {
            self.make_links(entries);
        }
    }

    /// Makes the links of `entries` whose version is still there, holding
    /// the writer lock (so `gc` is not removing what they link to).
    fn make_links(&self, entries: Vec<Queued>) {
        let _held = match self.writer_lock() {
            Ok(held) => held,
            Err(err) => {
                tracing::warn!(error = %err, "path links left to the next gc");
                return;
            }
        };
        for entry in entries {
            let versions = self.versions_dir(&entry.path);
            if !versions.join(entry.id.to_string()).exists() {
                continue;
            }
            if let Err(err) = self.link_blocks(&entry.path, &entry.hashes) {
                tracing::warn!(path = %entry.path, error = %err, "path links left to the next gc");
            }
        }
    }
}

/// The linking thread: a batch after [`BATCH_WAIT`] (or once
/// [`BATCH_WAKE`] commits are queued), until the store is gone (its close
/// made what was left).
fn link_in_batches(links: &PathLinks, store: &Weak<Store>) {
    loop {
        {
            let queue = links.lock();
            let (queue, _) = links
                .wake
                .wait_timeout_while(queue, BATCH_WAIT, |queue| queue.entries.len() < BATCH_WAKE)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            drop(queue);
        }
        let Some(store) = store.upgrade() else {
            return;
        };
        store.flush_path_links();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Attrs, scratch_spec};

    fn links_of(store: &Store, path: &VPath) -> usize {
        let mut n = 0;
        crate::store::gc::each_block(&store.path_dir(path).join("hashes"), &mut |_, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
        n
    }

    /// Queued links are made by the thread, by `flush_path_links` and at
    /// close; a version dropped before its batch gets none; `gc` makes the
    /// links a killed process left unmade.
    #[test]
    fn queued_links_are_made_in_batches_at_close_and_by_gc() {
        let dir = tempfile::tempdir().unwrap();
        let spec = scratch_spec(dir.path());
        let store = Arc::new(Store::open_spec(&spec).unwrap());
        // Queued with no thread yet: nothing is linked until a flush.
        store.path_links.lock().later = true;
        let a = VPath::parse(std::ffi::OsStr::new("a")).unwrap();
        store
            .write_file(&a, &mut &[7u8; 10_000][..], Attrs::default(), false)
            .unwrap();
        assert_eq!(links_of(&store, &a), 0);
        store.flush_path_links();
        assert_eq!(links_of(&store, &a), 2, "two distinct blocks of 4 KiB");

        // A thread of its own makes them.
        store.path_links.lock().later = false;
        store.link_paths_later();
        let b = VPath::parse(std::ffi::OsStr::new("b")).unwrap();
        store
            .write_file(&b, &mut &[8u8; 5000][..], Attrs::default(), false)
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while links_of(&store, &b) < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(links_of(&store, &b), 2, "the thread made them");

        // Queued at close: made by the close.
        let c = VPath::parse(std::ffi::OsStr::new("c")).unwrap();
        store
            .write_file(&c, &mut &[9u8; 100][..], Attrs::default(), false)
            .unwrap();
        drop(store);
        let store = Store::open_spec(&spec).unwrap();
        assert_eq!(links_of(&store, &c), 1);

        // Lost (as by a kill): gc makes them again.
        std::fs::remove_dir_all(store.path_dir(&a).join("hashes")).unwrap();
        let report = store.gc().unwrap();
        assert_eq!(links_of(&store, &a), 2);
        assert_eq!(report.path_links_made, 2);
    }
}
