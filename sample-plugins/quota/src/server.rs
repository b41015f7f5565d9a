//! The server side: the setting, the quota check, the charge, the usage route.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use ciborium::Value;
use gbs_plugin_interface::{
    Host, Operation, Outcome, PluginError, Rejection, RouteRequest, RouteResponse, ServerPlugin,
    Settings,
};

use crate::account::{account_of, Account, NO_ACCOUNT};
use crate::pending::{Pending, NOT_PENDING};
use crate::usage_file::{self, Usage, USAGE_FILE};

/// The one setting: the bytes each account may allocate.
pub const QUOTA_KEY: &str = "quota-bytes";

const ROUTE_HELP: &str = "no such quota route; GET usage?account=NAME";

/// `quota-bytes`: digits only (Rust's `u64::from_str` also takes a leading `+`, Python's
/// `int` also `1_000`; quota-py and this accept exactly the same), from 1 to `u64::MAX`.
fn parse_quota(settings: &Settings) -> Result<u64, PluginError> {
    if let Some(key) = settings.keys().find(|key| *key != QUOTA_KEY) {
        return Err(PluginError::failed(format!(
            "unknown setting {key:?}; quota has only {QUOTA_KEY:?}"
        )));
    }
    let Some(raw) = settings.get(QUOTA_KEY) else {
        return Err(PluginError::failed(format!(
            "missing setting {QUOTA_KEY}: the bytes each account may allocate, \
             e.g. {QUOTA_KEY} = 1000000000"
        )));
    };
    let text = raw.trim();
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse::<u64>().ok())
        .flatten()
        .filter(|quota| *quota > 0)
        .ok_or_else(|| {
            PluginError::failed(format!(
                "{QUOTA_KEY} must be a whole number of bytes from 1 to {}, not {raw:?}",
                u64::MAX
            ))
        })
}

/// Bytes for `shares` shares of `size` bytes each, saturating.
pub(crate) fn charge(size: u64, shares: usize) -> u64 {
    size.saturating_mul(u64::try_from(shares).unwrap_or(u64::MAX))
}

/// Refuses an allocation of `requested` bytes for an account that has `used` of `limit`.
pub(crate) fn check(
    account: &Account,
    used: u64,
    requested: u64,
    limit: u64,
) -> Result<(), Rejection> {
    // Overflow is past any limit.
    if used
        .checked_add(requested)
        .is_some_and(|total| total <= limit)
    {
        return Ok(());
    }
    let details = Value::Map(vec![
        (Value::Text("used".into()), Value::Integer(used.into())),
        (Value::Text("limit".into()), Value::Integer(limit.into())),
        (
            Value::Text("requested".into()),
            Value::Integer(requested.into()),
        ),
    ]);
    let message = format!(
        "account {} has {used} of {limit} bytes in use; {requested} more would exceed its quota",
        account.as_str()
    );
    Err(Rejection::new(413, "quota-exceeded", &message).with_details(&details))
}

/// The server side of `quota`.
#[derive(Debug)]
pub struct QuotaServer {
    host: Host,
    limit: u64,
    pending: Mutex<Pending>,
    ledger: Arc<Ledger>,
}

/// Usage and its file, shared with the blocking pool that writes it.
#[derive(Debug)]
struct Ledger {
    path: PathBuf,
    usage: Mutex<Usage>,
    /// Held while the file is written. Each write takes its copy of the usage under it, so
    /// writes land in order and the last one holds the latest usage.
    writing: Mutex<()>,
}

impl Ledger {
    fn used(&self, account: &Account) -> u64 {
        let usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        usage.get(account.as_str()).copied().unwrap_or(0)
    }

    fn save(&self) -> std::io::Result<()> {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let usage = self
            .usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        usage_file::save(&self.path, &usage)
    }
}

impl QuotaServer {
    /// Reads `quota-bytes` and the usage saved in the state directory.
    ///
    /// # Errors
    ///
    /// A missing or bad `quota-bytes`, an unknown setting, or a `usage.json` that cannot be
    /// read or decoded.
    pub fn new(settings: &Settings, host: Host) -> Result<Self, PluginError> {
        let limit = parse_quota(settings)?;
        let path = host.state_dir().join(USAGE_FILE);
        // The constructor runs on the plugin's own thread: reading here blocks no one.
        let usage = usage_file::load(&path).map_err(|e| PluginError::failed(e.to_string()))?;
        Ok(Self {
            host,
            limit,
            pending: Mutex::new(Pending::default()),
            ledger: Arc::new(Ledger {
                path,
                usage: Mutex::new(usage),
                writing: Mutex::new(()),
            }),
        })
    }

    /// The bytes `account` has allocated.
    pub fn used(&self, account: &Account) -> u64 {
        self.ledger.used(account)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn answer(&self, request: &RouteRequest) -> RouteResponse {
        let path = request.path.as_str();
        // The host passes what follows /storage/v1/plugin/quota: with its slash or without.
        if request.method.as_str() != "GET" || path.strip_prefix('/').unwrap_or(path) != "usage" {
            return RouteResponse::text(404, ROUTE_HELP);
        }
        let Some(name) = query_value(request.query.as_str(), "account") else {
            return RouteResponse::text(400, "missing account: GET usage?account=NAME");
        };
        let Some(account) = Account::parse(name) else {
            return RouteResponse::text(400, "account must be 1 to 64 of A-Z a-z 0-9 _ . -");
        };
        RouteResponse::cbor(
            200,
            &Value::Map(vec![
                (Value::Text("account".into()), Value::Text(name.into())),
                (
                    Value::Text("used".into()),
                    Value::Integer(self.used(&account).into()),
                ),
                (
                    Value::Text("limit".into()),
                    Value::Integer(self.limit.into()),
                ),
            ]),
        )
    }
}

/// The first value of `key` in a query, as sent: account names need no percent-encoding.
fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (name == key).then_some(value)
    })
}

impl ServerPlugin for QuotaServer {
    /// `{"quota-bytes": N}`.
    fn announce(&self) -> Value {
        Value::Map(vec![(
            Value::Text(QUOTA_KEY.into()),
            Value::Integer(self.limit.into()),
        )])
    }

    async fn admit(
        &self,
        operation: Operation,
        plugin_data: Option<Vec<u8>>,
    ) -> Result<(), Rejection> {
        let Operation::Allocate {
            storage_index,
            share_numbers,
            allocated_size,
            lease,
        } = operation
        else {
            return Ok(());
        };
        let Some(account) = plugin_data.as_deref().and_then(account_of) else {
            return Err(Rejection::new(401, "quota-no-account", NO_ACCOUNT));
        };
        let requested = charge(allocated_size, share_numbers.len());
        check(&account, self.used(&account), requested, self.limit)?;
        self.pending().insert((storage_index, lease), account);
        Ok(())
    }

    async fn committed(&self, operation: Operation, outcome: Outcome) {
        let Operation::Allocate {
            storage_index,
            allocated_size,
            lease,
            ..
        } = operation
        else {
            return;
        };
        let Some(account) = self.pending().take(&(storage_index, lease)) else {
            self.host.warn(NOT_PENDING);
            return;
        };
        let Outcome::Allocated { allocated, .. } = outcome else {
            return;
        };
        // Only new shares cost: those in `already_have` were paid for before.
        let cost = charge(allocated_size, allocated.len());
        if cost == 0 {
            return;
        }
        {
            let mut usage = self
                .ledger
                .usage
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let used = usage.entry(account.as_str().to_owned()).or_default();
            *used = used.saturating_add(cost);
        }
        // fsync takes milliseconds: on the plugin's blocking pool, not the hook thread.
        let ledger = self.ledger.clone();
        let failure = match self.host.run_blocking(move || ledger.save()).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        self.host.warn(&format!(
            "cannot write {}: {failure}; the charge is kept in memory",
            self.ledger.path.display()
        ));
    }

    async fn route(&self, request: RouteRequest) -> Result<RouteResponse, PluginError> {
        Ok(self.answer(&request))
    }
}

#[cfg(test)]
mod tests {
    use gbs_plugin_interface::testing::settings;
    use gbs_plugin_interface::testing::{block_on, TestHost};
    use gbs_plugin_interface::{from_cbor, to_cbor, LogLevel};

    use super::*;

    fn quota_server(dir: &std::path::Path, quota: &str) -> (QuotaServer, TestHost) {
        let test_host = TestHost::new(dir);
        let server = QuotaServer::new(&settings(&[(QUOTA_KEY, quota)]), test_host.host()).unwrap();
        (server, test_host)
    }

    fn account(name: &str) -> Account {
        Account::parse(name).unwrap()
    }

    fn data(name: &str) -> Option<Vec<u8>> {
        Some(to_cbor(&Value::Map(vec![(
            Value::Text("account".into()),
            Value::Text(name.into()),
        )])))
    }

    fn allocate(si: u8, size: u64, shares: &[u16]) -> Operation {
        Operation::Allocate {
            storage_index: [si; 16],
            share_numbers: shares.to_vec(),
            allocated_size: size,
            lease: [9; 32],
        }
    }

    fn allocated(new: &[u16], already: &[u16]) -> Outcome {
        Outcome::Allocated {
            allocated: new.to_vec(),
            already_have: already.to_vec(),
        }
    }

    fn route(server: &QuotaServer, method: &str, path: &str, query: &str) -> RouteResponse {
        let mut request = RouteRequest::new(method, path, Vec::new());
        request.query = query.into();
        block_on(server.route(request)).unwrap()
    }

    #[test]
    fn bad_quota_settings_are_refused_naming_key_and_value() {
        let error = |pairs: &[(&str, &str)]| {
            let dir = tempfile::tempdir().unwrap();
            QuotaServer::new(&settings(pairs), TestHost::new(dir.path()).host())
                .unwrap_err()
                .to_string()
        };
        assert!(error(&[]).contains("missing setting quota-bytes"));
        for raw in [
            "0",
            "+5",
            "-5",
            "1_000",
            "1e9",
            "1.5",
            "",
            "ten",
            "18446744073709551616",
        ] {
            let message = error(&[(QUOTA_KEY, raw)]);
            assert!(
                message.contains(&format!("quota-bytes must be a whole number of bytes from 1 to 18446744073709551615, not {raw:?}")),
                "{raw:?}: {message}"
            );
        }
        assert!(error(&[(QUOTA_KEY, "5"), ("quota", "5")]).contains("unknown setting \"quota\""));
    }

    #[test]
    fn the_quota_is_trimmed_and_announced() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _) = quota_server(dir.path(), " 18446744073709551615 ");
        assert_eq!(
            server.announce(),
            Value::Map(vec![(
                Value::Text("quota-bytes".into()),
                Value::Integer(u64::MAX.into())
            )])
        );
    }

    #[test]
    fn charge_is_size_times_shares_and_saturates() {
        assert_eq!(charge(100, 3), 300);
        assert_eq!(charge(100, 0), 0);
        assert_eq!(charge(u64::MAX, 2), u64::MAX);
    }

    #[test]
    fn check_admits_up_to_the_limit_and_details_a_refusal() {
        let alice = account("alice");
        assert!(check(&alice, 400, 600, 1000).is_ok());
        let refused = check(&alice, 400, 601, 1000).unwrap_err();
        assert_eq!(
            (refused.status, refused.code.as_str()),
            (413, "quota-exceeded")
        );
        assert_eq!(
            refused.message.as_str(),
            "account alice has 400 of 1000 bytes in use; 601 more would exceed its quota"
        );
        assert_eq!(
            refused.details(),
            Some(Value::Map(vec![
                (Value::Text("used".into()), Value::Integer(400.into())),
                (Value::Text("limit".into()), Value::Integer(1000.into())),
                (Value::Text("requested".into()), Value::Integer(601.into())),
            ]))
        );
        // A sum past u64::MAX is past the limit, not wrapped under it.
        assert!(check(&alice, u64::MAX, 1, u64::MAX).is_err());
    }

    #[test]
    fn allocation_without_an_account_is_refused_401() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _) = quota_server(dir.path(), "1000");
        for data in [None, Some(b"\xff".to_vec()), data("a b")] {
            let refused = block_on(server.admit(allocate(1, 1, &[0]), data)).unwrap_err();
            assert_eq!(
                (refused.status, refused.code.as_str()),
                (401, "quota-no-account")
            );
            assert_eq!(refused.message.as_str(), NO_ACCOUNT);
        }
        // Other operations are not this plugin's business.
        assert!(block_on(server.admit(Operation::Version, None)).is_ok());
    }

    #[test]
    fn committed_charges_new_shares_and_persists_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _) = quota_server(dir.path(), "1000");
        // 2 x 400 = 800 fits; one share was already there, so 400 is charged.
        block_on(server.admit(allocate(1, 400, &[0, 1]), data("alice"))).unwrap();
        block_on(server.committed(allocate(1, 400, &[0, 1]), allocated(&[0], &[1])));
        assert_eq!(server.used(&account("alice")), 400);
        // 400 + 2 x 301 > 1000.
        let refused = block_on(server.admit(allocate(2, 301, &[0, 1]), data("alice"))).unwrap_err();
        assert_eq!(refused.status, 413);
        // Another account has its own quota.
        block_on(server.admit(allocate(2, 1000, &[0]), data("bob"))).unwrap();

        let (restarted, _) = quota_server(dir.path(), "1000");
        assert_eq!(restarted.used(&account("alice")), 400);
        assert_eq!(restarted.used(&account("bob")), 0);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(USAGE_FILE)).unwrap(),
            "{\n  \"alice\": 400\n}\n"
        );
    }

    #[test]
    fn a_commit_without_a_pending_admit_is_logged_not_charged() {
        let dir = tempfile::tempdir().unwrap();
        let (server, test_host) = quota_server(dir.path(), "1000");
        block_on(server.admit(allocate(1, 10, &[0]), data("alice"))).unwrap();
        block_on(server.committed(allocate(1, 10, &[0]), allocated(&[0], &[])));
        // The same allocation committed twice is charged once.
        block_on(server.committed(allocate(1, 10, &[0]), allocated(&[0], &[])));
        assert_eq!(server.used(&account("alice")), 10);
        assert_eq!(test_host.logs(), [(LogLevel::WARN, NOT_PENDING.to_owned())]);
    }

    #[test]
    fn a_commit_that_cannot_be_written_is_logged_and_kept_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (server, test_host) = quota_server(dir.path(), "1000");
        std::fs::create_dir(dir.path().join(USAGE_FILE)).unwrap();
        block_on(server.admit(allocate(1, 10, &[0]), data("alice"))).unwrap();
        block_on(server.committed(allocate(1, 10, &[0]), allocated(&[0], &[])));
        assert_eq!(server.used(&account("alice")), 10);
        let logs = test_host.logs();
        assert_eq!(logs.len(), 1, "{logs:?}");
        assert!(logs[0].1.starts_with("cannot write "), "{logs:?}");
    }

    #[test]
    fn a_corrupt_usage_file_stops_the_constructor() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(USAGE_FILE), "{").unwrap();
        let error = QuotaServer::new(
            &settings(&[(QUOTA_KEY, "1")]),
            TestHost::new(dir.path()).host(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("cannot load usage from"), "{error}");
        assert!(error.contains(USAGE_FILE), "{error}");
    }

    #[test]
    fn usage_route_answers_cbor_with_or_without_a_slash() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _) = quota_server(dir.path(), "1000");
        block_on(server.admit(allocate(1, 7, &[0, 1]), data("alice"))).unwrap();
        block_on(server.committed(allocate(1, 7, &[0, 1]), allocated(&[0, 1], &[])));
        for path in ["usage", "/usage"] {
            let response = route(&server, "GET", path, "x=1&account=alice&account=bob");
            assert_eq!(response.status, 200);
            assert_eq!(response.content_type.as_str(), "application/cbor");
            let body: Value = from_cbor(&response.body).unwrap();
            assert_eq!(
                body,
                Value::Map(vec![
                    (Value::Text("account".into()), Value::Text("alice".into())),
                    (Value::Text("used".into()), Value::Integer(14.into())),
                    (Value::Text("limit".into()), Value::Integer(1000.into())),
                ])
            );
        }
    }

    #[test]
    fn usage_route_refuses_other_requests() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _) = quota_server(dir.path(), "1000");
        for (method, path, query, status) in [
            ("GET", "usage", "", 400),
            ("GET", "usage", "accounts=alice", 400),
            ("GET", "usage", "account=a%20b", 400),
            ("GET", "usage", "account", 400),
            ("POST", "usage", "account=alice", 404),
            ("GET", "", "account=alice", 404),
            ("GET", "//usage", "account=alice", 404),
            ("GET", "usage/", "account=alice", 404),
        ] {
            let response = route(&server, method, path, query);
            assert_eq!(response.status, status, "{method} {path:?} {query:?}");
            assert!(response.content_type.starts_with("text/plain"));
        }
    }
}
