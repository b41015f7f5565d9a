//! Just enough HTTP/1.1 for redemption: the client's `POST <issuer>/v1/redeem` and the demo
//! issuer that answers it, both plain HTTP over blocking sockets with `Content-Length`
//! bodies and one request per connection. An issuer reached over HTTPS needs a TLS client,
//! which this sample leaves out to keep the plugin library free of a second TLS stack.
//!
//! Bounds: headers at most [`MAX_HEAD`] bytes, bodies at most [`MAX_BODY`], and every read
//! and write gives up after the timeout the caller passes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The most header bytes read.
pub const MAX_HEAD: usize = 16 * 1024;
/// The largest body read (a redemption of 32,768 tokens is about 1.5 MB).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// A parsed `http://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port` (port 80 when absent).
    pub authority: String,
    /// The path, `/` at least, without a trailing slash.
    pub path: String,
}

impl HttpUrl {
    /// Parses `url`; only `http://` is supported.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// issuers are supported by this sample"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            authority,
            path: format!("/{}", path.trim_end_matches('/')),
        })
    }

    /// The URL of `child` below this one.
    pub fn join(&self, child: &str) -> String {
        let base = self.path.trim_end_matches('/');
        format!("{base}/{child}")
    }
}

/// `POST`s `body` as JSON to `path` on `url`'s server; answers the status and body.
pub fn post_json(
    url: &HttpUrl,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let mut stream = TcpStream::connect(&url.authority)
        .map_err(|e| format!("cannot connect to {}: {e}", url.authority))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        url.authority,
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| format!("cannot send to {}: {e}", url.authority))?;
    let message = read_message(&mut stream).map_err(|e| format!("{}: {e}", url.authority))?;
    let status = message
        .start_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{}: not an HTTP response", url.authority))?;
    Ok((status, message.body))
}

/// One request or response as read.
#[derive(Debug)]
pub struct Message {
    /// The request or status line.
    pub start_line: String,
    /// The body.
    pub body: Vec<u8>,
}

/// Reads one message with a `Content-Length` body (none without it) from `stream`.
pub fn read_message(stream: &mut impl Read) -> Result<Message, String> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > MAX_HEAD {
            return Err("headers too long".into());
        }
        let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the headers ended".into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buffer[..head_end]).map_err(|_| "headers are not text")?;
    let mut lines = head.split("\r\n");
    let start_line = lines.next().unwrap_or_default().to_owned();
    let mut length = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err("a header line without a colon".into());
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().map_err(|_| "a bad Content-Length")?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked bodies are not supported".into());
        }
    }
    if length > MAX_BODY {
        return Err(format!(
            "a body of {length} bytes is over the {MAX_BODY}-byte limit"
        ));
    }
    let mut body = buffer.split_off(head_end + 4);
    if body.len() > length {
        body.truncate(length);
    }
    while body.len() < length {
        let want = (length - body.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..want]).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the body ended".into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Message { start_line, body })
}

/// Writes a complete response with a JSON body and closes the exchange.
pub fn write_json(stream: &mut impl Write, status: u16, body: &[u8]) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_to_authority_and_path() {
        let url = HttpUrl::parse("http://127.0.0.1:8080/issuer/").unwrap();
        assert_eq!(url.authority, "127.0.0.1:8080");
        assert_eq!(url.join("v1/redeem"), "/issuer/v1/redeem");
        let bare = HttpUrl::parse("http://issuer.example").unwrap();
        assert_eq!(bare.authority, "issuer.example:80");
        assert_eq!(bare.join("v1/redeem"), "/v1/redeem");
        // Inputs tried: https, no scheme, no host.
        assert!(HttpUrl::parse("https://issuer.example/").is_err());
        assert!(HttpUrl::parse("issuer.example").is_err());
        assert!(HttpUrl::parse("http:///x").is_err());
    }

    #[test]
    fn messages_read_with_their_bodies_and_bounds() {
        let raw = b"POST /v1/redeem HTTP/1.1\r\nContent-Length: 4\r\n\r\nbodyEXTRA";
        let message = read_message(&mut &raw[..]).unwrap();
        assert_eq!(message.start_line, "POST /v1/redeem HTTP/1.1");
        assert_eq!(message.body, b"body");
        // Inputs tried: a body cut short, a chunked body, a huge length, endless headers.
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        assert!(read_message(&mut &short[..]).is_err());
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(read_message(&mut &chunked[..]).is_err());
        let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n";
        assert!(read_message(&mut &huge[..]).is_err());
        let endless = vec![b'a'; MAX_HEAD + 10_000];
        assert!(read_message(&mut &endless[..]).is_err());
    }
}
