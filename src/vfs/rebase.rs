//! Appends rebased onto a version that replaced their base. A write state
//! that only appended to its base (nothing below the base's end written,
//! truncated or changed in its attributes) and finds, when it commits, that
//! another mount of this node, a `globofs put` or a peer's applied version
//! replaced that base with one that still starts with the base's bytes,
//! moves its appended bytes to the end of that version and commits on top
//! of it: two appenders through two mounts end up in one file, as on a local
//! file system, instead of a file and a conflict copy. Anything else keeps
//! the fork of FORMAT §10 rule 5. The store asks for the rebase
//! ([`crate::store::Rebase`]) with the path's log locked, so no other
//! version can land between the check and the commit.

use super::Vfs;
use super::error::VfsResult;
use super::write_cache::{Dirty, WriteCache};
use crate::layout::VPath;
use crate::store::{Kind, Version};

/// Bytes moved per read and write while rebasing.
const CHUNK: usize = 1 << 20;

impl Vfs {
    /// Rebases `state`'s appends onto `current`, the version of `path` that
    /// replaced the state's base, when it extends that base (see the
    /// module); called by the store with the path's log locked. Whether it
    /// did: the state then builds on `current`, and the kernel's pages and
    /// size of the file are stale.
    pub(super) fn rebase_onto(
        &self,
        path: &VPath,
        state: &mut Dirty,
        current: &Version,
    ) -> VfsResult<bool> {
        // A file created here and not committed yet has a placeholder base
        // (no id): it appended to nothing.
        let Some(base) = state.base.as_ref() else {
            return Ok(false);
        };
        let cache = &state.cache;
        if cache.direct || cache.attrs_changed().is_some() || !cache.only_appended(base.size) {
            return Ok(false);
        }
        if current.id == base.id || !self.extends(current, base)? {
            return Ok(false);
        }
        let mut moved = WriteCache::new(&self.store, Some(current), current.size)?;
        let mut buf = vec![0u8; CHUNK.min((cache.size - base.size) as usize)];
        let mut from = base.size;
        while from < cache.size {
            let len = ((cache.size - from) as usize).min(CHUNK);
            cache.read(&self.store, Some(base), from, &mut buf[..len])?;
            let at = super::WriteAt::End(current.size + (from - base.size));
            moved.write_at(&self.store, Some(current), at, &buf[..len])?;
            from += len as u64;
        }
        if cache.size == base.size {
            // Nothing appended after all (an empty write): still a change.
            moved.mark_changed();
        }
        tracing::debug!(%path, base = %base.id, onto = %current.id, "appends rebased onto the version that replaced their base");
        state.cache = moved;
        state.base = Some(current.clone());
        Ok(true)
    }

    /// Whether `version` holds all of `base`'s bytes at its start, with the
    /// same mode, owners and other attributes (an explicit atime aside).
    fn extends(&self, version: &Version, base: &Version) -> VfsResult<bool> {
        let without_atime = |v: &Version| crate::store::posix::Posix {
            atime: None,
            ..v.posix.clone()
        };
        if version.kind != Kind::File
            || base.kind != Kind::File
            || version.size < base.size
            || version.mode & 0o7777 != base.mode & 0o7777
            || without_atime(version) != without_atime(base)
        {
            return Ok(false);
        }
        if version.block_size != base.block_size {
            // Cut differently (an fsync re-cuts files of up to RECUT_MAX in
            // small blocks): no hash to compare, so the bytes, up to there.
            if base.size > super::write::RECUT_MAX {
                return Ok(false);
            }
            return self.same_start(version, base);
        }
        let bs = u64::from(base.block_size.max(1));
        let whole = (base.size / bs) as usize;
        if version.hashes.get(..whole) != base.hashes.get(..whole) {
            return Ok(false);
        }
        let tail = (base.size % bs) as usize;
        if tail == 0 {
            return Ok(true);
        }
        // The base's partial last block: the same bytes at the start of
        // the version's block there.
        let at = whole as u64 * bs;
        let mut mine = vec![0u8; tail];
        let mut theirs = vec![0u8; tail];
        let got_mine = self.store.read_at(base, at, &mut mine)?;
        let got_theirs = self.store.read_at(version, at, &mut theirs)?;
        Ok(got_mine == tail && got_theirs == tail && mine == theirs)
    }

    /// Whether `version`'s first `base.size` bytes are `base`'s, read and
    /// compared chunk by chunk.
    fn same_start(&self, version: &Version, base: &Version) -> VfsResult<bool> {
        let mut mine = vec![0u8; CHUNK.min(base.size as usize)];
        let mut theirs = mine.clone();
        let mut at = 0;
        while at < base.size {
            let len = ((base.size - at) as usize).min(CHUNK);
            let got_mine = self.store.read_at(base, at, &mut mine[..len])?;
            let got_theirs = self.store.read_at(version, at, &mut theirs[..len])?;
            if got_mine != len || got_theirs != len || mine[..len] != theirs[..len] {
                return Ok(false);
            }
            at += len as u64;
        }
        Ok(true)
    }
}
