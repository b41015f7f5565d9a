//! The byte ranges of PATCH uploads (`Content-Range`) and share reads (`Range`).
//!
//! Both use inclusive ends on the wire; the types here hold half-open `start..end`
//! internally so that arithmetic never needs a `+ 1` that could overflow.

use std::fmt;

/// Why a range header was refused (416 in both directions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unsupported or invalid byte range")]
pub struct RangeError;

/// `Content-Range: bytes FIRST-LAST/TOTAL` of an upload chunk; TOTAL is a number or `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    start: u64,
    /// Exclusive.
    end: u64,
}

impl ContentRange {
    /// The range covering `len` bytes at `offset`; `None` when it would be empty or overflow.
    pub fn new(offset: u64, len: u64) -> Option<Self> {
        (len > 0).then_some(())?;
        Some(Self {
            start: offset,
            end: offset.checked_add(len)?,
        })
    }

    /// Parses the header as stock Tahoe does, but answers 416 (not 500) for `bytes */N`.
    pub fn parse(header: &str) -> Result<Self, RangeError> {
        let rest = header.strip_prefix("bytes ").ok_or(RangeError)?;
        let (span, total) = rest.split_once('/').ok_or(RangeError)?;
        let (first, last) = span.split_once('-').ok_or(RangeError)?;
        let first = parse_decimal(first)?;
        let last = parse_decimal(last)?;
        if first > last {
            return Err(RangeError);
        }
        if total != "*" && first >= parse_decimal(total)? {
            return Err(RangeError);
        }
        let end = last.checked_add(1).ok_or(RangeError)?;
        Ok(Self { start: first, end })
    }

    /// First byte offset.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the last byte offset.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Number of bytes covered.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Never true: a content range covers at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Display for ContentRange {
    /// The header value a client sends, with the `/*` total that stock clients use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bytes {}-{}/*", self.start, self.end - 1)
    }
}

/// A share read's `Range: bytes=FIRST-LAST`: exactly one range, both ends given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRange {
    start: u64,
    /// Exclusive; saturates at `u64::MAX`, which no share reaches.
    end: u64,
}

impl ReadRange {
    /// The range of `len` bytes at `offset`; `None` when empty.
    pub fn new(offset: u64, len: u64) -> Option<Self> {
        (len > 0).then_some(Self {
            start: offset,
            end: offset.saturating_add(len),
        })
    }

    /// Parses a `Range` header value. Suffix, open and multiple ranges are refused, as
    /// stock Tahoe does.
    pub fn parse(header: &str) -> Result<Self, RangeError> {
        let span = header.strip_prefix("bytes=").ok_or(RangeError)?;
        let (first, last) = span.split_once('-').ok_or(RangeError)?;
        let first = parse_decimal(first)?;
        let last = parse_decimal(last)?;
        if first > last {
            return Err(RangeError);
        }
        Ok(Self {
            start: first,
            end: last.saturating_add(1),
        })
    }

    /// First byte offset.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The part of this range inside a share of `length` bytes; `None` when nothing is left,
    /// which the server answers with 204.
    pub fn clamp(&self, length: u64) -> Option<std::ops::Range<u64>> {
        let end = self.end.min(length);
        (self.start < end).then_some(self.start..end)
    }

    /// The `Content-Range` a server sends for a clamped range; the total is always `*`.
    pub fn content_range(served: &std::ops::Range<u64>) -> String {
        format!("bytes {}-{}/*", served.start, served.end - 1)
    }

    /// Parses the `Content-Range` of a 206 answer back into the served range.
    pub fn parse_content_range(header: &str) -> Result<std::ops::Range<u64>, RangeError> {
        let range = ContentRange::parse(header)?;
        Ok(range.start..range.end)
    }
}

impl fmt::Display for ReadRange {
    /// The `Range` header value a client sends.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bytes={}-{}", self.start, self.end - 1)
    }
}

fn parse_decimal(text: &str) -> Result<u64, RangeError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RangeError);
    }
    text.parse().map_err(|_| RangeError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_accepts_what_stock_clients_send() {
        let range = ContentRange::parse("bytes 16-47/*").unwrap();
        assert_eq!((range.start(), range.end(), range.len()), (16, 48, 32));
        assert_eq!(range.to_string(), "bytes 16-47/*");
        assert_eq!(ContentRange::parse("bytes 0-9/10").unwrap().len(), 10);
        // A LAST beyond TOTAL is not checked by stock Tahoe either.
        assert!(ContentRange::parse("bytes 0-20/10").is_ok());
    }

    #[test]
    fn content_range_refusals() {
        for bad in [
            "",
            "bytes */10",
            "Bytes 0-1/*",
            "bytes 2-1/*",
            "bytes 10-11/10",
            "bytes 0-/10",
            "bytes -1/*",
            "bytes 0-18446744073709551615/*",
            "bytes +1-2/*",
            "items 0-1/*",
        ] {
            assert_eq!(ContentRange::parse(bad), Err(RangeError), "{bad:?}");
        }
    }

    #[test]
    fn read_range_clamps_like_stock_tahoe() {
        let range = ReadRange::parse("bytes=10-100").unwrap();
        let served = range.clamp(26).unwrap();
        assert_eq!(served, 10..26);
        assert_eq!(ReadRange::content_range(&served), "bytes 10-25/*");
        assert_eq!(ReadRange::parse("bytes=26-30").unwrap().clamp(26), None);
        assert_eq!(
            ReadRange::parse_content_range("bytes 10-25/*").unwrap(),
            10..26
        );
        for bad in [
            "bytes=-5",
            "bytes=5-",
            "bytes=1-2,4-5",
            "items=1-2",
            "bytes=3-2",
            "bytes 1-2",
        ] {
            assert_eq!(ReadRange::parse(bad), Err(RangeError), "{bad:?}");
        }
    }
}
