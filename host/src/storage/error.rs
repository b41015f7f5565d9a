//! What can go wrong in the store. The server maps each variant to one HTTP status.

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
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
