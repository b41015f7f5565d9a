//! What can go wrong in the store. The server maps each variant to one HTTP status.

use std::io::ErrorKind;
use std::path::PathBuf;

/// A failed store operation. Messages name shares and paths, never secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An upload is in progress for this share under another upload secret (401).
    #[error("upload secret does not match the upload in progress")]
    UploadSecretMismatch,
    /// No upload in progress for this share (404).
    #[error("no upload in progress for this share")]
    NoSuchUpload,
    /// Abort of a share that has already completed (405).
    #[error("share is already complete")]
    AlreadyComplete,
    /// The share, or for leases the whole storage index, does not exist (404).
    #[error("no such share")]
    ShareNotFound,
    /// Uploaded bytes differ from bytes already written (409).
    #[error("data conflicts with bytes already written")]
    Conflict,
    /// An upload write ends past the allocated size (stock Tahoe: 500; here 416).
    #[error("write ends beyond the allocated size")]
    BeyondAllocation,
    /// The write enabler does not match a share of the slot (401).
    #[error("write enabler does not match")]
    WriteEnablerMismatch,
    /// A mutable write would make the share larger than the maximum (413).
    #[error("mutable share would exceed the maximum size")]
    ShareTooLarge,
    /// The reads of one read-test-write would return more than the store sends in one
    /// answer (413); stock Tahoe would try, and could run out of memory.
    #[error("read vectors ask for more than {limit} bytes")]
    ReadTooLarge {
        /// The most bytes one read-test-write returns.
        limit: u64,
    },
    /// The file at this share's path is of the other kind or not a share container (409).
    #[error("share container at {path} is not a valid {expected} share")]
    WrongContainer {
        /// The file.
        path: PathBuf,
        /// What the request expected.
        expected: &'static str,
    },
    /// The disk has no room (507): a mutable write would eat into the reserved space, or
    /// the filesystem itself ran out of space.
    #[error("not enough disk space")]
    NoSpace,
    /// The disk failed us.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// What we were touching.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl StorageError {
    /// Wraps an I/O error with the path it concerns; a full disk or quota becomes
    /// [`StorageError::NoSpace`], logged with the path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if matches!(
            source.kind(),
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded
        ) {
            tracing::warn!(path = %path.display(), error = %source, "out of disk space");
            return Self::NoSpace;
        }
        Self::Io { path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_named_as_such() {
        for kind in [ErrorKind::StorageFull, ErrorKind::QuotaExceeded] {
            let error = StorageError::io("/x", std::io::Error::from(kind));
            assert!(matches!(error, StorageError::NoSpace), "{kind:?}");
            assert_eq!(error.to_string(), "not enough disk space");
        }
        let other = StorageError::io("/x", std::io::Error::from(ErrorKind::PermissionDenied));
        assert!(matches!(other, StorageError::Io { .. }));
    }
}
