//! The client side: presents the configured account with every allocation, to servers
//! that announce `quota-bytes`. The same client serves a node running either twin.

use ciborium::Value;
use gbs_plugin_interface::{
    to_cbor, ClientPlugin, Operation, PluginError, ServerConnection, Settings,
};

use crate::account::{Account, ACCOUNT_KEY};

/// The client side of `quota`: setting `account = NAME`.
#[derive(Debug)]
pub struct QuotaClient {
    /// `{"account": NAME}`, encoded once.
    data: Vec<u8>,
}

impl QuotaClient {
    /// Reads `account` (required, the server's name rule).
    ///
    /// # Errors
    ///
    /// An unknown setting, or a missing or invalid `account`.
    pub fn new(settings: &Settings) -> Result<Self, PluginError> {
        if let Some(key) = settings.keys().find(|k| *k != ACCOUNT_KEY) {
            return Err(PluginError::failed(format!("unknown setting {key:?}")));
        }
        let name = settings.get(ACCOUNT_KEY).ok_or_else(|| {
            PluginError::failed(format!("{ACCOUNT_KEY} is required: the account to charge"))
        })?;
        let account = Account::parse(name.trim()).ok_or_else(|| {
            PluginError::failed(format!(
                "{ACCOUNT_KEY} {name:?} is not 1 to 64 of A-Z a-z 0-9 _ . -"
            ))
        })?;
        let data = to_cbor(&Value::Map(vec![(
            Value::Text(ACCOUNT_KEY.into()),
            Value::Text(account.as_str().into()),
        )]));
        Ok(Self { data })
    }
}

impl ClientPlugin for QuotaClient {
    fn matches(&self, announcement: &Value) -> bool {
        announcement
            .as_map()
            .is_some_and(|m| m.iter().any(|(k, _)| k.as_text() == Some("quota-bytes")))
    }

    async fn prepare(
        &self,
        _server: ServerConnection,
        operation: Operation,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        Ok(matches!(operation, Operation::Allocate { .. }).then(|| self.data.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::account_of;
    use gbs_plugin_interface::testing::settings;

    #[test]
    fn presents_the_account_the_server_reads() {
        let client = QuotaClient::new(&settings(&[("account", "alice")])).expect("valid");
        assert_eq!(
            account_of(&client.data).map(|a| a.as_str().to_owned()),
            Some("alice".into())
        );
        // Tried: no account, a name with a space, and an unknown key.
        assert!(QuotaClient::new(&settings(&[])).is_err());
        assert!(QuotaClient::new(&settings(&[("account", "a b")])).is_err());
        assert!(QuotaClient::new(&settings(&[("account", "a"), ("colour", "red")])).is_err());
    }
}
