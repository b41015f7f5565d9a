//! The contract between a `gbs` host and its storage plugins.
//!
//! This crate is the only one a plugin author depends on. The hook types arrive with the
//! plugin-system work (issue 4); until then it only fixes the crate's name and version.
#![deny(missing_docs)]

/// The interface version this crate implements, as `(major, minor)`.
pub const INTERFACE_VERSION: (u16, u16) = (1, 0);
