//! Upstreams from an introducer's announcements (`[client] introducer.furl`).
//!
//! An introducer speaks Foolscap, which only Tahoe's own code speaks, so the gateway runs
//! `introducer_relay.py` with the Python of a stock Tahoe installation
//! (`[gateway] introducer.python`): it subscribes to storage announcements with Tahoe's
//! introducer client (which checks their signatures) and writes each as a JSON line. Every
//! server announcing NURLs becomes an upstream with the announcement kept as it is (server
//! id, nickname, FURL, permutation seed), so a stock client reaching it through the gateway
//! places shares and derives secrets as it would directly.
//!
//! The servers learned are remembered in `private/gateway-introduced.json` (owner-only: the
//! NURLs hold the servers' swissnums), so `gbs gateway servers-yaml` can list them and a
//! restarted gateway serves them before the introducer answers. A server's local NURL is
//! derived from its server id, so it stays the same when the server announces a new address.
//!
//! Bounds: at most [`super::upstreams::MAX_UPSTREAMS`] upstreams, and the book remembers
//! only servers the gateway took (so a restart cannot exceed it either); a relayed line of
//! at most [`MAX_LINE`] bytes (a longer one restarts the relay), its stderr read as much at
//! a time; the relay is restarted after it exits, 1 s later at first and at most every
//! [`MAX_BACKOFF`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, BufReader,
};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::{Announcement, Source, UpstreamSpec};
use crate::config::IntroducerFurl;
use crate::protocol::Nurl;

/// The relay script, run with `python -c`.
const RELAY: &str = include_str!("introducer_relay.py");
/// The longest line the relay may write: a storage announcement is a few KiB.
pub(super) const MAX_LINE: usize = 1 << 20;
/// How long the relay may take to load Tahoe's modules.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// The longest wait before restarting a relay that exited.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How much of the relay's stderr a start-up failure quotes.
const STDERR_QUOTED: usize = 4 << 10;

/// The file the servers learned are remembered in.
pub(super) fn book_path(private: &Path) -> PathBuf {
    private.join("gateway-introduced.json")
}

/// The file Tahoe's introducer client caches announcements in.
fn cache_path(private: &Path) -> PathBuf {
    private.join("gateway-introducer-cache.yaml")
}

/// One server as remembered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Remembered {
    server_id: String,
    nickname: String,
    furl: String,
    permutation_seed: Option<String>,
    nurl: String,
}

impl Remembered {
    fn of(spec: &UpstreamSpec) -> Self {
        Self {
            server_id: spec.announcement.server_id.clone(),
            nickname: spec.announcement.nickname.clone(),
            furl: spec.announcement.furl.clone(),
            permutation_seed: spec.announcement.permutation_seed.clone(),
            nurl: spec.nurl.to_string(),
        }
    }

    fn spec(self) -> Result<UpstreamSpec, String> {
        let nurl = self
            .nurl
            .parse()
            .map_err(|e| format!("server {:?}: {e}", self.server_id))?;
        Ok(UpstreamSpec {
            nurl,
            announcement: Announcement {
                server_id: self.server_id,
                nickname: self.nickname,
                furl: self.furl,
                permutation_seed: self.permutation_seed,
            },
            source: Source::Introduced,
        })
    }
}

/// The servers learned from the introducer, by server id.
#[derive(Debug)]
pub(super) struct IntroducedBook {
    path: PathBuf,
    servers: Mutex<BTreeMap<String, Remembered>>,
}

impl IntroducedBook {
    /// Reads the book at `path`; none yet is an empty book.
    pub(super) fn open(path: &Path) -> Result<Self, String> {
        let servers = super::read_private_json::<Remembered>(path, "a list of introduced servers")?
            .into_iter()
            .map(|r| (r.server_id.clone(), r))
            .collect();
        Ok(Self {
            path: path.to_owned(),
            servers: Mutex::new(servers),
        })
    }

    /// Every server remembered.
    pub(super) fn specs(&self) -> Result<Vec<UpstreamSpec>, String> {
        self.lock()
            .values()
            .cloned()
            .map(Remembered::spec)
            .collect()
    }

    /// Whether `spec` is remembered exactly as it is.
    fn knows(&self, spec: &UpstreamSpec) -> bool {
        self.lock().get(&spec.announcement.server_id) == Some(&Remembered::of(spec))
    }

    /// Remembers `spec` (replacing what its server announced before) and writes the book.
    fn remember(&self, spec: &UpstreamSpec) -> std::io::Result<()> {
        let bytes = {
            let mut servers = self.lock();
            servers.insert(spec.announcement.server_id.clone(), Remembered::of(spec));
            serde_json::to_vec_pretty(&servers.values().collect::<Vec<_>>())
                .map_err(std::io::Error::other)?
        };
        super::replace_private_file(&self.path, &bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Remembered>> {
        self.servers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What one line of the relay says.
#[derive(Debug, PartialEq)]
enum Relayed {
    Ready,
    /// A server announcing NURLs.
    Server(UpstreamSpec),
    /// A server announcing only a FURL, which the gateway cannot reach.
    FoolscapOnly(String),
}

/// Reads one relayed line. The announcement comes from whoever published it to the
/// introducer: every field is checked before it is used or written anywhere.
fn parse_line(line: &str) -> Result<Relayed, String> {
    #[derive(Deserialize)]
    struct Line {
        #[serde(default)]
        ready: bool,
        server_id: Option<String>,
        announcement: Option<serde_json::Map<String, serde_json::Value>>,
    }
    let line: Line = serde_json::from_str(line).map_err(|e| format!("not a relayed line: {e}"))?;
    if line.ready {
        return Ok(Relayed::Ready);
    }
    let (Some(server_id), Some(announcement)) = (line.server_id, line.announcement) else {
        return Err("a relayed line without server_id or announcement".to_owned());
    };
    let id_ok = server_id.len() <= 128
        && server_id.starts_with("v0-")
        && server_id[3..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !id_ok {
        return Err(format!(
            "server id {:?} is not v0-BASE32",
            truncated(&server_id)
        ));
    }
    let text = |key: &str| announcement.get(key).and_then(serde_json::Value::as_str);
    let Some(nurl) = announcement
        .get("anonymous-storage-NURLs")
        .and_then(serde_json::Value::as_array)
        .and_then(|nurls| nurls.iter().filter_map(serde_json::Value::as_str).next())
    else {
        return Ok(Relayed::FoolscapOnly(server_id));
    };
    let nurl: Nurl = nurl
        .parse()
        .map_err(|e| format!("server {server_id}: its NURL: {e}"))?;
    let furl = text("anonymous-storage-FURL")
        .filter(|f| f.len() <= 2048 && f.starts_with("pb://") && !f.contains(char::is_control))
        .ok_or_else(|| format!("server {server_id}: no usable anonymous-storage-FURL"))?;
    let nickname: String = text("nickname")
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect();
    let permutation_seed = text("permutation-seed-base32")
        .filter(|s| {
            s.len() <= 256
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        .map(str::to_owned);
    Ok(Relayed::Server(UpstreamSpec {
        nurl,
        announcement: Announcement {
            server_id,
            nickname,
            furl: furl.to_owned(),
            permutation_seed,
        },
        source: Source::Introduced,
    }))
}

fn truncated(text: &str) -> String {
    text.chars().take(80).collect()
}

/// A running relay.
#[derive(Debug)]
pub(super) struct Relay {
    child: Child,
    /// Held open: the relay exits when it closes.
    _stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Relay {
    /// Starts the relay and waits until it has loaded Tahoe's modules. A failure quotes
    /// the end of what it wrote on stderr.
    pub(super) async fn start(
        python: &Path,
        furl: &IntroducerFurl,
        private: &Path,
    ) -> Result<Self, String> {
        let mut child = Command::new(python)
            .arg("-c")
            .arg(RELAY)
            .arg(cache_path(private))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the relay's pipes are missing".to_owned());
        };
        // On stdin: arguments are readable by every local user.
        let furl_line = format!("{}\n", furl.expose());
        if let Err(e) = stdin.write_all(furl_line.as_bytes()).await {
            return Err(format!(
                "{} could not follow the introducer: {e}: {}",
                python.display(),
                tail(stderr).await
            ));
        }
        let mut relay = Self {
            child,
            _stdin: stdin,
            stdout: BufReader::new(stdout),
        };
        let ready = tokio::time::timeout(READY_WITHIN, relay.line()).await;
        match ready {
            Ok(Ok(Some(line))) if parse_line(&line) == Ok(Relayed::Ready) => {
                tokio::spawn(log_stderr(stderr));
                Ok(relay)
            }
            Ok(Ok(Some(line))) => Err(format!(
                "the introducer relay said {:?} before it was ready",
                truncated(&line)
            )),
            Ok(Err(e)) => Err(e),
            Ok(Ok(None)) => {
                let _ = relay.child.wait().await;
                Err(format!(
                    "{} could not follow the introducer (a Python with tahoe-lafs installed is \
                     needed: [gateway] introducer.python): {}",
                    python.display(),
                    tail(stderr).await
                ))
            }
            Err(_) => Err(format!(
                "the introducer relay was not ready within {} s",
                READY_WITHIN.as_secs()
            )),
        }
    }

    /// The next line, `None` when the relay exited.
    async fn line(&mut self) -> Result<Option<String>, String> {
        let mut line = Vec::new();
        let read = (&mut self.stdout)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| format!("reading the introducer relay: {e}"))?;
        if read == 0 {
            return Ok(None);
        }
        if line.last() != Some(&b'\n') {
            return Err(format!(
                "the introducer relay wrote a line longer than {MAX_LINE} bytes"
            ));
        }
        String::from_utf8(line)
            .map(Some)
            .map_err(|_| "the introducer relay wrote a line that is not UTF-8".to_owned())
    }
}

/// The last part of what `stderr` holds until it closes, on one line.
async fn tail(stderr: impl AsyncRead + Unpin) -> String {
    let mut all = Vec::new();
    let _ = stderr.take(1 << 20).read_to_end(&mut all).await;
    let text = String::from_utf8_lossy(&all[all.len().saturating_sub(STDERR_QUOTED)..]);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Copies the relay's stderr lines to the log, reading a line [`MAX_LINE`] bytes at a
/// time (a longer one is logged in pieces, never held whole).
async fn log_stderr(stderr: impl AsyncRead + Unpin) {
    let mut stderr = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut stderr)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                tracing::warn!(line = %truncated(text.trim_end()), "introducer relay");
            }
        }
    }
}

/// Following an introducer: the relay running, and what restarting it takes.
#[derive(Debug)]
pub(super) struct Follower {
    relay: Relay,
    python: PathBuf,
    furl: IntroducerFurl,
    private: PathBuf,
    book: IntroducedBook,
}

impl Follower {
    /// Starts the relay (see [`Relay::start`]); what is learned goes into `book`.
    pub(super) async fn start(
        python: PathBuf,
        furl: IntroducerFurl,
        private: PathBuf,
        book: IntroducedBook,
    ) -> Result<Self, String> {
        let relay = Relay::start(&python, &furl, &private).await?;
        Ok(Self {
            relay,
            python,
            furl,
            private,
            book,
        })
    }

    /// Follows the introducer (restarting the relay when it exits) until dropped, offering
    /// `take` every server announced or re-announced with something new. What it takes
    /// (answers the local NURL for) is remembered in the book, then told to `learned`;
    /// what it refuses is not remembered, so the book holds no more than the gateway serves.
    pub(super) async fn run(
        self,
        take: impl Fn(&UpstreamSpec) -> Option<Nurl>,
        learned: impl Fn(&UpstreamSpec, &Nurl),
    ) {
        let Self {
            mut relay,
            python,
            furl,
            private,
            book,
        } = self;
        let book = std::sync::Arc::new(book);
        let mut backoff = Duration::from_secs(1);
        loop {
            loop {
                match relay.line().await {
                    Ok(Some(line)) => match parse_line(&line) {
                        Ok(Relayed::Server(spec)) if !book.knows(&spec) => {
                            backoff = Duration::from_secs(1);
                            if let Some(local) = take(&spec) {
                                remember(&book, spec.clone()).await;
                                learned(&spec, &local);
                            }
                        }
                        Ok(Relayed::Server(_) | Relayed::Ready) => {}
                        Ok(Relayed::FoolscapOnly(server_id)) => tracing::info!(
                            %server_id,
                            "an announced storage server offers no NURL (Foolscap only); not used"
                        ),
                        Err(problem) => tracing::warn!(%problem, "announcement ignored"),
                    },
                    Ok(None) => break,
                    Err(problem) => {
                        tracing::warn!(%problem, "introducer relay restarted");
                        break;
                    }
                }
            }
            drop(relay);
            loop {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                match Relay::start(&python, &furl, &private).await {
                    Ok(started) => {
                        relay = started;
                        break;
                    }
                    Err(problem) => tracing::warn!(%problem, "cannot restart the introducer relay"),
                }
            }
        }
    }
}

/// Remembers `spec` in `book` off the async threads (the write is synced).
async fn remember(book: &std::sync::Arc<IntroducedBook>, spec: UpstreamSpec) {
    let book = book.clone();
    let written = tokio::task::spawn_blocking(move || book.remember(&spec))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    if let Err(error) = written {
        tracing::error!(%error, "cannot write the introduced servers' book");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NURL: &str = "pb://WvQpEy1vElE-08RDYWr_X63JYNn5KR14kgfTbEnIDVU@127.0.0.1:47125/abcdefghijklmnopqrstuvwxyz234567#v=1";

    fn announced(ann: serde_json::Value) -> String {
        serde_json::json!({"server_id": "v0-abc2", "announcement": ann}).to_string()
    }

    #[test]
    fn a_stock_announcement_is_kept_as_it_is() {
        let line = announced(serde_json::json!({
            "anonymous-storage-FURL": "pb://tub@tcp:127.0.0.1:1/swiss",
            "anonymous-storage-NURLs": [NURL],
            "nickname": "s1",
            "permutation-seed-base32": "ni2hi2zx",
            "service-name": "storage",
        }));
        let Ok(Relayed::Server(spec)) = parse_line(&line) else {
            panic!("{:?}", parse_line(&line));
        };
        assert_eq!(spec.nurl.to_string(), NURL);
        assert_eq!(spec.announcement.server_id, "v0-abc2");
        assert_eq!(spec.announcement.nickname, "s1");
        assert_eq!(spec.announcement.furl, "pb://tub@tcp:127.0.0.1:1/swiss");
        assert_eq!(
            spec.announcement.permutation_seed.as_deref(),
            Some("ni2hi2zx")
        );
        assert_eq!(parse_line(r#"{"ready": true}"#), Ok(Relayed::Ready));
    }

    #[test]
    fn hostile_or_foolscap_only_announcements_are_not_used() {
        // Inputs tried: no NURLs; a bad NURL; no FURL; a server id with a path in it; a
        // nickname with control characters (kept, without them); not JSON.
        let foolscap = announced(serde_json::json!({"anonymous-storage-FURL": "pb://t@h/s"}));
        assert_eq!(
            parse_line(&foolscap),
            Ok(Relayed::FoolscapOnly("v0-abc2".to_owned()))
        );
        let bad_nurl = announced(serde_json::json!({
            "anonymous-storage-FURL": "pb://t@h/s", "anonymous-storage-NURLs": ["pb://x"]}));
        assert!(parse_line(&bad_nurl).is_err());
        let no_furl = announced(serde_json::json!({"anonymous-storage-NURLs": [NURL]}));
        assert!(parse_line(&no_furl).unwrap_err().contains("FURL"));
        let id = serde_json::json!({"server_id": "v0-../../x", "announcement": {}}).to_string();
        assert!(parse_line(&id).unwrap_err().contains("server id"));
        let nick = announced(serde_json::json!({
            "anonymous-storage-FURL": "pb://t@h/s", "anonymous-storage-NURLs": [NURL],
            "nickname": "a\nb\u{1b}[2J"}));
        let Ok(Relayed::Server(spec)) = parse_line(&nick) else {
            panic!("{:?}", parse_line(&nick));
        };
        assert_eq!(spec.announcement.nickname, "ab[2J");
        assert!(parse_line("{not json").is_err());
    }

    #[test]
    fn the_book_remembers_the_latest_announcement_of_each_server() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = book_path(dir.path());
        let book = IntroducedBook::open(&path).expect("no book yet");
        let Ok(Relayed::Server(first)) = parse_line(&announced(serde_json::json!({
            "anonymous-storage-FURL": "pb://t@h/s", "anonymous-storage-NURLs": [NURL]})))
        else {
            panic!("valid");
        };
        assert!(!book.knows(&first));
        book.remember(&first).expect("write");
        assert!(book.knows(&first));
        let mut moved = first.clone();
        moved.nurl.port = 47126;
        assert!(!book.knows(&moved));
        book.remember(&moved).expect("write");
        let again = IntroducedBook::open(&path).expect("read back");
        assert_eq!(again.specs().expect("valid"), vec![moved]);
        // Input tried: a damaged book.
        std::fs::write(&path, b"[{").expect("damage");
        assert!(IntroducedBook::open(&path)
            .unwrap_err()
            .contains("not a list of introduced servers"));
    }
}
