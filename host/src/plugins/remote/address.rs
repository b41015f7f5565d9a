//! Where an out-of-process plugin listens: a Unix socket or a loopback TCP port. Anything
//! else is refused, since operations and plugin data travel in clear.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// A plugin service's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `unix:/absolute/path`.
    Unix(PathBuf),
    /// `http://127.0.0.1:PORT`, `http://[::1]:PORT` or `http://localhost:PORT`.
    Tcp(SocketAddr),
}

impl Address {
    /// Parses a `url = ...` value; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        const ACCEPTED: &str =
            "expected unix:/absolute/path or http://127.0.0.1:PORT (loopback only)";
        if let Some(path) = text.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            return if path.is_absolute() {
                Ok(Self::Unix(path))
            } else {
                Err(format!("{text:?}: the socket path must be absolute"))
            };
        }
        let Some(rest) = text.strip_prefix("http://") else {
            return Err(format!("{text:?}: {ACCEPTED}"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let authority = authority.replacen("localhost:", "127.0.0.1:", 1);
        match authority.parse::<SocketAddr>() {
            Ok(addr) if is_loopback(addr.ip()) && addr.port() != 0 => Ok(Self::Tcp(addr)),
            Ok(_) => Err(format!("{text:?}: not a loopback address; {ACCEPTED}")),
            Err(_) => Err(format!("{text:?}: {ACCEPTED}")),
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp(addr) => write!(f, "http://{addr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_unix_only() {
        assert_eq!(
            Address::parse("unix:/run/q.sock"),
            Ok(Address::Unix("/run/q.sock".into()))
        );
        assert_eq!(
            Address::parse("http://localhost:8123/").map(|a| a.to_string()),
            Ok("http://127.0.0.1:8123".into())
        );
        assert!(Address::parse("http://[::1]:9").is_ok());
        for refused in [
            "unix:relative.sock",
            "http://10.0.0.1:80",
            "http://example.com:80",
            "https://127.0.0.1:80",
            "http://127.0.0.1:0",
            "127.0.0.1:80",
            "",
        ] {
            assert!(Address::parse(refused).is_err(), "{refused:?} was accepted");
        }
    }
}
