//! Errors of the core: what the kernel gets (an errno), what the log gets (a
//! message naming the path, hash or handle, and the failure below it), and how
//! loudly. Every failure of an operation becomes one [`VfsError`] here, and the
//! adapter logs it once, at its level, as it replies.

use std::fmt;

use tracing::Level;

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

impl From<StoreError> for VfsError {
    fn from(err: StoreError) -> VfsError {
        let level = match &err {
            StoreError::NotFound(_)
            | StoreError::NoSuchVersion(..)
            | StoreError::Exists(_)
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
            errno: err.errno(),
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
