//! The thin fuser adapter: every handler calls the filesystem core ([`crate::vfs`])
//! and replies with its result or its errno. With [`crate::mount`]'s session
//! (which mounts it), the only code that imports fuser.
//!
//! What the mount refuses (unknown rename flags, ioctls) is decided in the core
//! (`vfs/refused.rs`); failures are logged here, once per request.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use tracing::Level;

use crate::vfs::{
    Attr, Caller, Changer, DirEntry, Mode, NodeKind, Opened, SetAttr, Vfs, VfsError, WriteAt,
};

/// How long the kernel may cache attributes and entries. The journal follower
/// (`mount/journal.rs`) has the kernel drop what another process or a peer
/// changed within its poll interval, and the kernel learns of this mount's
/// own changes from their replies; this bound only limits how long a version
/// published without its journal line (a writer killed between the two, until
/// the next writer recovers it) can stay unseen: the same bound as the
/// store's directory summaries (`store::dir_times::MAX_AGE`).
const TTL: Duration = crate::store::dir_times::MAX_AGE;

/// Runs `$result`; on error logs it once (at its level, with its message)
/// and replies with its errno, and returns.
macro_rules! try_reply {
    ($result:expr, $reply:expr) => {
        match $result {
            Ok(value) => value,
            Err(err) => {
                failed(stringify!($result), &err);
                $reply.error(Errno::from_i32(err.errno()));
                return;
            }
        }
    };
}

/// `result` of a request about an inode the kernel holds a name of: a file
/// removed elsewhere (another mount of the node, a peer) since the kernel
/// looked the name up is `ESTALE`, not `ENOENT`, so the kernel looks the
/// name up again and retries once (an `open(O_CREAT)` then creates it, a
/// `stat` says `ENOENT`), as it does for NFS.
fn held<T>(result: Result<T, VfsError>) -> Result<T, VfsError> {
    result.map_err(|err| match err.errno() {
        libc::ENOENT => VfsError::new(libc::ESTALE, format!("{err} (stale)")),
        _ => err,
    })
}

/// Answers a getxattr or listxattr: the size asked for with `size` 0, else
/// the bytes (ERANGE when they do not fit).
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::from_i32(libc::ERANGE));
    } else {
        reply.data(value);
    }
}

/// Logs a failed request: the one place a failure reaches the log.
fn failed(call: &str, err: &VfsError) {
    let errno = err.errno();
    match err.level() {
        Level::ERROR => tracing::error!(errno, call, "{err}"),
        Level::WARN => tracing::warn!(errno, call, "{err}"),
        Level::INFO => tracing::info!(errno, call, "{err}"),
        _ => tracing::debug!(errno, call, "{err}"),
    }
}

/// A backing file registered with the kernel, as one handle uses it.
struct Shared {
    ino: u64,
    id: Arc<BackingId>,
}

/// How an open is answered.
enum Reply {
    /// Served here, through the kernel's page cache.
    Cached { keep_cache: bool },
    /// Passthrough with this backing file; `direct`: the kernel sends the
    /// handle's I/O here anyway (see [`Mode::Share`]).
    Passthrough { id: Arc<BackingId>, direct: bool },
}

/// The fuser filesystem: a handle on the core.
pub struct GloboFs {
    vfs: Arc<Vfs>,
    /// Backing files registered with the kernel for passthrough, per open handle
    /// (handles of one inode share one). The lock is held from the decision to
    /// the reply, so what this map says is always at least what the kernel has.
    backing: Mutex<HashMap<u64, Shared>>,
    /// Tells the kernel to drop what it caches (set once the session exists).
    notifier: Arc<std::sync::OnceLock<fuser::Notifier>>,
}

impl GloboFs {
    pub fn new(vfs: Arc<Vfs>) -> GloboFs {
        GloboFs {
            vfs,
            backing: Mutex::new(HashMap::new()),
            notifier: Arc::default(),
        }
    }

    /// Has the kernel drop its attributes of `ino` (not its pages), so it asks
    /// for them again before it trusts the size it had.
    fn drop_attrs(&self, ino: u64) {
        if let Some(notifier) = self.notifier.get() {
            if let Err(err) = notifier.inval_inode(INodeNo(ino), -1, 0) {
                tracing::debug!(ino, error = %err, "dropping the kernel's attributes");
            }
        }
    }

    /// Has the kernel drop its attributes and cached pages of `ino`.
    fn drop_pages(&self, ino: u64) {
        if let Some(notifier) = self.notifier.get() {
            if let Err(err) = notifier.inval_inode(INodeNo(ino), 0, 0) {
                tracing::debug!(ino, error = %err, "dropping the kernel's pages");
            }
        }
    }

    /// Whether `ino` holds setuid, setgid or a capability a change may
    /// drop; when that cannot be told, yes (the core decides again).
    fn holds_privileges(&self, ino: u64) -> bool {
        self.vfs.holds_privileges(ino).unwrap_or(true)
    }

    /// Answers an open: the core decides ([`Vfs::mode`]) from whether the inode
    /// has a backing file attached; this keeps the backing ids. Called with the
    /// map locked until the reply is sent.
    fn mode(
        &self,
        map: &mut HashMap<u64, Shared>,
        ino: u64,
        opened: Opened,
        open_backing: impl FnOnce(&std::fs::File) -> std::io::Result<BackingId>,
    ) -> Reply {
        let fh = opened.fh;
        let attached = map
            .values()
            .find(|shared| shared.ino == ino)
            .map(|shared| Arc::clone(&shared.id));
        let (id, direct) = match (self.vfs.mode(ino, opened, attached.is_some()), attached) {
            (Mode::Cached { keep_cache }, _) => return Reply::Cached { keep_cache },
            (Mode::Share { direct }, Some(id)) => (id, direct),
            (Mode::Attach(file), _) => match open_backing(&file) {
                Ok(id) => (Arc::new(id), false),
                Err(err) => {
                    tracing::debug!(error = %err, "passthrough refused; serving in user space");
                    self.vfs.passthrough_refused(fh);
                    return Reply::Cached { keep_cache: false };
                }
            },
            // The core shares only an attached file.
            (Mode::Share { .. }, None) => {
                self.vfs.passthrough_refused(fh);
                return Reply::Cached { keep_cache: false };
            }
        };
        map.insert(
            fh,
            Shared {
                ino,
                id: Arc::clone(&id),
            },
        );
        Reply::Passthrough { id, direct }
    }

    fn backing_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Shared>> {
        crate::lock(&self.backing)
    }

    fn file_attr(&self, attr: &Attr) -> FileAttr {
        FileAttr {
            ino: INodeNo(attr.ino),
            size: attr.size,
            blocks: attr.blocks,
            atime: attr.atime,
            mtime: attr.mtime,
            ctime: attr.ctime,
            crtime: attr.mtime,
            kind: file_type(attr.kind),
            perm: attr.perm,
            nlink: attr.nlink,
            uid: attr.uid,
            gid: attr.gid,
            rdev: attr.rdev,
            blksize: 128 * 1024,
            flags: 0,
        }
    }
}

fn file_type(kind: NodeKind) -> FileType {
    match kind {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::Socket => FileType::Socket,
        NodeKind::CharDevice => FileType::CharDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
    }
}

/// One entry of a directory listing as the kernel pages it.
#[derive(Clone, Copy)]
enum Listed<'a> {
    Dot(&'a [u8]),
    Entry(&'a DirEntry),
}

/// `.`, `..`, then the entries, each with the offset of the one after it (the
/// same numbering for READDIR and READDIRPLUS, which the kernel may mix within
/// one listing).
fn with_dots(entries: &[DirEntry]) -> impl Iterator<Item = (u64, Listed<'_>)> {
    [Listed::Dot(b"."), Listed::Dot(b"..")]
        .into_iter()
        .chain(entries.iter().map(Listed::Entry))
        .enumerate()
        .map(|(index, entry)| (index as u64 + 1, entry))
}

/// Who sent a request.
fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        umask: 0,
    }
}

/// Who sent a request that creates something, with its umask (the mount
/// applies it, or a default ACL instead: see `vfs::acl`).
fn creator(req: &Request, umask: u32) -> Caller {
    Caller {
        umask,
        ..caller(req)
    }
}

fn time_of(time: TimeOrNow) -> SystemTime {
    match time {
        TimeOrNow::SpecificTime(time) => kernel_time(time),
        TimeOrNow::Now => SystemTime::now(),
    }
}

/// Who makes the change `req` asks for, as far as dropping a file's
/// privileges goes (vfs privileges.rs), from `/proc/<pid>/`: whether it has
/// `CAP_FSETID` in the initial user namespace, as the kernel's `capable()`
/// decides (its effective set counts only in the user namespace of pid 1,
/// or of the mount itself where pid 1's cannot be read: root of a user
/// namespace of its own, a rootless container, has no capability outside
/// it), its filesystem group and its supplementary groups. A process that
/// cannot be looked at counts as privileged only when it is root.
fn changer_of(req: &Request) -> Changer {
    const CAP_FSETID: u32 = 4;
    let pid = req.pid().to_string();
    static INITIAL: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let user_ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
    let theirs = user_ns(&pid);
    let initial = INITIAL.get_or_init(|| user_ns("1").or_else(|| user_ns("self")));
    let foreign = theirs.is_some() && initial.is_some() && theirs != *initial;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
    };
    let fsetid = match field("CapEff:").and_then(|hex| u64::from_str_radix(hex, 16).ok()) {
        Some(caps) => !foreign && caps & (1 << CAP_FSETID) != 0,
        None => req.uid() == 0,
    };
    let numbers = |text: Option<&str>| -> Vec<u32> {
        text.map(|t| {
            t.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
    };
    // `Gid:` is real, effective, saved and filesystem group.
    let fsgid = numbers(field("Gid:")).get(3).copied().unwrap_or(req.gid());
    Changer {
        fsetid,
        fsgid,
        groups: numbers(field("Groups:")),
    }
}

/// A time the kernel sent, as fuser 0.18 hands it over. The kernel sends
/// `(secs, nsecs)` meaning `secs + nsecs / 1e9` with `nsecs` always forward;
/// for `secs < 0`, fuser's `system_time_from_time` builds
/// `UNIX_EPOCH - (|secs| s + nsecs ns)`, moving the time back by `2 * nsecs`.
/// Undo that: -1.5 s arrives as (-2, 0.5 s), which fuser made -2.5 s.
fn kernel_time(time: SystemTime) -> SystemTime {
    match SystemTime::UNIX_EPOCH.duration_since(time) {
        Ok(before) if before.subsec_nanos() != 0 => {
            SystemTime::UNIX_EPOCH - Duration::from_secs(before.as_secs())
                + Duration::from_nanos(u64::from(before.subsec_nanos()))
        }
        _ => time,
    }
}

impl Filesystem for GloboFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Large requests: fewer round trips for sequential I/O.
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        // O_TRUNC arrives with open: without this the kernel opens first and then
        // truncates by path, which left the new handle's cache at the old size.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_ATOMIC_O_TRUNC);
        // The mount drops setuid, setgid and capabilities itself (vfs
        // privileges.rs): the kernel then stops asking for
        // `security.capability` before every write.
        if config
            .add_capabilities(fuser::InitFlags::FUSE_HANDLE_KILLPRIV_V2)
            .is_err()
        {
            tracing::debug!("the kernel keeps dropping setuid and capabilities itself");
        }
        // POSIX ACLs: the kernel enforces them (reading them with getxattr)
        // and leaves the umask to the mount, which applies it unless the
        // parent directory has a default ACL.
        if config
            .add_capabilities(fuser::InitFlags::FUSE_POSIX_ACL | fuser::InitFlags::FUSE_DONT_MASK)
            .is_err()
        {
            tracing::warn!("the kernel does not enforce POSIX ACLs on FUSE; they are stored only");
        }
        // Passthrough: the kernel writes new or truncated files straight into their cache files
        // directly, without a round trip here. Needs privilege and a recent kernel.
        let passthrough = std::env::var_os("GLOBOFS_NO_PASSTHROUGH").is_none()
            && config
                .add_capabilities(fuser::InitFlags::FUSE_PASSTHROUGH)
                .is_ok()
            && config.set_max_stack_depth(1).is_ok();
        if passthrough {
            self.vfs.enable_passthrough();
            tracing::info!("FUSE passthrough: on (writes into new or truncated files)");
        } else {
            tracing::info!("FUSE passthrough: unavailable; all I/O is served in user space");
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let attr = try_reply!(self.vfs.lookup(parent.0, name), reply);
        reply.entry(&TTL, &self.file_attr(&attr), Generation(0));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.vfs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        // The path's current version, also when asked through a handle of an
        // older one: the kernel keeps one size per inode, and it must not cut
        // short the readers of the newest version.
        let attr = try_reply!(held(self.vfs.getattr(ino.0)), reply);
        reply.attr(&TTL, &self.file_attr(&attr));
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Under FUSE_HANDLE_KILLPRIV_V2, as the kernel would: a change of
        // owner drops a file's privileges, a truncation by a process
        // without CAP_FSETID too (set_attributes checks it is a file). A
        // setattr that sets nothing (or the ctime alone) is the kernel
        // asking for the drop: `chown(f, -1, -1)`, or a write through
        // passthrough by such a process to a file that holds one.
        let nothing_else = [
            mode.is_none(),
            size.is_none(),
            atime.is_none(),
            mtime.is_none(),
        ]
        .iter()
        .all(|none| *none);
        // The caller is looked at (in /proc) only when the file holds
        // something to drop: tar's fchown of every file costs nothing more.
        let may_drop = uid.is_some() || gid.is_some() || nothing_else || size.is_some();
        let drop_privileges = if may_drop && self.holds_privileges(ino.0) {
            Some(changer_of(req)).filter(|changer| size.is_none() || !changer.fsetid)
        } else {
            None
        };
        let change = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time_of),
            mtime: mtime.map(time_of),
            drop_privileges,
        };
        let attr = try_reply!(
            self.vfs.set_attributes(ino.0, fh.map(|f| f.0), &change),
            reply
        );
        reply.attr(&TTL, &self.file_attr(&attr));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let target = try_reply!(self.vfs.readlink(ino.0), reply);
        reply.data(&target);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let attr = try_reply!(
            self.vfs.mkdir_as(parent.0, name, mode, creator(req, umask)),
            reply
        );
        reply.entry(&TTL, &self.file_attr(&attr), Generation(0));
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let attr = try_reply!(
            self.vfs
                .mknod_as(parent.0, name, mode, rdev, creator(req, umask)),
            reply
        );
        reply.entry(&TTL, &self.file_attr(&attr), Generation(0));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        try_reply!(self.vfs.unlink(parent.0, name), reply);
        reply.ok();
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        try_reply!(self.vfs.rmdir(parent.0, name), reply);
        reply.ok();
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let attr = try_reply!(
            self.vfs.symlink_as(
                parent.0,
                link_name,
                target.as_os_str().as_bytes(),
                caller(req)
            ),
            reply
        );
        reply.entry(&TTL, &self.file_attr(&attr), Generation(0));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        try_reply!(self.vfs.rename_flags(flags.bits()), reply);
        try_reply!(
            self.vfs.rename(
                parent.0,
                name,
                newparent.0,
                newname,
                flags.contains(RenameFlags::RENAME_NOREPLACE),
                flags.contains(RenameFlags::RENAME_EXCHANGE),
            ),
            reply
        );
        reply.ok();
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let attr = try_reply!(self.vfs.link(ino.0, newparent.0, newname), reply);
        reply.entry(&TTL, &self.file_attr(&attr), Generation(0));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let acc = flags.0 & libc::O_ACCMODE;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        let opened = try_reply!(held(self.vfs.open_flags(ino.0, flags.0)), reply);
        let fh = opened.fh;
        let mut stale = opened.stale_attrs;
        // FUSE_OPEN_KILL_SUIDGID, which fuser does not hand over: the kernel
        // sets it for an O_TRUNC open by a process without CAP_FSETID.
        let changer = (write && flags.0 & libc::O_TRUNC != 0 && self.holds_privileges(ino.0))
            .then(|| changer_of(req));
        if let Some(changer) = changer.filter(|changer| !changer.fsetid) {
            match self.vfs.drop_privileges(ino.0, &changer) {
                Ok(dropped) => stale |= dropped,
                Err(err) => {
                    failed("dropping privileges at an O_TRUNC open", &err);
                    let _ = self.vfs.release(fh);
                    reply.error(Errno::from_i32(err.errno()));
                    return;
                }
            }
        }
        if stale {
            self.drop_attrs(ino.0);
        }
        // A read-only handle has nothing to commit at close: spare the kernel
        // the synchronous FLUSH round trip.
        let noflush = if write {
            FopenFlags::empty()
        } else {
            FopenFlags::FOPEN_NOFLUSH
        };
        let mut map = self.backing_map();
        match self.mode(&mut map, ino.0, opened, |f| reply.open_backing(f)) {
            Reply::Passthrough { id, direct } => {
                let flags = if direct {
                    noflush | FopenFlags::FOPEN_DIRECT_IO
                } else {
                    noflush
                };
                reply.opened_passthrough(FileHandle(fh), flags, &id);
            }
            Reply::Cached { keep_cache } => {
                // The page cache already holds this version's bytes (close-to-open:
                // it is dropped whenever the version changed since it was filled).
                let keep = if keep_cache {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(fh), keep | noflush);
            }
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let data = try_reply!(self.vfs.read(fh.0, offset, size), reply);
        reply.data(&data);
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let at = if flags.0 & libc::O_APPEND != 0 {
            WriteAt::End(offset)
        } else {
            WriteAt::Offset(offset)
        };
        let (written, dropped) = if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
            try_reply!(
                self.vfs
                    .write_unprivileged(fh.0, at, data, || changer_of(req)),
                reply
            )
        } else {
            (try_reply!(self.vfs.write_at(fh.0, at, data), reply), false)
        };
        reply.written(written.count);
        if written.moved(at) {
            // The kernel copied the bytes into its page cache at the offset
            // it chose and grew its size from there: both are wrong. Told
            // after the reply, while the write no longer holds those pages.
            self.drop_pages(ino.0);
        } else if dropped {
            self.drop_attrs(ino.0);
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Every close(2): the version becomes atomic and visible now; the
        // kernel's attributes (ctime) are those of before it (and, for a new
        // file's first version, its directory's times).
        let flushed = try_reply!(self.vfs.commit_for_kernel(fh.0, false), reply);
        if flushed.rebased {
            self.drop_pages(ino.0);
        } else if flushed.changed {
            self.drop_attrs(ino.0);
        }
        if let Some(parent) = flushed.parent {
            self.drop_attrs(parent);
        }
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // The kernel let go of this handle's backing file before it sent RELEASE;
        // forget it first, so the map never shows less than the kernel has.
        self.backing_map().remove(&fh.0);
        let result = self.vfs.release(fh.0);
        try_reply!(result, reply);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let flushed = try_reply!(self.vfs.commit_for_kernel(fh.0, true), reply);
        if flushed.rebased {
            self.drop_pages(ino.0);
        } else if flushed.changed {
            self.drop_attrs(ino.0);
        }
        if let Some(parent) = flushed.parent {
            self.drop_attrs(parent);
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        try_reply!(self.vfs.fsyncdir(), reply);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // A handle of its own per open directory: its listing is taken once and
        // paged from memory, and it answers `fstat` after the directory is gone.
        let fh = try_reply!(self.vfs.opendir(ino.0), reply);
        // The kernel keeps the listing (in the directory's page cache) across
        // opens: it drops it itself when this mount changes the directory,
        // and the journal follower has it dropped when anything else does.
        reply.opened(
            FileHandle(fh),
            FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
        );
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.vfs.releasedir(fh.0);
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = try_reply!(self.vfs.listing(fh.0, ino.0, offset), reply);
        for (next, entry) in with_dots(&entries).skip(offset as usize) {
            let (child, kind, name) = match entry {
                Listed::Dot(name) => (ino.0, FileType::Directory, name),
                Listed::Entry(e) => (e.attr.ino, file_type(e.attr.kind), e.name.as_slice()),
            };
            if reply.add(INodeNo(child), next, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let entries = try_reply!(self.vfs.listing(fh.0, ino.0, offset), reply);
        // `.` and `..` carry this directory's attributes: the kernel only shows
        // them to the reader and takes no reference on them.
        let own = match self.vfs.getattr(ino.0) {
            Ok(attr) => self.file_attr(&attr),
            Err(err) => {
                failed("getattr", &err);
                reply.error(Errno::from_i32(err.errno()));
                return;
            }
        };
        for (next, entry) in with_dots(&entries).skip(offset as usize) {
            let (child, name, attr) = match entry {
                Listed::Dot(name) => (ino.0, name, own),
                Listed::Entry(e) => (e.attr.ino, e.name.as_slice(), self.file_attr(&e.attr)),
            };
            if reply.add(
                INodeNo(child),
                next,
                OsStr::from_bytes(name),
                &TTL,
                &attr,
                Generation(0),
            ) {
                break;
            }
            if let Listed::Entry(e) = entry {
                // The kernel now holds a reference, as after a lookup.
                self.vfs.remember(e.attr.ino);
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = try_reply!(self.vfs.statfs(), reply);
        reply.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
        );
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        try_reply!(
            self.vfs
                .setxattr_by(ino.0, name, value, flags, caller(req), || changer_of(req)),
            reply
        );
        reply.ok();
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let value = try_reply!(self.vfs.getxattr(ino.0, name, caller(req)), reply);
        reply_xattr(reply, size, &value);
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let names = try_reply!(self.vfs.listxattr(ino.0, caller(req)), reply);
        reply_xattr(reply, size, &names);
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        try_reply!(self.vfs.removexattr(ino.0, name, caller(req)), reply);
        reply.ok();
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let at = try_reply!(self.vfs.lseek(fh.0, offset, whence), reply);
        reply.offset(at);
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        try_reply!(self.vfs.fallocate(fh.0, offset, length, mode), reply);
        // The kernel's file_modified would drop privileges here; under
        // FUSE_HANDLE_KILLPRIV_V2 it leaves that to the mount.
        if self.holds_privileges(ino.0) {
            let changer = changer_of(req);
            if !changer.fsetid && try_reply!(self.vfs.drop_privileges(ino.0, &changer), reply) {
                self.drop_attrs(ino.0);
            }
        }
        reply.ok();
    }

    fn ioctl(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        try_reply!(self.vfs.ioctl(ino.0, cmd), reply);
        reply.ioctl(0, &[]);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        crate::failpoint::hit("fuse:create");
        let (attr, opened) = try_reply!(
            self.vfs
                .create_or_open_as(parent.0, name, mode, flags, creator(req, umask)),
            reply
        );
        let attr = self.file_attr(&attr);
        let fh = opened.fh;
        let mut map = self.backing_map();
        match self.mode(&mut map, attr.ino.0, opened, |f| reply.open_backing(f)) {
            Reply::Passthrough { id, direct } => {
                let flags = if direct {
                    FopenFlags::FOPEN_DIRECT_IO
                } else {
                    FopenFlags::empty()
                };
                reply.created_passthrough(&TTL, &attr, Generation(0), FileHandle(fh), flags, &id);
            }
            Reply::Cached { .. } => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
        }
    }
}

impl GloboFs {
    /// Where the session puts its notifier once the session exists (see
    /// [`crate::mount`]), so handlers can have the kernel drop stale caches.
    pub(crate) fn notifier_slot(&self) -> Arc<std::sync::OnceLock<fuser::Notifier>> {
        Arc::clone(&self.notifier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_1970_come_back_as_the_kernel_meant_them() {
        let epoch = SystemTime::UNIX_EPOCH;
        // fuser's rendering of the kernel's (-2 s, 500,000,000 ns), which means -1.5 s.
        let from_fuser = epoch - Duration::new(2, 500_000_000);
        assert_eq!(kernel_time(from_fuser), epoch - Duration::from_millis(1500));
        // (-1 s, 999,999,999 ns) means -1 ns.
        let from_fuser = epoch - Duration::new(1, 999_999_999);
        assert_eq!(kernel_time(from_fuser), epoch - Duration::from_nanos(1));
        // Whole seconds and times after 1970 pass unchanged.
        assert_eq!(
            kernel_time(epoch - Duration::from_secs(3)),
            epoch - Duration::from_secs(3)
        );
        let later = epoch + Duration::new(1_700_000_000, 123);
        assert_eq!(kernel_time(later), later);
    }
}
