//! The swissnum and the per-request secrets of `X-Tahoe-Authorization`.
//!
//! None of these types prints its value: `Debug` shows a short hash so that two values can be
//! told apart in logs without revealing either.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Formats a secret for `Debug`: its kind and the first bytes of its SHA-256.
fn redacted(f: &mut fmt::Formatter<'_>, kind: &str, secret: &[u8]) -> fmt::Result {
    let digest = Sha256::digest(secret);
    write!(
        f,
        "{kind}(sha256:{:02x}{:02x}{:02x}{:02x}…)",
        digest[0], digest[1], digest[2], digest[3]
    )
}

/// The node's swissnum: the shared secret in the NURL's path that every request presents.
#[derive(Clone, PartialEq, Eq)]
pub struct Swissnum(String);

impl Swissnum {
    /// Wraps the swissnum text exactly as it appears in the NURL.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// Makes a fresh swissnum in stock Tahoe's form: 160 random bits as 32 base32 characters.
    pub fn generate() -> Self {
        Self(super::base32::encode(&rand::random::<[u8; 20]>()))
    }

    /// The text, for the NURL and the node's private file.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether an `Authorization` header value presents this swissnum, compared in constant
    /// time over the whole header as stock Tahoe does.
    pub fn authorizes(&self, header: &[u8]) -> bool {
        authorization_value(self).as_bytes().ct_eq(header).into()
    }
}

impl fmt::Debug for Swissnum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        redacted(f, "Swissnum", self.0.as_bytes())
    }
}

/// The `Authorization` header value for a swissnum: `Tahoe-LAFS ` and the standard padded
/// base64 of the swissnum's ASCII text (not of its base32-decoded bytes).
pub fn authorization_value(swissnum: &Swissnum) -> String {
    format!("Tahoe-LAFS {}", STANDARD.encode(swissnum.0.as_bytes()))
}

macro_rules! fixed_secret {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps the 32 raw bytes.
            pub const fn new(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The raw bytes, for storage and hashing.
            pub const fn expose(&self) -> &[u8; 32] {
                &self.0
            }

            /// Constant-time comparison with raw bytes.
            pub fn matches(&self, other: &[u8]) -> bool {
                self.0.ct_eq(other).into()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                redacted(f, stringify!($name), &self.0)
            }
        }
    };
}

fixed_secret!(
    /// The secret that identifies a lease and lets its holder renew it (32 bytes).
    LeaseRenewSecret
);
fixed_secret!(
    /// The secret stored with a lease for a cancel operation GBS does not offer (32 bytes).
    LeaseCancelSecret
);

macro_rules! variable_secret {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(Vec<u8>);

        impl $name {
            /// Wraps raw bytes; `None` for an empty secret, which the protocol refuses.
            pub fn new(bytes: Vec<u8>) -> Option<Self> {
                (!bytes.is_empty()).then_some(Self(bytes))
            }

            /// The raw bytes.
            pub fn expose(&self) -> &[u8] {
                &self.0
            }

            /// Constant-time comparison with another secret of the same kind.
            pub fn matches(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0).into()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                redacted(f, stringify!($name), &self.0)
            }
        }
    };
}

variable_secret!(
    /// The secret binding an in-progress immutable upload to the client that allocated it.
    UploadSecret
);
variable_secret!(
    /// The secret that guards writes to a mutable slot. Only 32-byte values can match
    /// later, since the container stores exactly 32 bytes.
    WriteEnabler
);

/// The pair of lease secrets sent with allocate, lease and read-test-write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseSecrets {
    /// Identifies and renews the lease.
    pub renew: LeaseRenewSecret,
    /// Stored only.
    pub cancel: LeaseCancelSecret,
}

/// The names that may appear in `X-Tahoe-Authorization`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecretKind {
    /// `lease-renew-secret`
    LeaseRenew,
    /// `lease-cancel-secret`
    LeaseCancel,
    /// `upload-secret`
    Upload,
    /// `write-enabler`
    WriteEnabler,
}

impl SecretKind {
    /// The name on the wire (case-sensitive).
    pub const fn name(self) -> &'static str {
        match self {
            Self::LeaseRenew => "lease-renew-secret",
            Self::LeaseCancel => "lease-cancel-secret",
            Self::Upload => "upload-secret",
            Self::WriteEnabler => "write-enabler",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            Self::LeaseRenew,
            Self::LeaseCancel,
            Self::Upload,
            Self::WriteEnabler,
        ]
        .into_iter()
        .find(|kind| kind.name() == name)
    }
}

/// Why the `X-Tahoe-Authorization` headers of a request were refused. Messages never
/// contain the values that were sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// A header line that is not `<name> <base64>` with a known name.
    #[error("malformed X-Tahoe-Authorization header")]
    Malformed,
    /// A value that is not base64 or decodes to nothing.
    #[error("X-Tahoe-Authorization value for {} is not valid base64", .0.name())]
    Undecodable(SecretKind),
    /// A lease secret that is not exactly 32 bytes.
    #[error("Lease secrets must be 32 bytes long")]
    WrongLength(SecretKind),
    /// The set of names differs from what the endpoint takes.
    #[error("expected X-Tahoe-Authorization secrets [{}], got [{}]", names(.expected), names(.got))]
    WrongSet {
        /// What the endpoint takes.
        expected: Vec<SecretKind>,
        /// What the request carried.
        got: Vec<SecretKind>,
    },
}

fn names(kinds: &[SecretKind]) -> String {
    kinds
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The decoded secrets of one request, checked against the set its endpoint takes.
#[derive(Default)]
pub struct Secrets(BTreeMap<SecretKind, Vec<u8>>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Secrets {
    /// Parses every `X-Tahoe-Authorization` header line and checks that the names present
    /// are exactly `expected`. Repeated names are allowed and the last one wins, as in
    /// stock Tahoe.
    pub fn parse<'a>(
        lines: impl IntoIterator<Item = &'a [u8]>,
        expected: &[SecretKind],
    ) -> Result<Self, SecretError> {
        let mut found = BTreeMap::new();
        for line in lines {
            let line = std::str::from_utf8(line)
                .map_err(|_| SecretError::Malformed)?
                .trim();
            let (name, value) = line.split_once(' ').ok_or(SecretError::Malformed)?;
            let kind = SecretKind::from_name(name).ok_or(SecretError::Malformed)?;
            let bytes = decode_lenient_base64(value).ok_or(SecretError::Undecodable(kind))?;
            if matches!(kind, SecretKind::LeaseRenew | SecretKind::LeaseCancel) && bytes.len() != 32
            {
                return Err(SecretError::WrongLength(kind));
            }
            found.insert(kind, bytes);
        }
        let mut wanted = expected.to_vec();
        wanted.sort();
        if !found.keys().copied().eq(wanted.iter().copied()) {
            return Err(SecretError::WrongSet {
                expected: wanted,
                got: found.into_keys().collect(),
            });
        }
        Ok(Self(found))
    }

    fn fixed(&self, kind: SecretKind) -> [u8; 32] {
        self.0
            .get(&kind)
            .and_then(|v| v.as_slice().try_into().ok())
            .unwrap_or([0; 32])
    }

    /// The lease secrets. Only meaningful when they were among the expected names.
    pub fn lease(&self) -> LeaseSecrets {
        LeaseSecrets {
            renew: LeaseRenewSecret(self.fixed(SecretKind::LeaseRenew)),
            cancel: LeaseCancelSecret(self.fixed(SecretKind::LeaseCancel)),
        }
    }

    /// The upload secret, when it was among the expected names.
    pub fn upload(&self) -> Option<UploadSecret> {
        self.0
            .get(&SecretKind::Upload)
            .cloned()
            .and_then(UploadSecret::new)
    }

    /// The write enabler, when it was among the expected names.
    pub fn write_enabler(&self) -> Option<WriteEnabler> {
        self.0
            .get(&SecretKind::WriteEnabler)
            .cloned()
            .and_then(WriteEnabler::new)
    }
}

/// Encodes one header line for a secret, as clients send it.
pub fn secret_header_line(kind: SecretKind, value: &[u8]) -> String {
    format!("{} {}", kind.name(), STANDARD.encode(value))
}

/// Decodes base64 the way Python's lenient `b64decode` does: characters outside the
/// alphabet are dropped, then the padding must be right. An empty result is refused.
fn decode_lenient_base64(text: &str) -> Option<Vec<u8>> {
    let kept: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
        .collect();
    STANDARD.decode(kept).ok().filter(|bytes| !bytes.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: [SecretKind; 2] = [SecretKind::LeaseRenew, SecretKind::LeaseCancel];

    fn line(kind: SecretKind, value: &[u8]) -> Vec<u8> {
        secret_header_line(kind, value).into_bytes()
    }

    #[test]
    fn authorization_is_base64_of_the_swissnum_text() {
        let swissnum = Swissnum::new("abcdefghijklmnopqrstuvwxyz234567");
        let value = authorization_value(&swissnum);
        assert_eq!(
            value,
            "Tahoe-LAFS YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoyMzQ1Njc="
        );
        assert!(swissnum.authorizes(value.as_bytes()));
        assert!(!swissnum.authorizes(b"Tahoe-LAFS YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoyMzQ1Njc"));
        assert!(!swissnum.authorizes(b"tahoe-lafs YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoyMzQ1Njc="));
    }

    #[test]
    fn parses_exactly_the_expected_set() {
        let lines = [
            line(SecretKind::LeaseRenew, &[1; 32]),
            line(SecretKind::LeaseCancel, &[2; 32]),
        ];
        let secrets = Secrets::parse(lines.iter().map(Vec::as_slice), &LEASE).unwrap();
        assert_eq!(secrets.lease().renew.expose(), &[1; 32]);
        assert_eq!(secrets.lease().cancel.expose(), &[2; 32]);
        let err = Secrets::parse(lines.iter().map(Vec::as_slice), &[SecretKind::LeaseRenew]);
        assert!(matches!(err, Err(SecretError::WrongSet { .. })));
        let none: [&[u8]; 0] = [];
        assert!(Secrets::parse(none, &[]).is_ok());
    }

    #[test]
    fn refuses_bad_values_without_echoing_them() {
        let short = [
            line(SecretKind::LeaseRenew, &[1; 31]),
            line(SecretKind::LeaseCancel, &[2; 32]),
        ];
        assert_eq!(
            Secrets::parse(short.iter().map(Vec::as_slice), &LEASE).unwrap_err(),
            SecretError::WrongLength(SecretKind::LeaseRenew)
        );
        let bad: &[u8] = b"upload-secret c2VjcmV0LXZhbHVl===";
        let err = Secrets::parse([bad], &[SecretKind::Upload]).unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"));
        for malformed in [&b"upload-secret"[..], b"Upload-Secret YQ==", b"other YQ=="] {
            assert_eq!(
                Secrets::parse([malformed], &[SecretKind::Upload]).unwrap_err(),
                SecretError::Malformed
            );
        }
        assert!(
            format!("{:?}", UploadSecret::new(b"hunter2".to_vec()).unwrap())
                .starts_with("UploadSecret(sha256:")
        );
    }
}
