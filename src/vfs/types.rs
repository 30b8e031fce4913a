//! What the core hands the adapter: attributes, directory entries, totals,
//! invalidations, and how an open handle is to be served.

use std::fs::File;
use std::time::SystemTime;

/// What kind of entry an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// Who asks: the calling process's uid and gid, as the kernel sent them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The process's umask, for what it creates: applied unless the parent
    /// directory has a default ACL (0 where nothing is created).
    pub umask: u32,
}

/// Attributes of an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: NodeKind,
    pub size: u64,
    pub perm: u16,
    pub mtime: SystemTime,
    pub nlink: u32,
    /// Owner and group as this mount shows them (see `mount.ownership`).
    pub uid: u32,
    pub gid: u32,
    /// The last access time set explicitly, else the mtime (reads store none).
    pub atime: SystemTime,
    /// When the content or an attribute last changed: the time of the
    /// version's id (every change is a new version), now while being written.
    pub ctime: SystemTime,
    /// The device a character or block special file stands for (0 otherwise).
    pub rdev: u32,
    /// What the entry stores, in 512-byte units (`st_blocks`: holes excluded).
    pub blocks: u64,
}

/// A directory entry.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub attr: Attr,
}

/// What to invalidate in the kernel after a change: the inode (if known) and
/// the directory entry (parent inode, name).
pub type Invalidation = (Option<u64>, Option<(u64, Vec<u8>)>);

/// Filesystem totals for statfs.
#[derive(Clone, Copy, Debug)]
pub struct FsStats {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

/// Where a write goes. The kernel (which keeps no write-back cache here)
/// places an `O_APPEND` write at the size it holds, which is stale when
/// another mount, a `globofs put` or a peer replaced the file since it last
/// asked: such a write goes to the end of the file as this mount holds it
/// (what a local file system's append does), not to that offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteAt {
    /// At this offset.
    Offset(u64),
    /// At the end of the handle's write state; the offset the kernel gave.
    End(u64),
}

/// A write done: how many bytes, and where they went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    pub count: u32,
    pub offset: u64,
}

impl Written {
    /// Whether the bytes went somewhere other than where the kernel put
    /// them in its page cache and size: it must drop both.
    pub fn moved(&self, at: WriteAt) -> bool {
        match at {
            WriteAt::Offset(offset) | WriteAt::End(offset) => offset != self.offset,
        }
    }
}

/// What a close or fsync did, for the kernel's caches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    /// A new version was made (its ctime is not what the kernel was told).
    pub changed: bool,
    /// Its appends moved to the end of a version that replaced their base
    /// ([`super::rebase`]): the kernel's pages and size are stale too.
    pub rebased: bool,
    /// The directory whose attributes the kernel must drop: the parent of a
    /// file created here whose first version this commit made.
    pub parent: Option<u64>,
}

/// What `open` hands the adapter.
#[derive(Debug)]
pub struct Opened {
    pub fh: u64,
    /// A file the kernel may read and write directly (FUSE passthrough): the
    /// private cache file of a new or truncated file opened for writing.
    pub backing: Option<File>,
    /// The handle's bytes are the passthrough writer's cache file (the writer
    /// itself, or a later open sharing it): the only backing file ever attached
    /// to an inode, so the only one a handle may use directly.
    ///
    /// A store block is never attached, though the kernel could read one-block
    /// files from it: it re-opens the backing file for every handle with that
    /// handle's own flags and the mount's credentials, so a writer arriving
    /// while a reader had a block attached would hold the shared block open for
    /// writing, and a writable shared `mmap` (which direct I/O does not
    /// redirect) would write into every file that shares the block.
    pub shares_cache: bool,
    /// The kernel may keep the inode's page cache: it holds this very version.
    pub keep_cache: bool,
    /// The kernel's attributes of the inode describe another version than the
    /// one this handle reads (it changed since, or an atomic rename replaced
    /// it): the adapter tells the kernel to drop them before answering, so its
    /// size is asked again before a read stops at the old one.
    pub stale_attrs: bool,
}

/// How the kernel is to serve an open handle. The kernel attaches one backing
/// file to an inode while any passthrough handle of it is open: every other
/// open of that inode must then be passthrough with the same file, and no
/// passthrough open may join handles served through the page cache.
#[derive(Debug)]
pub enum Mode {
    /// Served here, through the kernel's page cache (`keep_cache`: it already
    /// holds this version's bytes).
    Cached { keep_cache: bool },
    /// Attach this file as the inode's backing file (the kernel may refuse:
    /// then [`Vfs::passthrough_refused`] and serve the handle cached).
    Attach(File),
    /// Reuse the backing file already attached; `direct` when it does not hold
    /// what this handle must see, so the kernel sends its reads and writes here
    /// (direct I/O overrides passthrough).
    Share { direct: bool },
}
