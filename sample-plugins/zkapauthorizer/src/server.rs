//! The server side: prices each chargeable operation, checks the passes the client attached,
//! reserves them in the persistent ledger at admission, and spends them once the operation
//! succeeded (only for shares really allocated), as ZKAPAuthorizer's storage server does,
//! with its gaps closed: a replayed pass is refused, also after a restart, and a shortfall
//! reaches the client with its counts and failed indexes.
//!
//! Free operations stay free: reads, listings, pure test-and-read mutable calls, and any
//! operation priced at zero need no plugin data at all.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use challenge_bypass_ristretto::voprf::SigningKey;
use gbs_plugin_interface::ciborium::Value;
use gbs_plugin_interface::{
    from_cbor, Host, LeaseRenewal, Operation, Outcome, PluginError, Rejection, RouteRequest,
    RouteResponse, ServerPlugin, Settings,
};

use crate::charge::{self, Charge};
use crate::handles::{HandleStore, HANDLE_LIFETIME};
use crate::in_flight::InFlight;
use crate::metrics::SpendingHistogram;
use crate::pass::validate;
use crate::pricing::PassValue;
use crate::spent::{Backlog, Purpose, Settlement, SpentPassStore, StoreLocation};
use crate::wire::{
    serde_bytes_vec::Bytes, to_value, Announcement, HandleIssued, PassUpload, Payment,
    ShortfallDetails, StatRequest, MORE_PASSES_REQUIRED, PASSES_ROUTE, STAT_SHARES_ROUTE,
};

/// How long a reservation waits for its operation to report success before the passes
/// are usable again.
const RESERVATION: Duration = Duration::from_secs(10 * 60);

/// How often settlements the spent-pass store could not take are tried again.
const SETTLE_RETRY: Duration = Duration::from_secs(1);

/// What the server side is configured with.
struct ServerSettings {
    issuer_url: String,
    signing_key: Arc<SigningKey>,
    pass_value: PassValue,
    metrics_file: Option<(PathBuf, Duration)>,
    store: StoreLocation,
}

/// Reads a setting that must be there.
fn required<'a>(settings: &'a Settings, key: &str) -> Result<&'a str, PluginError> {
    settings
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| PluginError::failed(format!("{key} is required")))
}

/// `pass-value`, the same key on both sides.
pub(crate) fn pass_value(settings: &Settings) -> Result<PassValue, PluginError> {
    match settings.get("pass-value") {
        None => Ok(PassValue::default()),
        Some(text) => text
            .trim()
            .parse()
            .ok()
            .and_then(PassValue::new)
            .ok_or_else(|| {
                PluginError::failed("pass-value must be a whole number of bytes above 0")
            }),
    }
}

/// The node directory: the state directory's grandparent, `<node>/plugins-state/<name>`.
fn node_dir(host: &Host) -> PathBuf {
    let state = host.state_dir();
    state
        .parent()
        .and_then(Path::parent)
        .unwrap_or(&state)
        .to_owned()
}

/// A path from the config: absolute, or relative to the node directory.
pub(crate) fn config_path(host: &Host, value: &str) -> PathBuf {
    node_dir(host).join(value)
}

/// Reads the issuer's signing key: standard base64, surrounding whitespace ignored.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the signing key {}: {e}", path.display()))?;
    // The decoder's error could quote the key: say only where it is.
    SigningKey::decode_base64(text.trim()).map_err(|_| {
        format!(
            "{} does not hold a base64 Ristretto signing key",
            path.display()
        )
    })
}

impl ServerSettings {
    fn read(settings: &Settings, host: &Host) -> Result<Self, PluginError> {
        let issuer_url = required(settings, "ristretto-issuer-root-url")?.to_owned();
        let key_path = config_path(host, required(settings, "ristretto-signing-key-path")?);
        let signing_key = read_signing_key(&key_path).map_err(PluginError::failed)?;
        let metrics_file = match (
            settings.get("prometheus-metrics-path"),
            settings.get("prometheus-metrics-interval"),
        ) {
            (None, None) => None,
            (Some(path), Some(interval)) => {
                let seconds: u64 =
                    interval
                        .trim()
                        .parse()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| {
                            PluginError::failed(
                                "prometheus-metrics-interval must be whole seconds above 0",
                            )
                        })?;
                Some((config_path(host, path.trim()), Duration::from_secs(seconds)))
            }
            _ => {
                return Err(PluginError::failed(
                    "prometheus-metrics-path and prometheus-metrics-interval go together",
                ))
            }
        };
        let store = StoreLocation::parse(
            settings.get("spent-pass-store").map(String::as_str),
            &host.state_dir(),
            &node_dir(host),
        )
        .map_err(|e| PluginError::failed(e.to_string()))?;
        Ok(Self {
            issuer_url,
            signing_key: Arc::new(signing_key),
            pass_value: pass_value(settings)?,
            metrics_file,
            store,
        })
    }
}

/// Passes reserved for an admitted operation, waiting for `committed`.
#[derive(Debug)]
struct Reservation {
    preimages: Vec<[u8; 64]>,
    until: u64,
}

/// The server side of `privatestorageio-zkapauthz-v2`.
pub struct ZkapServer {
    host: Host,
    settings: ServerSettings,
    announcement: Value,
    pub(crate) ledger: Arc<dyn SpentPassStore>,
    /// Settlements the ledger could not take yet.
    backlog: Arc<Backlog>,
    handles: HandleStore,
    /// Reservations waiting for `committed`.
    pending: InFlight<Reservation>,
    histogram: SpendingHistogram,
    stopping: AtomicBool,
}

impl std::fmt::Debug for ZkapServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkapServer")
            .field("issuer_url", &self.settings.issuer_url)
            .finish_non_exhaustive()
    }
}

impl ZkapServer {
    /// Builds the server side: reads the settings and the signing key, opens the ledger, and
    /// asks the host to grant leases only when they are paid for.
    pub fn new(settings: &Settings, host: Host) -> Result<Self, PluginError> {
        let settings = ServerSettings::read(settings, &host)?;
        // Without this, allocating would renew leases for free: refuse to run instead.
        host.set_lease_renewal(LeaseRenewal::EXPLICIT)
            .map_err(|e| PluginError::failed(format!("this host cannot charge for leases: {e}")))?;
        let ledger = settings
            .store
            .open()
            .map_err(|e| PluginError::failed(e.to_string()))?;
        host.info(&format!("spent passes are kept in {}", settings.store));
        let announcement = to_value(&Announcement {
            issuer_url: settings.issuer_url.clone(),
            public_keys: vec![settings.signing_key.public_key.encode_base64()],
            pass_value: Some(settings.pass_value.bytes()),
        });
        Ok(Self {
            host,
            settings,
            announcement,
            ledger,
            backlog: Arc::default(),
            handles: HandleStore::default(),
            pending: InFlight::default(),
            histogram: SpendingHistogram::default(),
            stopping: AtomicBool::new(false),
        })
    }

    fn now(&self) -> u64 {
        self.host.now_unix_millis() / 1000
    }

    /// Refuses truncation, which ZKAPAuthorizer bans (`NewLengthRejected`).
    fn refuse_truncation(operation: &Operation) -> Result<(), Rejection> {
        let Operation::ReadTestWrite { shares, .. } = operation else {
            return Ok(());
        };
        match shares.iter().find(|c| c.new_length.is_some()) {
            None => Ok(()),
            Some(change) => Err(Rejection::new(
                400,
                "new-length-rejected",
                "this server does not let mutable shares be truncated",
            )
            .with_details(&Value::Map(vec![(
                Value::Text("share-number".into()),
                Value::Integer(change.share_number.into()),
            )]))),
        }
    }

    async fn shares(
        &self,
        storage_index: [u8; 16],
    ) -> Result<Vec<gbs_plugin_interface::ShareInfo>, Rejection> {
        self.host.shares(storage_index).await.map_err(|e| {
            self.host.warn(&format!("cannot read share facts: {e}"));
            Rejection::new(503, "storage-unavailable", "share sizes could not be read")
        })
    }

    /// The passes the client attached, from the header or a handle.
    fn passes_of(&self, data: Option<Vec<u8>>) -> Result<Vec<Vec<u8>>, Rejection> {
        let Some(data) = data else {
            return Ok(Vec::new());
        };
        match Payment::from_cbor(&data) {
            Ok(Payment::Passes(passes)) => Ok(passes.into_iter().map(|b| b.0).collect()),
            Ok(Payment::Handle(handle)) => {
                self.handles.take(&handle.0, self.now()).ok_or_else(|| {
                    Rejection::new(
                        400,
                        "unknown-handle",
                        "the pass handle is unknown, used or expired; upload the passes again",
                    )
                })
            }
            Err(_) => Err(Rejection::new(
                400,
                "bad-plugin-data",
                "plugin data must be {\"passes\": [bstr]} or {\"handle\": bstr}",
            )),
        }
    }

    /// Checks the passes and reserves `charge.required` of them, or says why not.
    async fn reserve(
        &self,
        charge: &Charge,
        passes: Vec<Vec<u8>>,
    ) -> Result<Reservation, Rejection> {
        let key = self.settings.signing_key.clone();
        let message = charge.message();
        let purpose = Purpose {
            storage_index: charge.storage_index,
            operation: charge.operation.label(),
        };
        let ledger = self.ledger.clone();
        let required = charge.required;
        let now = self.now();
        let until = now + RESERVATION.as_secs();
        // Checking a pass costs Ristretto arithmetic, and the ledger is a file: off the
        // plugin's async thread.
        self.host
            .run_blocking(move || {
                check_and_reserve(
                    &key,
                    &message,
                    &passes,
                    required,
                    &*ledger,
                    &purpose,
                    (now, until),
                )
            })
            .await
            .map_err(|e| {
                Rejection::new(
                    503,
                    "pass-check-unavailable",
                    "passes could not be checked now",
                )
                .with_details(&Value::Text(e.to_string()))
            })?
    }

    /// Records what a successful operation spent; what the ledger cannot take now waits in
    /// the backlog, retried until it can (the reservation holds the passes meanwhile).
    async fn settle(&self, spent: Vec<[u8; 64]>, released: Vec<[u8; 64]>) {
        let (ledger, backlog) = (self.ledger.clone(), self.backlog.clone());
        let count = spent.len() as u64;
        let settlement = Settlement {
            spent,
            released,
            at: self.now(),
        };
        // Counted as spent either way: the operation happened, and the passes will be.
        self.histogram.observe(&self.host, count);
        let done = self
            .host
            .run_blocking(move || backlog.settle(&*ledger, settlement))
            .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(deferred)) => {
                self.host.warn(&format!(
                    "passes not recorded as spent yet ({} waiting, retried every {SETTLE_RETRY:?}): {}",
                    deferred.waiting, deferred.error
                ));
                if deferred.dropped > 0 {
                    self.host.warn(&format!(
                        "gave up recording {} spent passes: more than {} were waiting",
                        deferred.dropped,
                        crate::spent::MAX_WAITING_PASSES
                    ));
                }
            }
            Err(e) => self
                .host
                .warn(&format!("passes not recorded as spent: {e}")),
        }
    }

    /// Tries the backlog again, if anything waits.
    async fn retry_backlog(&self) {
        if self.backlog.is_empty() {
            return;
        }
        let (ledger, backlog) = (self.ledger.clone(), self.backlog.clone());
        if let Ok(Ok(())) = self
            .host
            .run_blocking(move || backlog.flush(&*ledger))
            .await
        {
            self.host
                .info("passes waiting to be recorded as spent are recorded now");
        }
    }

    fn stat_shares(&self, request: &RouteRequest) -> Result<[u8; 16], RouteResponse> {
        let bad = || RouteResponse::text(400, "expected CBOR {\"storage-index\": bstr .size 16}");
        let parsed: StatRequest = from_cbor(&request.body).map_err(|_| bad())?;
        parsed
            .storage_index
            .0
            .as_slice()
            .try_into()
            .map_err(|_| bad())
    }
}

/// Validates `passes` for `message` and reserves `required` valid, unspent ones.
fn check_and_reserve(
    key: &SigningKey,
    message: &str,
    passes: &[Vec<u8>],
    required: u64,
    ledger: &dyn SpentPassStore,
    purpose: &Purpose,
    (now, until): (u64, u64),
) -> Result<Reservation, Rejection> {
    let validation = validate(key, message.as_bytes(), passes).map_err(|(index, why)| {
        Rejection::new(
            400,
            "malformed-pass",
            &format!("pass {index} is malformed: {why}"),
        )
        .with_details(&Value::Map(vec![(
            Value::Text("index".into()),
            Value::Integer((index as u64).into()),
        )]))
    })?;
    // Valid passes with their indexes into what the client sent.
    let failed = &validation.signature_check_failed;
    let mut candidates: Vec<(usize, [u8; 64])> = (0..passes.len())
        .filter(|i| !failed.contains(i))
        .zip(validation.valid)
        .collect();
    let mut already_spent = Vec::new();
    let required_len = usize::try_from(required).unwrap_or(usize::MAX);
    loop {
        if candidates.len() < required_len {
            let details = ShortfallDetails {
                valid: candidates.len() as u64,
                required,
                signature_check_failed: failed.iter().map(|&i| i as u64).collect(),
                already_spent: already_spent.iter().map(|&i| i as u64).collect(),
            };
            return Err(Rejection::new(
                402,
                MORE_PASSES_REQUIRED,
                &format!(
                    "{} valid passes given; this operation costs {required}",
                    details.valid
                ),
            )
            .with_details(&to_value(&details)));
        }
        let chosen: Vec<[u8; 64]> = candidates[..required_len].iter().map(|c| c.1).collect();
        match ledger.reserve(&chosen, purpose, now, until) {
            Ok(Ok(())) => {
                return Ok(Reservation {
                    preimages: chosen,
                    until,
                })
            }
            Ok(Err(taken)) => {
                // Drop the taken ones and try again with the rest: each round removes at
                // least one candidate, so this ends.
                let mut taken_indexes: Vec<usize> =
                    taken.iter().map(|&t| candidates[t].0).collect();
                candidates.retain(|c| !taken_indexes.contains(&c.0));
                already_spent.append(&mut taken_indexes);
                already_spent.sort_unstable();
            }
            Err(e) => {
                return Err(Rejection::new(
                    503,
                    "pass-ledger-unavailable",
                    "spent passes cannot be checked now; try again",
                )
                .with_details(&Value::Text(e.to_string())))
            }
        }
    }
}

impl ServerPlugin for ZkapServer {
    fn announce(&self) -> Value {
        self.announcement.clone()
    }

    async fn admit(
        &self,
        operation: Operation,
        plugin_data: Option<Vec<u8>>,
    ) -> Result<(), Rejection> {
        Self::refuse_truncation(&operation)?;
        let charge = Charge::of(self.settings.pass_value, &operation, self.now(), |si| {
            self.shares(si)
        })
        .await?;
        let Some(charge) = charge.filter(|c| c.required > 0) else {
            return Ok(());
        };
        let passes = self.passes_of(plugin_data)?;
        let reservation = self.reserve(&charge, passes).await?;
        // Reservations whose operations failed never come back: drop the lapsed ones.
        let now = self.now();
        self.pending.retain(|r| r.until > now);
        self.pending.push(&operation, reservation);
        Ok(())
    }

    async fn committed(&self, operation: Operation, outcome: Outcome) {
        let Some(mut reservation) = self.pending.pop(&operation) else {
            return;
        };
        let paid = reservation.preimages.len();
        let used = charge::used(self.settings.pass_value, &operation, &outcome, paid);
        let release = reservation.preimages.split_off(used);
        self.settle(reservation.preimages, release).await;
    }

    async fn route(&self, request: RouteRequest) -> Result<RouteResponse, PluginError> {
        match (request.method.as_str(), request.path.as_str()) {
            ("POST", PASSES_ROUTE) => {
                let Ok(upload) = from_cbor::<PassUpload>(&request.body) else {
                    return Ok(RouteResponse::text(
                        400,
                        "expected CBOR {\"passes\": [bstr]}",
                    ));
                };
                let passes = upload.passes.into_iter().map(|b| b.0).collect();
                Ok(match self.handles.issue(passes, self.now()) {
                    Ok(handle) => RouteResponse::cbor(
                        201,
                        &to_value(&HandleIssued {
                            handle: Bytes(handle.to_vec()),
                            expires_in: HANDLE_LIFETIME.as_secs(),
                        }),
                    ),
                    Err(full) => RouteResponse::text(503, &full.to_string()),
                })
            }
            ("POST", STAT_SHARES_ROUTE) => {
                let storage_index = match self.stat_shares(&request) {
                    Ok(si) => si,
                    Err(answer) => return Ok(answer),
                };
                let shares = self.host.shares(storage_index).await?;
                Ok(RouteResponse::cbor(200, &to_value(&shares)))
            }
            (_, PASSES_ROUTE | STAT_SHARES_ROUTE) => Ok(RouteResponse::text(405, "use POST")),
            _ => Ok(RouteResponse::text(404, "no such route")),
        }
    }

    async fn start(&self) -> Result<(), PluginError> {
        let mut metrics_due = self.host.now_unix_millis();
        while !self.stopping.load(Ordering::Relaxed) {
            self.retry_backlog().await;
            if let Some((path, interval)) = &self.settings.metrics_file {
                // As the original: write the text file every interval, ignore write errors.
                if self.host.now_unix_millis() >= metrics_due {
                    let text = self.histogram.prometheus_text();
                    let target = path.clone();
                    let _ = self
                        .host
                        .run_blocking(move || write_atomically(&target, text.as_bytes()))
                        .await;
                    metrics_due = self.host.now_unix_millis() + interval.as_millis() as u64;
                }
            }
            self.host.sleep(SETTLE_RETRY).await;
        }
        // A last try before the node goes: what still waits is lost with the process, and
        // the reservations then lapse.
        self.retry_backlog().await;
        if !self.backlog.is_empty() {
            self.host.warn(&format!(
                "stopping with {} passes not recorded as spent",
                self.backlog.len()
            ));
        }
        Ok(())
    }

    async fn stop(&self) -> Result<(), PluginError> {
        self.stopping.store(true, Ordering::Relaxed);
        Ok(())
    }
}

/// Writes `bytes` to `path` through a temporary file, so readers never see half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests;
