//! The server side: settings, the hooks, the counters route and the background service.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use gbs_plugin_interface::ciborium::Value;
use gbs_plugin_interface::{
    from_cbor, to_cbor, Host, Operation, Outcome, PluginError, RouteRequest, RouteResponse,
    ServerPlugin, Settings,
};

use crate::counters::{delta, Counters};
use crate::stop::{Raced, StopSignal};

/// The route that answers the counters as CBOR, under `/storage/v1/plugin/access-log/`.
pub const COUNTERS_ROUTE: &str = "counters";
/// The same counters as JSON.
pub const COUNTERS_JSON_ROUTE: &str = "counters.json";
/// The file in the plugin's state directory that keeps the counters across restarts.
pub const STATE_FILE: &str = "counters.cbor";
/// How often the summary is logged without an `interval-seconds` setting.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

const INTERVAL_KEY: &str = "interval-seconds";

/// The checked settings of `[storageserver.plugins.access-log]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Config {
    interval: Duration,
}

impl Config {
    fn from_settings(settings: &Settings) -> Result<Config, PluginError> {
        if let Some(key) = settings.keys().find(|key| *key != INTERVAL_KEY) {
            return Err(PluginError::failed(format!(
                "unknown setting {key:?}; access-log has only {INTERVAL_KEY:?}"
            )));
        }
        let interval = match settings.get(INTERVAL_KEY) {
            None => DEFAULT_INTERVAL,
            Some(raw) => parse_interval(raw)?,
        };
        Ok(Config { interval })
    }
}

fn parse_interval(raw: &str) -> Result<Duration, PluginError> {
    let seconds: u64 = raw.trim().parse().map_err(|_| {
        PluginError::failed(format!(
            "{INTERVAL_KEY} must be a whole number of seconds, not {raw:?}"
        ))
    })?;
    if seconds == 0 {
        return Err(PluginError::failed(format!(
            "{INTERVAL_KEY} must be at least 1"
        )));
    }
    Ok(Duration::from_secs(seconds))
}

/// The server side of `access-log`: admits everything, counts what was committed.
#[derive(Debug)]
pub struct AccessLogServer {
    host: Host,
    config: Config,
    counters: Mutex<Counters>,
    stop: StopSignal,
}

impl AccessLogServer {
    /// Checks the settings and restores the counters saved by an earlier run, if any.
    ///
    /// # Errors
    ///
    /// An unknown setting, an `interval-seconds` that is not a whole number of seconds of at
    /// least 1, or a `counters.cbor` that cannot be read or decoded.
    pub fn new(settings: &Settings, host: Host) -> Result<Self, PluginError> {
        let config = Config::from_settings(settings)?;
        let counters = load(&state_file(&host.state_dir()))?;
        Ok(Self {
            host,
            config,
            counters: Mutex::new(counters),
            stop: StopSignal::default(),
        })
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        self.counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Writes the counters to the state directory, replacing the file in one rename so a
    /// crash leaves the old file or the new one, never half of one.
    fn save(&self) -> Result<(), PluginError> {
        let path = state_file(&self.host.state_dir());
        let partial = path.with_extension("cbor.partial");
        std::fs::write(&partial, to_cbor(&self.counters()))
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|e| PluginError::failed(format!("cannot write {}: {e}", path.display())))
    }

    fn answer(&self, request: &RouteRequest) -> Result<RouteResponse, PluginError> {
        let path = request.path.as_str();
        if path != COUNTERS_ROUTE && path != COUNTERS_JSON_ROUTE {
            return Ok(RouteResponse::text(
                404,
                "no such access-log route; GET counters (CBOR) or counters.json",
            ));
        }
        if request.method.as_str() != "GET" {
            return Ok(RouteResponse::text(
                405,
                "the counters are read-only: use GET",
            ));
        }
        let counters = self.counters();
        let (content_type, body) = if path == COUNTERS_ROUTE {
            ("application/cbor", to_cbor(&counters))
        } else {
            let json = serde_json::to_vec(&counters)
                .map_err(|e| PluginError::failed(format!("encoding counters: {e}")))?;
            ("application/json", json)
        };
        Ok(RouteResponse {
            status: 200,
            content_type: content_type.into(),
            body: body.into(),
        })
    }
}

/// Counters saved in `path`, or fresh ones if there is no such file.
fn load(path: &Path) -> Result<Counters, PluginError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Counters::default()),
        Err(e) => return Err(cannot_restore(path, &e.to_string())),
    };
    let saved = from_cbor(&bytes).map_err(|e| cannot_restore(path, &e))?;
    Ok(Counters::restored(saved))
}

fn cannot_restore(path: &Path, reason: &str) -> PluginError {
    PluginError::failed(format!(
        "cannot restore counters from {} ({reason}); move it away to start from zero",
        path.display()
    ))
}

impl ServerPlugin for AccessLogServer {
    /// It admits everything: the host need not ask.
    #[cfg(not(feature = "interface-1-0"))]
    const HOOKS: gbs_plugin_interface::ServerHooks = gbs_plugin_interface::ServerHooks::COMMITTED;

    /// `{"counters-route": "counters"}`: where a client finds the counters.
    fn announce(&self) -> Value {
        Value::Map(vec![(
            Value::Text("counters-route".into()),
            Value::Text(COUNTERS_ROUTE.into()),
        )])
    }

    // `admit` keeps its default: every operation is admitted, whatever its plugin data.

    async fn committed(&self, operation: Operation, outcome: Outcome) {
        let delta = delta(&operation, &outcome);
        self.counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(&delta);
        self.host
            .counter_add(&format!("operations.{}", delta.operation), 1);
        if let Some((counter, bytes)) = delta.bytes {
            self.host.counter_add(counter.metric(), bytes);
        }
    }

    async fn route(&self, request: RouteRequest) -> Result<RouteResponse, PluginError> {
        self.answer(&request)
    }

    /// Logs a summary every `interval-seconds` until [`ServerPlugin::stop`].
    async fn start(&self) -> Result<(), PluginError> {
        while self.stop.race(self.host.sleep(self.config.interval)).await == Raced::Completed {
            self.host.info(&self.counters().summary());
        }
        Ok(())
    }

    /// Ends the background service and saves the counters to `<state_dir>/counters.cbor`.
    async fn stop(&self) -> Result<(), PluginError> {
        self.stop.stop();
        self.save()
    }
}

/// Where the counters of a state directory are kept.
pub fn state_file(state_dir: &Path) -> PathBuf {
    state_dir.join(STATE_FILE)
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::Poll;

    use gbs_plugin_interface::testing::{settings, TestHost};
    use gbs_plugin_interface::ShareKind;

    use super::*;
    use crate::fake_host::{info_lines, now, poll_once, ScriptedSleeps};

    fn server(dir: &Path, pairs: &[(&str, &str)]) -> (AccessLogServer, TestHost) {
        let test_host = TestHost::new(dir);
        let server = AccessLogServer::new(&settings(pairs), test_host.host()).unwrap();
        (server, test_host)
    }

    /// A server whose first `ready_sleeps` sleeps complete at once and later ones never do.
    fn scripted_server(
        dir: &Path,
        pairs: &[(&str, &str)],
        ready_sleeps: usize,
    ) -> (AccessLogServer, TestHost, ScriptedSleeps) {
        let test_host = TestHost::new(dir);
        let sleeps = ScriptedSleeps::new(test_host.clone(), ready_sleeps);
        let server = AccessLogServer::new(&settings(pairs), sleeps.host()).unwrap();
        (server, test_host, sleeps)
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        AccessLogServer::new(&settings(pairs), TestHost::new(dir.path()).host())
            .unwrap_err()
            .to_string()
    }

    fn upload(bytes: u64) -> (Operation, Outcome) {
        let op = Operation::Upload {
            storage_index: [3; 16],
            share_number: 1,
            offset: 0,
            length: bytes,
        };
        (
            op,
            Outcome::Uploaded {
                bytes,
                complete: true,
            },
        )
    }

    fn get(path: &str) -> RouteRequest {
        RouteRequest::new("GET", path, Vec::new())
    }

    #[test]
    fn bad_interval_settings_are_refused_with_the_reason() {
        for (raw, expected) in [
            ("0", "interval-seconds must be at least 1"),
            ("soon", "whole number of seconds, not \"soon\""),
            ("-5", "whole number of seconds, not \"-5\""),
            ("1.5", "whole number of seconds, not \"1.5\""),
            ("", "whole number of seconds, not \"\""),
            ("99999999999999999999", "whole number of seconds"),
        ] {
            let message = error(&[("interval-seconds", raw)]);
            assert!(message.contains(expected), "{raw:?} gave {message:?}");
        }
    }

    #[test]
    fn misspelt_setting_is_refused_by_name() {
        let message = error(&[("interval", "5")]);
        assert!(
            message.contains("unknown setting \"interval\""),
            "{message}"
        );
    }

    #[test]
    fn interval_is_trimmed_and_used_for_every_sleep() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _, sleeps) = scripted_server(dir.path(), &[("interval-seconds", " 5 ")], 1);
        let mut service = pin!(server.start());
        assert!(poll_once(service.as_mut()).is_pending());
        assert_eq!(sleeps.sleeps_millis(), [5000, 5000]);
    }

    #[test]
    fn background_service_logs_a_summary_per_interval_and_ends_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        // Two intervals pass at once; the third sleep waits until the test stops it.
        let (server, test_host, sleeps) = scripted_server(dir.path(), &[], 2);
        let (op, outcome) = upload(4096);
        now(server.committed(op, outcome));

        let mut service = pin!(server.start());
        assert!(poll_once(service.as_mut()).is_pending());
        assert_eq!(sleeps.sleeps_millis(), [60_000, 60_000, 60_000]);
        let lines = info_lines(&test_host);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("1 operations (upload 1); bytes: 4096 uploaded"),
            "{lines:?}"
        );

        now(server.stop()).unwrap();
        assert!(matches!(poll_once(service.as_mut()), Poll::Ready(Ok(()))));
        assert_eq!(info_lines(&test_host).len(), 2, "no summary after stop");
    }

    #[test]
    fn stop_before_start_makes_start_return_at_once() {
        let dir = tempfile::tempdir().unwrap();
        // Even with sleeps that would complete at once.
        let (server, test_host, _) = scripted_server(dir.path(), &[], 5);
        now(server.stop()).unwrap();
        now(server.start()).unwrap();
        assert!(info_lines(&test_host).is_empty());
    }

    #[test]
    fn stop_saves_counters_and_a_new_server_restores_them() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = server(dir.path(), &[]);
        let (op, outcome) = upload(10);
        now(first.committed(op.clone(), outcome.clone()));
        now(first.committed(op, outcome));
        now(first.stop()).unwrap();
        assert!(state_file(dir.path()).exists());
        assert!(!dir.path().join("counters.cbor.partial").exists());

        let (second, _) = server(dir.path(), &[]);
        let restored = second.counters();
        assert_eq!(restored.operations.get("upload"), Some(&2));
        assert_eq!(restored.uploaded_bytes, 20);
    }

    #[test]
    fn corrupt_state_file_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(state_file(dir.path()), b"\xff\x00 not cbor").unwrap();
        let message = AccessLogServer::new(&Settings::new(), TestHost::new(dir.path()).host())
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("cannot restore counters from"),
            "{message}"
        );
        assert!(message.contains("counters.cbor"), "{message}");
    }

    #[test]
    fn stop_reports_a_state_directory_it_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("gone");
        let (server, _) = server(&state_dir, &[]);
        // TestHost made the directory; take it away again.
        std::fs::remove_dir(&state_dir).unwrap();
        let message = now(server.stop()).unwrap_err().to_string();
        assert!(message.contains("cannot write"), "{message}");
    }

    #[test]
    fn committed_counts_and_reports_metrics_to_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let (server, test_host) = server(dir.path(), &[]);
        let read = Operation::Read {
            kind: ShareKind::Mutable,
            storage_index: [0; 16],
            share_number: 0,
            range: Some((0, 100)),
        };
        now(server.committed(read, Outcome::Read { bytes: 64 }));
        let (op, outcome) = upload(8);
        now(server.committed(op, outcome));

        let counters = server.counters();
        assert_eq!(counters.operations.get("read-mutable"), Some(&1));
        assert_eq!(counters.read_bytes, 64);
        let metrics = test_host.counters();
        assert_eq!(metrics.get("operations.read-mutable"), Some(&1));
        assert_eq!(metrics.get("bytes.read"), Some(&64));
        assert_eq!(metrics.get("bytes.uploaded"), Some(&8));
    }

    #[test]
    fn admits_everything_so_the_host_is_told_not_to_ask() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _) = server(dir.path(), &[]);
        assert_eq!(
            now(server.admit(Operation::Version, Some(b"\xff\xff".to_vec()))),
            Ok(())
        );
        assert_eq!(
            AccessLogServer::HOOKS,
            gbs_plugin_interface::ServerHooks::COMMITTED
        );
    }

    #[test]
    fn counters_route_answers_cbor() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _) = server(dir.path(), &[]);
        let (op, outcome) = upload(5);
        now(server.committed(op, outcome));
        let response = now(server.route(get("counters"))).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.content_type.as_str(), "application/cbor");
        let counters: Counters = from_cbor(&response.body).unwrap();
        assert_eq!(counters, server.counters());
        assert_eq!(counters.uploaded_bytes, 5);
    }

    #[test]
    fn counters_json_route_answers_json() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _) = server(dir.path(), &[]);
        let response = now(server.route(get("counters.json"))).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.content_type.as_str(), "application/json");
        let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(json["operations"]["allocate"], 0);
        assert_eq!(json["uploaded-bytes"], 0);
    }

    #[test]
    fn other_routes_and_methods_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _) = server(dir.path(), &[]);
        let post = RouteRequest::new("POST", "counters", b"reset".to_vec());
        assert_eq!(now(server.route(post)).unwrap().status, 405);
        for path in ["", "counter", "counters/", "../counters"] {
            assert_eq!(
                now(server.route(get(path))).unwrap().status,
                404,
                "{path:?}"
            );
        }
    }

    #[test]
    fn announcement_names_the_counters_route() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _) = server(dir.path(), &[]);
        let announcement = server.announce();
        let entries = announcement.as_map().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0.as_text(), Some("counters-route"));
        assert_eq!(entries[0].1.as_text(), Some(COUNTERS_ROUTE));
    }
}
