//! The `token-v1` scheme both sides speak: the server's announcement and the plugin data a
//! client attaches, a CBOR map `{"token": tstr}`.

use gbs_plugin_interface::ciborium::{self, Value};
use gbs_plugin_interface::to_cbor;

/// The scheme name the server announces and the client looks for.
pub const SCHEME: &str = "token-v1";

const SCHEME_KEY: &str = "scheme";
const TOKEN_KEY: &str = "token";

/// The server's announcement: `{"scheme": "token-v1"}`.
pub(crate) fn announcement() -> Value {
    Value::Map(vec![(
        Value::Text(SCHEME_KEY.into()),
        Value::Text(SCHEME.into()),
    )])
}

/// Whether an announcement is `token-v1`'s: a map whose `scheme` is `"token-v1"`. Extra keys
/// are allowed, so a later server may announce more.
pub(crate) fn is_token_v1(announcement: &Value) -> bool {
    let Some(entries) = announcement.as_map() else {
        return false;
    };
    entries
        .iter()
        .any(|(k, v)| k.as_text() == Some(SCHEME_KEY) && v.as_text() == Some(SCHEME))
}

/// The plugin data carrying a token.
pub(crate) fn plugin_data(token: &str) -> Vec<u8> {
    to_cbor(&Value::Map(vec![(
        Value::Text(TOKEN_KEY.into()),
        Value::Text(token.into()),
    )]))
}

/// Why plugin data from a client is not `{"token": tstr}`. The texts are safe to send back:
/// none contains any part of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataError {
    NotCbor,
    TrailingBytes,
    NotAMap,
    NoToken,
    TokenNotText,
}

impl DataError {
    pub(crate) fn hint(self) -> &'static str {
        match self {
            Self::NotCbor => "the plugin data is not CBOR",
            Self::TrailingBytes => "the plugin data has bytes after its CBOR value",
            Self::NotAMap => "the plugin data must be a CBOR map {\"token\": text}",
            Self::NoToken => "the plugin data map has no \"token\" key",
            Self::TokenNotText => "the \"token\" in the plugin data must be a text string",
        }
    }
}

/// The token in a client's plugin data. Never panics, whatever the bytes; other keys are
/// ignored, and of repeated `token` keys the first counts.
pub(crate) fn token_of(data: &[u8]) -> Result<String, DataError> {
    let mut rest = data;
    // ciborium caps nesting depth, so deeply nested input is an error, not a stack overflow.
    let value: Value = ciborium::from_reader(&mut rest).map_err(|_| DataError::NotCbor)?;
    if !rest.is_empty() {
        return Err(DataError::TrailingBytes);
    }
    let Value::Map(entries) = value else {
        return Err(DataError::NotAMap);
    };
    let (_, token) = entries
        .into_iter()
        .find(|(k, _)| k.as_text() == Some(TOKEN_KEY))
        .ok_or(DataError::NoToken)?;
    match token {
        Value::Text(token) => Ok(token),
        _ => Err(DataError::TokenNotText),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cbor(value: &Value) -> Vec<u8> {
        to_cbor(value)
    }

    fn map(entries: Vec<(Value, Value)>) -> Vec<u8> {
        cbor(&Value::Map(entries))
    }

    #[test]
    fn plugin_data_round_trips() {
        assert_eq!(token_of(&plugin_data("s3cret")), Ok("s3cret".to_owned()));
    }

    #[test]
    fn extra_keys_are_ignored() {
        let data = map(vec![
            (Value::Text("handle".into()), Value::Integer(7.into())),
            (Value::Text("token".into()), Value::Text("t".into())),
        ]);
        assert_eq!(token_of(&data), Ok("t".to_owned()));
    }

    #[test]
    fn malformed_plugin_data_is_named_not_panicked_on() {
        let deep: Vec<u8> = std::iter::repeat_n(0x81, 100_000).chain([0x00]).collect();
        let cases: Vec<(&str, Vec<u8>, DataError)> = vec![
            ("empty", vec![], DataError::NotCbor),
            ("0xff break byte", vec![0xff], DataError::NotCbor),
            ("truncated text", vec![0x65, b'a'], DataError::NotCbor),
            ("100000 nested arrays", deep, DataError::NotCbor),
            (
                "map then garbage",
                [plugin_data("t"), vec![0x00]].concat(),
                DataError::TrailingBytes,
            ),
            (
                "bare text",
                cbor(&Value::Text("t".into())),
                DataError::NotAMap,
            ),
            (
                "array",
                cbor(&Value::Array(vec![Value::Text("t".into())])),
                DataError::NotAMap,
            ),
            ("empty map", map(vec![]), DataError::NoToken),
            (
                "key in bytes",
                map(vec![(
                    Value::Bytes(b"token".to_vec()),
                    Value::Text("t".into()),
                )]),
                DataError::NoToken,
            ),
            (
                "token as bytes",
                map(vec![(
                    Value::Text("token".into()),
                    Value::Bytes(b"t".to_vec()),
                )]),
                DataError::TokenNotText,
            ),
            (
                "token as integer",
                map(vec![(
                    Value::Text("token".into()),
                    Value::Integer(1.into()),
                )]),
                DataError::TokenNotText,
            ),
        ];
        for (name, data, expected) in cases {
            assert_eq!(token_of(&data), Err(expected), "{name}");
        }
    }

    #[test]
    fn only_token_v1_announcements_match() {
        assert!(is_token_v1(&announcement()));
        let with_extra = Value::Map(vec![
            (Value::Text("version".into()), Value::Integer(2.into())),
            (Value::Text("scheme".into()), Value::Text(SCHEME.into())),
        ]);
        assert!(is_token_v1(&with_extra));
        for (name, other) in [
            ("null", Value::Null),
            ("bare scheme text", Value::Text(SCHEME.into())),
            (
                "token-v2",
                Value::Map(vec![(
                    Value::Text("scheme".into()),
                    Value::Text("token-v2".into()),
                )]),
            ),
            (
                "scheme as bytes",
                Value::Map(vec![(
                    Value::Text("scheme".into()),
                    Value::Bytes(SCHEME.into()),
                )]),
            ),
        ] {
            assert!(!is_token_v1(&other), "{name}");
        }
    }
}
