//! What the two sides of the plugin send each other, all CBOR: the plugin data attached to a
//! chargeable operation, the plugin's own server routes, and the details of a rejection.
//! The README beside this crate is the specification; this module is its one
//! implementation, used by both sides.

use gbs_plugin_interface::ciborium::Value;
use gbs_plugin_interface::{from_cbor, to_cbor, ShareInfo};
use serde::{Deserialize, Serialize};

/// The plugin's name, as operators configure it and as ZKAPAuthorizer named it.
pub const PLUGIN_NAME: &str = "privatestorageio-zkapauthz-v2";

/// The rejection code for too few usable passes (ZKAPAuthorizer's `MorePassesRequired`).
pub const MORE_PASSES_REQUIRED: &str = "more-passes-required";

/// The server route that takes a pass set too large for a header and answers a handle.
pub const PASSES_ROUTE: &str = "passes";

/// The server route that reports share sizes and lease expiries (ZKAPAuthorizer's
/// `stat_shares`), so the client prices lease renewals and mutable writes as the server will.
pub const STAT_SHARES_ROUTE: &str = "stat-shares";

/// Plugin data: passes inline, or the handle of passes uploaded to [`PASSES_ROUTE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Payment {
    /// The passes themselves, 177 bytes each.
    Passes(Vec<serde_bytes_vec::Bytes>),
    /// A handle from [`PASSES_ROUTE`].
    Handle(serde_bytes_vec::Bytes),
}

impl Payment {
    /// The passes inline.
    pub fn inline(passes: Vec<Vec<u8>>) -> Self {
        Self::Passes(passes.into_iter().map(serde_bytes_vec::Bytes).collect())
    }

    /// Encodes as plugin data.
    pub fn to_cbor(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// Decodes plugin data.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, String> {
        from_cbor(bytes)
    }
}

/// The body of a [`PASSES_ROUTE`] request and of a [`Payment::Passes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassUpload {
    /// The passes.
    pub passes: Vec<serde_bytes_vec::Bytes>,
}

/// The answer of [`PASSES_ROUTE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct HandleIssued {
    /// The handle, 16 random bytes.
    pub handle: serde_bytes_vec::Bytes,
    /// Seconds the handle stays usable; it is also used up by the first operation naming it.
    pub expires_in: u64,
}

/// The body of a [`STAT_SHARES_ROUTE`] request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StatRequest {
    /// The storage index.
    pub storage_index: serde_bytes_vec::Bytes,
}

/// The answer of [`STAT_SHARES_ROUTE`]: every share of the storage index.
pub type StatAnswer = Vec<ShareInfo>;

/// The details of a [`MORE_PASSES_REQUIRED`] rejection. ZKAPAuthorizer's Foolscap error
/// lost these fields on the wire; here they reach the client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ShortfallDetails {
    /// Passes that were valid and not spent before.
    pub valid: u64,
    /// Passes the operation costs.
    pub required: u64,
    /// Indexes (into the passes sent) whose signature check failed.
    pub signature_check_failed: Vec<u64>,
    /// Indexes of passes that were valid but already spent (or held by another request).
    #[serde(default)]
    pub already_spent: Vec<u64>,
}

/// A typed value as a CBOR value (for announcements, rejection details, route answers).
pub fn to_value<T: Serialize>(value: &T) -> Value {
    from_cbor(&to_cbor(value)).unwrap_or(Value::Null)
}

/// A typed value from a CBOR value, if it has that shape.
pub fn from_value<T: serde::de::DeserializeOwned>(value: &Value) -> Option<T> {
    from_cbor(&to_cbor(value)).ok()
}

/// The server's announcement, as ZKAPAuthorizer's (plus the pass value it charges by).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// Where clients redeem vouchers; a client configured with another issuer does not use
    /// this server.
    #[serde(rename = "ristretto-issuer-root-url")]
    pub issuer_url: String,
    /// The issuer's public keys, standard base64.
    #[serde(rename = "ristretto-public-keys")]
    pub public_keys: Vec<String>,
    /// Bytes one pass pays for, for one lease period.
    #[serde(rename = "pass-value", default)]
    pub pass_value: Option<u64>,
}

/// Byte strings that serialize as CBOR byte strings (serde's default is an array of
/// integers).
pub mod serde_bytes_vec {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// A byte string.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Bytes(pub Vec<u8>);

    impl Serialize for Bytes {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(&self.0)
        }
    }

    impl<'de> Deserialize<'de> for Bytes {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Of;
            impl<'de> Visitor<'de> for Of {
                type Value = Bytes;

                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a byte string")
                }

                fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Bytes, E> {
                    Ok(Bytes(v.to_vec()))
                }

                fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                    Ok(Bytes(v))
                }

                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
                    let mut out = Vec::new();
                    while let Some(byte) = seq.next_element::<u8>()? {
                        out.push(byte);
                    }
                    Ok(Bytes(out))
                }
            }
            deserializer.deserialize_bytes(Of)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payments_round_trip_as_byte_strings() {
        let payment = Payment::inline(vec![vec![b'a'; 177], vec![b'b'; 177]]);
        let bytes = payment.to_cbor();
        // {"passes": [bstr(177), ...]}: 0x58 0xb1 starts a 177-byte byte string.
        assert!(bytes.windows(2).any(|w| w == [0x58, 177]));
        assert_eq!(Payment::from_cbor(&bytes).unwrap(), payment);
        let handle = Payment::Handle(serde_bytes_vec::Bytes(vec![7; 16]));
        assert_eq!(Payment::from_cbor(&handle.to_cbor()).unwrap(), handle);
        // Inputs tried: not CBOR, a text where passes go, an unknown variant.
        assert!(Payment::from_cbor(b"\xff").is_err());
        assert!(Payment::from_cbor(&to_cbor(&Value::Map(vec![(
            Value::Text("passes".into()),
            Value::Text("x".into())
        )])))
        .is_err());
        assert!(Payment::from_cbor(&to_cbor(&Value::Map(vec![(
            Value::Text("coins".into()),
            Value::Array(vec![])
        )])))
        .is_err());
    }

    #[test]
    fn shortfall_details_round_trip_through_a_value() {
        let details = ShortfallDetails {
            valid: 2,
            required: 5,
            signature_check_failed: vec![0, 3],
            already_spent: vec![4],
        };
        assert_eq!(from_value(&to_value(&details)), Some(details));
    }
}
