//! Hostile clients: HTTP/1.1 written by hand over a TLS connection pinned to a node's key,
//! so a test can stop mid-body, send without reading, or hold a connection idle.

use std::sync::Arc;

use gbs::protocol::Nurl;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A TLS connection to a node, speaking raw HTTP/1.1.
#[derive(Debug)]
pub struct RawConnection {
    /// The TLS stream; tests read and write it directly.
    pub tls: TlsStream<TcpStream>,
    nurl: Nurl,
}

impl RawConnection {
    /// Connects and completes the TLS handshake, checking the NURL's pin.
    pub async fn connect(nurl: &str) -> std::io::Result<Self> {
        let nurl: Nurl = nurl.parse().expect("a valid NURL");
        let config = gbs::client::pinned_tls_config(&nurl).map_err(std::io::Error::other)?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect((nurl.host.as_str(), nurl.port)).await?;
        let name = rustls::pki_types::ServerName::try_from("gbs.invalid").expect("a DNS name");
        let tls = connector.connect(name, tcp).await?;
        Ok(Self { tls, nurl })
    }

    /// The `Authorization` header value for this node's swissnum.
    pub fn authorization(&self) -> String {
        gbs::protocol::authorization_value(&self.nurl.swissnum)
    }

    /// Sends a request head with `Content-Length: body_len` and `headers` (each
    /// `Name: value`), with the node's authorization unless `headers` has its own.
    pub async fn send_head(
        &mut self,
        method: &str,
        path: &str,
        headers: &[String],
        body_len: usize,
    ) -> std::io::Result<()> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Length: {body_len}\r\n",
            self.nurl.host, self.nurl.port,
        );
        if !headers.iter().any(|h| h.starts_with("Authorization:")) {
            head.push_str(&format!("Authorization: {}\r\n", self.authorization()));
        }
        for header in headers {
            head.push_str(header);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        self.tls.write_all(head.as_bytes()).await?;
        self.tls.flush().await
    }
}

/// Reads until the end of a response head and returns its status code; an error if the
/// connection ends first (a reset included).
pub async fn read_status<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if reader.read(&mut byte).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {} bytes of the answer", head.len()),
            ));
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not a response head: {text:?}")))
}

/// What the kernel says of a process, for bounds on memory and descriptors.
#[derive(Debug, Clone, Copy)]
pub struct ProcessStats {
    /// Resident memory now, in bytes.
    pub rss: u64,
    /// The most resident memory so far, in bytes.
    pub peak_rss: u64,
    /// Open file descriptors.
    pub open_fds: usize,
    /// CPU time used so far, user and system, by all its threads.
    pub cpu: std::time::Duration,
    /// Its threads.
    pub threads: usize,
}

impl ProcessStats {
    /// Reads `/proc/PID/status`, `/proc/PID/fd` and `/proc/PID/task`.
    pub fn of(pid: u32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        let kib = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        };
        let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("proc fd")
            .count();
        Self {
            rss: kib("VmRSS:") * 1024,
            peak_rss: kib("VmHWM:") * 1024,
            open_fds,
            cpu: cpu_time(pid),
            threads: std::fs::read_dir(format!("/proc/{pid}/task"))
                .expect("proc task")
                .count(),
        }
    }
}

/// A process's id, its parent's and its group's, as `/proc/PID/stat` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessIds {
    pub pid: u32,
    pub parent: u32,
    pub group: u32,
}

/// Every process that can be seen, from `/proc` (those that end while it is read are left out).
pub fn processes() -> Vec<ProcessIds> {
    let entries = std::fs::read_dir("/proc").expect("list /proc");
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the command name: state, parent, group.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(1);
            let parent = fields.next()?.parse().ok()?;
            let group = fields.next()?.parse().ok()?;
            Some(ProcessIds { pid, parent, group })
        })
        .collect()
}

/// User plus system time of process `pid` (every thread), from `/proc/PID/stat` (fields
/// 14 and 15, in clock ticks).
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().expect("a tick count"))
        .collect();
    let ticks: u64 = fields.iter().sum();
    std::time::Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
}

/// `getconf CLK_TCK` (100 on every Linux we know of, asked once rather than assumed).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}
