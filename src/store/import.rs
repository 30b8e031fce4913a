//! Importing a version another node wrote: published under its own id exactly as
//! it was made (same parents, same writer), so every node holds the same version
//! set and resolves each path the same way.
//!
//! The caller (sync) has parsed and checked the version; this writes our own copy
//! of it (never a link to the peer's file), with the same no-replace publishing as
//! a local commit. Importing a version we already hold is a no-op; one that
//! differs from what we hold under the same id is refused.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;

use super::version::Version;
use super::{IoContext, Store, StoreError, append_line, flock_file, open_log, read_version_file};

/// What an import did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Imported {
    /// The version is new here and now published, logged and journaled.
    New,
    /// We already held exactly this version.
    Identical,
}

impl Store {
    /// Publishes `version` under its own id (no-replace), appends it to the
    /// path's `versions/log`, links its blocks that are local, and journals it
    /// (so it is relayed to our other peers). If it is not the path's current
    /// version afterwards, the current id is appended to the log again, so the
    /// log's last line keeps naming the current version.
    pub fn import_version(&self, version: &Version) -> Result<Imported, StoreError> {
        self.recover_once()?;
        let _lock = self.writer_lock()?;
        let versions_dir = self.versions_dir(&version.path);
        let dest = versions_dir.join(version.id.to_string());
        if let Some(outcome) = compare_existing(&dest, version)? {
            return Ok(outcome);
        }
        crate::layout::create_dirs(&versions_dir).at(&versions_dir)?;
        let log_path = versions_dir.join("log");
        let log = open_log(&log_path)?;
        let _path_lock = flock_file(&log, &log_path)?;
        // Another process of this node may have imported it meanwhile.
        if let Some(outcome) = compare_existing(&dest, version)? {
            return Ok(outcome);
        }
        let text = version.to_text();
        let tmp_dir = self.layout.tmp();
        let mut tmp = tempfile::Builder::new()
            .prefix("import-")
            .tempfile_in(&tmp_dir)
            .at(&tmp_dir)?;
        tmp.write_all(text.as_bytes()).at(tmp.path())?;
        tmp.as_file().sync_data().at(tmp.path())?;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644)).at(tmp.path())?;
        // Named in our intent file before it is visible (see `intents.rs`).
        let intent = self.intents.begin(self, version.id, &version.path)?;
        if torn_at(&dest) {
            // Our copy was cut short by a crash (a lazy commit): the peer's
            // intact copy of the same version replaces it.
            tracing::warn!(file = %dest.display(), "replacing a torn version file with the copy a peer sent");
            fs::rename(tmp.path(), &dest).at(&dest)?;
            self.link_blocks(&version.path, &version.hashes)?;
            // Readers skipped the torn copy: the path's current version may move.
            self.record(version)?;
            intent.done();
            return Ok(Imported::New);
        }
        match fs::hard_link(tmp.path(), &dest) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {
                intent.done();
                return compare_existing(&dest, version)?.ok_or_else(|| StoreError::IdClash {
                    path: dest.clone(),
                    why: "appeared while importing".to_string(),
                });
            }
            Err(err) => return Err(StoreError::io(&dest, err)),
        }
        crate::failpoint::hit("import:published");
        append_line(&log, &log_path, &format!("{}\n", version.id))?;
        crate::failpoint::hit("import:logged");
        self.link_blocks(&version.path, &version.hashes)?;
        self.record(version)?;
        intent.done();
        if let Some(current) = self.current(&version.path)? {
            if current.id != version.id {
                append_line(&log, &log_path, &format!("{}\n", current.id))?;
            }
        }
        tracing::debug!(
            path = %version.path,
            version = %version.id,
            node = %version.node,
            kind = version.kind.as_str(),
            "imported"
        );
        Ok(Imported::New)
    }
}

impl Store {
    /// Whether we already hold exactly `version` (under its id, identical).
    pub fn holds(&self, version: &Version) -> Result<bool, StoreError> {
        let dest = self
            .versions_dir(&version.path)
            .join(version.id.to_string());
        match read_version_file(&dest) {
            Ok(existing) => Ok(existing == *version),
            Err(err) if err.is_not_found() => Ok(false),
            Err(StoreError::Corrupt { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }
}

/// `Some` when `dest` already holds a version: identical, or refused if it differs.
fn compare_existing(
    dest: &std::path::Path,
    version: &Version,
) -> Result<Option<Imported>, StoreError> {
    match read_version_file(dest) {
        Ok(existing) if existing == *version => Ok(Some(Imported::Identical)),
        Ok(existing) => Err(StoreError::IdClash {
            path: dest.to_path_buf(),
            why: format!(
                "we hold a different version {} of {} (written by {}) under this id; the incoming one (by {}) is refused",
                existing.id, existing.path, existing.node, version.node
            ),
        }),
        Err(err) if err.is_not_found() => Ok(None),
        // A torn file of ours: the caller replaces it.
        Err(StoreError::Corrupt { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Whether `dest` exists but does not parse (torn by a crash).
fn torn_at(dest: &std::path::Path) -> bool {
    matches!(read_version_file(dest), Err(StoreError::Corrupt { .. }))
}
