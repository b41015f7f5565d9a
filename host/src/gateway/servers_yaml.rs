//! The `servers.yaml` a stock Tahoe client reads its storage servers from
//! (`private/servers.yaml`, Tahoe's static server definitions): written for `gbs` nodes
//! directly or through a gateway, and read as the gateway's upstreams.
//!
//! Tahoe derives lease secrets and write enablers from the server's Foolscap tub id in the
//! announced `anonymous-storage-FURL`, even over GBS (`gbs-protocol.md` §2.4), and places
//! shares by the server id. So a server is announced with the same server id and FURL
//! whether the client reaches it directly or through a gateway: a `gbs` node's are derived
//! from its key (its NURL's SPKI hash), as the node derives its own id; a server read from a
//! stock `servers.yaml` keeps the ones written there. What a client stores through the
//! gateway so stays manageable without it.
//!
//! The reader takes the subset of YAML such files use (block mappings and sequences, plain
//! or quoted scalars, comments), not YAML at large.

use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};

use crate::protocol::{base32_encode, Nurl};

/// How a storage server is announced to a stock client, apart from its NURL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The key of its entry (`v0-...`).
    pub server_id: String,
    /// Its nickname.
    pub nickname: String,
    /// Its `anonymous-storage-FURL`, whose tub id Tahoe derives secrets from.
    pub furl: String,
    /// Its `permutation-seed-base32`, which Tahoe places shares by (without one, by the
    /// server id).
    pub permutation_seed: Option<String>,
}

impl Announcement {
    /// A `gbs` node's, derived from its key.
    pub fn of_gbs_node(nurl: &Nurl) -> Self {
        let digest = Sha256::digest(nurl.spki_hash.to_string().as_bytes());
        // The node's own id: the first 20 bytes, where Tahoe has its 20-byte tub id.
        let tub_id = base32_encode(&digest[..20]);
        let server_id = format!("v0-{}", base32_encode(&digest));
        Self {
            nickname: format!("gbs-{}", &server_id[3..11]),
            // A Foolscap address that is never dialled: the client talks GBS to the NURL.
            furl: format!("pb://{tub_id}@tcp:{}:{}/{tub_id}", nurl.host, nurl.port),
            server_id,
            permutation_seed: None,
        }
    }
}

/// A whole `servers.yaml` announcing each server with the NURL the client should use.
pub fn servers_yaml(servers: &[(Announcement, Nurl)]) -> String {
    let quoted = |text: &str| serde_json::Value::String(text.to_owned()).to_string();
    let mut yaml = String::from("storage:\n");
    for (announcement, nurl) in servers {
        let _ = writeln!(yaml, "  {}:", quoted(&announcement.server_id));
        let _ = writeln!(yaml, "    ann:");
        let _ = writeln!(yaml, "      nickname: {}", quoted(&announcement.nickname));
        let _ = writeln!(
            yaml,
            "      anonymous-storage-FURL: {}",
            quoted(&announcement.furl)
        );
        if let Some(seed) = &announcement.permutation_seed {
            let _ = writeln!(yaml, "      permutation-seed-base32: {}", quoted(seed));
        }
        let _ = writeln!(yaml, "      anonymous-storage-NURLs:");
        let _ = writeln!(yaml, "        - {}", quoted(&nurl.to_string()));
    }
    yaml
}

/// The GBS servers of a stock `servers.yaml`: each entry's announcement and first NURL.
/// An entry without a NURL (a Foolscap-only server) is an error naming it.
pub fn read_servers_yaml(text: &str) -> Result<Vec<(Announcement, Nurl)>, String> {
    let mut servers = Vec::new();
    let mut current: Option<Entry> = None;
    let mut in_storage = false;
    let mut in_nurls = false;
    for (number, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        if line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let line = line.trim();
        let at = |what: &str| format!("servers.yaml line {}: {what}", number + 1);
        if indent == 0 {
            in_storage = line == "storage:";
            continue;
        }
        if !in_storage {
            continue;
        }
        if let Some(item) = line.strip_prefix("- ") {
            if in_nurls {
                if let Some(entry) = current.as_mut() {
                    entry.nurls.push(unquote(item.trim()));
                }
            }
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(at("expected `key: value`"));
        };
        let (key, value) = (unquote(key.trim()), unquote(value.trim()));
        in_nurls = key == "anonymous-storage-NURLs";
        match (indent, key.as_str()) {
            (2, _) => {
                if let Some(entry) = current.take() {
                    servers.push(entry.finish()?);
                }
                current = Some(Entry::new(key));
            }
            (_, "nickname") => current.iter_mut().for_each(|e| e.nickname = value.clone()),
            (_, "anonymous-storage-FURL") => {
                current.iter_mut().for_each(|e| e.furl = value.clone())
            }
            (_, "permutation-seed-base32") => current
                .iter_mut()
                .for_each(|e| e.permutation_seed = Some(value.clone())),
            _ => {}
        }
    }
    if let Some(entry) = current.take() {
        servers.push(entry.finish()?);
    }
    Ok(servers)
}

struct Entry {
    id: String,
    nickname: String,
    furl: String,
    permutation_seed: Option<String>,
    nurls: Vec<String>,
}

impl Entry {
    fn new(id: String) -> Self {
        Self {
            id,
            nickname: String::new(),
            furl: String::new(),
            permutation_seed: None,
            nurls: Vec::new(),
        }
    }

    fn finish(self) -> Result<(Announcement, Nurl), String> {
        let text = self.nurls.first().ok_or_else(|| {
            format!(
                "server {:?} in servers.yaml has no anonymous-storage-NURLs (Foolscap only)",
                self.id
            )
        })?;
        let nurl: Nurl = text
            .parse()
            .map_err(|e| format!("server {:?} in servers.yaml: {text:?}: {e}", self.id))?;
        if self.furl.is_empty() {
            return Err(format!(
                "server {:?} in servers.yaml has no anonymous-storage-FURL",
                self.id
            ));
        }
        Ok((
            Announcement {
                server_id: self.id,
                nickname: self.nickname,
                furl: self.furl,
                permutation_seed: self.permutation_seed,
            },
            nurl,
        ))
    }
}

/// The line without a `#` comment (one at the start or after white space, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if previous.is_whitespace() => return &line[..at],
            _ => {}
        }
        previous = c;
    }
    line
}

fn unquote(text: &str) -> String {
    let text = text.trim();
    if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
        serde_json::from_str(text).unwrap_or_else(|_| text[1..text.len() - 1].to_owned())
    } else if text.len() >= 2 && text.starts_with('\'') && text.ends_with('\'') {
        text[1..text.len() - 1].replace("''", "'")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NURL: &str = "pb://WvQpEy1vElE-08RDYWr_X63JYNn5KR14kgfTbEnIDVU@127.0.0.1:47125/abcdefghijklmnopqrstuvwxyz234567#v=1";

    #[test]
    fn what_is_written_reads_back() {
        let nurl: Nurl = NURL.parse().expect("NURL");
        let mut announcement = Announcement::of_gbs_node(&nurl);
        announcement.permutation_seed = Some("ni2hi2zx".to_owned());
        // The tub id is 32 base32 characters, as Tahoe's are.
        let tub = announcement.furl.trim_start_matches("pb://");
        assert_eq!(tub.split('@').next().map(str::len), Some(32));
        let yaml = servers_yaml(&[(announcement.clone(), nurl.clone())]);
        assert_eq!(read_servers_yaml(&yaml), Ok(vec![(announcement, nurl)]));
    }

    #[test]
    fn a_stock_file_keeps_its_ids_and_foolscap_only_servers_are_named() {
        let stock = format!(
            "# written by hand\nstorage:\n  v0-abc:   # a server\n    ann:\n      nickname: 'alice''s'\n\
             \x20     anonymous-storage-FURL: pb://tubid@tcp:example.org:1/swiss\n\
             \x20     anonymous-storage-NURLs:\n        - {NURL}\n"
        );
        let servers = read_servers_yaml(&stock).expect("valid");
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].0.server_id, "v0-abc");
        assert_eq!(servers[0].0.nickname, "alice's");
        assert_eq!(servers[0].0.furl, "pb://tubid@tcp:example.org:1/swiss");
        assert_eq!(servers[0].1.to_string(), NURL);
        // Input tried: a server announcing only a FURL.
        let foolscap =
            "storage:\n  v0-old:\n    ann:\n      anonymous-storage-FURL: pb://t@tcp:h:1/s\n";
        let error = read_servers_yaml(foolscap).expect_err("no NURL");
        assert!(
            error.contains("v0-old") && error.contains("Foolscap"),
            "{error}"
        );
    }
}
