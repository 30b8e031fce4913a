//! Publishing a version: linking its blocks under the path, the version file
//! (never replacing one), the path's log, the journal and every peer's
//! outbound spool, with the per-path flock that serialises writers of a path.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::{Content, IoContext, Kind, Mtime, Store, StoreError, Version, WriterLock};
use crate::ids::{NodeId, VersionId};
use crate::layout::VPath;

/// What a writer builds on the version that replaced its base, called by
/// [`Store::commit_each_rebasing`] with the path's log locked.
pub type Rebase<'a> = &'a mut dyn FnMut(&Version) -> Result<Option<Content>, StoreError>;

impl Store {
    /// Commits `content` as the new current version of `path`: links its blocks,
    /// publishes the version file (no-replace), appends to the log, journals it
    /// and queues it for every peer. The one commit of the store: every new
    /// version (a file cut by a [`super::FileWrite`], a directory, a rename,
    /// ...) is published here, under the writer lock `_held` proves is held.
    pub fn commit_locked(
        &self,
        held: &WriterLock,
        path: &VPath,
        content: Content,
        durable: bool,
    ) -> Result<Version, StoreError> {
        let made = self.commit_each(held, path, content, durable)?;
        super::links::first(made)
    }

    /// [`Store::commit_locked`], returning every version it published:
    /// `path`'s first, then, for a change through one name of a hard-linked
    /// file, the version at each other name of its group (links.rs).
    pub fn commit_each(
        &self,
        held: &WriterLock,
        path: &VPath,
        content: Content,
        durable: bool,
    ) -> Result<Vec<Version>, StoreError> {
        self.commit_each_rebasing(held, path, content, durable, &mut |_| Ok(None))
    }

    /// [`Store::commit_each`] for a writer that may build again on what
    /// replaced its base: when the commit would fork (its base is no longer
    /// a head), `rebase` is called with the path's current version while the
    /// path's log is still locked, so nothing can come in between; the
    /// content it returns (built on that version) is committed instead, with
    /// no fork. `None`: fork as usual.
    pub fn commit_each_rebasing(
        &self,
        _held: &WriterLock,
        path: &VPath,
        content: Content,
        durable: bool,
        rebase: Rebase<'_>,
    ) -> Result<Vec<Version>, StoreError> {
        let linked = content.kind == Kind::File
            && content
                .posix
                .links
                .as_ref()
                .is_some_and(|links| links.names.contains(path));
        if linked {
            // A group is written whole at its names' heads (links.rs).
            let mut content = content;
            content.based_on = None;
            return self.commit_linked(path, content, durable);
        }
        let (version, forked) = self.commit_held_forked(path, content, durable, rebase)?;
        if forked {
            // The writer's base was superseded while it wrote: its version
            // and the one made meanwhile are concurrent; the one that loses
            // is kept as its conflict copy, here as on every other node.
            self.keep_losing_heads(path)?;
        }
        Ok(vec![version])
    }

    /// Commits a writer's `content` for `path` at the conflict copy name
    /// beside it (FORMAT.md §10.4, named by this node and now) when `path`
    /// became a directory while the writer had it open (another mount, a
    /// peer): a directory's tree is not replaced by a file, and the bytes
    /// are not dropped. Listed in `state/conflicts` (`globofs status`).
    pub fn commit_beside_directory(
        &self,
        held: &WriterLock,
        path: &VPath,
        mut content: Content,
        durable: bool,
    ) -> Result<Version, StoreError> {
        let probe = Version {
            id: VersionId::for_new_version(self.config.major, &[]),
            kind: content.kind,
            path: path.clone(),
            node: self.config.node,
            parents: Vec::new(),
            from: None,
            conflict_of: None,
            size: content.size,
            mode: content.mode,
            mtime: content.mtime,
            block_size: content.block_size,
            target: None,
            hashes: Vec::new(),
            posix: Default::default(),
        };
        let copy = super::resolve::conflict_name(&probe)
            .ok_or_else(|| StoreError::IsADirectory(path.clone()))?;
        tracing::warn!(%path, copy = %copy, "a file open for writing lost its name to a directory; its bytes are kept as a copy");
        content.based_on = None;
        content.new_file = false;
        content.from = None;
        content.posix.links = None;
        let version = self.commit_locked(held, &copy, content, durable)?;
        record_conflict(&self.layout.state(), &copy.escaped())?;
        Ok(version)
    }

    /// Imports the conflict copy (FORMAT.md §10.4) of every live head of
    /// `path` that loses, as sync does when it meets concurrent edits, and
    /// lists each new copy in `state/conflicts` (`globofs status`).
    pub fn keep_losing_heads(&self, path: &VPath) -> Result<(), StoreError> {
        let versions = self.versions(path)?;
        let losers: Vec<Version> = super::resolve::resolve(&versions)
            .losers
            .into_iter()
            .cloned()
            .collect();
        for loser in &losers {
            let Some(copy) = super::resolve::conflict_copy(loser) else {
                continue;
            };
            if let super::import::Imported::New = self.import_version(&copy)? {
                tracing::warn!(path = %loser.path, copy = %copy.path, "conflict: a writer's base was replaced while it wrote; the losing version is kept as a copy");
                record_conflict(&self.layout.state(), &copy.path.escaped())?;
            }
        }
        Ok(())
    }

    /// The body of [`Store::commit_locked`] for one path; callers hold the
    /// writer lock.
    pub(super) fn commit_held(
        &self,
        path: &VPath,
        content: Content,
        durable: bool,
    ) -> Result<Version, StoreError> {
        Ok(self
            .commit_held_forked(path, content, durable, &mut |_| Ok(None))?
            .0)
    }

    /// [`Store::commit_held`], saying whether the new version forked the
    /// path's history: its content's `based_on` was no longer a head, so it
    /// builds on that base alone, concurrent with what replaced it.
    fn commit_held_forked(
        &self,
        path: &VPath,
        mut content: Content,
        durable: bool,
        rebase: Rebase<'_>,
    ) -> Result<(Version, bool), StoreError> {
        self.recover_once()?;
        let versions_dir = self.versions_dir(path);
        // Serialise writers of this path (in every process of this node).
        let log_path = versions_dir.join("log");
        // The log stays locked until it is dropped at the end. A first
        // version makes `root/<path>/versions/` (its parent directory is
        // there: a directory is committed before what is in it).
        let log = crate::layout::open_append_making(&log_path, 2).at(&log_path)?;
        let log = flock_file(log, &log_path)?;
        let stamp_before = log
            .metadata()
            .ok()
            .map(|m| super::heads::LogStamp::of_meta(&m));
        let heads = self.heads(path)?;
        let first = heads.is_empty();
        // A writer that held its base while someone else replaced it
        // built on that base alone (FORMAT.md §10.5).
        // A base dropped since (coalesced or pruned) was replaced too.
        let mut forked = match content.based_on {
            Some(base) => {
                !heads.contains(&base)
                    && (self.version_ids(path)?.contains(&base)
                        || self.pruned_ids(path)?.contains(&base))
            }
            None => false,
        };
        if content.new_file && !forked && self.current(path)?.is_some_and(|v| v.kind.is_live()) {
            // Created by a writer that saw no live version: someone else
            // made one meanwhile (another mount, a put, a peer).
            forked = true;
        }
        if forked {
            // The writer may build on what replaced its base instead.
            if let Some(current) = self.current(path)? {
                if let Some(rebased) = rebase(&current)? {
                    content = rebased;
                    forked = content.based_on.is_some_and(|base| !heads.contains(&base));
                }
            }
        }
        let mut parents = match content.based_on {
            Some(base) if forked => vec![base],
            // A concurrent create: no parent at all.
            None if forked => Vec::new(),
            _ => heads,
        };
        let coalesced = match forked {
            true => None,
            false => self.coalescable(path, &content, &parents, durable)?,
        };
        if let Some((_, with)) = &coalesced {
            parents = with.clone();
        }
        let mut version = Version {
            id: VersionId::for_new_version(self.config.major, &parents),
            kind: content.kind,
            path: path.clone(),
            node: self.config.node,
            parents,
            from: content.from,
            conflict_of: content.conflict_of,
            size: content.size,
            mode: content.mode,
            mtime: content.mtime,
            block_size: content.block_size,
            target: content.target,
            hashes: content.hashes,
            posix: content.posix,
        };
        if version
            .posix
            .links
            .as_ref()
            .is_some_and(|links| !links.names.contains(path))
        {
            // Renamed or copied out of its link group: a file of its own.
            version.posix.links = None;
        }
        if version.kind == Kind::Tombstone {
            version.posix = super::posix::Posix::default();
            // What a tombstone's file says (no mode, no mtime), so the version
            // returned equals the version read back.
            version.mode = 0;
            version.mtime = Mtime::default();
        }
        // Named in our intent file before it is visible, so a kill between the
        // publishing link and the journal line is finished by the next writer.
        let intent = self.intents.begin(self, version.id, path)?;
        // Published lazily even when durable: the redo record made below
        // is what survives a crash (FORMAT §14).
        self.publish(&versions_dir, &mut version, false)?;
        crate::failpoint::hit("commit:published");
        self.link_after_commit(path, version.id, &version.hashes)?;
        append_line(&log, &log_path, &format!("{}\n", version.id))?;
        crate::failpoint::hit("commit:logged");
        if let (Some(before), Ok(after)) = (stamp_before, log.metadata()) {
            self.heads.committed(
                path,
                &version,
                before,
                super::heads::LogStamp::of_meta(&after),
                first,
            );
        }
        if !forked {
            // The one head now (its parents were every head), the log still
            // locked: the live cache may take it as the path's current
            // version, before its journal line can be read (so the mount's
            // journal follower knows the line for its own).
            if let Some(cache) = self.told.get().and_then(std::sync::Weak::upgrade) {
                cache.committed(path, &version);
            }
        }
        self.record(&version)?;
        intent.done();
        if durable {
            self.make_durable(std::slice::from_ref(&version))?;
        } else {
            self.committed_lazily(&version);
        }
        if let Some((old, _)) = &coalesced {
            self.drop_coalesced(old)?;
        }
        Ok((version, forked))
    }

    /// Writes the version file under a name no other file has: temp file, fsync,
    /// then `link` (which never replaces); on a clash, one nanosecond later.
    pub(super) fn publish(
        &self,
        versions_dir: &Path,
        version: &mut Version,
        durable: bool,
    ) -> Result<(), StoreError> {
        let mut anonymous = true;
        loop {
            let text = version.to_text();
            let dest = versions_dir.join(version.id.to_string());
            if anonymous {
                match link_fresh(&self.layout.tmp(), text.as_bytes(), durable, &dest) {
                    Ok(true) => return Ok(()),
                    Ok(false) => anonymous = false,
                    Err(err) if err.kind() == ErrorKind::AlreadyExists => {
                        version.id = version.id.next_nanosecond();
                        self.intents.retarget(version.id, &version.path)?;
                        continue;
                    }
                    Err(err) => return Err(StoreError::io(&dest, err)),
                }
            }
            let mut tmp = tempfile::Builder::new()
                .prefix("version-")
                .tempfile_in(self.layout.tmp())
                .at(self.layout.tmp())?;
            tmp.write_all(text.as_bytes()).at(tmp.path())?;
            if durable {
                tmp.as_file().sync_data().at(tmp.path())?;
            }
            fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644)).at(tmp.path())?;
            match fs::hard_link(tmp.path(), &dest) {
                Ok(()) => return Ok(()),
                Err(err) if err.kind() == ErrorKind::AlreadyExists => {
                    version.id = version.id.next_nanosecond();
                    self.intents.retarget(version.id, &version.path)?;
                }
                Err(err) => return Err(StoreError::io(&dest, err)),
            }
        }
    }

    /// Runs [`Store::recover_interrupted`] once per open store, before its
    /// first publication.
    pub(crate) fn recover_once(&self) -> Result<(), StoreError> {
        if self.recovered.get().is_none() {
            self.recover_interrupted()?;
            let _ = self.recovered.set(());
        }
        Ok(())
    }

    /// Journals a new version and queues it in every peer's outbound spool.
    pub fn record(&self, version: &Version) -> Result<(), StoreError> {
        self.journal
            .append(&[format!("{} {}", version.id, version.path.escaped())])?;
        let sharing = self.sharing();
        if sharing
            .ignore
            .as_ref()
            .is_some_and(|rules| rules.is_match(&version.path))
        {
            return Ok(());
        }
        let source = self
            .versions_dir(&version.path)
            .join(version.id.to_string());
        for peer in &sharing.peers {
            self.queue_outbound(*peer, version, &source)?;
        }
        Ok(())
    }

    /// Links a version file into `spool/outbound/<peer>/<path>/versions/`.
    pub fn queue_outbound(
        &self,
        peer: NodeId,
        version: &Version,
        source: &Path,
    ) -> Result<(), StoreError> {
        let dir = version
            .path
            .disk_path(&self.layout.outbound(peer))
            .join("versions");
        crate::layout::create_dirs(&dir).at(&dir)?;
        let dest = dir.join(version.id.to_string());
        match fs::hard_link(source, &dest) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::AlreadyExists => return Ok(()),
            Err(err) => return Err(StoreError::io(&dest, err)),
        }
        let log_path = dir.join("log");
        let log = open_log(&log_path)?;
        append_line(&log, &log_path, &format!("{}\n", version.id))
    }
}

/// Writes `bytes` as a new file at `dest` (mode 0644) that is never seen
/// half-written and never replaces one: an anonymous file in `tmp`
/// (`O_TMPFILE`: no temp name to remove after) linked in by `linkat`
/// through `/proc/self/fd`. `Ok(false)` when the file system or `/proc`
/// cannot do that (the caller names a temp file instead); `AlreadyExists`
/// when `dest` is taken.
fn link_fresh(tmp: &Path, bytes: &[u8], durable: bool, dest: &Path) -> std::io::Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let mut file = match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(crate::layout::FILE_MODE)
        .open(tmp)
    {
        Ok(file) => file,
        Err(err)
            if matches!(
                err.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::ENOENT)
            ) =>
        {
            return Ok(false);
        }
        Err(err) => return Err(err),
    };
    file.write_all(bytes)?;
    if durable {
        file.sync_data()?;
    }
    if !crate::layout::umask_keeps(crate::layout::FILE_MODE) {
        crate::layout::set_file_mode(&file)?;
    }
    let from = format!("/proc/self/fd/{}", file.as_raw_fd());
    let linked = nix::unistd::linkat(
        nix::fcntl::AT_FDCWD,
        from.as_str(),
        nix::fcntl::AT_FDCWD,
        dest,
        nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
    );
    let Err(errno) = linked else {
        return Ok(true);
    };
    let err = std::io::Error::from(errno);
    match err.raw_os_error() {
        Some(libc::EEXIST) => Err(err),
        // No /proc here, or a file system that cannot link it.
        Some(libc::ENOENT | libc::EXDEV | libc::EPERM | libc::EOPNOTSUPP) => Ok(false),
        _ => Err(err),
    }
}

/// Opens (creating) a `versions/log` file for appending.
pub(crate) fn open_log(log_path: &Path) -> Result<File, StoreError> {
    crate::layout::open_append(log_path).at(log_path)
}

/// Appends `line` with one write(2) to a file opened with O_APPEND. A torn last
/// line (no newline: a writer that crashed mid-append) is ended first, in the same
/// write, so the new line stays a line of its own and `tail -1` stays right.
/// Callers serialise appends to one file (the path's flock).
pub(super) fn append_line(file: &File, path: &Path, line: &str) -> Result<(), StoreError> {
    let mut handle = file;
    let len = file.metadata().at(path)?.len();
    let mut text = std::borrow::Cow::Borrowed(line);
    if len > 0 {
        use std::os::unix::fs::FileExt;
        let mut last = [0u8; 1];
        // Every appended file is opened by `open_append`, for reading too.
        if file.read_at(&mut last, len - 1).at(path)? == 1 && last[0] != b'\n' {
            text = std::borrow::Cow::Owned(format!("\n{line}"));
        }
    }
    let line = text.as_ref();
    let n = handle.write(line.as_bytes()).at(path)?;
    if n != line.len() {
        return Err(StoreError::io(
            path,
            std::io::Error::new(ErrorKind::WriteZero, "short append"),
        ));
    }
    Ok(())
}

/// Takes an exclusive flock on `file` (a path's `versions/log`), waiting for
/// it: the file, unlocked when dropped.
pub(super) fn flock_file(file: File, path: &Path) -> Result<Flock<File>, StoreError> {
    super::lock::flock(file, path, FlockArg::LockExclusive)?
        .ok_or_else(|| StoreError::io(path, std::io::Error::from(ErrorKind::WouldBlock)))
}

/// Appends one conflict copy's escaped path to `state/conflicts` (what
/// `globofs status` lists as open conflicts).
pub(crate) fn record_conflict(state: &Path, escaped: &str) -> Result<(), StoreError> {
    let path = state.join("conflicts");
    crate::layout::create_dirs(state).at(state)?;
    let file = crate::layout::open_append(&path).at(&path)?;
    append_line(&file, &path, &format!("{escaped}\n"))
}
