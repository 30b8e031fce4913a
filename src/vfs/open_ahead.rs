//! Open-ahead for the mount: notices a process opening the files of a directory
//! one after another in listing order (`cat dir/*`, `cp -r`, `tar`, `rsync`) and
//! starts reading the next files' blocks before they are opened, as the kernel's
//! readahead does within one file. It acts on the first read of a file that
//! reaches the mount (the kernel's page cache did not have it), so files read
//! from the page cache cost nothing here.
//!
//! Each file of the contract layout is one or more block files four directory
//! levels deep (`hashes/aa/bb/cc/dd/<rest>`), so a cold open of a small file waits
//! for several dependent disk reads; a reader going through a directory pays that
//! once per file. Here a background thread resolves the next files' current
//! versions (which also warms the mount's version cache) and hands their first
//! blocks to the store's prefetch threads, so those reads overlap with the reader.
//! Only local block files are touched, never a peer's store.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

use super::types::{DirEntry, NodeKind};
use crate::layout::VPath;
use crate::lock;
use crate::store::live_cache::LiveCache;
use crate::store::{Kind, Store};

/// Files read ahead of a sequential reader.
const FILES_AHEAD: usize = 16;

/// Blocks of each such file hinted (the start of a large file; its own reader's
/// readahead takes over from there).
const BLOCKS_PER_FILE: usize = 2;

/// Listings remembered (the directories being read now), and the largest one
/// kept: a bigger one is not worth its memory here.
const LISTINGS: usize = 2;
const MAX_LISTING: usize = 20_000;

/// Files waiting for the worker; more are dropped (it is only a hint).
const QUEUE: usize = 64;

#[derive(Default)]
struct State {
    /// Recent listings, newest last.
    listings: VecDeque<(VPath, Arc<Vec<DirEntry>>)>,
    /// Per listed directory: the index of the last file opened in it, and how
    /// far files were already sent ahead.
    cursors: HashMap<VPath, (usize, usize)>,
}

/// See the module documentation.
pub struct OpenAhead {
    state: Mutex<State>,
    store: Arc<Store>,
    versions: Arc<LiveCache>,
    worker: OnceLock<Option<SyncSender<VPath>>>,
}

impl OpenAhead {
    pub fn new(store: Arc<Store>, versions: Arc<LiveCache>) -> OpenAhead {
        OpenAhead {
            state: Mutex::new(State::default()),
            store,
            versions,
            worker: OnceLock::new(),
        }
    }

    /// Directory `dir` was listed with these entries (sorted by name).
    pub fn listed(&self, dir: &VPath, entries: &Arc<Vec<DirEntry>>) {
        if entries.len() > MAX_LISTING || entries.len() < 2 {
            return;
        }
        let mut state = lock(&self.state);
        state.listings.retain(|(listed, _)| listed != dir);
        if state.listings.len() >= LISTINGS {
            if let Some((old, _)) = state.listings.pop_front() {
                state.cursors.remove(&old);
            }
        }
        state.listings.push_back((dir.clone(), Arc::clone(entries)));
        state.cursors.remove(dir);
    }

    /// A reader of the file at `path` asked for its start, which the kernel's
    /// page cache did not hold (a warm reader never gets here, so costs nothing).
    pub fn reading(&self, path: &VPath) {
        let ahead = self.plan(path);
        if ahead.is_empty() {
            return;
        }
        let Some(worker) = self.worker() else {
            return;
        };
        for path in ahead {
            if worker.try_send(path).is_err() {
                break;
            }
        }
    }

    /// The files to read ahead now that `path` is being read: the next ones
    /// of its directory's listing not sent yet, once reads go in listing order.
    fn plan(&self, path: &VPath) -> Vec<VPath> {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Vec::new();
        };
        {
            let mut state = lock(&self.state);
            let Some(entries) = state
                .listings
                .iter()
                .find(|(listed, _)| *listed == dir)
                .map(|(_, entries)| Arc::clone(entries))
            else {
                return Vec::new();
            };
            let Ok(index) = entries.binary_search_by(|entry| entry.name.as_slice().cmp(name))
            else {
                return Vec::new();
            };
            let (last, sent) = state.cursors.get(&dir).copied().unwrap_or((usize::MAX, 0));
            // Next in the listing, or a few entries on (a glob sorted by another
            // collation, files skipped).
            let sequential = last < index && index - last <= 4;
            let from = if sequential { sent.max(index + 1) } else { 0 };
            let to = (index + 1 + FILES_AHEAD).min(entries.len());
            let sent = if sequential { to.max(sent) } else { 0 };
            state.cursors.insert(dir.clone(), (index, sent));
            if !sequential {
                return Vec::new();
            }
            entries
                .get(from..to)
                .unwrap_or_default()
                .iter()
                .filter(|entry| entry.attr.kind == NodeKind::File && entry.attr.size > 0)
                .filter_map(|entry| dir.join(&entry.name).ok())
                .collect()
        }
    }

    /// The worker's queue, started on first use (`None` if no thread could start).
    fn worker(&self) -> Option<&SyncSender<VPath>> {
        self.worker
            .get_or_init(|| {
                let (tx, rx) = sync_channel::<VPath>(QUEUE);
                let (store, versions) = (Arc::clone(&self.store), Arc::clone(&self.versions));
                let spawned =
                    std::thread::Builder::new()
                        .name("open-ahead".into())
                        .spawn(move || {
                            while let Ok(path) = rx.recv() {
                                let Ok(Some(version)) = versions.live(&store, &path) else {
                                    continue;
                                };
                                if version.kind != Kind::File {
                                    continue;
                                }
                                for hash in version.hashes.iter().take(BLOCKS_PER_FILE) {
                                    store.blocks().prefetch(hash);
                                }
                            }
                        });
                match spawned {
                    Ok(_) => Some(tx),
                    Err(err) => {
                        tracing::debug!(error = %err, "no open-ahead thread");
                        None
                    }
                }
            })
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::types::Attr;

    fn entry(name: &str, kind: NodeKind, size: u64) -> DirEntry {
        DirEntry {
            name: name.as_bytes().to_vec(),
            attr: Attr {
                ino: 0,
                kind,
                size,
                perm: 0o644,
                mtime: std::time::SystemTime::UNIX_EPOCH,
                nlink: 1,
                uid: 0,
                gid: 0,
                atime: std::time::SystemTime::UNIX_EPOCH,
                ctime: std::time::SystemTime::UNIX_EPOCH,
                rdev: 0,
                blocks: size.div_ceil(512),
            },
        }
    }

    fn names(paths: &[VPath]) -> Vec<String> {
        paths.iter().map(|p| p.to_string()).collect()
    }

    fn ahead_of(entries: Vec<DirEntry>) -> (tempfile::TempDir, OpenAhead) {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::store::scratch_spec(dir.path());
        let store = Arc::new(Store::open_spec(&spec).unwrap());
        let versions = Arc::new(LiveCache::new(&store));
        let ahead = OpenAhead::new(store, versions);
        ahead.listed(&VPath::from_escaped("d").unwrap(), &Arc::new(entries));
        (dir, ahead)
    }

    fn file(name: &str) -> VPath {
        VPath::from_escaped(&format!("d/{name}")).unwrap()
    }

    #[test]
    fn reads_in_listing_order_send_the_next_files_once() {
        let entries: Vec<DirEntry> = (0..40)
            .map(|i| entry(&format!("f{i:02}"), NodeKind::File, 10))
            .collect();
        let (_dir, ahead) = ahead_of(entries);
        // One read says nothing about an order yet.
        assert!(ahead.plan(&file("f00")).is_empty());
        let first = ahead.plan(&file("f01"));
        let expected: Vec<String> = (2..2 + FILES_AHEAD)
            .map(|i| format!("/d/f{i:02}"))
            .collect();
        assert_eq!(names(&first), expected);
        // The next read sends only the one file not sent yet.
        assert_eq!(
            names(&ahead.plan(&file("f02"))),
            vec![format!("/d/f{:02}", 3 + FILES_AHEAD - 1)]
        );
        // A small skip (files the page cache had) still counts as in order.
        assert_eq!(
            names(&ahead.plan(&file("f05"))),
            vec![
                format!("/d/f{:02}", FILES_AHEAD + 3),
                format!("/d/f{:02}", FILES_AHEAD + 4),
                format!("/d/f{:02}", FILES_AHEAD + 5)
            ]
        );
    }

    #[test]
    fn random_reads_directories_and_empty_files_send_nothing() {
        let entries = vec![
            entry("a", NodeKind::File, 10),
            entry("b", NodeKind::File, 10),
            entry("c", NodeKind::Dir, 0),
            entry("d", NodeKind::File, 0),
            entry("e", NodeKind::Symlink, 5),
            entry("f", NodeKind::File, 10),
            entry("g", NodeKind::File, 10),
            entry("z", NodeKind::File, 10),
        ];
        let (_dir, ahead) = ahead_of(entries);
        assert!(ahead.plan(&file("z")).is_empty());
        // Backwards, then far ahead: not in order.
        assert!(ahead.plan(&file("a")).is_empty());
        assert!(ahead.plan(&file("z")).is_empty());
        assert!(ahead.plan(&file("a")).is_empty());
        assert_eq!(names(&ahead.plan(&file("b"))), vec!["/d/f", "/d/g", "/d/z"]);
        // Outside any listed directory, or a name not in the listing: nothing.
        assert!(
            ahead
                .plan(&VPath::from_escaped("other/a").unwrap())
                .is_empty()
        );
        assert!(ahead.plan(&file("missing")).is_empty());
    }

    #[test]
    fn a_new_listing_of_the_directory_starts_over() {
        let entries: Vec<DirEntry> = (0..5)
            .map(|i| entry(&format!("f{i}"), NodeKind::File, 1))
            .collect();
        let (_dir, ahead) = ahead_of(entries.clone());
        assert!(ahead.plan(&file("f0")).is_empty());
        assert_eq!(ahead.plan(&file("f1")).len(), 3);
        ahead.listed(&VPath::from_escaped("d").unwrap(), &Arc::new(entries));
        assert!(ahead.plan(&file("f2")).is_empty());
        assert_eq!(names(&ahead.plan(&file("f3"))), vec!["/d/f4"]);
    }
}
