//! The client side: attach the configured token, and retry once with a fallback token.

use std::sync::atomic::{AtomicBool, Ordering};

use gbs_plugin_interface::ciborium::Value;
use gbs_plugin_interface::{
    ClientPlugin, Operation, PluginError, Rejection, ServerConnection, Settings,
};

use crate::scheme::{is_token_v1, plugin_data};

const TOKEN_KEY: &str = "token";
const FALLBACK_KEY: &str = "fallback-token";

/// The client side of `allow-list`: presents `token` to every server that announces
/// `token-v1`.
///
/// With a `fallback-token` (for token rotation), the first `token-refused` rejection makes
/// it retry that operation once with the fallback, and from then on it presents the
/// fallback first. A refused fallback is not retried: the client gives up and the operation
/// fails with the server's rejection. An operation that was already prepared with `token`
/// when another switched to the fallback also gives up; the next one uses the fallback.
pub struct AllowListClient {
    token: String,
    fallback: Option<String>,
    /// Set by the first refusal of `token`; with a fallback only.
    switched: AtomicBool,
}

impl std::fmt::Debug for AllowListClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllowListClient")
            .field("fallback", &self.fallback.is_some())
            .field("switched", &self.switched.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl AllowListClient {
    /// Reads `token` (required) and `fallback-token` (optional, different from `token`).
    ///
    /// # Errors
    ///
    /// An unknown setting, a missing or empty `token`, an empty `fallback-token` or one equal
    /// to `token`. The messages never contain a token.
    pub fn new(settings: &Settings) -> Result<Self, PluginError> {
        for key in settings.keys() {
            if key != TOKEN_KEY && key != FALLBACK_KEY {
                return Err(unknown_setting(key));
            }
        }
        let token = match settings.get(TOKEN_KEY).map(|t| t.trim()) {
            Some(token) if !token.is_empty() => token.to_owned(),
            Some(_) => return Err(PluginError::failed(format!("{TOKEN_KEY} is empty"))),
            None => {
                return Err(PluginError::failed(format!(
                    "{TOKEN_KEY} is required: the token this client presents"
                )))
            }
        };
        let fallback = match settings.get(FALLBACK_KEY).map(|t| t.trim()) {
            None => None,
            Some("") => return Err(PluginError::failed(format!("{FALLBACK_KEY} is empty"))),
            Some(fallback) if fallback == token => {
                return Err(PluginError::failed(format!(
                "{FALLBACK_KEY} is the same as {TOKEN_KEY}; a retry with it would be refused too"
            )))
            }
            Some(fallback) => Some(fallback.to_owned()),
        };
        Ok(Self {
            token,
            fallback,
            switched: AtomicBool::new(false),
        })
    }

    /// The plugin data for a new operation: the token presented first.
    pub fn plugin_data(&self) -> Vec<u8> {
        match &self.fallback {
            Some(fallback) if self.switched.load(Ordering::SeqCst) => plugin_data(fallback),
            _ => plugin_data(&self.token),
        }
    }

    /// What to do after a rejection: the fallback's plugin data the first time `token` is
    /// refused (`token-refused`), otherwise `None`, giving up.
    pub fn retry_data(&self, rejection: &Rejection) -> Option<Vec<u8>> {
        if rejection.code.as_str() != "token-refused" {
            return None;
        }
        let fallback = self.fallback.as_ref()?;
        // Only the first refusal switches; every later one gives up.
        let first = !self.switched.swap(true, Ordering::SeqCst);
        first.then(|| plugin_data(fallback))
    }
}

impl ClientPlugin for AllowListClient {
    /// Only servers that announce `{"scheme": "token-v1"}`.
    fn matches(&self, announcement: &Value) -> bool {
        is_token_v1(announcement)
    }

    async fn prepare(
        &self,
        _server: ServerConnection,
        _operation: Operation,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        Ok(Some(self.plugin_data()))
    }

    async fn rejected(
        &self,
        _server: ServerConnection,
        _operation: Operation,
        rejection: Rejection,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        Ok(self.retry_data(&rejection))
    }
}

fn unknown_setting(key: &str) -> PluginError {
    let advice = if key == "tokens" || key == "tokens-file" {
        format!("; the client side takes {TOKEN_KEY:?}, {key:?} belongs in [storageserver.plugins.allow-list]")
    } else {
        String::new()
    };
    PluginError::failed(format!(
        "unknown setting {key:?}{advice}; the client side of allow-list has {TOKEN_KEY:?} and {FALLBACK_KEY:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::token_of;
    use crate::test_support::{now, server_connection};
    use gbs_plugin_interface::testing::settings;

    fn client(pairs: &[(&str, &str)]) -> AllowListClient {
        AllowListClient::new(&settings(pairs)).unwrap()
    }

    fn refused() -> Rejection {
        Rejection::new(403, "token-refused", "not on the list")
    }

    fn token_in(data: Option<Vec<u8>>) -> Option<String> {
        data.map(|data| token_of(&data).unwrap())
    }

    fn op() -> Operation {
        Operation::Version
    }

    #[test]
    fn prepare_attaches_the_configured_token() {
        let client = client(&[("token", " mine ")]);
        let data = now(client.prepare(server_connection(), op())).unwrap();
        assert_eq!(token_in(data), Some("mine".to_owned()));
    }

    #[test]
    fn without_fallback_a_refusal_gives_up() {
        let client = client(&[("token", "mine")]);
        let retry = now(client.rejected(server_connection(), op(), refused())).unwrap();
        assert_eq!(retry, None);
    }

    #[test]
    fn with_fallback_the_first_refusal_retries_once_with_it() {
        let client = client(&[("token", "old"), ("fallback-token", "new")]);
        let retry = now(client.rejected(server_connection(), op(), refused())).unwrap();
        assert_eq!(token_in(retry), Some("new".to_owned()));
        // The fallback refused as well: give up rather than loop.
        let again = now(client.rejected(server_connection(), op(), refused())).unwrap();
        assert_eq!(again, None);
        // Later operations present the fallback first.
        let next = now(client.prepare(server_connection(), op())).unwrap();
        assert_eq!(token_in(next), Some("new".to_owned()));
    }

    #[test]
    fn other_rejections_are_not_retried_even_with_a_fallback() {
        let client = client(&[("token", "old"), ("fallback-token", "new")]);
        for (status, code) in [
            (401, "token-required"),
            (400, "bad-plugin-data"),
            (429, "slow-down"),
        ] {
            let rejection = Rejection::new(status, code, "no");
            assert_eq!(client.retry_data(&rejection), None, "{code}");
        }
        // Those did not use up the one retry.
        assert_eq!(
            token_in(client.retry_data(&refused())),
            Some("new".to_owned())
        );
    }

    #[test]
    fn matches_only_token_v1_servers() {
        let client = client(&[("token", "mine")]);
        let v1 = Value::Map(vec![(
            Value::Text("scheme".into()),
            Value::Text("token-v1".into()),
        )]);
        let v2 = Value::Map(vec![(
            Value::Text("scheme".into()),
            Value::Text("token-v2".into()),
        )]);
        assert!(client.matches(&v1));
        assert!(!client.matches(&v2));
        assert!(!client.matches(&Value::Null));
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason_and_no_token() {
        for (name, pairs, expected) in [
            ("no token", vec![], "token is required"),
            ("blank token", vec![("token", "   ")], "token is empty"),
            (
                "blank fallback",
                vec![("token", "secret-a"), ("fallback-token", "")],
                "fallback-token is empty",
            ),
            (
                "fallback equal to token",
                vec![("token", "secret-a"), ("fallback-token", " secret-a")],
                "fallback-token is the same as token",
            ),
            (
                "server key",
                vec![("tokens", "secret-a")],
                "\"tokens\" belongs in [storageserver",
            ),
            (
                "misspelt key",
                vec![("tokn", "secret-a")],
                "unknown setting \"tokn\"",
            ),
        ] {
            let message = AllowListClient::new(&settings(&pairs))
                .unwrap_err()
                .to_string();
            assert!(message.contains(expected), "{name}: {message}");
            assert!(!message.contains("secret-"), "{name}: {message}");
        }
    }

    #[test]
    fn debug_output_shows_no_token() {
        let client = client(&[("token", "hunter2"), ("fallback-token", "hunter3")]);
        let debug = format!("{client:?}");
        assert!(!debug.contains("hunter"), "{debug}");
        assert!(debug.contains("fallback: true"), "{debug}");
    }
}
