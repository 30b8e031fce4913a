//! One path-level interface ([`Posix`]) over two implementations, for the tests
//! that drive the filesystem core without a kernel and compare it with a real
//! file system (`tests/vfs_protocol.rs`, `tests/vfs_model.rs`):
//!
//! - [`Core`] calls a `globofs::vfs::Vfs` the way the kernel's FUSE client does
//!   (src/fuse.rs is the adapter it stands in for): a path is walked by LOOKUPs
//!   from the root, each reply's reference is dropped again by FORGET once the
//!   operation is over (the harshest order the kernel may choose; an open file
//!   keeps the references of its path until it is closed), `close` of a
//!   writable handle is FLUSH (a commit) then RELEASE, `fsync` a durable
//!   commit, `truncate`/`chmod`/`utimensat` are SETATTR. Checks the kernel
//!   makes itself before it sends a request (access mode of a descriptor,
//!   `O_EXCL` on a name it knows, the ancestor checks of `rename`) are made
//!   here too, each marked "kernel:"; everything else is the core's answer.
//! - [`Local`] does the same calls on a plain directory with std and libc.
//!
//! Symlinks are never followed by [`Core`]: every symlink these tests make or
//! walk through has a target outside the volume that does not exist, so
//! following one ends in ENOENT on both sides.
//!
//! Included with `#[path = "common/vfs.rs"] mod vfs_common;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use globofs::vfs::{Attr, NodeKind, ROOT_INO, Vfs, VfsResult};

/// Every result of the core goes through here, the one place to change when
/// its error type changes (e.g. to `result.map_err(|e| e.errno())`).
pub fn errno<T>(result: VfsResult<T>) -> Result<T, i32> {
    result.map_err(|err| err.errno())
}

/// A result as a system call gives it: the value or an errno.
pub type R<T> = Result<T, i32>;

/// The umask both sides apply to the modes of new entries (the kernel applies
/// the process's umask before it sends MKDIR or CREATE).
pub const UMASK: u32 = 0o022;

/// A target no test volume or temp dir contains (see the module doc).
pub const DANGLING: &[u8] = b"/nonexistent-globofs-test/target";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// What `lstat`/`fstat` tell. A directory's size is only checked to be
/// non-zero (1 here): a local directory's size is its on-disk size, which
/// the mount does not imitate (it shows 4096), and the local side is taken
/// as non-zero whatever its file system says (btrfs shows 0 for an empty one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    pub size: u64,
    pub perm: u32,
    pub mtime: SystemTime,
    pub nlink: u64,
}

impl Stat {
    /// The part every comparison uses (times and link counts only where a
    /// test asks for them: see docs/POSIX.md on directory mtimes and nlink).
    pub fn shape(&self) -> (Kind, u64, u32) {
        (self.kind, self.size, self.perm)
    }
}

/// The calls the tests make, path based as a process makes them. Paths are
/// raw bytes, `/`-separated, relative to the volume root (`b""` is the root).
pub trait Posix {
    fn mkdir(&mut self, path: &[u8], mode: u32) -> R<()>;
    /// `open(2)`; returns a descriptor number of this implementation.
    fn open(&mut self, path: &[u8], flags: i32, mode: u32) -> R<u64>;
    fn read(&mut self, fd: u64, offset: u64, len: usize) -> R<Vec<u8>>;
    fn write(&mut self, fd: u64, offset: u64, data: &[u8]) -> R<usize>;
    /// `write(2)` on a descriptor opened with `O_APPEND`.
    fn append(&mut self, fd: u64, data: &[u8]) -> R<usize>;
    fn fsync(&mut self, fd: u64) -> R<()>;
    fn ftruncate(&mut self, fd: u64, size: u64) -> R<()>;
    fn fstat(&mut self, fd: u64) -> R<Stat>;
    fn close(&mut self, fd: u64) -> R<()>;
    fn truncate(&mut self, path: &[u8], size: u64) -> R<()>;
    fn unlink(&mut self, path: &[u8]) -> R<()>;
    fn rmdir(&mut self, path: &[u8]) -> R<()>;
    fn rename(&mut self, from: &[u8], to: &[u8], noreplace: bool) -> R<()>;
    /// The entries (without `.` and `..`), sorted by name.
    fn readdir(&mut self, path: &[u8]) -> R<Vec<(Vec<u8>, Kind)>>;
    fn lstat(&mut self, path: &[u8]) -> R<Stat>;
    fn chmod(&mut self, path: &[u8], mode: u32) -> R<()>;
    fn set_mtime(&mut self, path: &[u8], mtime: SystemTime) -> R<()>;
    fn symlink(&mut self, target: &[u8], path: &[u8]) -> R<()>;
    fn readlink(&mut self, path: &[u8]) -> R<Vec<u8>>;

    /// Everything from `offset` to the end, in reads of at most 64 KiB.
    fn read_to_end(&mut self, fd: u64) -> R<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let chunk = self.read(fd, out.len() as u64, 65536)?;
            if chunk.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
        }
    }

    /// open + read all + close.
    fn read_file(&mut self, path: &[u8]) -> R<Vec<u8>> {
        let fd = self.open(path, libc::O_RDONLY | libc::O_NOFOLLOW, 0)?;
        let data = self.read_to_end(fd);
        let closed = self.close(fd);
        let data = data?;
        closed.map(|()| data)
    }

    /// open(O_CREAT|O_TRUNC) + write + close.
    fn write_file(&mut self, path: &[u8], data: &[u8]) -> R<()> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW;
        let fd = self.open(path, flags, 0o644)?;
        let written = self.write(fd, 0, data);
        let closed = self.close(fd);
        assert_eq!(written?, data.len(), "short write");
        closed
    }
}

/// Joins a parent path and a name.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        return name.to_vec();
    }
    let mut out = parent.to_vec();
    out.push(b'/');
    out.extend_from_slice(name);
    out
}

/// One entry of a whole tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir { perm: u32 },
    File { perm: u32, data: Vec<u8> },
    Symlink { target: Vec<u8> },
}

/// A whole tree, by path.
pub type Tree = std::collections::BTreeMap<Vec<u8>, Entry>;

/// Everything below the root as seen through `fs`: kinds, modes, contents.
pub fn tree(fs: &mut dyn Posix) -> R<Tree> {
    let mut out = Tree::new();
    let mut stack = vec![Vec::new()];
    while let Some(dir) = stack.pop() {
        for (name, kind) in fs.readdir(&dir)? {
            let path = join(&dir, &name);
            let stat = fs.lstat(&path)?;
            assert_eq!(
                stat.kind,
                kind,
                "{}: readdir and lstat disagree",
                show(&path)
            );
            let entry = match kind {
                Kind::Dir => {
                    stack.push(path.clone());
                    Entry::Dir { perm: stat.perm }
                }
                Kind::File => {
                    let data = fs.read_file(&path)?;
                    assert_eq!(data.len() as u64, stat.size, "{}: size", show(&path));
                    Entry::File {
                        perm: stat.perm,
                        data,
                    }
                }
                Kind::Symlink => Entry::Symlink {
                    target: fs.readlink(&path)?,
                },
            };
            out.insert(path, entry);
        }
    }
    Ok(out)
}

/// The live tree of a store, read through `Store` alone (no `Vfs`).
pub fn store_tree(store: &globofs::store::Store) -> Tree {
    use globofs::store::Kind as K;
    let mut out = Tree::new();
    let root = globofs::layout::VPath::root();
    for (path, version) in store.walk(&root).expect("walk the store") {
        let entry = match version.kind {
            K::Dir => Entry::Dir {
                perm: version.mode & 0o7777,
            },
            K::Symlink => Entry::Symlink {
                target: version.target.clone().unwrap_or_default(),
            },
            _ => {
                let mut data = Vec::new();
                store.copy_to(&version, &mut data).expect("copy_to");
                Entry::File {
                    perm: version.mode & 0o7777,
                    data,
                }
            }
        };
        out.insert(path.to_bytes(), entry);
    }
    out
}

/// A path for messages.
pub fn show(path: &[u8]) -> String {
    format!("/{}", path.escape_ascii())
}

fn names(path: &[u8]) -> Vec<&[u8]> {
    path.split(|b| *b == b'/')
        .filter(|n| !n.is_empty())
        .collect()
}

// ----- a plain directory -----

/// The calls on a plain local directory.
pub struct Local {
    pub root: PathBuf,
    files: HashMap<u64, File>,
    next: u64,
}

fn io<T>(result: io::Result<T>) -> R<T> {
    result.map_err(|err| err.raw_os_error().unwrap_or(libc::EIO))
}

fn cstr(path: &std::path::Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("no NUL in a test path")
}

fn sys(ret: libc::c_int) -> R<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    }
}

fn set_umask() {
    // SAFETY: umask only sets the process's file mode mask; every test of
    // the binary uses the same value.
    unsafe {
        libc::umask(UMASK as libc::mode_t);
    }
}

impl Local {
    pub fn new(root: PathBuf) -> Local {
        set_umask();
        fs::create_dir_all(&root).expect("local root");
        Local {
            root,
            files: HashMap::new(),
            next: 1,
        }
    }

    pub fn at(&self, path: &[u8]) -> PathBuf {
        if path.is_empty() {
            return self.root.clone();
        }
        self.root.join(OsStr::from_bytes(path))
    }

    fn file(&self, fd: u64) -> R<&File> {
        self.files.get(&fd).ok_or(libc::EBADF)
    }
}

fn stat_of(meta: &fs::Metadata) -> Stat {
    let kind = if meta.file_type().is_symlink() {
        Kind::Symlink
    } else if meta.is_dir() {
        Kind::Dir
    } else {
        Kind::File
    };
    Stat {
        kind,
        size: if kind == Kind::Dir { 1 } else { meta.len() },
        perm: meta.mode() & 0o7777,
        mtime: meta.modified().expect("mtime"),
        nlink: meta.nlink(),
    }
}

impl Posix for Local {
    fn mkdir(&mut self, path: &[u8], mode: u32) -> R<()> {
        io(fs::DirBuilder::new().mode(mode).create(self.at(path)))
    }

    fn open(&mut self, path: &[u8], flags: i32, mode: u32) -> R<u64> {
        let acc = flags & libc::O_ACCMODE;
        let file = io(fs::OpenOptions::new()
            .read(acc != libc::O_WRONLY)
            .write(acc != libc::O_RDONLY)
            .custom_flags(flags & !libc::O_ACCMODE)
            .mode(mode)
            .open(self.at(path)))?;
        let fd = self.next;
        self.next += 1;
        self.files.insert(fd, file);
        Ok(fd)
    }

    fn read(&mut self, fd: u64, offset: u64, len: usize) -> R<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let n = io(self.file(fd)?.read_at(&mut buf, offset))?;
        buf.truncate(n);
        Ok(buf)
    }

    fn write(&mut self, fd: u64, offset: u64, data: &[u8]) -> R<usize> {
        io(self.file(fd)?.write_at(data, offset))
    }

    fn append(&mut self, fd: u64, data: &[u8]) -> R<usize> {
        let mut file = self.file(fd)?;
        io(file.write(data))
    }

    fn fsync(&mut self, fd: u64) -> R<()> {
        io(self.file(fd)?.sync_all())
    }

    fn ftruncate(&mut self, fd: u64, size: u64) -> R<()> {
        io(self.file(fd)?.set_len(size))
    }

    fn fstat(&mut self, fd: u64) -> R<Stat> {
        io(self.file(fd)?.metadata()).map(|m| stat_of(&m))
    }

    fn close(&mut self, fd: u64) -> R<()> {
        self.files.remove(&fd).map(drop).ok_or(libc::EBADF)
    }

    fn truncate(&mut self, path: &[u8], size: u64) -> R<()> {
        let c = cstr(&self.at(path));
        // SAFETY: a NUL-terminated path that outlives the call.
        sys(unsafe { libc::truncate(c.as_ptr(), size as libc::off_t) })
    }

    fn unlink(&mut self, path: &[u8]) -> R<()> {
        io(fs::remove_file(self.at(path)))
    }

    fn rmdir(&mut self, path: &[u8]) -> R<()> {
        io(fs::remove_dir(self.at(path)))
    }

    fn rename(&mut self, from: &[u8], to: &[u8], noreplace: bool) -> R<()> {
        let (from, to) = (cstr(&self.at(from)), cstr(&self.at(to)));
        let flags = if noreplace { libc::RENAME_NOREPLACE } else { 0 };
        // SAFETY: NUL-terminated paths that outlive the call.
        sys(unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                flags,
            )
        })
    }

    fn readdir(&mut self, path: &[u8]) -> R<Vec<(Vec<u8>, Kind)>> {
        let mut out = Vec::new();
        for item in io(fs::read_dir(self.at(path)))? {
            let item = io(item)?;
            let kind = io(item.file_type())?;
            let kind = if kind.is_symlink() {
                Kind::Symlink
            } else if kind.is_dir() {
                Kind::Dir
            } else {
                Kind::File
            };
            out.push((item.file_name().as_bytes().to_vec(), kind));
        }
        out.sort();
        Ok(out)
    }

    fn lstat(&mut self, path: &[u8]) -> R<Stat> {
        io(fs::symlink_metadata(self.at(path))).map(|m| stat_of(&m))
    }

    fn chmod(&mut self, path: &[u8], mode: u32) -> R<()> {
        use std::os::unix::fs::PermissionsExt;
        io(fs::set_permissions(
            self.at(path),
            fs::Permissions::from_mode(mode),
        ))
    }

    fn set_mtime(&mut self, path: &[u8], mtime: SystemTime) -> R<()> {
        let file = io(File::open(self.at(path)))?;
        io(file.set_modified(mtime))
    }

    fn symlink(&mut self, target: &[u8], path: &[u8]) -> R<()> {
        io(std::os::unix::fs::symlink(
            OsStr::from_bytes(target),
            self.at(path),
        ))
    }

    fn readlink(&mut self, path: &[u8]) -> R<Vec<u8>> {
        io(fs::read_link(self.at(path))).map(|t| t.as_os_str().as_bytes().to_vec())
    }
}

// ----- the core, called as the kernel calls it -----

/// An open descriptor of [`Core`].
struct Open {
    fh: u64,
    ino: u64,
    /// Opened for reading and/or writing (`O_RDONLY`, `O_WRONLY`, `O_RDWR`).
    read: bool,
    write: bool,
    /// A directory opened with `open(2)` (OPENDIR; `fh` is a directory handle).
    dir: bool,
    /// The LOOKUP references of its path, dropped at close.
    refs: Vec<u64>,
}

/// The calls on a [`Vfs`], made as the kernel makes them.
pub struct Core {
    pub vfs: Arc<Vfs>,
    /// Also make the checks the kernel makes against the names it caches
    /// (an entry it found: EEXIST for mkdir and symlink, the type checks of
    /// rename and unlink/rmdir). Off, those are left to the core, as when the
    /// kernel's entry expired or was dropped.
    pub name_checks: bool,
    files: HashMap<u64, Open>,
    next: u64,
}

fn kind_of(kind: NodeKind) -> Kind {
    match kind {
        NodeKind::Dir => Kind::Dir,
        NodeKind::Symlink => Kind::Symlink,
        // These suites make no special files: all else is a file.
        _ => Kind::File,
    }
}

pub fn stat_of_attr(attr: &Attr) -> Stat {
    Stat {
        kind: kind_of(attr.kind),
        size: if attr.kind == NodeKind::Dir {
            u64::from(attr.size > 0)
        } else {
            attr.size
        },
        perm: u32::from(attr.perm),
        mtime: attr.mtime,
        nlink: u64::from(attr.nlink),
    }
}

impl Core {
    pub fn new(vfs: Arc<Vfs>) -> Core {
        set_umask();
        Core {
            vfs,
            name_checks: false,
            files: HashMap::new(),
            next: 1,
        }
    }

    /// A core called with every check the kernel makes itself ([`Core::name_checks`]).
    pub fn like_the_kernel(vfs: Arc<Vfs>) -> Core {
        Core {
            name_checks: true,
            ..Core::new(vfs)
        }
    }

    /// kernel: an entry it knows takes the name (lookup_create).
    fn name_free(&self, found: Option<Attr>) -> R<()> {
        match found {
            Some(_) if self.name_checks => Err(libc::EEXIST),
            _ => Ok(()),
        }
    }

    /// Runs one operation and FORGETs every reference its LOOKUPs took.
    fn op<T>(&self, f: impl FnOnce(&Self, &mut Vec<u64>) -> R<T>) -> R<T> {
        let mut refs = Vec::new();
        let result = f(self, &mut refs);
        self.forget(&refs);
        result
    }

    fn forget(&self, refs: &[u64]) {
        for ino in refs {
            self.vfs.forget(*ino, 1);
        }
    }

    /// LOOKUP of `name` in `parent`, counting the reference (ENOENT: `None`).
    pub fn lookup(&self, parent: u64, name: &[u8], refs: &mut Vec<u64>) -> R<Option<Attr>> {
        match errno(self.vfs.lookup(parent, OsStr::from_bytes(name))) {
            Ok(attr) => {
                refs.push(attr.ino);
                Ok(Some(attr))
            }
            Err(libc::ENOENT) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The directory holding the last name of `path` (the kernel's path walk),
    /// and that name.
    fn parent<'p>(&self, path: &'p [u8], refs: &mut Vec<u64>) -> R<(u64, &'p [u8])> {
        let names = names(path);
        let (last, dirs) = names.split_last().expect("a path below the root");
        let mut ino = ROOT_INO;
        for name in dirs {
            let attr = self.lookup(ino, name, refs)?.ok_or(libc::ENOENT)?;
            ino = match attr.kind {
                NodeKind::Dir => attr.ino,
                // Followed: it dangles (module doc).
                NodeKind::Symlink => return Err(libc::ENOENT),
                _ => return Err(libc::ENOTDIR),
            };
        }
        Ok((ino, last))
    }

    /// The attributes of `path` without following a last symlink.
    fn resolve(&self, path: &[u8], refs: &mut Vec<u64>) -> R<Attr> {
        if names(path).is_empty() {
            return errno(self.vfs.getattr(ROOT_INO));
        }
        let (parent, name) = self.parent(path, refs)?;
        self.lookup(parent, name, refs)?.ok_or(libc::ENOENT)
    }

    /// The attributes of `path`, following a last symlink (it dangles).
    fn follow(&self, path: &[u8], refs: &mut Vec<u64>) -> R<Attr> {
        let attr = self.resolve(path, refs)?;
        if attr.kind == NodeKind::Symlink {
            return Err(libc::ENOENT);
        }
        Ok(attr)
    }

    /// The inode `path` resolves to now (its reference dropped again).
    pub fn ino(&self, path: &[u8]) -> R<u64> {
        self.op(|core, refs| core.resolve(path, refs).map(|a| a.ino))
    }

    /// The core's handle number behind descriptor `fd`.
    pub fn fh(&self, fd: u64) -> u64 {
        self.files[&fd].fh
    }

    fn open_desc(&self, fd: u64) -> R<&Open> {
        self.files.get(&fd).ok_or(libc::EBADF)
    }

    fn new_fd(&mut self, open: Open) -> u64 {
        let fd = self.next;
        self.next += 1;
        self.files.insert(fd, open);
        fd
    }
}

impl Posix for Core {
    fn mkdir(&mut self, path: &[u8], mode: u32) -> R<()> {
        self.op(|core, refs| {
            let (parent, name) = core.parent(path, refs)?;
            // The kernel looks the name up first; an entry found there is
            // left to the core to refuse (as when the kernel's entry expired).
            core.name_free(core.lookup(parent, name, refs)?)?;
            let attr = errno(
                core.vfs
                    .mkdir(parent, OsStr::from_bytes(name), mode & !UMASK),
            )?;
            refs.push(attr.ino);
            Ok(())
        })
    }

    fn open(&mut self, path: &[u8], flags: i32, mode: u32) -> R<u64> {
        let acc = flags & libc::O_ACCMODE;
        let (read, write) = (acc != libc::O_WRONLY, acc != libc::O_RDONLY);
        let mut refs = Vec::new();
        let result = (|| {
            let (parent, name) = self.parent(path, &mut refs)?;
            match self.lookup(parent, name, &mut refs)? {
                Some(attr) => {
                    // kernel: O_CREAT|O_EXCL on a name it found (lookup_open).
                    if flags & libc::O_CREAT != 0 && flags & libc::O_EXCL != 0 {
                        return Err(libc::EEXIST);
                    }
                    match attr.kind {
                        // kernel: O_NOFOLLOW on a symlink; otherwise followed: it dangles.
                        NodeKind::Symlink if flags & libc::O_NOFOLLOW != 0 => Err(libc::ELOOP),
                        NodeKind::Symlink => Err(libc::ENOENT),
                        // kernel: a directory opened to write or create (do_open, may_open).
                        NodeKind::Dir if write || flags & libc::O_CREAT != 0 => Err(libc::EISDIR),
                        NodeKind::Dir => {
                            let fh = errno(self.vfs.opendir(attr.ino))?;
                            Ok((fh, attr.ino, true))
                        }
                        _ => {
                            let truncate = flags & libc::O_TRUNC != 0;
                            let opened = errno(self.vfs.open(attr.ino, write, truncate))?;
                            Ok((opened.fh, attr.ino, false))
                        }
                    }
                }
                None if flags & libc::O_CREAT == 0 => Err(libc::ENOENT),
                None => {
                    let (attr, opened) = errno(self.vfs.create_or_open(
                        parent,
                        OsStr::from_bytes(name),
                        mode & !UMASK,
                        flags,
                    ))?;
                    refs.push(attr.ino);
                    Ok((opened.fh, attr.ino, false))
                }
            }
        })();
        match result {
            Ok((fh, ino, dir)) => Ok(self.new_fd(Open {
                fh,
                ino,
                read,
                write,
                dir,
                refs,
            })),
            Err(err) => {
                self.forget(&refs);
                Err(err)
            }
        }
    }

    fn read(&mut self, fd: u64, offset: u64, len: usize) -> R<Vec<u8>> {
        let open = self.open_desc(fd)?;
        // kernel: read(2) of a directory (generic_read_dir), of a write-only descriptor.
        if open.dir {
            return Err(libc::EISDIR);
        }
        if !open.read {
            return Err(libc::EBADF);
        }
        errno(self.vfs.read(open.fh, offset, len as u32))
    }

    fn write(&mut self, fd: u64, offset: u64, data: &[u8]) -> R<usize> {
        let open = self.open_desc(fd)?;
        // kernel: write(2) to a read-only descriptor.
        if !open.write {
            return Err(libc::EBADF);
        }
        errno(self.vfs.write(open.fh, offset, data)).map(|n| n as usize)
    }

    fn append(&mut self, fd: u64, data: &[u8]) -> R<usize> {
        let ino = self.open_desc(fd)?.ino;
        // kernel: an O_APPEND write goes to the size the kernel knows (GETATTR).
        let size = errno(self.vfs.getattr(ino))?.size;
        self.write(fd, size, data)
    }

    fn fsync(&mut self, fd: u64) -> R<()> {
        let open = self.open_desc(fd)?;
        if open.dir {
            return Ok(());
        }
        errno(self.vfs.commit(open.fh, true))
    }

    fn ftruncate(&mut self, fd: u64, size: u64) -> R<()> {
        let open = self.open_desc(fd)?;
        // kernel: ftruncate of a descriptor not open for writing (do_ftruncate).
        if !open.write {
            return Err(libc::EINVAL);
        }
        errno(
            self.vfs
                .setattr(open.ino, Some(open.fh), None, Some(size), None),
        )
        .map(drop)
    }

    fn fstat(&mut self, fd: u64) -> R<Stat> {
        let open = self.open_desc(fd)?;
        errno(self.vfs.getattr(open.ino)).map(|a| stat_of_attr(&a))
    }

    fn close(&mut self, fd: u64) -> R<()> {
        let open = self.files.remove(&fd).ok_or(libc::EBADF)?;
        let result = if open.dir {
            self.vfs.releasedir(open.fh);
            Ok(())
        } else {
            // FLUSH for a writable descriptor (a reader's open said FOPEN_NOFLUSH),
            // then RELEASE.
            let flushed = if open.write {
                errno(self.vfs.commit(open.fh, false))
            } else {
                Ok(())
            };
            let released = errno(self.vfs.release(open.fh));
            flushed.and(released)
        };
        self.forget(&open.refs);
        result
    }

    fn truncate(&mut self, path: &[u8], size: u64) -> R<()> {
        self.op(|core, refs| {
            let attr = core.follow(path, refs)?;
            // kernel: truncate(2) of a directory (vfs_truncate).
            if attr.kind == NodeKind::Dir {
                return Err(libc::EISDIR);
            }
            errno(core.vfs.setattr(attr.ino, None, None, Some(size), None)).map(drop)
        })
    }

    fn unlink(&mut self, path: &[u8]) -> R<()> {
        self.op(|core, refs| {
            let (parent, name) = core.parent(path, refs)?;
            let found = core.lookup(parent, name, refs)?.ok_or(libc::ENOENT)?;
            // kernel: unlink of a directory it knows (may_delete).
            if core.name_checks && found.kind == NodeKind::Dir {
                return Err(libc::EISDIR);
            }
            errno(core.vfs.unlink(parent, OsStr::from_bytes(name)))
        })
    }

    fn rmdir(&mut self, path: &[u8]) -> R<()> {
        self.op(|core, refs| {
            let (parent, name) = core.parent(path, refs)?;
            let found = core.lookup(parent, name, refs)?.ok_or(libc::ENOENT)?;
            // kernel: rmdir of what it knows is no directory (may_delete).
            if core.name_checks && found.kind != NodeKind::Dir {
                return Err(libc::ENOTDIR);
            }
            errno(core.vfs.rmdir(parent, OsStr::from_bytes(name)))
        })
    }

    fn rename(&mut self, from: &[u8], to: &[u8], noreplace: bool) -> R<()> {
        self.op(|core, refs| {
            // The kernel's order (do_renameat2): both parents, the source,
            // the target, then its own checks, then RENAME.
            let (from_parent, from_name) = core.parent(from, refs)?;
            let (to_parent, to_name) = core.parent(to, refs)?;
            let source = core
                .lookup(from_parent, from_name, refs)?
                .ok_or(libc::ENOENT)?;
            let target = core.lookup(to_parent, to_name, refs)?;
            // kernel: RENAME_NOREPLACE onto an entry it found.
            if noreplace && target.is_some() {
                return Err(libc::EEXIST);
            }
            // kernel: the source must not be an ancestor of the target's
            // directory, nor the target one of the source's (lock_rename's trap).
            let (from_dir, to_dir) = (names(from), names(to));
            let (from_dir, to_dir) = (&from_dir[..from_dir.len() - 1], &to_dir[..to_dir.len() - 1]);
            if from_dir != to_dir {
                if to_dir.starts_with(&names(from)) {
                    return Err(libc::EINVAL);
                }
                if from_dir.starts_with(&names(to)) {
                    return Err(libc::ENOTEMPTY);
                }
            }
            // kernel: the same inode, and the kinds of both (vfs_rename, may_delete).
            if let Some(target) = target.filter(|_| core.name_checks) {
                let dirs = (source.kind == NodeKind::Dir, target.kind == NodeKind::Dir);
                match dirs {
                    _ if source.ino == target.ino => return Ok(()),
                    (true, false) => return Err(libc::ENOTDIR),
                    (false, true) => return Err(libc::EISDIR),
                    _ => {}
                }
            }
            errno(core.vfs.rename(
                from_parent,
                OsStr::from_bytes(from_name),
                to_parent,
                OsStr::from_bytes(to_name),
                noreplace,
                false,
            ))
        })
    }

    fn readdir(&mut self, path: &[u8]) -> R<Vec<(Vec<u8>, Kind)>> {
        self.op(|core, refs| {
            let attr = core.follow(path, refs)?;
            // OPENDIR, READDIR from offset 0, RELEASEDIR.
            let fh = errno(core.vfs.opendir(attr.ino))?;
            let listing = errno(core.vfs.listing(fh, attr.ino, 0));
            core.vfs.releasedir(fh);
            let mut out: Vec<(Vec<u8>, Kind)> = listing?
                .iter()
                .map(|e| (e.name.clone(), kind_of(e.attr.kind)))
                .collect();
            out.sort();
            Ok(out)
        })
    }

    fn lstat(&mut self, path: &[u8]) -> R<Stat> {
        self.op(|core, refs| {
            let attr = core.resolve(path, refs)?;
            // The kernel asks again once the lookup's attributes expired.
            let again = errno(core.vfs.getattr(attr.ino))?;
            Ok(stat_of_attr(&again))
        })
    }

    fn chmod(&mut self, path: &[u8], mode: u32) -> R<()> {
        self.op(|core, refs| {
            let attr = core.follow(path, refs)?;
            errno(core.vfs.setattr(attr.ino, None, Some(mode), None, None)).map(drop)
        })
    }

    fn set_mtime(&mut self, path: &[u8], mtime: SystemTime) -> R<()> {
        self.op(|core, refs| {
            let attr = core.follow(path, refs)?;
            errno(core.vfs.setattr(attr.ino, None, None, None, Some(mtime))).map(drop)
        })
    }

    fn symlink(&mut self, target: &[u8], path: &[u8]) -> R<()> {
        self.op(|core, refs| {
            let (parent, name) = core.parent(path, refs)?;
            core.name_free(core.lookup(parent, name, refs)?)?;
            let attr = errno(core.vfs.symlink(parent, OsStr::from_bytes(name), target))?;
            refs.push(attr.ino);
            Ok(())
        })
    }

    fn readlink(&mut self, path: &[u8]) -> R<Vec<u8>> {
        self.op(|core, refs| {
            let attr = core.resolve(path, refs)?;
            errno(core.vfs.readlink(attr.ino))
        })
    }
}
