//! NURLs (`pb://<spki-hash>@host:port/<swissnum>#v=1`) and the SPKI hash they pin.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Swissnum;

/// SHA-256 of a certificate's DER `SubjectPublicKeyInfo`, as pinned by a NURL.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpkiHash([u8; 32]);

impl SpkiHash {
    /// Hashes a DER-encoded `SubjectPublicKeyInfo` (the whole SEQUENCE).
    pub fn of_spki_der(spki: &[u8]) -> Self {
        Self(Sha256::digest(spki).into())
    }

    /// Constant-time comparison.
    pub fn matches(&self, other: &SpkiHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Display for SpkiHash {
    /// Unpadded URL-safe base64: 43 characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for SpkiHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpkiHash({self})")
    }
}

impl FromStr for SpkiHash {
    type Err = NurlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 43 {
            return Err(NurlError::BadSpkiHash);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| NurlError::BadSpkiHash)?;
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| NurlError::BadSpkiHash)
    }
}

/// How a NURL's host is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NurlScheme {
    /// `pb`: plain TCP.
    Tcp,
    /// `pb+tor`: a Tor onion service. Parsed, but this implementation does not dial Tor.
    Tor,
}

/// Why a NURL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NurlError {
    /// Not `pb://` or `pb+tor://`.
    #[error("NURL scheme must be pb:// or pb+tor://")]
    BadScheme,
    /// Missing `#v=1`, so a Foolscap fURL rather than a GBS NURL.
    #[error("NURL must end in #v=1 (this looks like a Foolscap fURL)")]
    NotHttp,
    /// The part before `@` is not a 43-character base64url SHA-256.
    #[error("NURL certificate hash must be 43 characters of unpadded base64url")]
    BadSpkiHash,
    /// Host or port missing or malformed.
    #[error("NURL host or port is malformed")]
    BadLocation,
    /// No swissnum path segment, or more than one.
    #[error("NURL must have exactly one path segment, the swissnum")]
    BadSwissnum,
}

/// A GBS NURL: where a storage server is, which key it must hold, and its swissnum.
#[derive(Clone, PartialEq, Eq)]
pub struct Nurl {
    /// Transport.
    pub scheme: NurlScheme,
    /// The pinned key hash.
    pub spki_hash: SpkiHash,
    /// DNS name, IPv4 address, or IPv6 address without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The secret path segment.
    pub swissnum: Swissnum,
}

impl Nurl {
    /// The `https://host:port` base that requests go to.
    pub fn base_url(&self) -> String {
        format!("https://{}:{}", self.bracketed_host(), self.port)
    }

    fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

impl FromStr for Nurl {
    type Err = NurlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = text.split_once("://").ok_or(NurlError::BadScheme)?;
        let scheme = match scheme {
            "pb" => NurlScheme::Tcp,
            "pb+tor" => NurlScheme::Tor,
            _ => return Err(NurlError::BadScheme),
        };
        let (rest, fragment) = rest.split_once('#').ok_or(NurlError::NotHttp)?;
        if fragment != "v=1" {
            return Err(NurlError::NotHttp);
        }
        let (hash, rest) = rest.split_once('@').ok_or(NurlError::BadSpkiHash)?;
        let spki_hash = hash.parse()?;
        let (location, swissnum) = rest.split_once('/').ok_or(NurlError::BadSwissnum)?;
        if swissnum.is_empty() || swissnum.contains(['/', '?']) {
            return Err(NurlError::BadSwissnum);
        }
        let (host, port) = split_host_port(location)?;
        if scheme == NurlScheme::Tor && !host.ends_with(".onion") {
            return Err(NurlError::BadLocation);
        }
        Ok(Self {
            scheme,
            spki_hash,
            host,
            port,
            swissnum: Swissnum::new(swissnum),
        })
    }
}

fn split_host_port(location: &str) -> Result<(String, u16), NurlError> {
    let (host, port) = if let Some(rest) = location.strip_prefix('[') {
        let (host, port) = rest.split_once(']').ok_or(NurlError::BadLocation)?;
        (host, port.strip_prefix(':').ok_or(NurlError::BadLocation)?)
    } else {
        location.rsplit_once(':').ok_or(NurlError::BadLocation)?
    };
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
    if !valid_host || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NurlError::BadLocation);
    }
    let port = port.parse().map_err(|_| NurlError::BadLocation)?;
    Ok((host.to_owned(), port))
}

impl fmt::Display for Nurl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            NurlScheme::Tcp => "pb",
            NurlScheme::Tor => "pb+tor",
        };
        write!(
            f,
            "{scheme}://{}@{}:{}/{}#v=1",
            self.spki_hash,
            self.bracketed_host(),
            self.port,
            self.swissnum.expose()
        )
    }
}

impl fmt::Debug for Nurl {
    /// Leaves out the swissnum, which is a credential.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Nurl({}@{}:{})",
            self.spki_hash,
            self.bracketed_host(),
            self.port
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "pb://WvQpEy1vElE-08RDYWr_X63JYNn5KR14kgfTbEnIDVU@127.0.0.1:47125/abcdefghijklmnopqrstuvwxyz234567#v=1";

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn spki_hash_vectors_from_the_reference() {
        let mut ed25519 = hex("302a300506032b6570032100");
        ed25519.extend(0..32u8);
        assert_eq!(
            SpkiHash::of_spki_der(&ed25519).to_string(),
            "lAhFeu_Qcc7BJ8H5hTmTCGGtG6lMlA25dclywJ_Gi2g"
        );
        let p256 = hex("3059301306072a8648ce3d020106082a8648ce3d03010703420004b5fcdab60fb1286223f0a41f336053a9cde2dd1c57a0d7a2f7b67daa4013a91e6cfe257d90a0089b9ed02859d5ee5edfc2244254a26b4a1c385f8dd962167193");
        assert_eq!(
            SpkiHash::of_spki_der(&p256).to_string(),
            "WvQpEy1vElE-08RDYWr_X63JYNn5KR14kgfTbEnIDVU"
        );
    }

    #[test]
    fn parses_and_prints_the_worked_example() {
        let nurl: Nurl = EXAMPLE.parse().unwrap();
        assert_eq!(nurl.scheme, NurlScheme::Tcp);
        assert_eq!((nurl.host.as_str(), nurl.port), ("127.0.0.1", 47125));
        assert_eq!(nurl.swissnum.expose(), "abcdefghijklmnopqrstuvwxyz234567");
        assert_eq!(nurl.base_url(), "https://127.0.0.1:47125");
        assert_eq!(nurl.to_string(), EXAMPLE);
        assert!(!format!("{nurl:?}").contains("abcdefgh"));
        let v6: Nurl = EXAMPLE.replace("127.0.0.1", "[::1]").parse().unwrap();
        assert_eq!(v6.base_url(), "https://[::1]:47125");
    }

    #[test]
    fn refuses_malformed_nurls() {
        let cases = [
            (EXAMPLE.replace("#v=1", ""), NurlError::NotHttp),
            (EXAMPLE.replace("pb://", "https://"), NurlError::BadScheme),
            (EXAMPLE.replace("WvQp", "Wv"), NurlError::BadSpkiHash),
            (EXAMPLE.replace(":47125", ""), NurlError::BadLocation),
            (EXAMPLE.replace(":47125", ":99999"), NurlError::BadLocation),
            (
                EXAMPLE.replace("/abcdefghijklmnopqrstuvwxyz234567", "/"),
                NurlError::BadSwissnum,
            ),
            (
                EXAMPLE.replace("127.0.0.1", "evil host"),
                NurlError::BadLocation,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Nurl>().unwrap_err(), expected, "{text}");
        }
    }
}
