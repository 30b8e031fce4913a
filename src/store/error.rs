//! Errors of the store layer. Every variant carries what it is about (a disk path,
//! a volume path, a hash), so a message printed once at the top says where.

use std::io;
use std::path::{Path, PathBuf};

use crate::ids::{BlockHash, NodeId};
use crate::layout::{BadPath, BadPathKind, VPath};

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
            StoreError::BadPath(BadPath {
                kind: BadPathKind::TooLong,
                ..
            }) => libc::ENAMETOOLONG,
            StoreError::BadPath(_) => libc::EINVAL,
            // What was once one catch-all refusal keeps its errno.
            StoreError::BadSymlinkTarget { .. }
            | StoreError::RemoveRoot
            | StoreError::IdClash { .. }
            | StoreError::PeerAway { .. }
            | StoreError::UnreadableVersions { .. }
            | StoreError::BadConfig { .. }
            | StoreError::Internal(_) => libc::EPERM,
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

    /// A name is too long by its kind, not by its message's words; every
    /// other bad name is EINVAL.
    #[test]
    fn bad_paths_map_by_kind() {
        let long = crate::layout::check_name(&[b'x'; 300]).unwrap_err();
        assert_eq!(long.kind, BadPathKind::TooLong);
        assert_eq!(StoreError::from(long).errno(), libc::ENAMETOOLONG);
        let reworded = BadPath::new(BadPathKind::TooLong, "too many bytes");
        assert_eq!(StoreError::from(reworded).errno(), libc::ENAMETOOLONG);
        for kind in [
            BadPathKind::NotAName,
            BadPathKind::DotDot,
            BadPathKind::SlashOrNul,
            BadPathKind::BadEscape,
            BadPathKind::BadTarget,
        ] {
            let err = StoreError::from(BadPath::new(kind, "a name has at most 255"));
            assert_eq!(err.errno(), libc::EINVAL, "{kind:?}");
        }
    }

    /// What was one catch-all refusal keeps its errno (EPERM) and says what
    /// it is about.
    #[test]
    fn former_refusals_keep_eperm_and_name_their_subject() {
        let path = VPath::parse(std::ffi::OsStr::new("/a/link")).unwrap();
        let peer = NodeId::random();
        let cases = [
            (
                StoreError::BadSymlinkTarget { path: path.clone() },
                "/a/link: not a valid symlink target".to_string(),
            ),
            (
                StoreError::RemoveRoot,
                "the volume root cannot be removed".to_string(),
            ),
            (
                StoreError::IdClash {
                    path: PathBuf::from("/s/root/a/versions/1"),
                    why: "appeared while importing".into(),
                },
                "/s/root/a/versions/1: appeared while importing".to_string(),
            ),
            (
                StoreError::PeerAway {
                    peer,
                    why: "not mounted".into(),
                },
                format!("peer {peer} is away: not mounted"),
            ),
            (
                StoreError::UnreadableVersions {
                    count: 2,
                    first: "/s/root/b/versions/9: corrupt".into(),
                },
                "gc stopped before deleting anything: 2 unreadable version file(s), first: /s/root/b/versions/9: corrupt".to_string(),
            ),
            (
                StoreError::BadConfig {
                    what: "ignore",
                    why: "bad glob".into(),
                },
                "ignore: bad glob".to_string(),
            ),
            (
                StoreError::Internal("a listing thread panicked".into()),
                "a listing thread panicked".to_string(),
            ),
        ];
        for (err, text) in cases {
            assert_eq!(err.errno(), libc::EPERM, "{err}");
            assert_eq!(err.to_string(), text);
        }
    }
}
