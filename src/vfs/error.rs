//! Errors of the core as the kernel gets them: an errno, and where each kind
//! of store failure becomes one.

use crate::store::StoreError;

/// An errno for a failed operation.
pub type Errno = i32;

/// The result of an operation.
pub type VfsResult<T> = Result<T, Errno>;

/// The errno of a store failure (logged: expected ones quietly).
pub(super) fn errno(err: StoreError) -> Errno {
    match &err {
        StoreError::NotFound(_) | StoreError::Exists(_) | StoreError::NotEmpty(_) => {
            tracing::debug!(error = %err, "expected failure")
        }
        _ => tracing::warn!(error = %err, "operation failed"),
    }
    err.errno()
}

/// The errno of an I/O failure on the mount's own files.
pub(super) fn io_errno(err: std::io::Error) -> Errno {
    StoreError::io_errno(&err)
}
