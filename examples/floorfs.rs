//! The FUSE floor for benchmarks (scripts/bench-everyday.sh): a pass-through
//! file system over a directory that does nothing a FUSE file system could
//! leave out. It is mounted with the kernel settings the globofs mount uses
//! (fuser, the same request threads and cache lifetimes, default
//! permissions, passthrough for every open file), so what it costs against
//! ext4 is what FUSE itself costs on this machine, and what globofs costs
//! beyond it is globofs's own.
//!
//! Not a product: no locking between concurrent renames of one tree, inode
//! numbers are the directory's own, a directory renamed with children open
//! is followed by a scan of every known path. Enough for tar, git, rm,
//! find and SQLite.
//!
//! Usage: `cargo run --release --example floorfs -- SOURCE MOUNTPOINT [THREADS]`
//! (serves until unmounted: `fusermount3 -u MOUNTPOINT`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BackingId, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

/// What the kernel may cache, as long as the globofs mount lets it.
const TTL: Duration = Duration::from_secs(60);
const ROOT: u64 = 1;

struct Open {
    ino: u64,
    file: File,
}

#[derive(Default)]
struct Tables {
    paths: HashMap<u64, PathBuf>,
    handles: HashMap<u64, Open>,
    /// Backing ids by inode, with how many handles use each.
    backing: HashMap<u64, (Arc<BackingId>, usize)>,
    next_fh: u64,
}

struct Floor {
    root: PathBuf,
    root_ino: u64,
    passthrough: bool,
    tables: Mutex<Tables>,
}

fn errno(err: &std::io::Error) -> Errno {
    Errno::from_i32(err.raw_os_error().unwrap_or(libc::EIO))
}

macro_rules! ok {
    ($e:expr, $reply:expr) => {
        match $e {
            Ok(v) => v,
            Err(err) => {
                $reply.error(errno(&err));
                return;
            }
        }
    };
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nsecs as u64)
    }
}

fn kind(meta: &fs::Metadata) -> FileType {
    let t = meta.file_type();
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else {
        FileType::RegularFile
    }
}

fn missing() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::ENOENT)
}

impl Floor {
    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn ino_of(&self, meta: &fs::Metadata) -> u64 {
        if meta.ino() == self.root_ino {
            ROOT
        } else {
            meta.ino()
        }
    }

    fn attr(&self, meta: &fs::Metadata) -> FileAttr {
        FileAttr {
            ino: INodeNo(self.ino_of(meta)),
            size: meta.size(),
            blocks: meta.blocks(),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: time(meta.mtime(), meta.mtime_nsec()),
            kind: kind(meta),
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev() as u32,
            blksize: 128 * 1024,
            flags: 0,
        }
    }

    fn path(&self, ino: INodeNo) -> std::io::Result<PathBuf> {
        if ino.0 == ROOT {
            return Ok(self.root.clone());
        }
        self.tables().paths.get(&ino.0).cloned().ok_or_else(missing)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> std::io::Result<PathBuf> {
        Ok(self.path(parent)?.join(name))
    }

    /// Stats `path` and remembers it as its inode's name.
    fn known(&self, path: PathBuf) -> std::io::Result<FileAttr> {
        let meta = fs::symlink_metadata(&path)?;
        let attr = self.attr(&meta);
        if attr.ino.0 != ROOT {
            self.tables().paths.insert(attr.ino.0, path);
        }
        Ok(attr)
    }

    fn entry(&self, path: PathBuf, reply: ReplyEntry) {
        let attr = ok!(self.known(path), reply);
        reply.entry(&TTL, &attr, Generation(0));
    }

    /// A new handle of `file`, attached for passthrough when the kernel can.
    fn handle(
        &self,
        ino: u64,
        file: File,
        open_backing: impl FnOnce(&File) -> std::io::Result<BackingId>,
    ) -> (u64, Option<Arc<BackingId>>) {
        let mut tables = self.tables();
        let backing = if !self.passthrough {
            None
        } else if let Some((id, count)) = tables.backing.get_mut(&ino) {
            *count += 1;
            Some(Arc::clone(id))
        } else {
            match open_backing(&file) {
                Ok(id) => {
                    let id = Arc::new(id);
                    tables.backing.insert(ino, (Arc::clone(&id), 1));
                    Some(id)
                }
                Err(_) => None,
            }
        };
        tables.next_fh += 1;
        let fh = tables.next_fh;
        tables.handles.insert(fh, Open { ino, file });
        (fh, backing)
    }

    fn with_file<T>(
        &self,
        fh: FileHandle,
        f: impl FnOnce(&File) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        let file = self
            .tables()
            .handles
            .get(&fh.0)
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EBADF))?
            .file
            .try_clone()?;
        f(&file)
    }
}

fn open_options(flags: i32) -> OpenOptions {
    let mut options = OpenOptions::new();
    let acc = flags & libc::O_ACCMODE;
    options
        .read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
        .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
        .custom_flags(flags & (libc::O_APPEND | libc::O_TRUNC | libc::O_NOFOLLOW));
    options
}

impl Filesystem for Floor {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_ATOMIC_O_TRUNC);
        // Nothing here drops setuid bits: the benchmarks make none.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        self.passthrough = config
            .add_capabilities(fuser::InitFlags::FUSE_PASSTHROUGH)
            .is_ok()
            && config.set_max_stack_depth(1).is_ok();
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let path = ok!(self.child(parent, name), reply);
        self.entry(path, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let path = ok!(self.path(ino), reply);
        let meta = ok!(fs::symlink_metadata(path), reply);
        reply.attr(&TTL, &self.attr(&meta));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let path = ok!(self.path(ino), reply);
        if let Some(mode) = mode {
            ok!(
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777)),
                reply
            );
        }
        if uid.is_some() || gid.is_some() {
            ok!(std::os::unix::fs::lchown(&path, uid, gid), reply);
        }
        if let Some(size) = size {
            ok!(
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(size)),
                reply
            );
        }
        if atime.is_some() || mtime.is_some() {
            let spec = |t: Option<TimeOrNow>| match t {
                None => nix::sys::time::TimeSpec::UTIME_OMIT,
                Some(TimeOrNow::Now) => nix::sys::time::TimeSpec::UTIME_NOW,
                Some(TimeOrNow::SpecificTime(t)) => {
                    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
                    nix::sys::time::TimeSpec::new(d.as_secs() as i64, i64::from(d.subsec_nanos()))
                }
            };
            ok!(
                nix::sys::stat::utimensat(
                    nix::fcntl::AT_FDCWD,
                    &path,
                    &spec(atime),
                    &spec(mtime),
                    nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                )
                .map_err(std::io::Error::from),
                reply
            );
        }
        let meta = ok!(fs::symlink_metadata(path), reply);
        reply.attr(&TTL, &self.attr(&meta));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let path = ok!(self.path(ino), reply);
        let target = ok!(fs::read_link(path), reply);
        reply.data(target.as_os_str().as_bytes());
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let path = ok!(self.child(parent, name), reply);
        ok!(fs::create_dir(&path), reply);
        ok!(
            fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777)),
            reply
        );
        self.entry(path, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let path = ok!(self.child(parent, name), reply);
        let meta = ok!(fs::symlink_metadata(&path), reply);
        ok!(fs::remove_file(&path), reply);
        let mut tables = self.tables();
        let ino = self.ino_of(&meta);
        if tables.paths.get(&ino) == Some(&path) {
            tables.paths.remove(&ino);
        }
        reply.ok();
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let path = ok!(self.child(parent, name), reply);
        ok!(fs::remove_dir(&path), reply);
        self.tables().paths.retain(|_, p| p != &path);
        reply.ok();
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let path = ok!(self.child(parent, link_name), reply);
        ok!(std::os::unix::fs::symlink(target, &path), reply);
        self.entry(path, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let from = ok!(self.child(parent, name), reply);
        let to = ok!(self.child(newparent, newname), reply);
        ok!(fs::rename(&from, &to), reply);
        let mut tables = self.tables();
        for path in tables.paths.values_mut() {
            if let Ok(rest) = path.strip_prefix(&from) {
                // (joining an empty rest would add a trailing slash)
                *path = match rest.as_os_str().is_empty() {
                    true => to.clone(),
                    false => to.join(rest),
                };
            }
        }
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
        let from = ok!(self.path(ino), reply);
        let to = ok!(self.child(newparent, newname), reply);
        ok!(fs::hard_link(from, &to), reply);
        // The newest name is the one kept: git unlinks the old one next.
        self.entry(to, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let path = ok!(self.path(ino), reply);
        let file = ok!(open_options(flags.0).open(path), reply);
        let (fh, backing) = self.handle(ino.0, file, |f| reply.open_backing(f));
        match backing {
            Some(id) => reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id),
            None => reply.opened(FileHandle(fh), FopenFlags::empty()),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let path = ok!(self.child(parent, name), reply);
        let file = ok!(
            open_options(flags)
                .create(true)
                .custom_flags(flags & (libc::O_APPEND | libc::O_TRUNC | libc::O_EXCL))
                .mode(mode & 0o7777)
                .open(&path),
            reply
        );
        let attr = ok!(self.known(path), reply);
        let (fh, backing) = self.handle(attr.ino.0, file, |f| reply.open_backing(f));
        match backing {
            Some(id) => reply.created_passthrough(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
                &id,
            ),
            None => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
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
        let data = ok!(
            self.with_file(fh, |f| {
                let mut buf = vec![0; size as usize];
                let n = f.read_at(&mut buf, offset)?;
                buf.truncate(n);
                Ok(buf)
            }),
            reply
        );
        reply.data(&data);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let n = ok!(self.with_file(fh, |f| f.write_at(data, offset)), reply);
        reply.written(n as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
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
        let mut tables = self.tables();
        if let Some(open) = tables.handles.remove(&fh.0) {
            if let Some((_, count)) = tables.backing.get_mut(&open.ino) {
                *count -= 1;
                if *count == 0 {
                    tables.backing.remove(&open.ino);
                }
            }
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        ok!(
            self.with_file(fh, |f| if datasync {
                f.sync_data()
            } else {
                f.sync_all()
            }),
            reply
        );
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let path = ok!(self.path(ino), reply);
        let mut entries = vec![
            (ino.0, FileType::Directory, OsStr::new(".").to_owned()),
            (ino.0, FileType::Directory, OsStr::new("..").to_owned()),
        ];
        for entry in ok!(fs::read_dir(&path), reply) {
            let entry = ok!(entry, reply);
            let meta = ok!(entry.metadata(), reply);
            entries.push((self.ino_of(&meta), kind(&meta), entry.file_name()));
        }
        for (i, (child, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*child), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let path = ok!(self.path(ino), reply);
        ok!(File::open(path).and_then(|d| d.sync_all()), reply);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = ok!(
            nix::sys::statvfs::statvfs(&self.root).map_err(std::io::Error::from),
            reply
        );
        reply.statfs(
            s.blocks(),
            s.blocks_free(),
            s.blocks_available(),
            s.files(),
            s.files_free(),
            s.block_size() as u32,
            255,
            s.fragment_size() as u32,
        );
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::from_i32(libc::ENODATA));
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: floorfs SOURCE MOUNTPOINT [THREADS]");
        std::process::exit(2);
    }
    let root = fs::canonicalize(&args[1])?;
    let threads: usize = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(4);
    let floor = Floor {
        root_ino: fs::metadata(&root)?.ino(),
        root,
        passthrough: false,
        tables: Mutex::default(),
    };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("floorfs".into()),
        MountOption::DefaultPermissions,
    ];
    config.acl = fuser::SessionACL::All;
    config.n_threads = Some(threads.max(1));
    config.clone_fd = threads > 1;
    fuser::Session::new(floor, Path::new(&args[2]), &config)?.run()
}
