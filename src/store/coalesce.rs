//! Coalescing (FORMAT §15, "Coalescing"): a new version of a file drops the
//! version it replaced when the version kept before that one is younger than
//! `retention.coalesce_within` (default a minute) and no other node has been
//! sent it yet, so a file rewritten many times a minute (a database
//! committing row by row, `echo >` truncating and then writing) keeps a
//! version a minute, not one per write.
//!
//! The replaced version `old` is dropped at the commit of `new` only when all
//! of this holds: `old` is the one head `new` replaces; both are this node's
//! regular-file versions, not conflict copies, not renames, not hard-linked
//! names; `old` is an edit (its own parents include a live version that is
//! still here), so it created no name and dropping it moves no directory
//! time; every peer's outbound spool still holds `old` (no push took it; a
//! path kept local by `ignore` is never pushed); and dropping it loses nothing
//! promised durable: `new` was made durable, or `old` is a lazy commit of this
//! process (never fsynced). The spec's `retention.keep_all` turns it off.
//!
//! `old` is dropped like a pruned version: its id is appended to
//! `versions/pruned` (a copy that comes back from a peer's full check is not
//! taken again, and a writer that built on it is seen to have forked, see
//! `commit.rs`), the path is marked for the digest, its outbound links go,
//! then its version file. `new` names `old` and `old`'s parents still here as
//! its parents, so on a node that got `old` some other way (a full check read
//! it from our store) `new` still supersedes it, and its ancestry still
//! reaches the file's creation (directory times). gc frees blocks only `old`
//! named.

use std::fs;
use std::io::ErrorKind;

use super::{IoContext, Kind, Store, StoreError, Version};

impl Store {
    /// The version a commit of `content` at `path` on `parents` replaces and
    /// may drop (see the module's rules), and the parents the new version
    /// names then: the dropped one and its own parents still here, so the
    /// new version still reaches the file's creation (directory times walk
    /// that ancestry) and supersedes the dropped one wherever it went.
    /// Called by the commit, under the path's log lock, before it publishes.
    pub(super) fn coalescable(
        &self,
        path: &crate::layout::VPath,
        content: &super::Content,
        parents: &[crate::ids::VersionId],
        durable: bool,
    ) -> Result<Option<(Version, Vec<crate::ids::VersionId>)>, StoreError> {
        let Some(within) = self.config.coalesce else {
            return Ok(None);
        };
        if content.kind != Kind::File || content.posix.links.is_some() {
            return Ok(None);
        }
        let [parent] = parents else {
            return Ok(None);
        };
        let old = match self.read_version(path, *parent) {
            Ok(old) => old,
            Err(err) if err.is_not_found() => return Ok(None),
            Err(err) => return Err(err),
        };
        // At least one version a window stays: `old` goes only while the
        // version kept before it is younger than the window.
        let Some(kept) = self.edit_base(&old)? else {
            return Ok(None);
        };
        let since_epoch = |id: crate::ids::VersionId| std::time::Duration::new(id.secs, id.nanos);
        let now = since_epoch(crate::ids::VersionId::now(None));
        let young = now.saturating_sub(since_epoch(kept)) < within;
        let droppable = young
            && old.node == self.config.node
            && old.kind == Kind::File
            && old.conflict_of.is_none()
            && old.from.is_none()
            && old.posix.links.is_none()
            && (durable || self.is_lazy(&old))
            && self.undelivered(&old);
        if !droppable {
            return Ok(None);
        }
        let mut parents = vec![old.id];
        for id in &old.parents {
            if self.versions_dir(path).join(id.to_string()).exists() {
                parents.push(*id);
            }
        }
        Ok(Some((old, parents)))
    }

    /// Drops `old`, which a version just published replaced (see
    /// [`Store::coalescable`]); after that version is durable, if it is to be.
    pub(super) fn drop_coalesced(&self, old: &Version) -> Result<(), StoreError> {
        let versions = self.versions_dir(&old.path);
        let pruned = versions.join("pruned");
        let mut record = crate::layout::open_append(&pruned).at(&pruned)?;
        std::io::Write::write_all(&mut record, format!("{}\n", old.id).as_bytes()).at(&pruned)?;
        super::digest::mark_dirty(self, &old.path)?;
        for peer in &self.sharing().peers {
            let link = old
                .path
                .disk_path(&self.layout.outbound(*peer))
                .join("versions")
                .join(old.id.to_string());
            remove_if_there(&link)?;
        }
        remove_if_there(&versions.join(old.id.to_string()))?;
        self.forget_lazy(old);
        Ok(())
    }

    /// The newest live parent of `version` still present, if any: then
    /// `version` only changed a file that was already there (an edit).
    fn edit_base(&self, version: &Version) -> Result<Option<crate::ids::VersionId>, StoreError> {
        let mut newest = None;
        for parent in &version.parents {
            match self.read_version(&version.path, *parent) {
                Ok(parent) if parent.kind.is_live() => newest = newest.max(Some(parent.id)),
                Ok(_) => {}
                Err(err) if err.is_not_found() => {}
                Err(err) => return Err(err),
            }
        }
        Ok(newest)
    }

    /// Whether no peer has been sent `version`: every peer's outbound spool
    /// still holds it (true without peers, and for a path kept local).
    fn undelivered(&self, version: &Version) -> bool {
        if self.is_ignored(&version.path) {
            return true;
        }
        self.sharing().peers.iter().all(|peer| {
            version
                .path
                .disk_path(&self.layout.outbound(*peer))
                .join("versions")
                .join(version.id.to_string())
                .exists()
        })
    }
}

fn remove_if_there(path: &std::path::Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        Err(err) => Err(StoreError::io(path, err)),
    }
}
