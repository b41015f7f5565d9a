//! [`Operation`] and [`Outcome`] written and read by hand. They cross the boundary on every
//! hook call, and through serde they were most of a cheap plugin's cost: an internally
//! tagged enum buffers every field before it looks at the tag, and `ciborium::from_reader`
//! zeroes a 4 KiB scratch buffer per call (measured in `gbs-plugin-bench`: six decodes were
//! about half of what three sample plugins cost per request).
//!
//! The encoder writes exactly the bytes `to_cbor` writes (tests compare them). The decoder
//! reads only that canonical form: a definite-length map with the tag first, known keys
//! once each, definite-length items, nothing after it. Anything else (other key orders,
//! unknown keys, tags, indefinite lengths, trailing bytes) goes to the serde decoder, so
//! both accept the same inputs and agree on every value (the `plugin_values` fuzz target
//! checks it).

use crate::value::{from_cbor, MutableShareChange, Operation, Outcome, ShareKind};

const UNSIGNED: u8 = 0;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const FALSE: u8 = 0xf4;
const TRUE: u8 = 0xf5;
const NULL: u8 = 0xf6;

impl Operation {
    /// The operation as CBOR: the same bytes as [`crate::to_cbor`], faster.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Writer(Vec::with_capacity(96));
        match self {
            Self::Version => out.tagged("operation", "version", 0),
            Self::Allocate {
                storage_index,
                share_numbers,
                allocated_size,
                lease,
            } => {
                out.tagged("operation", "allocate", 4);
                out.field("storage-index").bytes(storage_index);
                out.field("share-numbers").list(share_numbers);
                out.field("allocated-size").uint(*allocated_size);
                out.field("lease").bytes(lease);
            }
            Self::Upload {
                storage_index,
                share_number,
                offset,
                length,
            } => {
                out.tagged("operation", "upload", 4);
                out.field("storage-index").bytes(storage_index);
                out.field("share-number").uint(u64::from(*share_number));
                out.field("offset").uint(*offset);
                out.field("length").uint(*length);
            }
            Self::Abort {
                storage_index,
                share_number,
            } => {
                out.tagged("operation", "abort", 2);
                out.field("storage-index").bytes(storage_index);
                out.field("share-number").uint(u64::from(*share_number));
            }
            Self::List {
                kind,
                storage_index,
            } => {
                out.tagged("operation", "list", 2);
                out.field("kind").text(kind.name());
                out.field("storage-index").bytes(storage_index);
            }
            Self::Read {
                kind,
                storage_index,
                share_number,
                range,
            } => {
                out.tagged("operation", "read", 4);
                out.field("kind").text(kind.name());
                out.field("storage-index").bytes(storage_index);
                out.field("share-number").uint(u64::from(*share_number));
                match range {
                    None => out.field("range").simple(NULL),
                    Some((offset, length)) => out
                        .field("range")
                        .head(ARRAY, 2)
                        .uint(*offset)
                        .uint(*length),
                };
            }
            Self::AdviseCorrupt {
                kind,
                storage_index,
                share_number,
            } => {
                out.tagged("operation", "advise-corrupt", 3);
                out.field("kind").text(kind.name());
                out.field("storage-index").bytes(storage_index);
                out.field("share-number").uint(u64::from(*share_number));
            }
            Self::Lease {
                storage_index,
                lease,
            } => {
                out.tagged("operation", "lease", 2);
                out.field("storage-index").bytes(storage_index);
                out.field("lease").bytes(lease);
            }
            Self::ReadTestWrite {
                storage_index,
                shares,
                read_vectors,
                lease,
            } => {
                out.tagged("operation", "read-test-write", 4);
                out.field("storage-index").bytes(storage_index);
                out.field("shares").head(ARRAY, shares.len() as u64);
                for share in shares {
                    out.head(MAP, 5);
                    out.field("share-number")
                        .uint(u64::from(share.share_number));
                    out.field("tests").uint(u64::from(share.tests));
                    out.field("write-bytes").uint(share.write_bytes);
                    out.field("write-end").uint(share.write_end);
                    match share.new_length {
                        None => out.field("new-length").simple(NULL),
                        Some(length) => out.field("new-length").uint(length),
                    };
                }
                out.field("read-vectors").uint(u64::from(*read_vectors));
                out.field("lease").bytes(lease);
            }
        }
        out.0
    }

    /// Decodes what [`Operation::to_cbor`] (or [`crate::to_cbor`]) wrote: the same
    /// answer as [`crate::from_cbor`], faster.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, String> {
        match canonical_operation(bytes) {
            Some(operation) => Ok(operation),
            None => from_cbor(bytes),
        }
    }
}

impl Outcome {
    /// The outcome as CBOR: the same bytes as [`crate::to_cbor`], faster.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Writer(Vec::with_capacity(48));
        match self {
            Self::Done => out.tagged("outcome", "done", 0),
            Self::Allocated {
                allocated,
                already_have,
            } => {
                out.tagged("outcome", "allocated", 2);
                out.field("allocated").list(allocated);
                out.field("already-have").list(already_have);
            }
            Self::Uploaded { bytes, complete } => {
                out.tagged("outcome", "uploaded", 2);
                out.field("bytes").uint(*bytes);
                out.field("complete").bool(*complete);
            }
            Self::Read { bytes } => {
                out.tagged("outcome", "read", 1);
                out.field("bytes").uint(*bytes);
            }
            Self::ReadTestWrite { success } => {
                out.tagged("outcome", "read-test-write", 1);
                out.field("success").bool(*success);
            }
        }
        out.0
    }

    /// Decodes what [`Outcome::to_cbor`] (or [`crate::to_cbor`]) wrote: the same answer
    /// as [`crate::from_cbor`], faster.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, String> {
        match canonical_outcome(bytes) {
            Some(outcome) => Ok(outcome),
            None => from_cbor(bytes),
        }
    }
}

impl ShareKind {
    /// Its name on the wire, as serde writes it.
    fn name(self) -> &'static str {
        match self {
            Self::Immutable => "immutable",
            Self::Mutable => "mutable",
        }
    }
}

/// CBOR items as ciborium writes them: every head in its shortest form.
struct Writer(Vec<u8>);

impl Writer {
    fn head(&mut self, major: u8, argument: u64) -> &mut Self {
        let major = major << 5;
        match argument {
            0..=23 => self.0.push(major | argument as u8),
            24..=0xff => self.0.extend_from_slice(&[major | 24, argument as u8]),
            0x100..=0xffff => {
                self.0.push(major | 25);
                self.0.extend_from_slice(&(argument as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.0.push(major | 26);
                self.0.extend_from_slice(&(argument as u32).to_be_bytes());
            }
            _ => {
                self.0.push(major | 27);
                self.0.extend_from_slice(&argument.to_be_bytes());
            }
        }
        self
    }

    fn uint(&mut self, value: u64) -> &mut Self {
        self.head(UNSIGNED, value)
    }

    fn text(&mut self, text: &str) -> &mut Self {
        self.head(TEXT, text.len() as u64);
        self.0.extend_from_slice(text.as_bytes());
        self
    }

    fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.head(BYTES, bytes.len() as u64);
        self.0.extend_from_slice(bytes);
        self
    }

    fn simple(&mut self, byte: u8) -> &mut Self {
        self.0.push(byte);
        self
    }

    fn bool(&mut self, value: bool) -> &mut Self {
        self.simple(if value { TRUE } else { FALSE })
    }

    fn list(&mut self, numbers: &[u16]) -> &mut Self {
        self.head(ARRAY, numbers.len() as u64);
        for &number in numbers {
            self.uint(u64::from(number));
        }
        self
    }

    /// The key of the next map entry; its value follows.
    fn field(&mut self, key: &str) -> &mut Self {
        self.text(key)
    }

    /// A map of `fields` entries after the tag, as serde writes an internally tagged enum.
    fn tagged(&mut self, tag_key: &str, tag: &str, fields: u64) {
        self.head(MAP, fields + 1).field(tag_key).text(tag);
    }
}

/// Reads canonical items; `None` means "not the canonical form", never "invalid".
#[derive(Clone, Copy)]
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, length: u64) -> Option<&'a [u8]> {
        let length = usize::try_from(length).ok()?;
        let (taken, rest) = self.0.split_at_checked(length)?;
        self.0 = rest;
        Some(taken)
    }

    fn head(&mut self) -> Option<(u8, u64)> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        let argument = match first & 0x1f {
            info @ 0..=23 => u64::from(info),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes(self.take(2)?.try_into().ok()?)),
            26 => u64::from(u32::from_be_bytes(self.take(4)?.try_into().ok()?)),
            27 => u64::from_be_bytes(self.take(8)?.try_into().ok()?),
            _ => return None,
        };
        Some((first >> 5, argument))
    }

    fn expect(&mut self, major: u8) -> Option<u64> {
        let (found, argument) = self.head()?;
        (found == major).then_some(argument)
    }

    fn uint<T: TryFrom<u64>>(&mut self) -> Option<T> {
        self.expect(UNSIGNED)?.try_into().ok()
    }

    fn text(&mut self) -> Option<&'a str> {
        let length = self.expect(TEXT)?;
        std::str::from_utf8(self.take(length)?).ok()
    }

    fn fixed<const N: usize>(&mut self) -> Option<[u8; N]> {
        let length = self.expect(BYTES)?;
        self.take(length)?.try_into().ok()
    }

    fn simple(&mut self) -> Option<u8> {
        let (&byte, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(byte)
    }

    fn bool(&mut self) -> Option<bool> {
        match self.simple()? {
            FALSE => Some(false),
            TRUE => Some(true),
            _ => None,
        }
    }

    /// `null` as `None`, anything else as `read` reads it.
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.0.first() == Some(&NULL) {
            self.0 = &self.0[1..];
            Some(None)
        } else {
            read(self).map(Some)
        }
    }

    fn array<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let count = self.expect(ARRAY)?;
        // Every item takes a byte at least: the count cannot make us reserve more.
        let mut items = Vec::with_capacity(usize::try_from(count).ok()?.min(self.0.len()));
        for _ in 0..count {
            items.push(item(self)?);
        }
        Some(items)
    }

    fn kind(&mut self) -> Option<ShareKind> {
        let name = self.text()?;
        [ShareKind::Immutable, ShareKind::Mutable]
            .into_iter()
            .find(|kind| kind.name() == name)
    }

    /// Reads `count` map entries, giving `entry` each key and the reader at its value.
    fn entries(
        &mut self,
        count: u64,
        mut entry: impl FnMut(&'a str, &mut Self) -> Option<()>,
    ) -> Option<()> {
        for _ in 0..count {
            let key = self.text()?;
            entry(key, self)?;
        }
        Some(())
    }

    /// Whether all was read: ciborium's reader would leave trailing bytes unread.
    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }

    /// The tag of a map written by [`Writer::tagged`], and how many entries follow it.
    fn tagged(&mut self, tag_key: &str) -> Option<(&'a str, u64)> {
        let entries = self.expect(MAP)?;
        (entries > 0 && self.text()? == tag_key).then_some(())?;
        Some((self.text()?, entries - 1))
    }
}

/// Sets a field once: a second value for it is not canonical.
fn once<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value?);
            Some(())
        }
    }
}

/// Every field some operation has, as read.
#[derive(Default)]
struct OperationFields {
    kind: Option<ShareKind>,
    storage_index: Option<[u8; 16]>,
    share_number: Option<u16>,
    share_numbers: Option<Vec<u16>>,
    allocated_size: Option<u64>,
    offset: Option<u64>,
    length: Option<u64>,
    range: Option<Option<(u64, u64)>>,
    shares: Option<Vec<MutableShareChange>>,
    read_vectors: Option<u32>,
    lease: Option<[u8; 32]>,
}

fn canonical_operation(bytes: &[u8]) -> Option<Operation> {
    let mut reader = Reader(bytes);
    let (tag, entries) = reader.tagged("operation")?;
    let mut f = OperationFields::default();
    reader.entries(entries, |key, r| match key {
        "kind" => once(&mut f.kind, r.kind()),
        "storage-index" => once(&mut f.storage_index, r.fixed()),
        "share-number" => once(&mut f.share_number, r.uint()),
        "share-numbers" => once(&mut f.share_numbers, r.array(Reader::uint)),
        "allocated-size" => once(&mut f.allocated_size, r.uint()),
        "offset" => once(&mut f.offset, r.uint()),
        "length" => once(&mut f.length, r.uint()),
        "range" => once(
            &mut f.range,
            r.nullable(|r| {
                let pair = r.array(Reader::uint)?;
                match pair[..] {
                    [offset, length] => Some((offset, length)),
                    _ => None,
                }
            }),
        ),
        "shares" => once(&mut f.shares, r.array(share_change)),
        "read-vectors" => once(&mut f.read_vectors, r.uint()),
        "lease" => once(&mut f.lease, r.fixed()),
        _ => None,
    })?;
    reader.end()?;
    // Each entry filled a different field: with the variant's fields all present, the
    // count says no other field was there.
    let (operation, fields) = match tag {
        "version" => (Operation::Version, 0),
        "allocate" => (
            Operation::Allocate {
                storage_index: f.storage_index?,
                share_numbers: f.share_numbers?,
                allocated_size: f.allocated_size?,
                lease: f.lease?,
            },
            4,
        ),
        "upload" => (
            Operation::Upload {
                storage_index: f.storage_index?,
                share_number: f.share_number?,
                offset: f.offset?,
                length: f.length?,
            },
            4,
        ),
        "abort" => (
            Operation::Abort {
                storage_index: f.storage_index?,
                share_number: f.share_number?,
            },
            2,
        ),
        "list" => (
            Operation::List {
                kind: f.kind?,
                storage_index: f.storage_index?,
            },
            2,
        ),
        "read" => (
            Operation::Read {
                kind: f.kind?,
                storage_index: f.storage_index?,
                share_number: f.share_number?,
                range: f.range?,
            },
            4,
        ),
        "advise-corrupt" => (
            Operation::AdviseCorrupt {
                kind: f.kind?,
                storage_index: f.storage_index?,
                share_number: f.share_number?,
            },
            3,
        ),
        "lease" => (
            Operation::Lease {
                storage_index: f.storage_index?,
                lease: f.lease?,
            },
            2,
        ),
        "read-test-write" => (
            Operation::ReadTestWrite {
                storage_index: f.storage_index?,
                shares: f.shares?,
                read_vectors: f.read_vectors?,
                lease: f.lease?,
            },
            4,
        ),
        _ => return None,
    };
    (entries == fields).then_some(operation)
}

fn share_change(reader: &mut Reader<'_>) -> Option<MutableShareChange> {
    let entries = reader.expect(MAP)?;
    let (mut share_number, mut tests, mut write_bytes, mut write_end, mut new_length) =
        (None, None, None, None, None);
    reader.entries(entries, |key, r| match key {
        "share-number" => once(&mut share_number, r.uint()),
        "tests" => once(&mut tests, r.uint()),
        "write-bytes" => once(&mut write_bytes, r.uint()),
        "write-end" => once(&mut write_end, r.uint()),
        "new-length" => once(&mut new_length, r.nullable(Reader::uint)),
        _ => None,
    })?;
    // Five distinct fields read, all present: nothing else was there.
    (entries == 5).then_some(())?;
    Some(MutableShareChange {
        share_number: share_number?,
        tests: tests?,
        write_bytes: write_bytes?,
        write_end: write_end?,
        new_length: new_length?,
    })
}

fn canonical_outcome(bytes: &[u8]) -> Option<Outcome> {
    let mut reader = Reader(bytes);
    let (tag, entries) = reader.tagged("outcome")?;
    let (mut allocated, mut already_have, mut sent, mut complete, mut success) =
        (None, None, None, None, None);
    reader.entries(entries, |key, r| match key {
        "allocated" => once(&mut allocated, r.array(Reader::uint)),
        "already-have" => once(&mut already_have, r.array(Reader::uint)),
        "bytes" => once(&mut sent, r.uint()),
        "complete" => once(&mut complete, r.bool()),
        "success" => once(&mut success, r.bool()),
        _ => None,
    })?;
    reader.end()?;
    let (outcome, fields) = match tag {
        "done" => (Outcome::Done, 0),
        "allocated" => (
            Outcome::Allocated {
                allocated: allocated?,
                already_have: already_have?,
            },
            2,
        ),
        "uploaded" => (
            Outcome::Uploaded {
                bytes: sent?,
                complete: complete?,
            },
            2,
        ),
        "read" => (Outcome::Read { bytes: sent? }, 1),
        "read-test-write" => (Outcome::ReadTestWrite { success: success? }, 1),
        _ => return None,
    };
    (entries == fields).then_some(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::to_cbor;

    /// Numbers at every boundary of CBOR's head sizes.
    const EDGES: [u64; 10] = [
        0,
        23,
        24,
        255,
        256,
        65_535,
        65_536,
        u32::MAX as u64,
        u32::MAX as u64 + 1,
        u64::MAX,
    ];

    fn operations() -> Vec<Operation> {
        let mut all = vec![Operation::Version];
        for (i, &n) in EDGES.iter().enumerate() {
            let (si, lease) = ([i as u8; 16], [n as u8; 32]);
            let share = n as u16;
            let kind = if i % 2 == 0 {
                ShareKind::Immutable
            } else {
                ShareKind::Mutable
            };
            all.extend([
                Operation::Allocate {
                    storage_index: si,
                    share_numbers: (0..i as u16).map(|s| s * 300).collect(),
                    allocated_size: n,
                    lease,
                },
                Operation::Upload {
                    storage_index: si,
                    share_number: share,
                    offset: n,
                    length: n / 3,
                },
                Operation::Abort {
                    storage_index: si,
                    share_number: share,
                },
                Operation::List {
                    kind,
                    storage_index: si,
                },
                Operation::Read {
                    kind,
                    storage_index: si,
                    share_number: share,
                    range: (i % 3 != 0).then_some((n, n / 7)),
                },
                Operation::AdviseCorrupt {
                    kind,
                    storage_index: si,
                    share_number: share,
                },
                Operation::Lease {
                    storage_index: si,
                    lease,
                },
                Operation::ReadTestWrite {
                    storage_index: si,
                    shares: (0..i)
                        .map(|s| MutableShareChange {
                            share_number: s as u16,
                            tests: n as u32,
                            write_bytes: n,
                            write_end: n / 2,
                            new_length: (s % 2 == 1).then_some(n),
                        })
                        .collect(),
                    read_vectors: n as u32,
                    lease,
                },
            ]);
        }
        all
    }

    fn outcomes() -> Vec<Outcome> {
        let mut all = vec![Outcome::Done];
        for (i, &n) in EDGES.iter().enumerate() {
            all.extend([
                Outcome::Allocated {
                    allocated: (0..i as u16).collect(),
                    already_have: vec![n as u16; i % 3],
                },
                Outcome::Uploaded {
                    bytes: n,
                    complete: i % 2 == 0,
                },
                Outcome::Read { bytes: n },
                Outcome::ReadTestWrite {
                    success: i % 2 == 1,
                },
            ]);
        }
        all
    }

    #[test]
    fn the_hand_written_bytes_are_serdes_and_read_back_without_it() {
        for operation in operations() {
            let bytes = operation.to_cbor();
            assert_eq!(bytes, to_cbor(&operation), "{operation:?}");
            assert_eq!(canonical_operation(&bytes), Some(operation));
        }
        for outcome in outcomes() {
            let bytes = outcome.to_cbor();
            assert_eq!(bytes, to_cbor(&outcome), "{outcome:?}");
            assert_eq!(canonical_outcome(&bytes), Some(outcome));
        }
    }

    /// A map of text keys to values, in the order given.
    fn map(entries: &[(&str, ciborium::Value)]) -> Vec<u8> {
        let entries = entries
            .iter()
            .map(|(k, v)| (ciborium::Value::Text((*k).into()), v.clone()))
            .collect();
        to_cbor(&ciborium::Value::Map(entries))
    }

    #[test]
    fn other_forms_are_left_to_serde_which_decides_the_same() {
        use ciborium::Value::{Bytes, Integer, Text};
        let si = || Bytes(vec![1; 16]);
        let list = Operation::List {
            kind: ShareKind::Mutable,
            storage_index: [1; 16],
        };
        // Each is valid for serde but not the canonical form: the answer must not change.
        let valid = [
            // The tag last.
            map(&[
                ("kind", Text("mutable".into())),
                ("storage-index", si()),
                ("operation", Text("list".into())),
            ]),
            // A key this version does not know.
            map(&[
                ("operation", Text("list".into())),
                ("kind", Text("mutable".into())),
                ("storage-index", si()),
                ("added-in-1.9", Integer(1.into())),
            ]),
            // A key another operation has.
            map(&[
                ("operation", Text("list".into())),
                ("kind", Text("mutable".into())),
                ("offset", Integer(1.into())),
                ("storage-index", si()),
            ]),
            // Trailing bytes, which ciborium's reader leaves unread.
            [list.to_cbor(), vec![0]].concat(),
        ];
        for bytes in valid {
            assert_eq!(canonical_operation(&bytes), None, "{bytes:02x?}");
            assert_eq!(Operation::from_cbor(&bytes), Ok(list.clone()));
        }
        // Each is invalid: the fast path declines and serde explains.
        let invalid = [
            map(&[("operation", Text("list".into())), ("storage-index", si())]),
            map(&[
                ("operation", Text("list".into())),
                ("kind", Text("mutable".into())),
                ("storage-index", Bytes(vec![1; 15])),
            ]),
            map(&[
                ("operation", Text("abort".into())),
                ("storage-index", si()),
                ("share-number", Integer(65_536.into())),
            ]),
            map(&[("operation", Text("teleport".into()))]),
            map(&[
                ("operation", Text("list".into())),
                ("kind", Text("mutable".into())),
                ("kind", Text("mutable".into())),
                ("storage-index", si()),
            ]),
            vec![0xa1],
            Vec::new(),
        ];
        for bytes in invalid {
            assert_eq!(canonical_operation(&bytes), None, "{bytes:02x?}");
            assert!(Operation::from_cbor(&bytes).is_err(), "{bytes:02x?}");
        }
        let outcome = map(&[
            ("bytes", Integer(5.into())),
            ("outcome", Text("read".into())),
        ]);
        assert_eq!(canonical_outcome(&outcome), None);
        assert_eq!(Outcome::from_cbor(&outcome), Ok(Outcome::Read { bytes: 5 }));
        let wrong = map(&[
            ("outcome", Text("read".into())),
            ("bytes", Text("5".into())),
        ]);
        assert!(Outcome::from_cbor(&wrong).is_err());
    }

    #[test]
    fn a_huge_array_count_reserves_nothing_for_it() {
        // "share-numbers" claims 2^64-1 items and holds none.
        let mut bytes = Writer(Vec::new());
        bytes.tagged("operation", "allocate", 4);
        bytes.field("storage-index").bytes(&[0; 16]);
        bytes.field("share-numbers").head(ARRAY, u64::MAX);
        assert_eq!(canonical_operation(&bytes.0), None);
        assert!(Operation::from_cbor(&bytes.0).is_err());
    }
}
