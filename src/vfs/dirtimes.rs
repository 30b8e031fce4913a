//! What the mount shows of a directory beyond its own version: its mtime and
//! ctime moved by the creates, removals and renames of its entries (derived
//! from the children's versions, `store/dir_times.rs`, so every node with the
//! same versions shows the same times), `st_nlink` as 2 plus its
//! subdirectories, and a fixed non-zero `st_size`. Also keeps a directory's
//! shown mtime in the new version an attribute change (chmod, chown, xattr)
//! writes, so that change does not move the mtime back.

use std::time::SystemTime;

use super::Vfs;
use super::error::VfsResult;
use super::locks::lock;
use super::types::{Attr, Flushed};
use crate::layout::VPath;
use crate::store::{Mtime, Version};

/// `st_size` of every directory (what ext4 shows for a small one; the
/// entries are not stored in a file whose size could be shown).
pub(super) const DIR_SIZE: u64 = 4096;

impl Vfs {
    /// Fills in the derived parts of the attributes `attr` of directory
    /// `path`, whose own current version is `own` (`None`: the root before
    /// any version of it). A failure to read the entries leaves the times of
    /// the directory's own version (logged, never an error of the request).
    pub(super) fn derive_dir_attr(&self, path: &VPath, own: Option<&Version>, attr: &mut Attr) {
        attr.size = DIR_SIZE;
        let own = own.filter(|v| v.id.secs > 0);
        let info = match self.versions.dir_info(&self.store, path, own) {
            Ok(info) => info,
            Err(err) => {
                tracing::debug!(path = %path, error = %err, "reading a directory's entries for its times");
                return;
            }
        };
        attr.nlink = u32::try_from(info.subdirs.saturating_add(2)).unwrap_or(u32::MAX);
        let Some(changed) = info.changed else {
            return;
        };
        let Some(changed_time) = SystemTime::UNIX_EPOCH
            .checked_add(std::time::Duration::new(changed.secs, changed.nanos))
        else {
            return;
        };
        // The directory's own version wins when it is later (a utime after
        // the change); an attribute change keeps the mtime shown (below).
        if own.is_none_or(|own| changed > own.id) {
            attr.mtime = changed_time;
            if own.is_none_or(|own| own.posix.atime.is_none()) {
                attr.atime = changed_time;
            }
        }
        attr.ctime = attr.ctime.max(changed_time);
    }

    /// The mtime a new version of directory `path` made by an attribute
    /// change keeps (what it shows now), or `None` when `path` is not a
    /// directory.
    pub(super) fn dir_mtime_to_keep(&self, path: &VPath) -> Option<Mtime> {
        if !self.is_dir(path).ok()? {
            return None;
        }
        let attr = match self.live(path).ok().flatten() {
            Some(version) => self.attr_of(super::ROOT_INO, &version),
            None => self.root_attr(),
        };
        Some(Mtime::from_system(attr.mtime))
    }

    /// [`Vfs::commit_changed`], also naming the directory whose attributes
    /// the kernel must drop: the parent of a file created here whose first
    /// version this commit made (the create moves the directory's times only
    /// now, and the kernel may have asked for them since the create).
    pub fn commit_for_kernel(&self, fh: u64, durable: bool) -> VfsResult<Flushed> {
        let state = self.writers_state(fh).ok();
        let first = state
            .as_ref()
            .is_some_and(|dirty| lock(dirty).base.as_ref().is_none_or(|b| b.id.secs == 0));
        let changed = self.commit_changed(fh, durable)?;
        let rebased = state.is_some_and(|dirty| std::mem::take(&mut lock(&dirty).rebased));
        let mut flushed = Flushed {
            changed,
            rebased,
            parent: None,
        };
        if !(changed && first) {
            return Ok(flushed);
        }
        let ino = lock(&*self.handle(fh)?).ino;
        let parent = self
            .path_of(ino)
            .ok()
            .and_then(|path| path.parent())
            .and_then(|parent| self.ino_of(&parent));
        flushed.parent = parent;
        Ok(flushed)
    }
}
