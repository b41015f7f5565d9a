//! Small CBOR reading helpers over `ciborium::Value`, enforcing the protocol's rules:
//! closed maps, uints below 2^64, tag-258 sets, bounded item counts.

use std::collections::BTreeSet;

use ciborium::Value;

/// The CBOR tag stock Tahoe uses for sets.
pub(crate) const SET_TAG: u64 = 258;

/// Why a CBOR body was refused. Messages name the field, never the data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not well-formed CBOR, or nested too deeply.
    #[error("body is not valid CBOR")]
    NotCbor,
    /// Something follows the top-level item.
    #[error("unexpected bytes after the CBOR item")]
    TrailingBytes,
    /// Well-formed CBOR of the wrong shape.
    #[error("{0}")]
    Schema(String),
}

pub(crate) fn schema(message: impl Into<String>) -> DecodeError {
    DecodeError::Schema(message.into())
}

/// The most CBOR data items a message may hold. Decoded, an item costs about 80 bytes
/// however few it takes on the wire (an empty write vector is five items in 15 bytes): a
/// 63 MiB read-test-write body of empty writes took 1.8 GB to decode. Stock Tahoe's largest
/// messages (a mutable write of a share of many segments) hold a few thousand.
pub(crate) const MAX_ITEMS: usize = 1 << 17;

/// Decodes exactly one CBOR item from `bytes`, refusing one of more than [`MAX_ITEMS`]
/// items before anything is decoded.
pub(crate) fn decode_value(bytes: &[u8]) -> Result<Value, DecodeError> {
    if items_at_least(bytes, MAX_ITEMS + 1) > MAX_ITEMS {
        return Err(schema(format!("body has more than {MAX_ITEMS} CBOR items")));
    }
    let mut reader = bytes;
    let value: Value = ciborium::from_reader(&mut reader).map_err(|_| DecodeError::NotCbor)?;
    if !reader.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(value)
}

/// How many CBOR data items (string chunks and break markers included) `bytes` holds, up
/// to `enough`: one pass over the item heads, skipping string contents, with no nesting to
/// follow. Stops early, with the count so far, at anything malformed, which the decoder
/// then refuses.
fn items_at_least(bytes: &[u8], enough: usize) -> usize {
    let mut at = 0;
    let mut items = 0;
    while items < enough {
        let Some(&initial) = bytes.get(at) else { break };
        let (major, info) = (initial >> 5, initial & 0x1f);
        let argument_len = match info {
            0..=23 | 31 => 0,
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => break,
        };
        let Some(argument) = bytes.get(at + 1..at + 1 + argument_len) else {
            break;
        };
        at += 1 + argument_len;
        items += 1;
        // Byte and text strings of a given length: their contents are not items.
        if matches!(major, 2 | 3) && info != 31 {
            let len = if argument_len == 0 {
                u64::from(info)
            } else {
                argument.iter().fold(0u64, |n, b| n << 8 | u64::from(*b))
            };
            match usize::try_from(len)
                .ok()
                .and_then(|len| at.checked_add(len))
            {
                Some(end) if end <= bytes.len() => at = end,
                _ => break,
            }
        }
    }
    items
}

/// Encodes a value; writing into a `Vec` cannot fail.
pub(crate) fn encode_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec is infallible; the only other error is for values that cannot be
    // encoded, which no message in this module builds.
    let _ = ciborium::into_writer(value, &mut out);
    out
}

/// A map with text keys being taken apart field by field; [`MapReader::finish`] refuses
/// whatever is left, since the protocol's maps are closed.
pub(crate) struct MapReader {
    what: &'static str,
    entries: Vec<(String, Value)>,
}

impl MapReader {
    /// Starts reading `value`, which must be a map with text keys and no repeated key.
    pub(crate) fn new(value: Value, what: &'static str) -> Result<Self, DecodeError> {
        let Value::Map(pairs) = value else {
            return Err(schema(format!("{what} must be a map")));
        };
        let mut entries: Vec<(String, Value)> = Vec::with_capacity(pairs.len());
        for (key, item) in pairs {
            let Value::Text(key) = key else {
                return Err(schema(format!("{what} keys must be text")));
            };
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(schema(format!("{what} repeats key {key:?}")));
            }
            entries.push((key, item));
        }
        Ok(Self { what, entries })
    }

    /// Removes and returns a required field.
    pub(crate) fn take(&mut self, key: &str) -> Result<Value, DecodeError> {
        let index = self
            .entries
            .iter()
            .position(|(k, _)| k == key)
            .ok_or_else(|| schema(format!("{} is missing key {key:?}", self.what)))?;
        Ok(self.entries.swap_remove(index).1)
    }

    /// Succeeds only when every field was taken.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.entries.first() {
            None => Ok(()),
            Some((key, _)) => Err(schema(format!("{} has unexpected key {key:?}", self.what))),
        }
    }
}

pub(crate) fn uint(value: Value, what: &str) -> Result<u64, DecodeError> {
    match value {
        Value::Integer(i) => {
            u64::try_from(i).map_err(|_| schema(format!("{what} must be a uint below 2^64")))
        }
        _ => Err(schema(format!("{what} must be a uint below 2^64"))),
    }
}

pub(crate) fn uint_u16(value: Value, what: &str) -> Result<u16, DecodeError> {
    u16::try_from(uint(value, what)?).map_err(|_| schema(format!("{what} is out of range")))
}

pub(crate) fn bytes(value: Value, what: &str) -> Result<Vec<u8>, DecodeError> {
    match value {
        Value::Bytes(b) => Ok(b),
        _ => Err(schema(format!("{what} must be a byte string"))),
    }
}

pub(crate) fn text(value: Value, what: &str) -> Result<String, DecodeError> {
    match value {
        Value::Text(t) => Ok(t),
        _ => Err(schema(format!("{what} must be a text string"))),
    }
}

pub(crate) fn boolean(value: Value, what: &str) -> Result<bool, DecodeError> {
    match value {
        Value::Bool(b) => Ok(b),
        _ => Err(schema(format!("{what} must be a boolean"))),
    }
}

/// An array of at most `max` items.
pub(crate) fn array(value: Value, what: &str, max: usize) -> Result<Vec<Value>, DecodeError> {
    match value {
        Value::Array(items) if items.len() <= max => Ok(items),
        Value::Array(_) => Err(schema(format!("{what} has more than {max} items"))),
        _ => Err(schema(format!("{what} must be an array"))),
    }
}

/// A tag-258 set of share numbers, at most `max` items.
pub(crate) fn share_set(
    value: Value,
    what: &str,
    max: usize,
) -> Result<BTreeSet<super::ShareNumber>, DecodeError> {
    match value {
        Value::Tag(SET_TAG, inner) => array(*inner, what, max)?
            .into_iter()
            .map(|item| uint_u16(item, what).map(super::ShareNumber))
            .collect(),
        _ => Err(schema(format!("{what} must be a set (CBOR tag 258)"))),
    }
}

/// Encodes share numbers as a tag-258 set.
pub(crate) fn share_set_value(shares: &BTreeSet<super::ShareNumber>) -> Value {
    let items = shares.iter().map(|s| Value::Integer(s.0.into())).collect();
    Value::Tag(SET_TAG, Box::new(Value::Array(items)))
}

pub(crate) fn text_key(key: &str) -> Value {
    Value::Text(key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_trailing_bytes_and_garbage() {
        assert_eq!(decode_value(&[0x01, 0x02]), Err(DecodeError::TrailingBytes));
        assert_eq!(decode_value(&[0xff]), Err(DecodeError::NotCbor));
        assert_eq!(decode_value(&[]), Err(DecodeError::NotCbor));
        // 10,000 nested arrays: refused by the recursion limit, not by a stack overflow.
        assert_eq!(decode_value(&[0x81; 10_000]), Err(DecodeError::NotCbor));
    }

    /// Inputs tried: arrays of `MAX_ITEMS - 1` and `MAX_ITEMS` small integers (with the
    /// array's own head, `MAX_ITEMS` and one more items); strings, whose contents are not
    /// counted; an indefinite-length string in chunks; a head cut short.
    #[test]
    fn bodies_of_too_many_items_are_refused_before_decoding() {
        let array_of = |n: usize| {
            let mut body = vec![0x9a];
            body.extend_from_slice(&u32::try_from(n).unwrap().to_be_bytes());
            body.resize(body.len() + n, 0x01);
            body
        };
        let fits = decode_value(&array_of(MAX_ITEMS - 1)).expect("MAX_ITEMS items decode");
        assert!(matches!(fits, Value::Array(items) if items.len() == MAX_ITEMS - 1));
        let error = decode_value(&array_of(MAX_ITEMS)).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("body has more than {MAX_ITEMS} CBOR items")
        );
        // A 1 MiB byte string of 0x01 bytes is one item (plus its array's head).
        let mut one_string = vec![0x81, 0x5a, 0x00, 0x10, 0x00, 0x00];
        one_string.resize(one_string.len() + (1 << 20), 0x01);
        assert_eq!(items_at_least(&one_string, usize::MAX), 2);
        assert!(decode_value(&one_string).is_ok());
        // An indefinite-length text string of two chunks, then its break: four items.
        assert_eq!(
            items_at_least(&[0x7f, 0x62, b'a', b'b', 0x61, b'c', 0xff], usize::MAX),
            4
        );
        // A head whose argument is cut short is left to the decoder to refuse.
        assert_eq!(items_at_least(&[0x01, 0x19, 0x01], usize::MAX), 1);
        assert_eq!(decode_value(&[0x19, 0x01]), Err(DecodeError::NotCbor));
    }

    #[test]
    fn sets_need_the_tag() {
        let plain = Value::Array(vec![Value::Integer(1.into())]);
        assert!(share_set(plain, "s", 256).is_err());
        let tagged = share_set_value(&[super::super::ShareNumber(3)].into());
        assert_eq!(encode_value(&tagged), [0xd9, 0x01, 0x02, 0x81, 0x03]);
    }

    #[test]
    fn bignums_are_not_uints() {
        // Tag 2 wraps 2^64 as a bignum; stock Tahoe answers 500 for it, we refuse it cleanly.
        let big = decode_value(&[0xc2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert!(uint(big, "x").is_err());
    }
}
