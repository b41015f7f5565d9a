//! `tahoe.cfg`: read raw, then checked once into [`NodeConfig`].
//!
//! [`RawConfig`] keeps the INI text as strings with line numbers; [`NodeConfig::from_raw`]
//! turns it into typed settings and names the section, key and line of the first bad value.
//! Later code only sees `NodeConfig`.

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
    /// The text after `=`, trimmed.
    pub value: String,
    /// 1-based line number in the file.
    pub line: usize,
}

/// The INI file as written: section → key → value.
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
    #[error("{path}:{line}: not a section header or key = value line")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
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

impl RawConfig {
    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses INI text. `#` and `;` start comment lines; keys before any section are refused.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut sections: BTreeMap<String, BTreeMap<String, RawValue>> = BTreeMap::new();
        let mut current: Option<String> = None;
        for (index, raw_line) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw_line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            let syntax = || ConfigError::Syntax {
                path: path.to_owned(),
                line,
            };
            if let Some(name) = trimmed.strip_prefix('[') {
                let name = name.strip_suffix(']').ok_or_else(syntax)?.trim().to_owned();
                sections.entry(name.clone()).or_default();
                current = Some(name);
                continue;
            }
            let section = current.as_ref().ok_or_else(syntax)?;
            let (key, value) = trimmed.split_once('=').ok_or_else(syntax)?;
            let entry = RawValue {
                value: value.trim().to_owned(),
                line,
            };
            sections
                .entry(section.clone())
                .or_default()
                .insert(key.trim().to_owned(), entry);
        }
        Ok(Self {
            path: path.to_owned(),
            sections,
        })
    }

    /// The value of `key` in `section`, if present.
    pub fn get(&self, section: &str, key: &str) -> Option<&RawValue> {
        self.sections.get(section)?.get(key)
    }

    /// The keys and values of one section.
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
}

impl NodeConfig {
    /// Reads `<node_dir>/tahoe.cfg`.
    pub fn load(node_dir: &Path) -> Result<Self, ConfigError> {
        Self::from_raw(node_dir, &RawConfig::read(&node_dir.join("tahoe.cfg"))?)
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
        };
        Ok(Self {
            node_dir: node_dir.to_owned(),
            listen,
            location,
            storage_enabled,
            reserved_space,
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
    if let Some(unknown) = raw
        .section(SECTION)
        .and_then(|keys| keys.keys().find(|key| !LIMIT_KEYS.contains(&key.as_str())))
    {
        return Err(raw.bad(SECTION, unknown, "unknown key"));
    }
    Ok(limits)
}

/// The keys `[gbs]` may hold.
const LIMIT_KEYS: [&str; 8] = [
    "max_connections",
    "max_handshakes",
    "handshake_timeout",
    "idle_timeout",
    "drain_timeout",
    "plugin_deadline",
    "upload_buffer",
    "mutable_write_buffer",
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

    #[test]
    fn limits_come_from_the_gbs_section() {
        let cfg = config(BASE).unwrap();
        assert_eq!(cfg.limits, Limits::default());
        let cfg = config(&format!(
            "{BASE}[gbs]\nmax_connections = 10\nidle_timeout = 2s\nupload_buffer = 1MiB\n"
        ))
        .unwrap();
        assert_eq!(cfg.limits.max_connections, 10);
        assert_eq!(cfg.limits.idle_timeout, Duration::from_secs(2));
        assert_eq!(cfg.limits.upload_buffer, 1 << 20);
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
