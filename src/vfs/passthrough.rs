//! How the kernel serves an open handle: through its page cache (and whether
//! it may keep what it holds) or FUSE passthrough with a backing file.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Vfs;
use super::handles::Handle;
use super::inodes::Seen;
use super::locks::Ranked;
use super::locks::lock;
use super::types::{Mode, Opened};

impl Vfs {
    /// Lets `open` offer backing files for FUSE passthrough.
    pub fn enable_passthrough(&self) {
        self.passthrough.store(true, Ordering::Relaxed);
    }

    pub fn passthrough_enabled(&self) -> bool {
        self.passthrough.load(Ordering::Relaxed)
    }

    pub(super) fn page_cache_epoch(&self, ino: u64) -> u64 {
        lock(&self.inodes)
            .by_ino
            .get(&ino)
            .map_or(0, |node| node.epoch)
    }

    /// Something may have put other bytes in `ino`'s page cache: the next
    /// read-only open drops it.
    pub fn page_cache_unknown(&self, ino: u64) {
        if let Some(node) = lock(&self.inodes).by_ino.get_mut(&ino) {
            node.cached = None;
            node.epoch += 1;
        }
    }

    /// Whether a read-only open `fh` of version `id` may keep `ino`'s page
    /// cache (it already holds `id`'s bytes); otherwise the kernel drops it and,
    /// when nothing else could refill it with other bytes, it holds `id` from now on.
    pub(super) fn page_cache_for_read(
        &self,
        ino: u64,
        fh: u64,
        id: crate::ids::VersionId,
        epoch: u64,
    ) -> bool {
        // Handle locks are taken before, never while holding, the inode table.
        let handles: Vec<(u64, Arc<Ranked<Handle>>)> = lock(&self.handles)
            .iter()
            .map(|(fh, handle)| (*fh, Arc::clone(handle)))
            .collect();
        let alone = handles.iter().all(|(other, handle)| {
            let handle = lock(handle);
            *other == fh
                || handle.ino != ino
                || (handle.dirty.is_none() && handle.base.as_ref().is_some_and(|b| b.id == id))
        }) && self.dirty_of(ino).is_none();
        let mut inodes = lock(&self.inodes);
        let Some(node) = inodes.by_ino.get_mut(&ino) else {
            return false;
        };
        if !alone || node.epoch != epoch {
            node.cached = None;
            return false;
        }
        let keep = node.cached == Some(Seen::of(&id));
        node.cached = Some(Seen::of(&id));
        keep
    }

    /// Decides how an open handle is served, given whether its inode has a
    /// backing file attached (a passthrough writer's cache, by an earlier
    /// handle still open).
    pub fn mode(&self, ino: u64, opened: Opened, attached: bool) -> Mode {
        let fh = opened.fh;
        if attached {
            // (A file holding a privilege shares it too: a write through
            // passthrough by a process without CAP_FSETID makes the kernel
            // ask for the drop with a setattr that sets nothing. Serving
            // this handle directly instead stopped the mount following the
            // attached writer's later writes: QA found them lost.)
            let direct = !opened.shares_cache;
            if direct {
                self.passthrough_refused(fh);
            }
            self.page_cache_unknown(ino);
            return Mode::Share { direct };
        }
        match opened.backing {
            Some(file) if opened.shares_cache && self.open_handles(ino) == [fh] => {
                self.page_cache_unknown(ino);
                Mode::Attach(file)
            }
            _ => {
                self.passthrough_refused(fh);
                Mode::Cached {
                    keep_cache: opened.keep_cache,
                }
            }
        }
    }

    /// The adapter could not set up passthrough: writes come through `write` after all.
    pub fn passthrough_refused(&self, fh: u64) {
        let dirty = self.handle(fh).ok().and_then(|h| lock(&h).dirty.clone());
        if let Some(dirty) = dirty {
            // The cache file may hold the kernel's writes (earlier handles had it
            // attached): take all of it as written before serving it here.
            let mut state = lock(&dirty);
            if let Err(err) = state.cache.sync_direct() {
                tracing::error!(
                    fh,
                    errno = err.errno(),
                    "reading a write cache's size: {err}"
                );
            }
            state.cache.direct = false;
        }
    }
}
