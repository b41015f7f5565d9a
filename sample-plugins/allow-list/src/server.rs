//! The server side: which tokens are allowed, and the admit decision.

use std::path::Path;

use gbs_plugin_interface::ciborium::Value;
use gbs_plugin_interface::{Operation, PluginError, Rejection, ServerPlugin, Settings};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::scheme::{announcement, token_of};

const TOKENS_KEY: &str = "tokens";
const TOKENS_FILE_KEY: &str = "tokens-file";

/// The server side of `allow-list`: admits an operation only when its plugin data carries
/// one of the configured tokens.
///
/// Only SHA-256 hashes of the tokens are kept, and a presented token is compared with every
/// one of them in constant time, so neither timing nor a memory dump tells a token.
pub struct AllowListServer {
    allowed: Vec<[u8; 32]>,
}

impl std::fmt::Debug for AllowListServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllowListServer")
            .field("tokens", &self.allowed.len())
            .finish()
    }
}

impl AllowListServer {
    /// Reads `tokens` and `tokens-file`; between them they must name at least one token.
    ///
    /// # Errors
    ///
    /// An unknown setting, an empty entry in `tokens`, a `tokens-file` that is relative or
    /// unreadable, or no token at all. The messages never contain a token.
    pub fn new(settings: &Settings) -> Result<Self, PluginError> {
        for key in settings.keys() {
            if key != TOKENS_KEY && key != TOKENS_FILE_KEY {
                return Err(unknown_setting(key));
            }
        }
        let mut tokens = match settings.get(TOKENS_KEY) {
            Some(list) => parse_token_list(list)?,
            None => Vec::new(),
        };
        if let Some(path) = settings.get(TOKENS_FILE_KEY) {
            tokens.extend(read_tokens_file(Path::new(path.trim()))?);
        }
        if tokens.is_empty() {
            return Err(PluginError::failed(format!(
                "no tokens: set {TOKENS_KEY} = a, b, ... or {TOKENS_FILE_KEY} = /absolute/path"
            )));
        }
        Ok(Self {
            allowed: tokens.iter().map(|token| hash(token)).collect(),
        })
    }

    /// Admits (`Ok`) or refuses plugin data, whatever the operation.
    ///
    /// # Errors
    ///
    /// - 401 `token-required`: no plugin data;
    /// - 400 `bad-plugin-data`: not a CBOR map `{"token": text}`;
    /// - 403 `token-refused`: a token that is not configured.
    ///
    /// Each carries details `{"hint": text}`; none echoes what the client sent.
    pub fn check(&self, plugin_data: Option<&[u8]>) -> Result<(), Rejection> {
        let Some(data) = plugin_data else {
            return Err(Rejection::new(
                401,
                "token-required",
                "this server admits only clients that present an allow-list token",
            )
            .with_details(&hint(
                "configure [storageclient.plugins.allow-list] token = ... on the client",
            )));
        };
        let token = token_of(data).map_err(|e| {
            Rejection::new(
                400,
                "bad-plugin-data",
                "allow-list plugin data must be a CBOR map {\"token\": text}",
            )
            .with_details(&hint(e.hint()))
        })?;
        if self.allows(&token) {
            Ok(())
        } else {
            Err(Rejection::new(
                403,
                "token-refused",
                "the token presented is not on this server's allow list",
            )
            .with_details(&hint(
                "check the token setting of [storageclient.plugins.allow-list] with the server's operator",
            )))
        }
    }

    fn allows(&self, token: &str) -> bool {
        let presented = hash(token);
        // No early exit: every configured token is compared, each in constant time.
        let found = self.allowed.iter().fold(Choice::from(0), |found, allowed| {
            found | allowed.ct_eq(&presented)
        });
        found.into()
    }
}

impl ServerPlugin for AllowListServer {
    /// It keeps no account of what happened: the host need not tell it.
    #[cfg(not(feature = "interface-1-0"))]
    const HOOKS: gbs_plugin_interface::ServerHooks = gbs_plugin_interface::ServerHooks::ADMIT;

    /// `{"scheme": "token-v1"}`.
    fn announce(&self) -> Value {
        announcement()
    }

    async fn admit(
        &self,
        _operation: Operation,
        plugin_data: Option<Vec<u8>>,
    ) -> Result<(), Rejection> {
        self.check(plugin_data.as_deref())
    }
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hint(text: &str) -> Value {
    Value::Map(vec![(Value::Text("hint".into()), Value::Text(text.into()))])
}

fn unknown_setting(key: &str) -> PluginError {
    let advice = if key == "token" || key == "fallback-token" {
        format!("; the server side takes {TOKENS_KEY:?}, {key:?} belongs in [storageclient.plugins.allow-list]")
    } else {
        String::new()
    };
    PluginError::failed(format!(
        "unknown setting {key:?}{advice}; the server side of allow-list has {TOKENS_KEY:?} and {TOKENS_FILE_KEY:?}"
    ))
}

/// `a, b, c`: entries trimmed, none empty. Errors name the entry's position, not its text.
fn parse_token_list(list: &str) -> Result<Vec<String>, PluginError> {
    let entries: Vec<&str> = list.split(',').map(str::trim).collect();
    let count = entries.len();
    for (position, entry) in (1..).zip(&entries) {
        if entry.is_empty() {
            return Err(PluginError::failed(format!(
                "{TOKENS_KEY}: entry {position} of {count} is empty"
            )));
        }
    }
    Ok(entries.into_iter().map(str::to_owned).collect())
}

/// One token per line; blank lines and lines starting with `#` are skipped.
fn read_tokens_file(path: &Path) -> Result<Vec<String>, PluginError> {
    // The plugin does not know the node directory, so a relative path would depend on
    // the server's working directory.
    if !path.is_absolute() {
        return Err(PluginError::failed(format!(
            "{TOKENS_FILE_KEY} must be an absolute path, not {}",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        PluginError::failed(format!(
            "{TOKENS_FILE_KEY}: cannot read {}: {e}",
            path.display()
        ))
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use gbs_plugin_interface::from_cbor;
    use gbs_plugin_interface::testing::settings;

    use super::*;
    use crate::scheme::plugin_data;
    use crate::test_support::now;

    fn server(pairs: &[(&str, &str)]) -> AllowListServer {
        AllowListServer::new(&settings(pairs)).unwrap()
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        AllowListServer::new(&settings(pairs))
            .unwrap_err()
            .to_string()
    }

    fn hint_of(rejection: &Rejection) -> String {
        let details = rejection.details().unwrap();
        let entries = details.as_map().unwrap();
        assert_eq!(entries.len(), 1, "{details:?}");
        assert_eq!(entries[0].0.as_text(), Some("hint"));
        entries[0].1.as_text().unwrap().to_owned()
    }

    #[test]
    fn configured_tokens_are_admitted() {
        let server = server(&[("tokens", " alpha ,beta, gamma")]);
        for token in ["alpha", "beta", "gamma"] {
            assert_eq!(server.check(Some(&plugin_data(token))), Ok(()), "{token}");
        }
    }

    #[test]
    fn no_plugin_data_is_401_token_required() {
        let rejection = server(&[("tokens", "alpha")]).check(None).unwrap_err();
        assert_eq!(rejection.status, 401);
        assert_eq!(rejection.code.as_str(), "token-required");
        assert!(hint_of(&rejection).contains("token = ..."));
    }

    #[test]
    fn unknown_token_is_403_and_never_echoed() {
        let server = server(&[("tokens", "alpha, beta")]);
        // Near misses: a prefix, an extension, another case, surrounding space.
        for wrong in ["alph", "alphabet", "ALPHA", " alpha", ""] {
            let rejection = server.check(Some(&plugin_data(wrong))).unwrap_err();
            assert_eq!(rejection.status, 403, "{wrong:?}");
            assert_eq!(rejection.code.as_str(), "token-refused", "{wrong:?}");
            let everything = format!("{rejection:?} {}", hint_of(&rejection));
            assert!(!everything.contains("alpha"), "{wrong:?}: {everything}");
            if !wrong.is_empty() {
                assert!(
                    !everything.contains(wrong.trim()),
                    "{wrong:?}: {everything}"
                );
            }
        }
    }

    #[test]
    fn undecodable_plugin_data_is_400_bad_plugin_data() {
        let server = server(&[("tokens", "alpha")]);
        for (name, data) in [
            ("not CBOR", vec![0xff, 0xfe]),
            ("CBOR text, not a map", b"\x65alpha".to_vec()),
            ("map without token", vec![0xa0]),
        ] {
            let rejection = server.check(Some(&data)).unwrap_err();
            assert_eq!(rejection.status, 400, "{name}");
            assert_eq!(rejection.code.as_str(), "bad-plugin-data", "{name}");
            assert!(!hint_of(&rejection).contains("alpha"), "{name}");
        }
    }

    #[test]
    fn admit_hook_applies_the_check_to_any_operation() {
        let server = server(&[("tokens", "alpha")]);
        let op = Operation::Lease {
            storage_index: [0; 16],
            lease: [1; 32],
        };
        assert_eq!(
            now(server.admit(op.clone(), Some(plugin_data("alpha")))),
            Ok(())
        );
        let refused = now(server.admit(op, Some(plugin_data("beta")))).unwrap_err();
        assert_eq!(refused.status, 403);
    }

    #[test]
    fn announcement_is_the_token_v1_scheme() {
        let announced = server(&[("tokens", "alpha")]).announce();
        let bytes = gbs_plugin_interface::to_cbor(&announced);
        let back: Value = from_cbor(&bytes).unwrap();
        assert_eq!(
            back,
            Value::Map(vec![(
                Value::Text("scheme".into()),
                Value::Text("token-v1".into())
            )])
        );
    }

    #[test]
    fn tokens_file_adds_one_token_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# team A\nfile-one\n\n  file-two  \n").unwrap();
        let path = path.to_str().unwrap();
        let server = server(&[("tokens", "inline"), ("tokens-file", path)]);
        for token in ["inline", "file-one", "file-two"] {
            assert_eq!(server.check(Some(&plugin_data(token))), Ok(()), "{token}");
        }
        let comment = server.check(Some(&plugin_data("# team A"))).unwrap_err();
        assert_eq!(comment.status, 403);
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason_and_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let comments_only = dir.path().join("comments");
        std::fs::write(&comments_only, "# nothing yet\n\n").unwrap();
        let comments_only = comments_only.to_str().unwrap().to_owned();
        let missing = dir.path().join("missing").to_str().unwrap().to_owned();
        for (name, pairs, expected) in [
            ("no settings", vec![], "no tokens"),
            (
                "empty tokens",
                vec![("tokens", "  ")],
                "tokens: entry 1 of 1 is empty",
            ),
            (
                "empty middle entry",
                vec![("tokens", "secret-a,,secret-b")],
                "entry 2 of 3 is empty",
            ),
            (
                "trailing comma",
                vec![("tokens", "secret-a,")],
                "entry 2 of 2 is empty",
            ),
            (
                "relative file",
                vec![("tokens-file", "tokens.txt")],
                "must be an absolute path",
            ),
            (
                "missing file",
                vec![("tokens-file", missing.as_str())],
                "cannot read",
            ),
            (
                "file of comments",
                vec![("tokens-file", comments_only.as_str())],
                "no tokens",
            ),
            (
                "client key",
                vec![("token", "secret-a")],
                "\"token\" belongs in [storageclient",
            ),
            (
                "misspelt key",
                vec![("tokenz", "secret-a")],
                "unknown setting \"tokenz\"",
            ),
        ] {
            let message = error(&pairs);
            assert!(message.contains(expected), "{name}: {message}");
            assert!(!message.contains("secret-"), "{name}: {message}");
        }
    }

    #[test]
    fn debug_output_shows_no_token() {
        let server = server(&[("tokens", "hunter2")]);
        let debug = format!("{server:?}");
        assert_eq!(debug, "AllowListServer { tokens: 1 }");
    }
}
