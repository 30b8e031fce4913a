//! Errors of the core: what the kernel gets (an errno), what the log gets (a
//! message naming the path, hash or handle, and the failure below it), and how
//! loudly. Every failure of an operation becomes one [`VfsError`] here, and the
//! adapter logs it once, at its level, as it replies.

use std::fmt;

use tracing::Level;

use crate::layout::{BadPath, BadPathKind};
use crate::store::StoreError;

/// An errno for a failed operation.
pub type Errno = i32;

/// The result of an operation.
pub type VfsResult<T> = Result<T, VfsError>;

/// A failed operation.
#[derive(Debug)]
pub struct VfsError {
    errno: Errno,
    message: String,
    source: Option<Source>,
    level: Level,
}

/// The failure below a [`VfsError`].
#[derive(Debug)]
enum Source {
    Store(StoreError),
    Io(std::io::Error),
}

impl VfsError {
    /// As a store error, for a hook the store calls ([`crate::store::Rebase`]):
    /// the store error below it, or an I/O error of `path` with its errno.
    pub(super) fn into_store(self, path: &crate::layout::VPath) -> StoreError {
        match self.source {
            Some(Source::Store(err)) => err,
            Some(Source::Io(err)) => StoreError::io(path.escaped(), err),
            None => {
                tracing::debug!(%path, message = %self.message, "as a store error");
                StoreError::io(
                    path.escaped(),
                    std::io::Error::from_raw_os_error(self.errno),
                )
            }
        }
    }

    /// An outcome the caller asked for in the ordinary way (no such name, not a
    /// directory, ...): logged at debug level only.
    pub fn new(errno: Errno, message: impl Into<String>) -> VfsError {
        VfsError {
            errno,
            message: message.into(),
            source: None,
            level: Level::DEBUG,
        }
    }

    /// The same error, logged at `level`.
    pub fn at(mut self, level: Level) -> VfsError {
        self.level = level;
        self
    }

    /// The errno the kernel gets.
    pub fn errno(&self) -> Errno {
        self.errno
    }

    /// How loudly the adapter logs it.
    pub fn level(&self) -> Level {
        self.level
    }

    /// What failed, without the failure below it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for VfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(Source::Store(err)) if self.message.is_empty() => write!(f, "{err}"),
            Some(Source::Store(err)) => write!(f, "{}: {err}", self.message),
            Some(Source::Io(err)) => write!(f, "{}: {err}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for VfsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            Some(Source::Store(err)) => Some(err),
            Some(Source::Io(err)) => Some(err),
            None => None,
        }
    }
}

/// Two errors are equal when the kernel would see the same thing (the errno).
impl PartialEq for VfsError {
    fn eq(&self, other: &VfsError) -> bool {
        self.errno == other.errno
    }
}

/// The errno of a store failure: the one table from store errors to what
/// the kernel is told.
pub fn store_errno(err: &StoreError) -> Errno {
    match err {
        StoreError::Io { source, .. } => StoreError::io_errno(source),
        StoreError::NotFound(_) | StoreError::NoSuchVersion(..) | StoreError::NotThen { .. } => {
            libc::ENOENT
        }
        StoreError::WasADirectory { .. } => libc::EISDIR,
        StoreError::Exists(_) => libc::EEXIST,
        StoreError::NotLinkable(_) => libc::EPERM,
        StoreError::TooManyLinks(_) => libc::EMLINK,
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

impl From<StoreError> for VfsError {
    fn from(err: StoreError) -> VfsError {
        let level = match &err {
            StoreError::NotFound(_)
            | StoreError::NoSuchVersion(..)
            | StoreError::NotThen { .. }
            | StoreError::Exists(_)
            | StoreError::NotLinkable(_)
            | StoreError::TooManyLinks(_)
            | StoreError::NotADirectory(_)
            | StoreError::IsADirectory(_)
            | StoreError::NotEmpty(_)
            | StoreError::Invalid { .. }
            | StoreError::BadPath(_) => Level::DEBUG,
            StoreError::Corrupt { .. }
            | StoreError::BadBlock { .. }
            | StoreError::MissingBlock { .. } => Level::ERROR,
            _ => Level::WARN,
        };
        VfsError {
            errno: store_errno(&err),
            message: String::new(),
            source: Some(Source::Store(err)),
            level,
        }
    }
}

/// An I/O failure on one of the mount's own files (a write cache).
pub(super) fn io_error(what: &str) -> impl FnOnce(std::io::Error) -> VfsError + '_ {
    move |err| VfsError {
        errno: StoreError::io_errno(&err),
        message: what.to_string(),
        source: Some(Source::Io(err)),
        level: Level::WARN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;
    use std::io;
    use std::path::PathBuf;

    /// An OS error wrapped the way tempfile wraps its write errors (the kind
    /// kept, the code behind a custom payload): still ENOSPC or EDQUOT.
    #[test]
    fn wrapped_disk_full_and_quota_errors_keep_their_errno() {
        for code in [libc::ENOSPC, libc::EDQUOT, libc::EROFS, libc::EFBIG] {
            let os = io::Error::from_raw_os_error(code);
            let wrapped = io::Error::new(os.kind(), format!("{os} at path \"/s/tmp/block-x\""));
            let err = StoreError::io("/s/tmp/block-x", wrapped);
            assert_eq!(store_errno(&err), code, "{err}");
            assert_eq!(store_errno(&StoreError::io("/p", os)), code);
            // Said once, plainly, after the path.
            let text = err.to_string();
            assert_eq!(
                text,
                format!("/s/tmp/block-x: {}", io::Error::from_raw_os_error(code))
            );
        }
        let other = StoreError::io("/p", io::Error::other("short append"));
        assert_eq!(store_errno(&other), libc::EIO);
        assert_eq!(other.to_string(), "/p: short append");
    }

    /// A name is too long by its kind, not by its message's words; every
    /// other bad name is EINVAL.
    #[test]
    fn bad_paths_map_by_kind() {
        let long = crate::layout::check_name(&[b'x'; 300]).unwrap_err();
        assert_eq!(long.kind, BadPathKind::TooLong);
        assert_eq!(store_errno(&StoreError::from(long)), libc::ENAMETOOLONG);
        let reworded = BadPath::new(BadPathKind::TooLong, "too many bytes");
        assert_eq!(store_errno(&StoreError::from(reworded)), libc::ENAMETOOLONG);
        for kind in [
            BadPathKind::NotAName,
            BadPathKind::DotDot,
            BadPathKind::SlashOrNul,
            BadPathKind::BadEscape,
            BadPathKind::BadTarget,
        ] {
            let err = StoreError::from(BadPath::new(kind, "a name has at most 255"));
            assert_eq!(store_errno(&err), libc::EINVAL, "{kind:?}");
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
            assert_eq!(store_errno(&err), libc::EPERM, "{err}");
            assert_eq!(err.to_string(), text);
        }
    }

    use crate::layout::VPath;

    #[test]
    fn a_store_failure_keeps_its_message_and_errno() {
        let path = VPath::root().join(b"gone").unwrap();
        let err = VfsError::from(StoreError::NotFound(path));
        assert_eq!(err.errno(), libc::ENOENT);
        assert_eq!(err.level(), Level::DEBUG);
        assert!(err.to_string().contains("/gone"), "{err}");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn an_io_failure_names_what_failed_and_keeps_the_os_errno() {
        let err =
            io_error("the write cache of inode 7")(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(err.errno(), libc::ENOSPC);
        assert_eq!(err.level(), Level::WARN);
        assert!(
            err.to_string().starts_with("the write cache of inode 7: "),
            "{err}"
        );
    }
}
