//! `tahoe.cfg`: read raw, then checked once into [`NodeConfig`].
//!
//! [`RawConfig`] keeps the INI text as strings with line numbers; [`NodeConfig::from_raw`]
//! turns it into typed settings and names the section, key and line of the first bad value.
//! Later code only sees `NodeConfig`.
//!
//! `RawConfig` reads the file the way stock Tahoe-LAFS 1.20 does
//! (`allmydata/util/configutil.py::get_config`): one leading UTF-8 byte order mark is skipped,
//! then Python's `configparser.ConfigParser(strict=False)` rules apply, as in
//! `configparser.RawConfigParser._read` and `BasicInterpolation`:
//!
//! - `=` and `:` both separate a key from its value, whichever comes first; keys are
//!   lowercased, section names are kept as written (spaces inside `[ ]` included);
//! - lines whose first non-blank character is `#` or `;` are comments; there are no inline
//!   comments, so `a = b ; c` has the value `b ; c`;
//! - a line indented deeper than its key line continues the value (joined with `\n`); blank
//!   lines inside such a value are kept, trailing ones dropped; comment lines are skipped;
//! - a repeated section adds to the first; a repeated key replaces the earlier value;
//! - the keys of `[DEFAULT]` appear in every section that does not set them itself;
//! - `%(key)s` is replaced by another key's value of the same section (or `[DEFAULT]`) and
//!   `%%` by `%`. Tahoe does this whenever it reads a value; here every value is expanded
//!   once at parse time, so a bad `%` is refused even in a key nothing reads.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::limits::Limits;
use crate::protocol::Nurl;

/// One value with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawValue {
    /// The text after `=` or `:`, trimmed, with its continuation lines joined by `\n` and
    /// `%(key)s` and `%%` expanded.
    pub value: String,
    /// 1-based line number of the key in the file.
    pub line: usize,
}

/// The INI file as Tahoe reads it: section → lowercased key → value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawConfig {
    path: PathBuf,
    sections: BTreeMap<String, BTreeMap<String, RawValue>>,
}

/// A config problem, naming where it is. Displayed as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line that is not a section header, a `key = value` or a comment.
    #[error("{path}:{line}: {problem}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong with the line.
        problem: &'static str,
    },
    /// A value that does not mean anything for its key.
    #[error("{path}:{line}: [{section}] {key}: {problem}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Section name.
        section: String,
        /// Key name.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A key that must be present is not.
    #[error("{path}: [{section}] {key} is required")]
    Missing {
        /// The file.
        path: PathBuf,
        /// Section name.
        section: String,
        /// Key name.
        key: String,
    },
}

/// The section whose keys every other section inherits (ConfigParser's `default_section`).
const DEFAULT_SECTION: &str = "DEFAULT";

/// How deep `%(key)s` references may nest (ConfigParser's `MAX_INTERPOLATION_DEPTH`).
const MAX_INTERPOLATION_DEPTH: usize = 10;
/// The longest a value may grow by `%(key)s` expansion. Depth alone does not bound it: ten
/// keys each naming the previous one sixteen times expand to a terabyte (Python's
/// ConfigParser tries, and never finishes); no real setting comes near this.
const MAX_EXPANDED_VALUE: usize = 64 * 1024;

impl RawConfig {
    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses INI text as Tahoe does: the rules are listed in this module's documentation.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        // Tahoe opens the file as "utf-8-sig", in text mode: one leading BOM goes, and
        // "\r\n" and a lone "\r" end lines as "\n" does.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let mut reader = IniReader::default();
        for (index, line) in text.split_terminator('\n').enumerate() {
            reader
                .line(index + 1, line)
                .map_err(|problem| ConfigError::Syntax {
                    path: path.to_owned(),
                    line: index + 1,
                    problem,
                })?;
        }
        let mut sections = reader.finish();
        inherit_defaults(&mut sections);
        expand_all(path, &mut sections)?;
        Ok(Self {
            path: path.to_owned(),
            sections,
        })
    }

    /// The value of `key` in `section`, if present. `key` is matched without regard to case.
    pub fn get(&self, section: &str, key: &str) -> Option<&RawValue> {
        self.sections.get(section)?.get(&key.to_lowercase())
    }

    /// The keys (lowercased) and values of one section, `[DEFAULT]`'s included.
    pub fn section(&self, section: &str) -> Option<&BTreeMap<String, RawValue>> {
        self.sections.get(section)
    }

    fn bad(&self, section: &str, key: &str, problem: impl fmt::Display) -> ConfigError {
        ConfigError::BadValue {
            path: self.path.clone(),
            line: self.get(section, key).map_or(0, |v| v.line),
            section: section.to_owned(),
            key: key.to_owned(),
            problem: problem.to_string(),
        }
    }

    /// Reads and converts an optional value, naming the key on failure.
    fn typed<T>(
        &self,
        section: &str,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(section, key)
            .map(|raw| parse(&raw.value).map_err(|problem| self.bad(section, key, problem)))
            .transpose()
    }
}

/// Python's `str.isspace`, which `strip()` and the regex `\s` use: Unicode white space and
/// the ASCII separators U+001C to U+001F.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The line by line state of `configparser.RawConfigParser._read`.
#[derive(Default)]
struct IniReader {
    /// Values as read so far: continuation lines joined, trailing blank lines not yet removed.
    sections: BTreeMap<String, BTreeMap<String, RawValue>>,
    /// The section of the last header; `None` before the first.
    section: Option<String>,
    /// The key that indented lines continue; `None` right after a header.
    key: Option<String>,
    /// How many blank characters start the last header or key line.
    indent: usize,
}

impl IniReader {
    fn line(&mut self, number: usize, line: &str) -> Result<(), &'static str> {
        let text = line.trim_matches(is_space);
        if text.starts_with(['#', ';']) {
            return Ok(());
        }
        if text.is_empty() {
            if let Some(value) = self.continued_value() {
                value.push('\n');
            }
            return Ok(());
        }
        let indent = line.chars().take_while(|&c| is_space(c)).count();
        if indent > self.indent {
            if let Some(value) = self.continued_value() {
                value.push('\n');
                value.push_str(text);
                return Ok(());
            }
        }
        self.indent = indent;
        if let Some(name) = section_header(text) {
            self.sections.entry(name.to_owned()).or_default();
            self.section = Some(name.to_owned());
            self.key = None;
            return Ok(());
        }
        let section = self
            .section
            .as_ref()
            .ok_or("a line before the first [section] header")?;
        let (key, value) = text
            .split_once(['=', ':'])
            .ok_or("not a section header or key = value line")?;
        let key = key.trim_end_matches(is_space).to_lowercase();
        if key.is_empty() {
            return Err("no key before the '=' or ':'");
        }
        let value = RawValue {
            value: value.trim_matches(is_space).to_owned(),
            line: number,
        };
        self.sections
            .entry(section.clone())
            .or_default()
            .insert(key.clone(), value);
        self.key = Some(key);
        Ok(())
    }

    /// The sections read, each value `rstrip`ped as ConfigParser does once it has joined
    /// the lines: blank lines at the end of a value go.
    fn finish(mut self) -> BTreeMap<String, BTreeMap<String, RawValue>> {
        for raw in self.sections.values_mut().flat_map(BTreeMap::values_mut) {
            raw.value
                .truncate(raw.value.trim_end_matches(is_space).len());
        }
        self.sections
    }

    /// The value a continuation or blank line adds to, if any.
    fn continued_value(&mut self) -> Option<&mut String> {
        let section = self.sections.get_mut(self.section.as_ref()?)?;
        Some(&mut section.get_mut(self.key.as_ref()?)?.value)
    }
}

/// The name in a `[name]` line: up to the last `]`, not trimmed, anything after it ignored
/// (ConfigParser's `SECTCRE`, `\[(?P<header>.+)\]`).
fn section_header(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('[')?;
    let end = rest.rfind(']')?;
    (end > 0).then(|| &rest[..end])
}

/// Copies the keys of `[DEFAULT]` into every other section that does not set them: what
/// ConfigParser's `get` and `items` show.
fn inherit_defaults(sections: &mut BTreeMap<String, BTreeMap<String, RawValue>>) {
    let Some(defaults) = sections.get(DEFAULT_SECTION).cloned() else {
        return;
    };
    for (name, options) in sections.iter_mut() {
        if name != DEFAULT_SECTION {
            for (key, raw) in &defaults {
                options.entry(key.clone()).or_insert_with(|| raw.clone());
            }
        }
    }
}

/// Expands every value once; a bad `%` names its section, key and line.
fn expand_all(
    path: &Path,
    sections: &mut BTreeMap<String, BTreeMap<String, RawValue>>,
) -> Result<(), ConfigError> {
    for (section, options) in sections.iter_mut() {
        let written = options.clone();
        for (key, raw) in options.iter_mut() {
            let mut value = String::new();
            interpolate(&raw.value, &written, 1, &mut value).map_err(|problem| {
                ConfigError::BadValue {
                    path: path.to_owned(),
                    line: raw.line,
                    section: section.clone(),
                    key: key.clone(),
                    problem,
                }
            })?;
            raw.value = value;
        }
    }
    Ok(())
}

/// Expands `%%` and `%(key)s` in `value` into `out`, as ConfigParser's `BasicInterpolation`
/// does when a value is read; `options` are the written values of the value's section.
fn interpolate(
    value: &str,
    options: &BTreeMap<String, RawValue>,
    depth: usize,
    out: &mut String,
) -> Result<(), String> {
    if depth > MAX_INTERPOLATION_DEPTH {
        return Err(format!(
            "%(key)s references nest deeper than {MAX_INTERPOLATION_DEPTH} (a loop?)"
        ));
    }
    let mut rest = value;
    while let Some((before, after)) = rest.split_once('%') {
        if out.len() > MAX_EXPANDED_VALUE {
            return Err(format!(
                "%(key)s references expand to more than {MAX_EXPANDED_VALUE} bytes"
            ));
        }
        out.push_str(before);
        if let Some(tail) = after.strip_prefix('%') {
            out.push('%');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('(') {
            let reference = tail
                .split_once(')')
                .and_then(|(name, tail)| Some((name, tail.strip_prefix('s')?)))
                .filter(|(name, _)| !name.is_empty());
            let Some((name, tail)) = reference else {
                let found = format!("%{after}");
                return Err(format!(
                    "bad %(key)s reference {found:?} (write %% for a literal %)"
                ));
            };
            let name = name.to_lowercase();
            let referenced = options
                .get(&name)
                .ok_or_else(|| format!("%({name})s names no key of this section"))?;
            // Like ConfigParser, only a value with a '%' of its own goes one level deeper.
            if referenced.value.contains('%') {
                interpolate(&referenced.value, options, depth + 1, out)?;
            } else {
                out.push_str(&referenced.value);
            }
            rest = tail;
        } else {
            let found = format!("%{after}");
            return Err(format!(
                "'%' must be followed by '%' or '(', found {found:?} (write %% for a literal %)"
            ));
        }
    }
    out.push_str(rest);
    Ok(())
}

/// Where a plugin's code comes from (design §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// `library = PATH`, resolved against the node directory.
    Library(PathBuf),
    /// `url = ...` of a running out-of-process plugin.
    Url(String),
    /// `command = ...` that the host starts and supervises.
    Command(String),
    /// None of the above: look the name up in `<node>/plugins/`.
    Lookup,
}

/// One configured plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    /// The name from the plugins list.
    pub name: String,
    /// Where it is loaded from.
    pub source: PluginSource,
    /// Every other key of its section, passed to the plugin as is.
    pub settings: BTreeMap<String, String>,
}

/// The checked settings of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// The node directory.
    pub node_dir: PathBuf,
    /// `[node] tub.port`: where to listen.
    pub listen: SocketAddr,
    /// `[node] tub.location`: the host and port published in the NURL.
    pub location: (String, u16),
    /// `[storage] enabled`.
    pub storage_enabled: bool,
    /// `[storage] reserved_space`, in bytes.
    pub reserved_space: u64,
    /// `[storage] readonly`: no new immutable share, no mutable write that grows a share.
    pub readonly: bool,
    /// `[storage] plugins` with their `[storageserver.plugins.NAME]` sections.
    pub server_plugins: Vec<PluginSpec>,
    /// `[client] storage.plugins` with their `[storageclient.plugins.NAME]` sections.
    pub client_plugins: Vec<PluginSpec>,
    /// `[gbs]`: bounds on connections, time and memory.
    pub limits: Limits,
    /// `[gateway]`: what `gbs gateway` passes operations on to, and its lease keeping.
    pub gateway: GatewayConfig,
}

/// `[gateway]` of `tahoe.cfg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// `upstreams`: the storage servers operations go on to.
    pub upstreams: Vec<Nurl>,
    /// `servers.yaml`: a stock client's server list naming more of them (relative to the
    /// node directory).
    pub servers_yaml: Option<PathBuf>,
    /// `lease-renew-after`: how long after a lease was last added or renewed through the
    /// gateway it renews it (default 26 days: Tahoe's leases last 31).
    pub lease_renew_after: Duration,
    /// `lease-check-interval`: how often it looks for leases to renew (default 1 hour).
    pub lease_check_interval: Duration,
    /// `[client] introducer.furl`: an introducer whose storage announcements add upstreams.
    pub introducer: Option<IntroducerFurl>,
    /// `introducer.python`: the Python of a stock Tahoe installation, which follows the
    /// introducer (it speaks Foolscap); default `python3`.
    pub introducer_python: PathBuf,
}

/// An introducer's FURL. Its last path segment is the introducer's swissnum, a secret:
/// printed without it.
#[derive(Clone, PartialEq, Eq)]
pub struct IntroducerFurl(String);

impl IntroducerFurl {
    /// The whole FURL, secret included.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IntroducerFurl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let visible = self.0.rsplit_once('/').map_or("pb://", |(head, _)| head);
        write!(f, "{visible}/<swissnum>")
    }
}

impl std::str::FromStr for IntroducerFurl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let shape_ok = text.starts_with("pb://")
            && text.is_ascii()
            && !text.contains(char::is_whitespace)
            && text[5..].split_once('@').is_some_and(|(tub, rest)| {
                !tub.is_empty() && rest.rsplit_once('/').is_some_and(|(_, s)| !s.is_empty())
            });
        if shape_ok {
            Ok(Self(text.to_owned()))
        } else {
            Err("expected a Foolscap FURL, pb://TUBID@HINTS/SWISSNUM".to_owned())
        }
    }
}

impl NodeConfig {
    /// Reads `<node_dir>/tahoe.cfg`.
    pub fn load(node_dir: &Path) -> Result<Self, ConfigError> {
        // Absolute, because plugin processes run in the node directory and are handed
        // paths inside it: relative ones would point elsewhere from there.
        let node_dir = std::path::absolute(node_dir).unwrap_or_else(|_| node_dir.to_owned());
        Self::from_raw(&node_dir, &RawConfig::read(&node_dir.join("tahoe.cfg"))?)
    }

    /// Checks a raw config.
    pub fn from_raw(node_dir: &Path, raw: &RawConfig) -> Result<Self, ConfigError> {
        let missing = |section: &str, key: &str| ConfigError::Missing {
            path: raw.path.clone(),
            section: section.to_owned(),
            key: key.to_owned(),
        };
        let listen = raw
            .typed("node", "tub.port", parse_listen)?
            .ok_or_else(|| missing("node", "tub.port"))?;
        let location = raw
            .typed("node", "tub.location", parse_location)?
            .unwrap_or_else(|| (listen.ip().to_string(), listen.port()));
        let storage_enabled = raw
            .typed("storage", "enabled", parse_bool)?
            .unwrap_or(false);
        let reserved_space = raw
            .typed("storage", "reserved_space", parse_size)?
            .unwrap_or(0);
        let readonly = raw
            .typed("storage", "readonly", parse_bool)?
            .unwrap_or(false);
        if raw
            .typed("storage", "expire.enabled", parse_bool)?
            .unwrap_or(false)
        {
            tracing::warn!("[storage] expire.enabled: gbs does not expire leases; shares are kept");
        }
        let server_plugins = plugin_specs(raw, "storage", "plugins", "storageserver.plugins")?;
        let client_plugins =
            plugin_specs(raw, "client", "storage.plugins", "storageclient.plugins")?;
        let limits = limits(raw)?;
        let gateway = GatewayConfig {
            upstreams: raw
                .typed("gateway", "upstreams", parse_nurls)?
                .unwrap_or_default(),
            servers_yaml: raw.typed("gateway", "servers.yaml", |text| {
                if text.trim().is_empty() {
                    Err("must not be empty".to_owned())
                } else {
                    Ok(node_dir.join(text.trim()))
                }
            })?,
            lease_renew_after: raw
                .typed("gateway", "lease-renew-after", positive_duration)?
                .unwrap_or(Duration::from_secs(26 * 24 * 3600)),
            lease_check_interval: raw
                .typed("gateway", "lease-check-interval", positive_duration)?
                .unwrap_or(Duration::from_secs(3600)),
            // Where a stock client keeps it; an empty value means none, as in Tahoe.
            introducer: raw
                .typed("client", "introducer.furl", |text| {
                    (!text.trim().is_empty()).then(|| text.parse()).transpose()
                })?
                .flatten(),
            introducer_python: raw
                .typed("gateway", "introducer.python", |text| {
                    if text.trim().is_empty() {
                        Err("must not be empty".to_owned())
                    } else {
                        Ok(PathBuf::from(text.trim()))
                    }
                })?
                .unwrap_or_else(|| PathBuf::from("python3")),
        };
        Ok(Self {
            node_dir: node_dir.to_owned(),
            listen,
            location,
            storage_enabled,
            reserved_space,
            readonly,
            server_plugins,
            client_plugins,
            limits,
            gateway,
        })
    }

    /// `<node>/storage`, where shares live.
    pub fn storage_dir(&self) -> PathBuf {
        self.node_dir.join("storage")
    }

    /// `<node>/private`, where keys and the swissnum live.
    pub fn private_dir(&self) -> PathBuf {
        self.node_dir.join("private")
    }
}

/// A duration longer than zero.
fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("must be longer than 0".into()),
        d => Ok(d),
    }
}

/// NURLs separated by commas or white space, none repeated.
fn parse_nurls(text: &str) -> Result<Vec<Nurl>, String> {
    let mut nurls: Vec<Nurl> = Vec::new();
    for part in text.split([',', ' ', '\t', '\n']).filter(|p| !p.is_empty()) {
        let nurl: Nurl = part
            .parse()
            .map_err(|e| format!("{part:?} is not a NURL: {e}"))?;
        if nurls.contains(&nurl) {
            return Err(format!("{part:?} is named twice"));
        }
        nurls.push(nurl);
    }
    Ok(nurls)
}

/// `[gbs]`: every key optional, each replacing one default of [`Limits`].
fn limits(raw: &RawConfig) -> Result<Limits, ConfigError> {
    const SECTION: &str = "gbs";
    let mut limits = Limits::default();
    let count = |text: &str| -> Result<usize, String> {
        match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{text:?} is not a whole number above 0")),
        }
    };
    let bytes = |text: &str| -> Result<usize, String> {
        parse_size(text).and_then(|n| usize::try_from(n).map_err(|e| e.to_string()))
    };
    let seconds = |text: &str| -> Result<Duration, String> {
        parse_duration(text).and_then(|d| {
            if d.is_zero() {
                Err("must be longer than 0".into())
            } else {
                Ok(d)
            }
        })
    };
    if let Some(n) = raw.typed(SECTION, "max_connections", count)? {
        limits.max_connections = n;
    }
    if let Some(n) = raw.typed(SECTION, "max_handshakes", count)? {
        limits.max_handshakes = n;
    }
    if let Some(d) = raw.typed(SECTION, "handshake_timeout", seconds)? {
        limits.handshake_timeout = d;
    }
    if let Some(d) = raw.typed(SECTION, "idle_timeout", seconds)? {
        limits.idle_timeout = d;
    }
    if let Some(d) = raw.typed(SECTION, "drain_timeout", parse_duration)? {
        limits.drain_timeout = d;
    }
    if let Some(d) = raw.typed(SECTION, "plugin_deadline", seconds)? {
        limits.plugin_deadline = d;
    }
    if let Some(n) = raw.typed(SECTION, "upload_buffer", bytes)? {
        limits.upload_buffer = n;
    }
    let mutable = |text: &str| -> Result<usize, String> {
        let n = bytes(text)?;
        if n < Limits::MUTABLE_WRITE_BODY {
            return Err(format!(
                "must be at least {} bytes, the largest read-test-write body",
                Limits::MUTABLE_WRITE_BODY
            ));
        }
        Ok(n)
    };
    if let Some(n) = raw.typed(SECTION, "mutable_write_buffer", mutable)? {
        limits.mutable_write_buffer = n;
    }
    if let Some(n) = raw.typed(SECTION, "download_buffer", bytes)? {
        limits.download_buffer = n;
    }
    if let Some(unknown) = raw
        .section(SECTION)
        .and_then(|keys| keys.keys().find(|key| !LIMIT_KEYS.contains(&key.as_str())))
    {
        return Err(raw.bad(SECTION, unknown, "unknown key"));
    }
    Ok(limits)
}

/// The keys `[gbs]` may hold.
const LIMIT_KEYS: [&str; 9] = [
    "max_connections",
    "max_handshakes",
    "handshake_timeout",
    "idle_timeout",
    "drain_timeout",
    "plugin_deadline",
    "upload_buffer",
    "mutable_write_buffer",
    "download_buffer",
];

fn plugin_specs(
    raw: &RawConfig,
    section: &str,
    key: &str,
    prefix: &str,
) -> Result<Vec<PluginSpec>, ConfigError> {
    let names = raw
        .typed(section, key, parse_name_list)?
        .unwrap_or_default();
    names
        .into_iter()
        .map(|name| {
            let plugin_section = format!("{prefix}.{name}");
            let mut settings: BTreeMap<String, String> = raw
                .section(&plugin_section)
                .map(|s| {
                    s.iter()
                        .map(|(k, v)| (k.clone(), v.value.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let sources: Vec<PluginSource> = [
                settings
                    .remove("library")
                    .map(|p| PluginSource::Library(PathBuf::from(p))),
                settings.remove("url").map(PluginSource::Url),
                settings.remove("command").map(PluginSource::Command),
            ]
            .into_iter()
            .flatten()
            .collect();
            let source = match <[PluginSource; 1]>::try_from(sources) {
                Ok([source]) => source,
                Err(sources) if sources.is_empty() => PluginSource::Lookup,
                Err(_) => {
                    let key = ["library", "url", "command"]
                        .into_iter()
                        .find(|k| raw.get(&plugin_section, k).is_some())
                        .unwrap_or("library");
                    return Err(raw.bad(
                        &plugin_section,
                        key,
                        "give only one of library, url or command",
                    ));
                }
            };
            if let PluginSource::Library(path) = &source {
                if path.as_os_str().is_empty() {
                    return Err(raw.bad(&plugin_section, "library", "must not be empty"));
                }
            }
            Ok(PluginSpec {
                name,
                source,
                settings,
            })
        })
        .collect()
}

/// A comma-separated list of plugin names, trimmed, none empty or repeated.
fn parse_name_list(text: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    for name in text.split(',').map(str::trim) {
        if name.is_empty() {
            if text.trim().is_empty() {
                break;
            }
            return Err("empty plugin name in the list".into());
        }
        check_plugin_name(name)?;
        if names.iter().any(|n| n == name) {
            return Err(format!("plugin {name:?} is listed twice"));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

/// Whether `name` can be a plugin's name in `tahoe.cfg`: letters, digits, `-`, `_` and
/// `.`, not starting with `.` (`..` would make the node directory its state directory).
pub fn check_plugin_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty plugin name".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "plugin name {name:?} may only use letters, digits, '-', '_' and '.'"
        ));
    }
    if name.starts_with('.') {
        return Err(format!("plugin name {name:?} may not start with '.'"));
    }
    Ok(())
}

/// The longest version a plugin may declare.
pub const MAX_PLUGIN_VERSION: usize = 64;

/// Whether `version` is one a plugin may declare: at most [`MAX_PLUGIN_VERSION`] bytes of
/// printable text. It is shown to operators (`gbs plugin status`, `reload`) and announced
/// to clients (`GET /storage/v1/plugins`).
pub fn check_plugin_version(version: &str) -> Result<(), String> {
    if version.len() > MAX_PLUGIN_VERSION {
        return Err(format!(
            "its version is longer than {MAX_PLUGIN_VERSION} bytes"
        ));
    }
    if version.chars().any(char::is_control) {
        return Err(format!(
            "its version {:?} holds control characters",
            version.escape_debug().to_string()
        ));
    }
    Ok(())
}

/// Tahoe's booleans.
fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("{text:?} is not a boolean (true/false)")),
    }
}

/// Sizes as Tahoe's `parse_abbreviated_size` reads them: `1000`, `10K`, `5MB`, `2GiB`, `1T`.
/// Decimal units are powers of 1000, `i` units powers of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a size such as 1000, 10K, 5MB or 2GiB");
    let (number, unit) = number_and_unit(text).ok_or_else(bad)?;
    let unit = unit.trim_end_matches('b');
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1000,
        "m" => 1000u64.pow(2),
        "g" => 1000u64.pow(3),
        "t" => 1000u64.pow(4),
        "ki" => 1 << 10,
        "mi" => 1 << 20,
        "gi" => 1 << 30,
        "ti" => 1 << 40,
        _ => return Err(bad()),
    };
    number.checked_mul(multiplier).ok_or_else(bad)
}

/// Durations: `30` (seconds), `30s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 30s, 500ms, 2m, 1h or 26d");
    let (number, unit) = number_and_unit(text).ok_or_else(bad)?;
    let millis = match unit.as_str() {
        "ms" => Some(number),
        "" | "s" => number.checked_mul(1000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        "d" => number.checked_mul(86_400_000),
        _ => return Err(bad()),
    };
    millis.map(Duration::from_millis).ok_or_else(bad)
}

/// A whole number and the lowercase unit after it, both trimmed: `"10 KiB"` is
/// `(10, "kib")`. `None` when there are no leading digits or too many.
fn number_and_unit(text: &str) -> Option<(u64, String)> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    Some((number.parse().ok()?, unit.trim().to_owned()))
}

/// `tcp:PORT` or `tcp:PORT:interface=ADDR` (Twisted endpoint syntax as Tahoe writes it).
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let bad = || format!("{text:?} is not tcp:PORT or tcp:PORT:interface=ADDRESS");
    let mut parts = text.split(':');
    if parts.next() != Some("tcp") {
        return Err(bad());
    }
    let port: u16 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let mut interface = "0.0.0.0".to_owned();
    let rest: Vec<&str> = parts.collect();
    if !rest.is_empty() {
        // IPv6 interfaces contain colons; Twisted escapes them with backslashes.
        let joined = rest.join(":").replace("\\:", ":");
        interface = joined
            .strip_prefix("interface=")
            .ok_or_else(bad)?
            .to_owned();
    }
    let ip: std::net::IpAddr = interface.parse().map_err(|_| bad())?;
    Ok(SocketAddr::new(ip, port))
}

/// `tcp:HOST:PORT`, the first hint of a comma-separated list.
fn parse_location(text: &str) -> Result<(String, u16), String> {
    let bad = || format!("{text:?} is not tcp:HOST:PORT");
    let first = text.split(',').next().unwrap_or_default().trim();
    let rest = first.strip_prefix("tcp:").ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<NodeConfig, ConfigError> {
        let raw = RawConfig::parse(Path::new("tahoe.cfg"), text)?;
        NodeConfig::from_raw(Path::new("/node"), &raw)
    }

    const BASE: &str = "[node]\ntub.port = tcp:3457:interface=127.0.0.1\ntub.location = tcp:example.org:3457\n[storage]\nenabled = true\n";

    /// The README's example is what operators copy: it must mean what it says.
    #[test]
    fn the_readme_example_parses_as_documented() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("`tahoe.cfg` keys read today:")
            .expect("the README's config example");
        let example = readme[start..]
            .split("```ini\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("an ini block");
        let cfg = config(example).expect("the README's example parses");
        assert_eq!(cfg.listen, "127.0.0.1:3457".parse().unwrap());
        assert_eq!(cfg.reserved_space, 1_000_000_000);
        assert_eq!(cfg.server_plugins[0].name, "name1");
        assert_eq!(
            cfg.server_plugins[0].source,
            PluginSource::Library("plugins/libname1.so".into())
        );
        assert_eq!(cfg.server_plugins[0].settings["some-setting"], "value");
        assert_eq!(cfg.client_plugins[0].settings["token"], "...");
    }

    #[test]
    fn an_introducer_furl_is_read_and_never_printed_whole() {
        let furl = "pb://m3gkhmwdylp7raxaptacip5hzcavmlqi@tcp:127.0.0.1:9/uqftvnpigmbggfeyu6wsoxf5josea5dj";
        let cfg = config(&format!(
            "{BASE}[client]\nintroducer.furl = {furl}\n[gateway]\nintroducer.python = /opt/t/python\n"
        ))
        .unwrap();
        let read = cfg.gateway.introducer.clone().expect("an introducer");
        assert_eq!(read.expose(), furl);
        assert_eq!(
            cfg.gateway.introducer_python,
            PathBuf::from("/opt/t/python")
        );
        let printed = format!("{cfg:?}");
        assert!(
            printed.contains("pb://m3gkhmwdylp7raxaptacip5hzcavmlqi@tcp:127.0.0.1:9/<swissnum>")
        );
        assert!(
            !printed.contains("uqftvnpigmbggfeyu6wsoxf5josea5dj"),
            "{printed}"
        );
        // Stock Tahoe's empty default means none; the Python defaults to python3.
        let none = config(&format!("{BASE}[client]\nintroducer.furl =\n")).unwrap();
        assert_eq!(none.gateway.introducer, None);
        assert_eq!(none.gateway.introducer_python, PathBuf::from("python3"));
        // Inputs tried: an HTTP URL, a FURL without swissnum, one with a space.
        for bad in [
            "https://example.org/x",
            "pb://tub@tcp:h:1/",
            "pb://tub@tcp:h:1/a b",
        ] {
            let err = config(&format!("{BASE}[client]\nintroducer.furl = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("introducer.furl") && err.contains("FURL"),
                "{err}"
            );
        }
    }

    #[test]
    fn reads_node_and_storage_settings() {
        let cfg = config(&format!("{BASE}reserved_space = 1G\nplugins = a , b\n[storageserver.plugins.a]\nlibrary = plugins/liba.so\nprice = 3\n")).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:3457".parse().unwrap());
        assert_eq!(cfg.location, ("example.org".to_owned(), 3457));
        assert!(cfg.storage_enabled);
        assert_eq!(cfg.reserved_space, 1_000_000_000);
        assert_eq!(cfg.server_plugins.len(), 2);
        assert_eq!(
            cfg.server_plugins[0].source,
            PluginSource::Library("plugins/liba.so".into())
        );
        assert_eq!(cfg.server_plugins[0].settings["price"], "3");
        assert_eq!(cfg.server_plugins[1].source, PluginSource::Lookup);
        assert_eq!(cfg.storage_dir(), Path::new("/node/storage"));
        assert!(!cfg.readonly);
        let readonly = config(&format!("{BASE}readonly = true\n")).unwrap();
        assert!(readonly.readonly);
        // Tried: a value that is not a boolean.
        let err = config(&format!("{BASE}readonly = maybe\n")).unwrap_err();
        assert!(err.to_string().contains("[storage] readonly"), "{err}");
    }

    #[test]
    fn bad_values_name_section_key_and_line() {
        let err = config(&format!("{BASE}reserved_space = lots\n"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "tahoe.cfg:6: [storage] reserved_space: \"lots\" is not a size such as 1000, 10K, 5MB or 2GiB");
        let err = config("[node]\ntub.port = udp:1\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("tahoe.cfg:2: [node] tub.port:"), "{err}");
        let err = config("[storage]\nenabled = true\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "tahoe.cfg: [node] tub.port is required");
        for name in ["..", ".", ".hidden"] {
            let err = config(&format!("{BASE}plugins = {name}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("may not start with '.'"), "{name}: {err}");
        }
        let err = config(&format!("{BASE}plugins = a, a\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listed twice"), "{err}");
        let err = config(&format!(
            "{BASE}plugins = a\n[storageserver.plugins.a]\nlibrary = x.so\nurl = http://x\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("only one of library, url or command"), "{err}");
        let err = config("[node]\nkey without equals\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "tahoe.cfg:2: not a section header or key = value line");
    }

    fn raw(text: &str) -> RawConfig {
        RawConfig::parse(Path::new("tahoe.cfg"), text).expect("parses")
    }

    fn value<'a>(raw: &'a RawConfig, section: &str, key: &str) -> &'a str {
        &raw.get(section, key)
            .unwrap_or_else(|| panic!("[{section}] {key} is missing"))
            .value
    }

    fn parse_error(text: &str) -> String {
        RawConfig::parse(Path::new("tahoe.cfg"), text)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn key_names_are_lowercased_and_section_names_kept() {
        // Tried: "[Node]\nTub.Port = upper\n[node]\nTUB.PORT = lower\n".
        let cfg = raw("[Node]\nTub.Port = upper\n[node]\nTUB.PORT = lower\n");
        assert_eq!(value(&cfg, "Node", "tub.port"), "upper");
        assert_eq!(value(&cfg, "node", "tub.port"), "lower");
        assert_eq!(value(&cfg, "node", "Tub.PORT"), "lower");
        assert!(cfg.section("NODE").is_none());
        let keys: Vec<&String> = cfg.section("Node").expect("[Node]").keys().collect();
        assert_eq!(keys, ["tub.port"]);
        // Tried: "[ node ]", "[x]]" and "[y] trailing": the name is everything up to the last
        // ']', spaces included, as ConfigParser's SECTCRE takes it.
        let cfg = raw("[ node ]\nk = 1\n[x]]\nk = 2\n[y] trailing\nk = 3\n");
        assert_eq!(value(&cfg, " node ", "k"), "1");
        assert_eq!(value(&cfg, "x]", "k"), "2");
        assert_eq!(value(&cfg, "y", "k"), "3");
    }

    #[test]
    fn mixed_case_keys_reach_node_config_and_plugins_lowercased() {
        // Tried: BASE with "Reserved_Space = 1K", then a plugin section with "Library" and
        // "Price" keys.
        let cfg = config(&format!(
            "{BASE}Reserved_Space = 1K\nPlugins = a\n[storageserver.plugins.a]\nLibrary = x.so\nPrice = 3\n"
        ))
        .expect("parses");
        assert_eq!(cfg.reserved_space, 1000);
        assert_eq!(
            cfg.server_plugins[0].source,
            PluginSource::Library("x.so".into())
        );
        assert_eq!(cfg.server_plugins[0].settings["price"], "3");
    }

    #[test]
    fn equals_and_colon_both_separate_whichever_comes_first() {
        // Tried: "url : http://x:80/ = y", "a=b:c", "spaced   =   out  ".
        let cfg = raw("[a]\nurl : http://x:80/ = y\na=b:c\nspaced   =   out  \n");
        assert_eq!(value(&cfg, "a", "url"), "http://x:80/ = y");
        assert_eq!(value(&cfg, "a", "a"), "b:c");
        assert_eq!(value(&cfg, "a", "spaced"), "out");
        // Tried: "k =": an empty value is a value.
        assert_eq!(value(&raw("[a]\nk =\n"), "a", "k"), "");
    }

    #[test]
    fn comments_take_whole_lines_only() {
        // Tried: "  # indented hash", "\t; indented semicolon" and
        // "k = v ; not a comment # nor this".
        let cfg = raw(
            "[a]\n  # indented hash\n\t; indented semicolon\nk = v ; not a comment # nor this\n",
        );
        assert_eq!(value(&cfg, "a", "k"), "v ; not a comment # nor this");
        assert_eq!(cfg.section("a").map(BTreeMap::len), Some(1));
    }

    #[test]
    fn indented_lines_continue_the_value() {
        // Tried: "key = one\n  two\n\n  three\n\n\nnext = x": the inner blank line stays,
        // the two after "three" go.
        let cfg = raw("[a]\nkey = one\n  two\n\n  three\n\n\nnext = x\n");
        assert_eq!(value(&cfg, "a", "key"), "one\ntwo\n\nthree");
        assert_eq!(value(&cfg, "a", "next"), "x");
        // Tried: "key =\n  two": the empty first line is kept as a leading "\n".
        assert_eq!(value(&raw("[a]\nkey =\n  two\n"), "a", "key"), "\ntwo");
        // Tried: an indented "[b]" after a key: it is part of the value, not a section.
        let cfg = raw("[a]\nkey = v\n  [b]\nk2 = w\n");
        assert_eq!(value(&cfg, "a", "key"), "v\n[b]");
        assert!(cfg.section("b").is_none());
        // Tried: comment lines between continuation lines: skipped, the value goes on.
        let cfg = raw("[a]\nkey = v\n# c\n  more\n  ; c2\n  end\n");
        assert_eq!(value(&cfg, "a", "key"), "v\nmore\nend");
        // Tried: two keys indented alike, then a deeper line: it continues the second.
        let cfg = raw("[a]\n  k = v\n  j = w\n    cont\n");
        assert_eq!(value(&cfg, "a", "k"), "v");
        assert_eq!(value(&cfg, "a", "j"), "w\ncont");
        assert_eq!(cfg.get("a", "j").map(|v| v.line), Some(3));
    }

    #[test]
    fn crlf_and_lone_cr_end_lines() {
        // Tried: "[a]\r\nk = v\r\n  w\rj = x": Python's text mode reads both as "\n".
        let cfg = raw("[a]\r\nk = v\r\n  w\rj = x");
        assert_eq!(value(&cfg, "a", "k"), "v\nw");
        assert_eq!(cfg.get("a", "j").map(|v| v.line), Some(4));
    }

    #[test]
    fn repeated_sections_merge_and_the_later_key_wins() {
        // Tried: "[a]\nk = 1\nj = 2\n[b]\nx = 0\n[a]\nK = 3\n" (strict=False).
        let cfg = raw("[a]\nk = 1\nj = 2\n[b]\nx = 0\n[a]\nK = 3\n");
        assert_eq!(
            cfg.get("a", "k"),
            Some(&RawValue {
                value: "3".into(),
                line: 7
            })
        );
        assert_eq!(value(&cfg, "a", "j"), "2");
        assert_eq!(value(&cfg, "b", "x"), "0");
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        // Tried: "[a]\nk\n": ConfigParser(allow_no_value=False) refuses a key with no value.
        assert_eq!(
            parse_error("[a]\nk = v\nk\n"),
            "tahoe.cfg:3: not a section header or key = value line"
        );
        // Tried: "k = v" before any header (MissingSectionHeaderError in Python).
        assert_eq!(
            parse_error("# top\nk = v\n"),
            "tahoe.cfg:2: a line before the first [section] header"
        );
        // Tried: "[a]\n= v\n": nothing before the delimiter.
        assert_eq!(
            parse_error("[a]\n= v\n"),
            "tahoe.cfg:2: no key before the '=' or ':'"
        );
        // Tried: "[]" in a section: too short to be a header, and no delimiter.
        assert_eq!(
            parse_error("[a]\n[]\n"),
            "tahoe.cfg:2: not a section header or key = value line"
        );
    }

    #[test]
    fn default_keys_appear_in_every_section() {
        // Tried: "[DEFAULT]\nd = 1\nk = 0\n[a]\nk = 2\n[default]\nx = 3\n": [default] in
        // lowercase is an ordinary section.
        let cfg = raw("[DEFAULT]\nd = 1\nk = 0\n[a]\nk = 2\n[default]\nx = 3\n");
        assert_eq!(
            cfg.get("a", "d"),
            Some(&RawValue {
                value: "1".into(),
                line: 2
            })
        );
        assert_eq!(value(&cfg, "a", "k"), "2");
        assert_eq!(value(&cfg, "default", "d"), "1");
        assert_eq!(value(&cfg, "DEFAULT", "k"), "0");
        assert!(cfg.get("DEFAULT", "x").is_none());
        let keys: Vec<&String> = cfg.section("a").expect("[a]").keys().collect();
        assert_eq!(keys, ["d", "k"]);
        // A section that does not exist inherits nothing: ConfigParser's NoSectionError.
        assert!(cfg.get("missing", "d").is_none());
        // Plugins see [DEFAULT]'s keys too, as Tahoe's `config.items(section)` gives them.
        let cfg = config(&format!(
            "[DEFAULT]\nshared = yes\n{BASE}plugins = a\n[storageserver.plugins.a]\n"
        ))
        .expect("parses");
        assert_eq!(cfg.server_plugins[0].settings["shared"], "yes");
    }

    #[test]
    fn one_leading_byte_order_mark_is_skipped() {
        // Tried: "\u{feff}[node]\nk = v\n".
        assert_eq!(value(&raw("\u{feff}[node]\nk = v\n"), "node", "k"), "v");
        // Tried: two BOMs: "utf-8-sig" drops one; the second starts the first line.
        assert_eq!(
            parse_error("\u{feff}\u{feff}[node]\nk = v\n"),
            "tahoe.cfg:1: a line before the first [section] header"
        );
    }

    #[test]
    fn percent_signs_expand_as_configparser_interpolates() {
        // Tried: "%%", "%(Host)s" naming a [DEFAULT] key, and a reference to a reference.
        let cfg = raw(
            "[DEFAULT]\nhost = example.org\n[a]\nurl = http://%(Host)s/%(path)s\npath = %(name)s%%\nname = p\n",
        );
        assert_eq!(value(&cfg, "a", "url"), "http://example.org/p%");
        assert_eq!(value(&cfg, "a", "path"), "p%");
        // Tried: "%20", "%(nope)s", "%(open" and a loop: each refused with section, key, line.
        for (text, problem) in [
            (
                "[a]\nk = a%20b\n",
                "tahoe.cfg:2: [a] k: '%' must be followed by '%' or '('",
            ),
            (
                "[a]\nk = %(nope)s\n",
                "tahoe.cfg:2: [a] k: %(nope)s names no key",
            ),
            (
                "[a]\n\nk = %(open\n",
                "tahoe.cfg:3: [a] k: bad %(key)s reference",
            ),
        ] {
            let err = parse_error(text);
            assert!(err.starts_with(problem), "{text:?}: {err}");
        }
        // Tried: "k = %(k)s" and a loop of two keys.
        for text in ["[a]\nk = %(k)s\n", "[a]\nk = %(j)s\nj = %(k)s\n"] {
            let err = parse_error(text);
            assert!(err.contains("nest deeper than 10"), "{text:?}: {err}");
        }
    }

    #[test]
    fn ten_keys_each_naming_the_previous_sixteen_times_are_refused_not_expanded() {
        // Tried: the fuzzer's "billion laughs" input (944 bytes that would expand to about a
        // terabyte): refused quickly, naming the key, instead of hanging start-up.
        let mut text = String::from("[a]\nk0 = xxxxxxxxxxxxxxxx\n");
        for i in 1..10 {
            text.push_str(&format!(
                "k{i} = {}\n",
                format!("%(k{})s", i - 1).repeat(16)
            ));
        }
        let err = parse_error(&text);
        assert!(err.contains("expand to more than 65536 bytes"), "{err}");
    }

    /// The same bytes through stock Tahoe's reader (`configutil.get_config`, run by python3)
    /// and through ours give the same sections, keys and values.
    #[test]
    fn reads_a_tricky_file_as_python_configparser_does() {
        // Tried: a BOM, mixed-case keys, ':' delimiters, a multi-line value with blank lines
        // inside and after, inline ';' and '#', a repeated key and sections, [DEFAULT], "%%"
        // and "%(key)s", CRLF line ends, tab indentation and a spaced section name.
        let sample = concat!(
            "\u{feff}# tahoe.cfg as an operator might leave it\n",
            "[DEFAULT]\n",
            "Shared = from-default\n",
            "[node]\n",
            "Nickname = Mixed Case\n",
            "tub.port: tcp:3457:interface=127.0.0.1\r\n",
            "tub.location = tcp:example.org:3457 ; not a comment # nor this\n",
            "  ; a comment line inside the value\n",
            "\tstill = the value\n",
            "[storage]\n",
            "enabled = false\n",
            "plugins = a,\n",
            "    b\n",
            "\n",
            "    c\n",
            "\n",
            "\n",
            "[storageserver.plugins.a]\n",
            "Library = plugins/liba.so\n",
            "PRICE = 1\n",
            "price = 2\n",
            "url : http://example.org:80/path?x=1\n",
            "[node]\n",
            "extra = %(nickname)s at %(SHARED)s, 100%%\n",
            "[storage]\r\n",
            "enabled = true\r\n",
            "[ spaced ]\n",
            "key =\n",
            "    only continuation\n",
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("tahoe.cfg");
        std::fs::write(&path, sample).expect("write the sample");
        let script = concat!(
            "import configparser, json, sys\n",
            "with open(sys.argv[1], 'r', encoding='utf-8-sig') as f:\n",
            "    text = f.read()\n",
            "parser = configparser.ConfigParser(strict=False)\n",
            "parser.read_string(text)\n",
            "names = parser.sections() + [parser.default_section]\n",
            "print(json.dumps({name: dict(parser.items(name)) for name in names}))\n",
        );
        let output = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&path)
            .output()
            .expect("this test needs python3 on PATH to compare with Python's configparser");
        assert!(
            output.status.success(),
            "python3 failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let python: BTreeMap<String, BTreeMap<String, String>> =
            serde_json::from_slice(&output.stdout).expect("python3 printed JSON");

        let ours = RawConfig::read(&path).expect("our reader accepts the sample");
        let ours: BTreeMap<String, BTreeMap<String, String>> = ours
            .sections
            .iter()
            .map(|(name, options)| {
                let values = options
                    .iter()
                    .map(|(key, raw)| (key.clone(), raw.value.clone()))
                    .collect();
                (name.clone(), values)
            })
            .collect();
        assert_eq!(ours, python);
        // The sample did exercise the rules: a few values checked by hand.
        assert_eq!(ours["storage"]["plugins"], "a,\nb\n\nc");
        assert_eq!(ours["node"]["extra"], "Mixed Case at from-default, 100%");
        assert_eq!(ours["storageserver.plugins.a"]["price"], "2");
        assert_eq!(ours[" spaced "]["key"], "\nonly continuation");
    }

    #[test]
    fn limits_come_from_the_gbs_section() {
        let cfg = config(BASE).unwrap();
        assert_eq!(cfg.limits, Limits::default());
        let cfg = config(&format!(
            "{BASE}[gbs]\nmax_connections = 10\nidle_timeout = 2s\nupload_buffer = 1MiB\n\
             download_buffer = 2MiB\n"
        ))
        .unwrap();
        assert_eq!(cfg.limits.max_connections, 10);
        assert_eq!(cfg.limits.idle_timeout, Duration::from_secs(2));
        assert_eq!(cfg.limits.upload_buffer, 1 << 20);
        assert_eq!(cfg.limits.download_buffer, 2 << 20);
        for (line, problem) in [
            ("max_connections = 0", "not a whole number above 0"),
            ("idle_timeout = 0s", "longer than 0"),
            ("mutable_write_buffer = 1M", "at least"),
            ("max_conections = 5", "unknown key"),
        ] {
            let err = config(&format!("{BASE}[gbs]\n{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("[gbs]") && err.contains(problem),
                "{line}: {err}"
            );
        }
    }

    #[test]
    fn durations_in_the_units_the_readme_lists() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration(" 500ms "), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "-1s", "1.5s", "3 days", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn sizes_as_tahoe_spells_them() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("10K"), Ok(10_000));
        assert_eq!(parse_size("5MB"), Ok(5_000_000));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999T").is_err());
    }
}
