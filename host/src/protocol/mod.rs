//! Wire types of the GBS protocol, shared by the server and the client.
//!
//! Everything here is pure: parsing and encoding only, no I/O. The rules come from
//! `gbs-protocol.md` (stock Tahoe 1.20 as observed on the wire); where a type enforces one of
//! them, its doc comment says which.

mod base32;
mod cbor;
mod messages;
mod nurl;
pub mod paths;
mod range;
mod secrets;
mod storage_index;

pub use base32::{decode as base32_decode, encode as base32_encode};
pub use cbor::DecodeError;
pub use messages::{
    share_set_cbor, share_set_from_cbor, AllocateRequest, AllocateResponse, CborMessage,
    CorruptionReport, ReadTestWriteRequest, ReadTestWriteResponse, ReadVector, TestVector,
    TestWriteVectors, UploadProgress, VersionInfo, WriteVector,
};
pub use nurl::{Nurl, NurlError, NurlScheme, SpkiHash};
pub use range::{ContentRange, RangeError, ReadRange};
pub use secrets::{
    authorization_value, secret_header_line, LeaseCancelSecret, LeaseRenewSecret, LeaseSecrets,
    SecretError, SecretKind, Secrets, Swissnum, UploadSecret, WriteEnabler,
};
pub use storage_index::{ShareKind, ShareNumber, StorageIndex, StorageIndexError};
