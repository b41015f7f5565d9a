//! Storage indexes and share numbers, as they appear in paths and on disk.

use std::fmt;
use std::str::FromStr;

/// The 16-byte storage index (SI) that names one file's shares on a server.
///
/// Its text form is 26 lowercase base32 characters with a canonical last character; any
/// other spelling does not name a storage index (stock Tahoe answers 404).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageIndex([u8; 16]);

/// Why a text is not a storage index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a storage index is 26 lowercase base32 characters (a-z, 2-7), the last one of a e i m q u y 4"
)]
pub struct StorageIndexError;

impl StorageIndex {
    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The two-character prefix directory Tahoe stores this SI under.
    pub fn shard_prefix(&self) -> String {
        let mut text = self.to_string();
        text.truncate(2);
        text
    }
}

impl FromStr for StorageIndex {
    type Err = StorageIndexError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 26 {
            return Err(StorageIndexError);
        }
        let bytes = super::base32::decode(text).ok_or(StorageIndexError)?;
        bytes.try_into().map(Self).map_err(|_| StorageIndexError)
    }
}

impl fmt::Display for StorageIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::base32::encode(&self.0))
    }
}

impl fmt::Debug for StorageIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageIndex({self})")
    }
}

/// A share number within a storage index.
///
/// Tahoe's erasure coding makes at most 256 shares; the wire allows any uint, and we accept
/// every value a `u16` holds, which stock clients never exceed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareNumber(pub u16);

impl FromStr for ShareNumber {
    type Err = std::num::ParseIntError;

    /// Unsigned decimal, leading zeros allowed (stock Tahoe accepts `001`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            // `u16::from_str` would accept a leading `+`.
            return "x".parse::<u16>().map(ShareNumber);
        }
        text.parse().map(ShareNumber)
    }
}

impl fmt::Display for ShareNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Immutable or mutable: the two kinds of share a server stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShareKind {
    /// Write-once shares uploaded in chunks.
    Immutable,
    /// Shares changed in place by read-test-write.
    Mutable,
}

impl ShareKind {
    /// The word Tahoe uses in paths and reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Immutable => "immutable",
            Self::Mutable => "mutable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_index_parses_only_canonical_text() {
        let si: StorageIndex = "aaaqeayeaudaocajbifqydiob4".parse().unwrap();
        assert_eq!(si.as_bytes()[15], 15);
        assert_eq!(si.shard_prefix(), "aa");
        for bad in [
            "AAAQEAYEAUDAOCAJBIFQYDIOB4",
            "aaaqeayeaudaocajbifqydiob",
            "aaaqeayeaudaocajbifqydiob4a",
            "aaaqeayeaudaocajbifqydiobb",
            "aaaqeayeaudaocajbifqydio/4",
        ] {
            assert!(bad.parse::<StorageIndex>().is_err(), "{bad}");
        }
    }

    /// Inputs tried: every base32 character last. The error message names the ones that
    /// parse (the last character's two low bits are padding), and only those.
    #[test]
    fn the_error_names_the_last_characters_that_parse() {
        let parsing: String = "abcdefghijklmnopqrstuvwxyz234567"
            .chars()
            .filter(|last| {
                format!("{}{last}", "a".repeat(25))
                    .parse::<StorageIndex>()
                    .is_ok()
            })
            .collect();
        assert_eq!(parsing, "aeimquy4");
        let named: String = StorageIndexError
            .to_string()
            .rsplit("the last one of ")
            .next()
            .unwrap()
            .split(' ')
            .collect();
        assert_eq!(named, parsing);
    }

    #[test]
    fn share_numbers_are_plain_decimal() {
        assert_eq!("001".parse::<ShareNumber>().unwrap(), ShareNumber(1));
        assert_eq!("256".parse::<ShareNumber>().unwrap(), ShareNumber(256));
        for bad in ["-1", "+1", "", "1a", "70000"] {
            assert!(bad.parse::<ShareNumber>().is_err(), "{bad}");
        }
    }
}
