//! The CBOR bodies of the GBS endpoints, with encoders and closed-schema decoders.
//!
//! Item limits follow stock Tahoe's CDDL: at most 256 share numbers per allocate and per
//! read-test-write, 30 tests per share and 30 read vectors.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use ciborium::Value;

use super::cbor::{
    array, boolean, bytes, decode_value, encode_value, schema, share_set, share_set_value, text,
    text_key, uint, uint_u16, DecodeError, MapReader,
};
use super::ShareNumber;

const MAX_SHARES: usize = 256;
const MAX_TESTS: usize = 30;
const MAX_READ_VECTORS: usize = 30;

/// A message with a CBOR encoding.
pub trait CborMessage: Sized {
    /// Builds the CBOR value.
    fn to_value(&self) -> Value;

    /// Checks and takes apart a decoded value.
    fn from_value(value: Value) -> Result<Self, DecodeError>;

    /// Encodes to bytes.
    fn to_cbor(&self) -> Vec<u8> {
        encode_value(&self.to_value())
    }

    /// Decodes from bytes, refusing trailing data.
    fn from_cbor(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_value(decode_value(bytes)?)
    }
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (text_key(k), v)).collect())
}

fn uint_value(n: u64) -> Value {
    Value::Integer(n.into())
}

/// `GET /storage/v1/version`. The only message with byte-string keys, and exactly five
/// keys in all: stock clients refuse a server that sends more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// `maximum-immutable-share-size`; stock Tahoe sends the available space.
    pub maximum_immutable_share_size: u64,
    /// `maximum-mutable-share-size`.
    pub maximum_mutable_share_size: u64,
    /// `available-space`.
    pub available_space: u64,
    /// `application-version`, e.g. `gbs/0.1.0`.
    pub application_version: Vec<u8>,
}

const PROTOCOL_V1: &[u8] = b"http://allmydata.org/tahoe/protocols/storage/v1";

fn bstr_key(map: &mut Vec<(Value, Value)>, key: &[u8], what: &str) -> Result<Value, DecodeError> {
    let index = map
        .iter()
        .position(|(k, _)| matches!(k, Value::Bytes(b) if b == key))
        .ok_or_else(|| schema(format!("version is missing {what}")))?;
    Ok(map.swap_remove(index).1)
}

impl CborMessage for VersionInfo {
    fn to_value(&self) -> Value {
        let inner = vec![
            (
                Value::Bytes(b"maximum-immutable-share-size".to_vec()),
                uint_value(self.maximum_immutable_share_size),
            ),
            (
                Value::Bytes(b"maximum-mutable-share-size".to_vec()),
                uint_value(self.maximum_mutable_share_size),
            ),
            (
                Value::Bytes(b"available-space".to_vec()),
                uint_value(self.available_space),
            ),
        ];
        Value::Map(vec![
            (Value::Bytes(PROTOCOL_V1.to_vec()), Value::Map(inner)),
            (
                Value::Bytes(b"application-version".to_vec()),
                Value::Bytes(self.application_version.clone()),
            ),
        ])
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        let Value::Map(mut outer) = value else {
            return Err(schema("version must be a map"));
        };
        let Value::Map(mut inner) = bstr_key(&mut outer, PROTOCOL_V1, "the v1 protocol key")?
        else {
            return Err(schema("version protocol entry must be a map"));
        };
        let application_version = bytes(
            bstr_key(&mut outer, b"application-version", "application-version")?,
            "application-version",
        )?;
        let mut field = |key: &str| -> Result<u64, DecodeError> {
            uint(bstr_key(&mut inner, key.as_bytes(), key)?, key)
        };
        let info = Self {
            maximum_immutable_share_size: field("maximum-immutable-share-size")?,
            maximum_mutable_share_size: field("maximum-mutable-share-size")?,
            available_space: field("available-space")?,
            application_version,
        };
        if !outer.is_empty() || !inner.is_empty() {
            return Err(schema("version has unexpected keys"));
        }
        Ok(info)
    }
}

/// `POST /storage/v1/immutable/{si}` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocateRequest {
    /// Shares to allocate.
    pub share_numbers: BTreeSet<ShareNumber>,
    /// Size of each share in bytes.
    pub allocated_size: u64,
}

impl CborMessage for AllocateRequest {
    fn to_value(&self) -> Value {
        map(vec![
            ("share-numbers", share_set_value(&self.share_numbers)),
            ("allocated-size", uint_value(self.allocated_size)),
        ])
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        let mut m = MapReader::new(value, "allocate request")?;
        let share_numbers = share_set(m.take("share-numbers")?, "share-numbers", MAX_SHARES)?;
        let allocated_size = uint(m.take("allocated-size")?, "allocated-size")?;
        m.finish()?;
        Ok(Self {
            share_numbers,
            allocated_size,
        })
    }
}

/// `POST /storage/v1/immutable/{si}` response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllocateResponse {
    /// Every completed share of the SI, requested or not.
    pub already_have: BTreeSet<ShareNumber>,
    /// Shares newly allocated to this request.
    pub allocated: BTreeSet<ShareNumber>,
}

impl CborMessage for AllocateResponse {
    fn to_value(&self) -> Value {
        map(vec![
            ("already-have", share_set_value(&self.already_have)),
            ("allocated", share_set_value(&self.allocated)),
        ])
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        let mut m = MapReader::new(value, "allocate response")?;
        let already_have = share_set(m.take("already-have")?, "already-have", MAX_SHARES)?;
        let allocated = share_set(m.take("allocated")?, "allocated", MAX_SHARES)?;
        m.finish()?;
        Ok(Self {
            already_have,
            allocated,
        })
    }
}

/// The body of a PATCH answer: ranges of the share still missing, ascending, half-open.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UploadProgress {
    /// Missing byte ranges; empty once the share is complete.
    pub required: Vec<Range<u64>>,
}

impl CborMessage for UploadProgress {
    fn to_value(&self) -> Value {
        let ranges = self
            .required
            .iter()
            .map(|r| {
                map(vec![
                    ("begin", uint_value(r.start)),
                    ("end", uint_value(r.end)),
                ])
            })
            .collect();
        map(vec![("required", Value::Array(ranges))])
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        let mut m = MapReader::new(value, "upload progress")?;
        let required = array(m.take("required")?, "required", usize::MAX)?
            .into_iter()
            .map(|item| {
                let mut r = MapReader::new(item, "required range")?;
                let begin = uint(r.take("begin")?, "begin")?;
                let end = uint(r.take("end")?, "end")?;
                r.finish()?;
                Ok(begin..end)
            })
            .collect::<Result<_, DecodeError>>()?;
        m.finish()?;
        Ok(Self { required })
    }
}

/// `POST .../corrupt` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptionReport {
    /// Free text from the client, at least one character.
    pub reason: String,
}

impl CborMessage for CorruptionReport {
    fn to_value(&self) -> Value {
        map(vec![("reason", Value::Text(self.reason.clone()))])
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        let mut m = MapReader::new(value, "corruption report")?;
        let reason = text(m.take("reason")?, "reason")?;
        m.finish()?;
        if reason.is_empty() {
            return Err(schema("reason must not be empty"));
        }
        Ok(Self { reason })
    }
}

/// One test of read-test-write: the share's bytes at `offset..offset+size`, clamped to its
/// length, must equal `specimen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestVector {
    /// Where the compared bytes start.
    pub offset: u64,
    /// How many bytes to read before clamping.
    pub size: u64,
    /// The expected bytes.
    pub specimen: Vec<u8>,
}

/// One write of read-test-write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteVector {
    /// Where the data goes; gaps before it are zero-filled.
    pub offset: u64,
    /// The bytes to write.
    pub data: Vec<u8>,
}

/// One read of read-test-write, applied to every existing share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadVector {
    /// Where the read starts.
    pub offset: u64,
    /// How many bytes, before clamping to the share's length.
    pub size: u64,
}

/// Tests, writes and an optional new length for one share.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestWriteVectors {
    /// All must pass (for every share) before anything is written.
    pub test: Vec<TestVector>,
    /// Applied in order.
    pub write: Vec<WriteVector>,
    /// `Some(0)` deletes the share; a smaller length truncates; a larger one is ignored.
    pub new_length: Option<u64>,
}

/// `POST /storage/v1/mutable/{si}/read-test-write` request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadTestWriteRequest {
    /// Per-share tests and writes.
    pub test_write_vectors: BTreeMap<ShareNumber, TestWriteVectors>,
    /// Reads taken before any write, from every share that existed.
    pub read_vector: Vec<ReadVector>,
}

impl ReadTestWriteRequest {
    /// One unconditional write of `data` at `offset` into share `shnum`, reading nothing.
    pub fn write(shnum: ShareNumber, offset: u64, data: Vec<u8>) -> Self {
        let vectors = TestWriteVectors {
            test: Vec::new(),
            write: vec![WriteVector { offset, data }],
            new_length: None,
        };
        Self {
            test_write_vectors: BTreeMap::from([(shnum, vectors)]),
            read_vector: Vec::new(),
        }
    }
}

impl CborMessage for ReadTestWriteRequest {
    fn to_value(&self) -> Value {
        let vectors = self
            .test_write_vectors
            .iter()
            .map(|(shnum, v)| {
                let tests = v
                    .test
                    .iter()
                    .map(|t| {
                        map(vec![
                            ("offset", uint_value(t.offset)),
                            ("size", uint_value(t.size)),
                            ("specimen", Value::Bytes(t.specimen.clone())),
                        ])
                    })
                    .collect();
                let writes = v
                    .write
                    .iter()
                    .map(|w| {
                        map(vec![
                            ("offset", uint_value(w.offset)),
                            ("data", Value::Bytes(w.data.clone())),
                        ])
                    })
                    .collect();
                let new_length = v.new_length.map_or(Value::Null, uint_value);
                let entry = map(vec![
                    ("test", Value::Array(tests)),
                    ("write", Value::Array(writes)),
                    ("new-length", new_length),
                ]);
                (Value::Integer(shnum.0.into()), entry)
            })
            .collect();
        let reads = self
            .read_vector
            .iter()
            .map(|r| {
                map(vec![
                    ("offset", uint_value(r.offset)),
                    ("size", uint_value(r.size)),
                ])
            })
            .collect();
        map(vec![
            ("test-write-vectors", Value::Map(vectors)),
            ("read-vector", Value::Array(reads)),
        ])
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        let mut m = MapReader::new(value, "read-test-write request")?;
        let Value::Map(pairs) = m.take("test-write-vectors")? else {
            return Err(schema("test-write-vectors must be a map"));
        };
        if pairs.len() > MAX_SHARES {
            return Err(schema(format!(
                "test-write-vectors has more than {MAX_SHARES} shares"
            )));
        }
        let mut test_write_vectors = BTreeMap::new();
        for (key, entry) in pairs {
            let shnum = ShareNumber(uint_u16(key, "test-write-vectors key")?);
            if test_write_vectors
                .insert(shnum, test_write_vectors_from(entry)?)
                .is_some()
            {
                return Err(schema("test-write-vectors repeats a share number"));
            }
        }
        let read_vector = array(m.take("read-vector")?, "read-vector", MAX_READ_VECTORS)?
            .into_iter()
            .map(|item| {
                let mut r = MapReader::new(item, "read vector")?;
                let offset = uint(r.take("offset")?, "offset")?;
                let size = uint(r.take("size")?, "size")?;
                r.finish()?;
                Ok(ReadVector { offset, size })
            })
            .collect::<Result<_, DecodeError>>()?;
        m.finish()?;
        Ok(Self {
            test_write_vectors,
            read_vector,
        })
    }
}

fn test_write_vectors_from(value: Value) -> Result<TestWriteVectors, DecodeError> {
    let mut m = MapReader::new(value, "test-write vector")?;
    let test = array(m.take("test")?, "test", MAX_TESTS)?
        .into_iter()
        .map(|item| {
            let mut t = MapReader::new(item, "test vector")?;
            let offset = uint(t.take("offset")?, "offset")?;
            let size = uint(t.take("size")?, "size")?;
            let specimen = bytes(t.take("specimen")?, "specimen")?;
            t.finish()?;
            Ok(TestVector {
                offset,
                size,
                specimen,
            })
        })
        .collect::<Result<_, DecodeError>>()?;
    let write = array(m.take("write")?, "write", usize::MAX)?
        .into_iter()
        .map(|item| {
            let mut w = MapReader::new(item, "write vector")?;
            let offset = uint(w.take("offset")?, "offset")?;
            let data = bytes(w.take("data")?, "data")?;
            w.finish()?;
            Ok(WriteVector { offset, data })
        })
        .collect::<Result<_, DecodeError>>()?;
    let new_length = match m.take("new-length")? {
        Value::Null => None,
        other => Some(uint(other, "new-length")?),
    };
    m.finish()?;
    Ok(TestWriteVectors {
        test,
        write,
        new_length,
    })
}

/// `POST /storage/v1/mutable/{si}/read-test-write` response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadTestWriteResponse {
    /// Whether every test passed (and so the writes were applied).
    pub success: bool,
    /// Reads from every share that existed before the request.
    pub data: BTreeMap<ShareNumber, Vec<Vec<u8>>>,
}

impl CborMessage for ReadTestWriteResponse {
    fn to_value(&self) -> Value {
        let data = self
            .data
            .iter()
            .map(|(shnum, reads)| {
                let reads = reads.iter().map(|r| Value::Bytes(r.clone())).collect();
                (Value::Integer(shnum.0.into()), Value::Array(reads))
            })
            .collect();
        map(vec![
            ("success", Value::Bool(self.success)),
            ("data", Value::Map(data)),
        ])
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        let mut m = MapReader::new(value, "read-test-write response")?;
        let success = boolean(m.take("success")?, "success")?;
        let Value::Map(pairs) = m.take("data")? else {
            return Err(schema("data must be a map"));
        };
        let mut data = BTreeMap::new();
        for (key, reads) in pairs {
            let shnum = ShareNumber(uint_u16(key, "data key")?);
            let reads = array(reads, "data entry", usize::MAX)?
                .into_iter()
                .map(|r| bytes(r, "read result"))
                .collect::<Result<_, _>>()?;
            data.insert(shnum, reads);
        }
        m.finish()?;
        Ok(Self { success, data })
    }
}

/// Encodes a set of share numbers as the list endpoints answer it (tag 258).
pub fn share_set_cbor(shares: &BTreeSet<ShareNumber>) -> Vec<u8> {
    encode_value(&share_set_value(shares))
}

/// Decodes a list endpoint's answer.
pub fn share_set_from_cbor(bytes: &[u8]) -> Result<BTreeSet<ShareNumber>, DecodeError> {
    share_set(decode_value(bytes)?, "share set", MAX_SHARES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn allocate_request_matches_stock_client_bytes() {
        // Recorded from the stock Python client: shares {0, 1}, size 10.
        let wire =
            hex("a26d73686172652d6e756d62657273d901028200016e616c6c6f63617465642d73697a650a");
        let request = AllocateRequest::from_cbor(&wire).unwrap();
        assert_eq!(
            request.share_numbers,
            [ShareNumber(0), ShareNumber(1)].into()
        );
        assert_eq!(request.allocated_size, 10);
        assert_eq!(request.to_cbor(), wire);
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // One missing range is the case recorded.
    fn upload_progress_matches_stock_server_bytes() {
        let partial = UploadProgress {
            required: vec![16..48],
        };
        assert_eq!(
            partial.to_cbor(),
            hex("a168726571756972656481a265626567696e1063656e641830")
        );
        assert_eq!(
            UploadProgress::default().to_cbor(),
            hex("a168726571756972656480")
        );
        assert_eq!(
            UploadProgress::from_cbor(&partial.to_cbor()).unwrap(),
            partial
        );
    }

    #[test]
    fn read_test_write_matches_stock_client_bytes() {
        let wire = hex("a272746573742d77726974652d766563746f7273a103a3647465737481a3666f6666736574006473697a65016873706563696d656e4065777269746581a2666f66667365740064646174614568656c6c6f6a6e65772d6c656e677468f66b726561642d766563746f7281a2666f6666736574006473697a6505");
        let request = ReadTestWriteRequest::from_cbor(&wire).unwrap();
        let share = &request.test_write_vectors[&ShareNumber(3)];
        assert_eq!(
            share.test,
            vec![TestVector {
                offset: 0,
                size: 1,
                specimen: vec![]
            }]
        );
        assert_eq!(
            share.write,
            vec![WriteVector {
                offset: 0,
                data: b"hello".to_vec()
            }]
        );
        assert_eq!(share.new_length, None);
        assert_eq!(request.read_vector, vec![ReadVector { offset: 0, size: 5 }]);
        let empty = ReadTestWriteResponse {
            success: true,
            data: BTreeMap::new(),
        };
        assert_eq!(empty.to_cbor(), hex("a26773756363657373f56464617461a0"));
    }

    #[test]
    fn version_uses_byte_string_keys() {
        let info = VersionInfo {
            maximum_immutable_share_size: 1 << 40,
            maximum_mutable_share_size: 69_105_000_000_000_000,
            available_space: 1 << 40,
            application_version: b"tahoe-lafs/1.20.0".to_vec(),
        };
        let wire = info.to_cbor();
        // Starts: map(2), bstr(47) "http://allmydata.org/tahoe/protocols/storage/v1".
        assert_eq!(&wire[..3], &[0xa2, 0x58, 0x2f]);
        assert!(wire.ends_with(b"\x51tahoe-lafs/1.20.0"));
        assert_eq!(VersionInfo::from_cbor(&wire).unwrap(), info);
    }

    #[test]
    fn closed_maps_refuse_unknown_keys_and_text_shnums() {
        let mut extra = AllocateRequest {
            share_numbers: BTreeSet::new(),
            allocated_size: 1,
        }
        .to_value();
        if let Value::Map(entries) = &mut extra {
            entries.push((text_key("extra"), Value::Bool(true)));
        }
        assert!(AllocateRequest::from_value(extra).is_err());
        let text_key_rtw = map(vec![
            (
                "test-write-vectors",
                Value::Map(vec![(text_key("0"), map(vec![]))]),
            ),
            ("read-vector", Value::Array(vec![])),
        ]);
        assert!(ReadTestWriteRequest::from_value(text_key_rtw).is_err());
        let too_many = AllocateRequest {
            share_numbers: (0..257).map(ShareNumber).collect(),
            allocated_size: 1,
        };
        assert!(AllocateRequest::from_cbor(&too_many.to_cbor()).is_err());
    }
}
