//! Errors of the store layer. Every variant carries what it is about (a disk path,
//! a volume path, a hash), so a message printed once at the top says where.

use std::io;
use std::path::{Path, PathBuf};

use crate::ids::BlockHash;
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

    #[error("{0}: not a directory")]
    NotADirectory(VPath),

    #[error("{0}: is a directory")]
    IsADirectory(VPath),

    #[error("{0}: directory not empty")]
    NotEmpty(VPath),

    #[error("{path}: cannot move a directory inside itself")]
    Invalid { path: VPath },

    #[error("{0}: version {1} does not exist")]
    NoSuchVersion(VPath, String),

    #[error(transparent)]
    BadPath(#[from] BadPath),

    #[error("block {hash}: {why}")]
    BadBlock { hash: BlockHash, why: String },

    #[error("{path}: block {hash} is not held here nor by any reachable peer")]
    MissingBlock { path: VPath, hash: BlockHash },

    #[error("{0}")]
    Refused(String),
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

    /// The errno a filesystem call should fail with for this error.
    pub fn errno(&self) -> i32 {
        match self {
            StoreError::Io { source, .. } => StoreError::io_errno(source),
            StoreError::NotFound(_) | StoreError::NoSuchVersion(..) => libc::ENOENT,
            StoreError::Exists(_) => libc::EEXIST,
            StoreError::NotADirectory(_) => libc::ENOTDIR,
            StoreError::IsADirectory(_) => libc::EISDIR,
            StoreError::NotEmpty(_) => libc::ENOTEMPTY,
            StoreError::Invalid { .. } => libc::EINVAL,
            StoreError::BadPath(BadPath(why)) if why.contains("at most") => libc::ENAMETOOLONG,
            StoreError::BadPath(_) => libc::EINVAL,
            StoreError::Refused(_) => libc::EPERM,
            StoreError::Corrupt { .. }
            | StoreError::NewerFormat { .. }
            | StoreError::NoStore { .. }
            | StoreError::WrongNode { .. }
            | StoreError::BadBlock { .. }
            | StoreError::MissingBlock { .. } => libc::EIO,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An OS error wrapped the way tempfile wraps its write errors (the kind
    /// kept, the code behind a custom payload): still ENOSPC or EDQUOT.
    #[test]
    fn wrapped_disk_full_and_quota_errors_keep_their_errno() {
        for code in [libc::ENOSPC, libc::EDQUOT, libc::EROFS, libc::EFBIG] {
            let os = io::Error::from_raw_os_error(code);
            let wrapped = io::Error::new(os.kind(), format!("{os} at path \"/s/tmp/block-x\""));
            let err = StoreError::io("/s/tmp/block-x", wrapped);
            assert_eq!(err.errno(), code, "{err}");
            assert_eq!(StoreError::io("/p", os).errno(), code);
            // Said once, plainly, after the path.
            let text = err.to_string();
            assert_eq!(
                text,
                format!("/s/tmp/block-x: {}", io::Error::from_raw_os_error(code))
            );
        }
        let other = StoreError::io("/p", io::Error::other("short append"));
        assert_eq!(other.errno(), libc::EIO);
        assert_eq!(other.to_string(), "/p: short append");
    }
}
