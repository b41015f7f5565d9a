//! The client side: prices each operation as the server will, pays with tokens from the
//! wallet turned into passes, and settles afterwards, as ZKAPAuthorizer's storage client and
//! spending controller do:
//!
//! - the passes of an operation are reserved in the wallet when it is prepared;
//! - after a `more-passes-required` rejection that names failed passes, those are marked
//!   invalid and replaced, and the operation is retried; a rejection naming none gives up
//!   and returns the passes (the call was mispriced, not paid badly);
//! - after success, the passes the server spent are marked spent (for an allocation, only
//!   those for the shares it really allocated) and the rest returned;
//! - an operation that never reports back leaves its passes reserved until the reservation
//!   lapses ([`RESERVATION`]).
//!
//! Its local resource (`gbs client --node DIR client-route privatestorageio-zkapauthz-v2
//! PATH`) is the original's client HTTP resource: `version`, `voucher`, `voucher/<v>`,
//! `lease-maintenance` and `calculate-price`, with the same JSON.

use std::collections::HashSet;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use gbs_plugin_interface::ciborium::Value;
use gbs_plugin_interface::{
    from_cbor, to_cbor, ClientPlugin, Host, Operation, Outcome, PluginError, Rejection,
    RouteRequest, RouteResponse, ServerConnection, Settings,
};
use serde_json::json;

use crate::charge::{self, Charge};
use crate::http::HttpUrl;
use crate::in_flight::InFlight;
use crate::pass::Pass;
use crate::pricing::{PassValue, LEASE_PERIOD};
use crate::redemption::{is_voucher, Redeemer};
use crate::server::pass_value;
use crate::wallet::{Wallet, WalletError};
use crate::wire::{
    from_value, serde_bytes_vec::Bytes, Announcement, HandleIssued, PassUpload, Payment,
    ShortfallDetails, StatAnswer, StatRequest, MORE_PASSES_REQUIRED, PASSES_ROUTE,
    STAT_SHARES_ROUTE,
};

/// How long passes stay reserved for an operation that never reports back.
pub const RESERVATION: Duration = Duration::from_secs(10 * 60);

/// Inline pass data above this many bytes goes to the server's `passes` route instead
/// (the header's 64 KiB, base64 encoded, holds about 270 passes; this leaves room for other
/// plugins' data).
pub const INLINE_LIMIT: usize = 24 * 1024;

/// The wallet's file in the plugin's state directory.
pub const WALLET_FILE: &str = "wallet.sqlite3";

/// The client side of `privatestorageio-zkapauthz-v2`.
pub struct ZkapClient {
    host: Host,
    issuer_url: String,
    pass_value: PassValue,
    wallet: Arc<Wallet>,
    resource: Arc<Resource>,
    /// What operations in flight were paid with.
    in_flight: InFlight<Paid>,
}

impl std::fmt::Debug for ZkapClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkapClient")
            .field("issuer_url", &self.issuer_url)
            .finish_non_exhaustive()
    }
}

fn number<T: std::str::FromStr>(
    settings: &Settings,
    key: &str,
    default: T,
) -> Result<T, PluginError> {
    match settings.get(key) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| PluginError::failed(format!("{key} must be a whole number"))),
    }
}

/// Passes attached to an operation in flight: what it costs and the tokens paying for it.
#[derive(Debug)]
struct Paid {
    charge: Charge,
    ids: Vec<i64>,
}

impl ZkapClient {
    /// Builds the client side from its settings and opens the wallet.
    pub fn new(settings: &Settings, host: Host) -> Result<Self, PluginError> {
        if let Some(redeemer) = settings.get("redeemer").map(|r| r.trim()) {
            if redeemer != "ristretto" {
                return Err(PluginError::failed(format!(
                    "redeemer {redeemer:?} is not supported by this port; use ristretto"
                )));
            }
        }
        let issuer_url = settings
            .get("ristretto-issuer-root-url")
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| PluginError::failed("ristretto-issuer-root-url is required"))?;
        let allowed_public_keys: Vec<String> = settings
            .get("allowed-public-keys")
            .ok_or_else(|| PluginError::failed("allowed-public-keys is required"))?
            .split(',')
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect();
        let shares_needed = NonZeroU64::new(number(settings, "shares.needed", 3)?)
            .ok_or_else(|| PluginError::failed("shares.needed must be above 0"))?;
        let shares_total: u64 = number(settings, "shares.total", 10)?;
        let redeemer = Redeemer {
            issuer: HttpUrl::parse(&issuer_url).map_err(PluginError::failed)?,
            allowed_public_keys,
            tokens_per_voucher: number(settings, "default-token-count", 32_768)?,
            groups: number(settings, "redemption-groups", 16)?,
            timeout: Duration::from_secs(60),
        };
        let wallet = Arc::new(
            Wallet::open(&host.state_dir().join(WALLET_FILE))
                .map_err(|e| PluginError::failed(e.to_string()))?,
        );
        let pass_value = pass_value(settings)?;
        let resource = Resource {
            wallet: wallet.clone(),
            redeemer,
            pass_value,
            shares_needed,
            shares_total,
            min_time_remaining: Duration::from_secs(number(
                settings,
                "lease.min-time-remaining",
                0,
            )?),
        };
        Ok(Self {
            host,
            issuer_url,
            pass_value,
            wallet,
            resource: Arc::new(resource),
            in_flight: InFlight::default(),
        })
    }

    fn now(&self) -> u64 {
        self.host.now_unix_millis() / 1000
    }

    async fn stat_shares(
        &self,
        server: &ServerConnection,
        storage_index: [u8; 16],
    ) -> Result<StatAnswer, PluginError> {
        let body = to_cbor(&StatRequest {
            storage_index: Bytes(storage_index.to_vec()),
        });
        let answer = server
            .call_route(RouteRequest::new("POST", STAT_SHARES_ROUTE, body))
            .await?;
        if answer.status != 200 {
            return Err(PluginError::failed(format!(
                "the server's {STAT_SHARES_ROUTE} answered {}",
                answer.status
            )));
        }
        from_cbor(&answer.body)
            .map_err(|e| PluginError::failed(format!("{STAT_SHARES_ROUTE}: {e}")))
    }

    /// What `operation` costs at `server`, or `None` when it is free.
    async fn price(
        &self,
        server: &ServerConnection,
        operation: &Operation,
    ) -> Result<Option<Charge>, PluginError> {
        let charge = Charge::of(self.pass_value, operation, self.now(), |si| {
            self.stat_shares(server, si)
        })
        .await?;
        Ok(charge.filter(|c| c.required > 0))
    }

    /// Runs wallet work off the async thread.
    async fn with_wallet<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Wallet) -> Result<T, WalletError> + Send + 'static,
    ) -> Result<T, PluginError> {
        let wallet = self.wallet.clone();
        self.host
            .run_blocking(move || work(&wallet))
            .await?
            .map_err(|e| PluginError::failed(e.to_string()))
    }

    /// Reserves `count` tokens and makes them passes for `charge`.
    async fn passes(
        &self,
        charge: &Charge,
        ids: Vec<i64>,
        more: u64,
    ) -> Result<(Vec<i64>, Vec<Vec<u8>>), PluginError> {
        let now = self.now();
        let until = now + RESERVATION.as_secs();
        let message = charge.message();
        self.with_wallet(move |wallet| {
            let mut tokens = wallet.take_ids(&ids)?;
            if more > 0 {
                tokens.extend(wallet.take(more, now, until)?);
            }
            let passes = tokens
                .iter()
                .map(|(_, token)| Pass::new(token, message.as_bytes()).to_bytes())
                .collect();
            Ok((tokens.into_iter().map(|(id, _)| id).collect(), passes))
        })
        .await
    }

    /// The plugin data carrying `passes`: inline, or through the server's `passes` route
    /// when they would crowd the header.
    async fn payment(
        &self,
        server: &ServerConnection,
        passes: Vec<Vec<u8>>,
    ) -> Result<Vec<u8>, PluginError> {
        let inline = Payment::inline(passes);
        let data = inline.to_cbor();
        if data.len() <= INLINE_LIMIT {
            return Ok(data);
        }
        let Payment::Passes(passes) = inline else {
            return Ok(data);
        };
        let answer = server
            .call_route(RouteRequest::new(
                "POST",
                PASSES_ROUTE,
                to_cbor(&PassUpload { passes }),
            ))
            .await?;
        if answer.status != 201 {
            return Err(PluginError::failed(format!(
                "the server's {PASSES_ROUTE} route answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )));
        }
        let issued: HandleIssued = from_cbor(&answer.body)
            .map_err(|e| PluginError::failed(format!("{PASSES_ROUTE}: {e}")))?;
        Ok(Payment::Handle(issued.handle).to_cbor())
    }

    /// Attaches `passes` for `charge` to `operation`, keeping the tokens reserved until it
    /// reports back; the tokens go back to the wallet when the passes cannot be sent.
    async fn attach(
        &self,
        server: &ServerConnection,
        operation: &Operation,
        charge: Charge,
        (ids, passes): (Vec<i64>, Vec<Vec<u8>>),
    ) -> Result<Option<Vec<u8>>, PluginError> {
        match self.payment(server, passes).await {
            Ok(data) => {
                self.in_flight.push(operation, Paid { charge, ids });
                Ok(Some(data))
            }
            Err(e) => {
                self.give_back(ids).await;
                Err(e)
            }
        }
    }

    async fn give_back(&self, ids: Vec<i64>) {
        if let Err(e) = self.with_wallet(move |w| w.release(&ids)).await {
            self.host
                .warn(&format!("passes not returned to the wallet: {e}"));
        }
    }
}

/// The local resource: the wallet and the price calculator.
#[derive(Debug)]
pub struct Resource {
    wallet: Arc<Wallet>,
    redeemer: Redeemer,
    pass_value: PassValue,
    shares_needed: NonZeroU64,
    shares_total: u64,
    min_time_remaining: Duration,
}

impl Resource {
    fn status_json(&self, now: u64) -> Result<serde_json::Value, WalletError> {
        let counts = self.wallet.counts(now)?;
        Ok(json!({
            "spendable": counts.spendable,
            "lease-maintenance-spending": null,
            "tokens": counts,
        }))
    }

    /// Answers one request to the local resource.
    pub fn answer(&self, request: &RouteRequest, now: u64) -> Result<RouteResponse, WalletError> {
        let method = request.method.as_str();
        let path = request.path.as_str().trim_matches('/');
        Ok(match (method, path) {
            ("GET", "version") => {
                json_answer(200, &json!({ "version": env!("CARGO_PKG_VERSION") }))
            }
            ("PUT", "voucher") => {
                let Some(voucher) = serde_json::from_slice::<serde_json::Value>(&request.body)
                    .ok()
                    .and_then(|v| v.get("voucher").and_then(|v| v.as_str()).map(str::to_owned))
                    .filter(|v| is_voucher(v))
                else {
                    return Ok(json_answer(
                        400,
                        &json!({ "error": "expected {\"voucher\": <44 URL-safe base64 characters>}" }),
                    ));
                };
                let status = self.redeemer.redeem(&self.wallet, &voucher, now)?;
                json_answer(200, &json!(status))
            }
            ("GET", "voucher") => json_answer(200, &json!({ "vouchers": self.wallet.vouchers()? })),
            ("GET", "lease-maintenance") => json_answer(200, &self.status_json(now)?),
            ("POST", "calculate-price") => {
                let sizes = serde_json::from_slice::<serde_json::Value>(&request.body)
                    .ok()
                    .filter(|v| v.get("version") == Some(&json!(1)))
                    .and_then(|v| v.get("sizes").cloned())
                    .and_then(|s| serde_json::from_value::<Vec<u64>>(s).ok());
                let Some(sizes) = sizes else {
                    return Ok(json_answer(
                        400,
                        &json!({ "error": "expected {\"version\": 1, \"sizes\": [bytes]}" }),
                    ));
                };
                let price: u64 = sizes
                    .iter()
                    .map(|&size| {
                        self.pass_value
                            .estimate_file(self.shares_needed, self.shares_total, size)
                    })
                    .fold(0, u64::saturating_add);
                let period = LEASE_PERIOD
                    .saturating_sub(self.min_time_remaining)
                    .as_secs();
                json_answer(200, &json!({ "price": price, "period": period }))
            }
            ("GET", voucher) if voucher.starts_with("voucher/") => {
                match self.wallet.voucher(&voucher["voucher/".len()..])? {
                    Some(status) => json_answer(200, &json!(status)),
                    None => json_answer(404, &json!({ "error": "no such voucher" })),
                }
            }
            ("GET" | "POST", _) => json_answer(404, &json!({ "error": "no such resource" })),
            _ => json_answer(405, &json!({ "error": "method not allowed" })),
        })
    }
}

fn json_answer(status: u16, value: &serde_json::Value) -> RouteResponse {
    RouteResponse {
        status,
        content_type: "application/json".into(),
        body: value.to_string().into_bytes().into(),
    }
}

impl ClientPlugin for ZkapClient {
    fn matches(&self, announcement: &Value) -> bool {
        let Some(announced) = from_value::<Announcement>(announcement) else {
            return false;
        };
        if announced.issuer_url != self.issuer_url {
            self.host.warn(&format!(
                "Announced issuer ({}) disagrees with configured issuer ({}); not using this server",
                announced.issuer_url, self.issuer_url
            ));
            return false;
        }
        if announced
            .pass_value
            .is_some_and(|v| v != self.pass_value.bytes())
        {
            self.host
                .warn("the server's pass-value differs from ours; not using this server");
            return false;
        }
        true
    }

    async fn prepare(
        &self,
        server: ServerConnection,
        operation: Operation,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        let Some(charge) = self.price(&server, &operation).await? else {
            return Ok(None);
        };
        let taken = self.passes(&charge, Vec::new(), charge.required).await?;
        self.attach(&server, &operation, charge, taken).await
    }

    async fn rejected(
        &self,
        server: ServerConnection,
        operation: Operation,
        rejection: Rejection,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        let Some(Paid { charge, ids }) = self.in_flight.pop(&operation) else {
            return Ok(None);
        };
        let details = (rejection.code.as_str() == MORE_PASSES_REQUIRED)
            .then(|| rejection.details())
            .flatten()
            .and_then(|d| from_value::<ShortfallDetails>(&d));
        let Some(details) = details else {
            self.give_back(ids).await;
            return Ok(None);
        };
        let failed: HashSet<u64> = details.signature_check_failed.iter().copied().collect();
        let spent: HashSet<u64> = details.already_spent.iter().copied().collect();
        if failed.is_empty() && spent.is_empty() {
            // Nothing wrong with the passes: the price differs. Giving up keeps them.
            self.give_back(ids).await;
            return Ok(None);
        }
        let pick = |set: &HashSet<u64>| -> Vec<i64> {
            ids.iter()
                .enumerate()
                .filter(|(i, _)| set.contains(&(*i as u64)))
                .map(|(_, id)| *id)
                .collect()
        };
        let (bad_signature, bad_spent) = (pick(&failed), pick(&spent));
        let keep: Vec<i64> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| !failed.contains(&(*i as u64)) && !spent.contains(&(*i as u64)))
            .map(|(_, id)| *id)
            .collect();
        self.with_wallet(move |w| {
            w.invalidate(&bad_signature, "signature check failed")?;
            w.invalidate(&bad_spent, "already spent")
        })
        .await?;
        let more = charge.required.saturating_sub(keep.len() as u64);
        let taken = match self.passes(&charge, keep.clone(), more).await {
            Ok(taken) => taken,
            Err(e) => {
                self.host
                    .warn(&format!("cannot replace refused passes: {e}"));
                self.give_back(keep).await;
                return Ok(None);
            }
        };
        self.attach(&server, &operation, charge, taken).await
    }

    async fn committed(&self, operation: Operation, outcome: Outcome) {
        let Some(Paid { mut ids, .. }) = self.in_flight.pop(&operation) else {
            return;
        };
        let used = charge::used(self.pass_value, &operation, &outcome, ids.len());
        let back = ids.split_off(used);
        let done = self
            .with_wallet(move |w| w.spend(&ids).and_then(|()| w.release(&back)))
            .await;
        if let Err(e) = done {
            self.host
                .warn(&format!("the wallet did not record spent passes: {e}"));
        }
    }

    async fn route(&self, request: RouteRequest) -> Result<RouteResponse, PluginError> {
        // Redemption talks to the issuer and the wallet is a file: off the async thread.
        let resource = self.resource.clone();
        let now = self.now();
        self.host
            .run_blocking(move || resource.answer(&request, now))
            .await?
            .map_err(|e| PluginError::failed(e.to_string()))
    }
}
