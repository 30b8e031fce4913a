//! Errors of the store layer. Every variant carries what it is about (a disk path,
//! a volume path, a hash), so a message printed once at the top says where.

use std::io;
use std::path::{Path, PathBuf};

use crate::ids::{BlockHash, NodeId};
use crate::layout::{BadPath, VPath};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {}", path.display(), describe(source))]
    Io { path: PathBuf, source: io::Error },

    #[error("{}: corrupt: {why}", path.display())]
    Corrupt { path: PathBuf, why: String },

    #[error("{}: store format {found} is newer than this globofs reads ({supported}); upgrade globofs", path.display())]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("{}: no store here; run `globofs reconcile` first", path.display())]
    NoStore { path: PathBuf },

    #[error("{}: the store belongs to node {found}, but the spec says {expected}", path.display())]
    WrongNode {
        path: PathBuf,
        found: String,
        expected: String,
    },

    #[error("{0}: no such file or directory in the volume")]
    NotFound(VPath),

    #[error("{0}: already exists")]
    Exists(VPath),

    #[error("{0}: only a regular file can have another name (a hard link)")]
    NotLinkable(VPath),

    #[error("{0}: a link group has at most 65,000 names")]
    TooManyLinks(VPath),

    #[error("{0}: not a directory")]
    NotADirectory(VPath),

    #[error("{0}: is a directory")]
    IsADirectory(VPath),

    #[error("{0}: directory not empty")]
    NotEmpty(VPath),

    #[error("{path}: cannot move a directory inside itself")]
    Invalid { path: VPath },

    /// Nothing (or a deleted entry) at `path` at a past moment.
    #[error("{path}: no such file or directory in the volume at {at}")]
    NotThen { path: VPath, at: String },

    /// A restore of a directory without `-r`.
    #[error("{path}: was a directory at {at}; restore it with -r")]
    WasADirectory { path: VPath, at: String },

    #[error("{0}: version {1} does not exist")]
    NoSuchVersion(VPath, String),

    #[error(transparent)]
    BadPath(#[from] BadPath),

    #[error("block {hash}: {why}")]
    BadBlock { hash: BlockHash, why: String },

    #[error("{path}: block {hash} is not held here nor by any reachable peer")]
    MissingBlock { path: VPath, hash: BlockHash },

    #[error("{path}: not a valid symlink target")]
    BadSymlinkTarget { path: VPath },

    #[error("the volume root cannot be removed")]
    RemoveRoot,

    /// Another version file already holds the id of one being imported.
    #[error("{}: {why}", path.display())]
    IdClash { path: PathBuf, why: String },

    /// A peer that cannot be used now (its `Away`, said the same way).
    #[error("peer {peer} is away: {why}")]
    PeerAway { peer: NodeId, why: String },

    /// `gc` found version files it cannot read and deleted nothing.
    #[error(
        "gc stopped before deleting anything: {count} unreadable version file(s), first: {first}"
    )]
    UnreadableVersions { count: usize, first: String },

    /// A setting of the spec the store cannot use.
    #[error("{what}: {why}")]
    BadConfig { what: &'static str, why: String },

    /// Something this code should never do happened (a thread panicked, a
    /// record it keeps went missing).
    #[error("{0}")]
    Internal(String),
}

impl StoreError {
    pub fn io(path: impl AsRef<Path>, source: io::Error) -> StoreError {
        StoreError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// The errno of an I/O error: its OS code, or for an error that wraps one
    /// (tempfile adds the temp file's path to its write errors, keeping only the
    /// kind) the errno of its kind, so a full disk is ENOSPC and a quota EDQUOT,
    /// not EIO, to the writer's `write`, `fsync` and `close`.
    pub fn io_errno(err: &io::Error) -> i32 {
        use io::ErrorKind as K;
        if let Some(code) = err.raw_os_error() {
            return code;
        }
        match err.kind() {
            K::StorageFull => libc::ENOSPC,
            K::QuotaExceeded => libc::EDQUOT,
            K::FileTooLarge => libc::EFBIG,
            K::ReadOnlyFilesystem => libc::EROFS,
            K::NotFound => libc::ENOENT,
            K::PermissionDenied => libc::EACCES,
            K::AlreadyExists => libc::EEXIST,
            K::NotADirectory => libc::ENOTDIR,
            K::IsADirectory => libc::EISDIR,
            K::DirectoryNotEmpty => libc::ENOTEMPTY,
            K::TooManyLinks => libc::EMLINK,
            K::StaleNetworkFileHandle => libc::ESTALE,
            K::TimedOut => libc::ETIMEDOUT,
            K::Interrupted => libc::EINTR,
            K::OutOfMemory => libc::ENOMEM,
            _ => libc::EIO,
        }
    }

    /// True for "not there" errors of the underlying filesystem.
    pub fn is_not_found(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            StoreError::NotFound(_) => true,
            _ => false,
        }
    }
}

/// An I/O error's text: a wrapped OS error (tempfile's, which repeats the
/// temp file's path) as the plain OS error its kind stands for.
fn describe(err: &io::Error) -> String {
    if err.raw_os_error().is_none() && err.get_ref().is_some() {
        let errno = StoreError::io_errno(err);
        if errno != libc::EIO {
            return io::Error::from_raw_os_error(errno).to_string();
        }
    }
    err.to_string()
}

/// Adds a path to an io::Result.
pub trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T, StoreError> {
        self.map_err(|err| StoreError::io(path, err))
    }
}

/// The entries of directory `dir`, `None` when it is not there (a path with
/// no such part yet, or one removed while a walker looked); other errors
/// name the directory.
pub fn read_dir_if_present(dir: &Path) -> Result<Option<std::fs::ReadDir>, StoreError> {
    match std::fs::read_dir(dir) {
        Ok(listing) => Ok(Some(listing)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(StoreError::io(dir, err)),
    }
}
