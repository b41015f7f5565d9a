//! Redemption: a client trades a voucher for signed tokens at the issuer's
//! `POST <issuer>/v1/redeem`, with the JSON ZKAPAuthorizer's `RistrettoRedeemer` sends and
//! PrivateStorage's issuer answers:
//!
//! - request `{"redeemVoucher": str, "redeemCounter": int, "redeemTokens": [base64 blinded token]}`;
//! - success `{"success": true, "signatures": [base64], "proof": base64, "public-key": base64}`;
//! - failure `{"success": false, "reason": "double-spend" | "unpaid" | str}`.
//!
//! [`Issuer`] is a demo issuer for tests and trials: every voucher counts as paid except
//! those it was told are unpaid, and a (voucher, counter) pair signs only the tokens it
//! first signed for it (the same tokens again get the same answer, as after a lost reply;
//! others are a double spend). [`serve`] puts it on a socket.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use challenge_bypass_ristretto::voprf::{BatchDLEQProof, BlindedToken, SignedToken, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::http;
use crate::pass::sign_blinded;

/// The request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedeemRequest {
    /// The voucher.
    pub redeem_voucher: String,
    /// Which redemption group of the voucher.
    pub redeem_counter: u32,
    /// Blinded tokens, standard base64.
    pub redeem_tokens: Vec<String>,
}

/// The answer body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeemAnswer {
    /// Whether tokens were signed.
    pub success: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Signed tokens, in request order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<String>,
    /// The batch DLEQ proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
    /// The key that signed.
    #[serde(
        rename = "public-key",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub public_key: Option<String>,
}

impl RedeemAnswer {
    fn failure(reason: &str) -> Self {
        Self {
            success: false,
            reason: Some(reason.to_owned()),
            signatures: Vec::new(),
            proof: None,
            public_key: None,
        }
    }
}

/// Vouchers are 32 bytes of URL-safe base64: 44 characters.
pub fn is_voucher(text: &str) -> bool {
    use base64::Engine as _;
    text.len() == 44
        && base64::engine::general_purpose::URL_SAFE
            .decode(text)
            .is_ok_and(|bytes| bytes.len() == 32)
}

/// Most tokens one redemption request may ask for.
pub const MAX_TOKENS_PER_REQUEST: usize = 65_536;

/// The demo issuer.
pub struct Issuer {
    key: SigningKey,
    unpaid: HashSet<String>,
    /// Digest of the tokens signed for each (voucher, counter).
    signed: Mutex<HashMap<(String, u32), [u8; 32]>>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Issuer(..)")
    }
}

impl Issuer {
    /// An issuer signing with `key`, refusing `unpaid` vouchers.
    pub fn new(key: SigningKey, unpaid: impl IntoIterator<Item = String>) -> Self {
        Self {
            key,
            unpaid: unpaid.into_iter().collect(),
            signed: Mutex::default(),
        }
    }

    /// Answers one redemption.
    pub fn redeem(&self, request: &RedeemRequest) -> RedeemAnswer {
        if !is_voucher(&request.redeem_voucher) {
            return RedeemAnswer::failure("bad-voucher");
        }
        if self.unpaid.contains(&request.redeem_voucher) {
            return RedeemAnswer::failure("unpaid");
        }
        if request.redeem_tokens.len() > MAX_TOKENS_PER_REQUEST {
            return RedeemAnswer::failure("too-many-tokens");
        }
        let Ok(blinded) = request
            .redeem_tokens
            .iter()
            .map(|t| BlindedToken::decode_base64(t))
            .collect::<Result<Vec<_>, _>>()
        else {
            return RedeemAnswer::failure("bad-tokens");
        };
        let digest: [u8; 32] = Sha256::digest(request.redeem_tokens.join(",").as_bytes()).into();
        {
            let mut signed = self.signed.lock().unwrap_or_else(|e| e.into_inner());
            let key = (request.redeem_voucher.clone(), request.redeem_counter);
            match signed.get(&key) {
                Some(earlier) if *earlier != digest => {
                    return RedeemAnswer::failure("double-spend")
                }
                Some(_) => {}
                None => {
                    signed.insert(key, digest);
                }
            }
        }
        match sign_blinded(&self.key, &blinded, &mut rand_core::OsRng) {
            Ok((signatures, proof)) => RedeemAnswer {
                success: true,
                reason: None,
                signatures: signatures.iter().map(SignedToken::encode_base64).collect(),
                proof: Some(BatchDLEQProof::encode_base64(&proof)),
                public_key: Some(self.key.public_key.encode_base64()),
            },
            Err(_) => RedeemAnswer::failure("signing-failed"),
        }
    }
}

/// Connections served at once; more wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a connection may take to send its request and read the answer.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `issuer` on `listener` until the process ends, on [`MAX_CONNECTIONS`] threads
/// that each take one connection at a time from the listener.
pub fn serve(listener: TcpListener, issuer: Arc<Issuer>) -> std::io::Result<()> {
    let workers = (0..MAX_CONNECTIONS)
        .map(|_| {
            let (listener, issuer) = (listener.try_clone()?, issuer.clone());
            Ok(std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let _ = stream.set_read_timeout(Some(CONNECTION_TIMEOUT));
                    let _ = stream.set_write_timeout(Some(CONNECTION_TIMEOUT));
                    let (status, body) = match http::read_message(&mut stream) {
                        Ok(message) => answer(&issuer, &message),
                        Err(e) => (
                            400,
                            serde_json::json!({ "error": e }).to_string().into_bytes(),
                        ),
                    };
                    let _ = http::write_json(&mut stream, status, &body);
                }
            }))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

fn answer(issuer: &Issuer, message: &http::Message) -> (u16, Vec<u8>) {
    let mut parts = message.start_line.split(' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if !path.ends_with("/v1/redeem") {
        return (404, br#"{"error": "not found"}"#.to_vec());
    }
    if method != "POST" {
        return (405, br#"{"error": "use POST"}"#.to_vec());
    }
    match serde_json::from_slice::<RedeemRequest>(&message.body) {
        Ok(request) => {
            let answer = issuer.redeem(&request);
            (200, serde_json::to_vec(&answer).unwrap_or_default())
        }
        Err(e) => (
            400,
            serde_json::json!({ "error": e.to_string() })
                .to_string()
                .into_bytes(),
        ),
    }
}

/// What a client needs to redeem.
#[derive(Debug, Clone)]
pub struct Redeemer {
    /// The issuer's root URL.
    pub issuer: http::HttpUrl,
    /// Keys whose tokens may be spent (standard base64).
    pub allowed_public_keys: Vec<String>,
    /// Tokens asked for per voucher.
    pub tokens_per_voucher: u64,
    /// Redemption groups per voucher (ZKAPAuthorizer uses 16).
    pub groups: u32,
    /// How long one request to the issuer may take.
    pub timeout: Duration,
}

impl Redeemer {
    /// Redeems `voucher` into `wallet`, group by group, from where an earlier attempt
    /// stopped; answers the voucher's final status. A voucher already redeemed (or refused
    /// for good) is left as it is.
    pub fn redeem(
        &self,
        wallet: &crate::wallet::Wallet,
        voucher: &str,
        now: u64,
    ) -> Result<crate::wallet::VoucherStatus, crate::wallet::WalletError> {
        let status = wallet.add_voucher(voucher, self.tokens_per_voucher, now)?;
        if matches!(
            status.state.as_str(),
            "redeemed" | "double-spend" | "unpaid"
        ) {
            return Ok(status);
        }
        wallet.set_voucher_state(voucher, "redeeming", None)?;
        let groups = self.groups.clamp(
            1,
            u32::try_from(status.expected_tokens.max(1)).unwrap_or(u32::MAX),
        );
        for counter in wallet.groups_done(voucher)?..groups {
            let count = group_size(status.expected_tokens, groups, counter);
            let tokens = wallet.group_tokens(voucher, counter, count)?;
            match self.redeem_group(voucher, counter, &tokens) {
                Ok((unblinded, public_key)) => {
                    let allowed = self.allowed_public_keys.contains(&public_key);
                    wallet.add_tokens(voucher, counter, &unblinded, &public_key, allowed)?;
                }
                Err(Refused::Final(state)) => {
                    wallet.set_voucher_state(voucher, &state, None)?;
                    return Ok(wallet.voucher(voucher)?.unwrap_or(status));
                }
                Err(Refused::Error(detail)) => {
                    wallet.set_voucher_state(voucher, "error", Some(&detail))?;
                    return Ok(wallet.voucher(voucher)?.unwrap_or(status));
                }
            }
        }
        wallet.set_voucher_state(voucher, "redeemed", None)?;
        Ok(wallet.voucher(voucher)?.unwrap_or(status))
    }

    fn redeem_group(
        &self,
        voucher: &str,
        counter: u32,
        tokens: &[challenge_bypass_ristretto::voprf::Token],
    ) -> Result<
        (
            Vec<challenge_bypass_ristretto::voprf::UnblindedToken>,
            String,
        ),
        Refused,
    > {
        use challenge_bypass_ristretto::voprf::PublicKey;
        let blinded: Vec<BlindedToken> = tokens.iter().map(|t| t.blind()).collect();
        let request = RedeemRequest {
            redeem_voucher: voucher.to_owned(),
            redeem_counter: counter,
            redeem_tokens: blinded.iter().map(BlindedToken::encode_base64).collect(),
        };
        let body = serde_json::to_vec(&request).map_err(|e| Refused::Error(e.to_string()))?;
        let (status, answer) = http::post_json(
            &self.issuer,
            &self.issuer.join("v1/redeem"),
            &body,
            self.timeout,
        )
        .map_err(Refused::Error)?;
        let answer: RedeemAnswer = serde_json::from_slice(&answer).map_err(|_| {
            Refused::Error(format!(
                "the issuer answered {status} with no redemption result"
            ))
        })?;
        if !answer.success {
            return Err(match answer.reason.as_deref() {
                Some(reason @ ("double-spend" | "unpaid")) => Refused::Final(reason.to_owned()),
                reason => Refused::Error(format!(
                    "the issuer refused: {}",
                    reason.unwrap_or("no reason")
                )),
            });
        }
        let bad = |what: &str| Refused::Error(format!("the issuer's answer has a bad {what}"));
        let signed = answer
            .signatures
            .iter()
            .map(|s| SignedToken::decode_base64(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad("signature"))?;
        let proof = answer
            .proof
            .as_deref()
            .and_then(|p| BatchDLEQProof::decode_base64(p).ok())
            .ok_or_else(|| bad("proof"))?;
        let key_text = answer.public_key.ok_or_else(|| bad("public key"))?;
        let key = PublicKey::decode_base64(&key_text).map_err(|_| bad("public key"))?;
        let unblinded = crate::pass::unblind(&proof, tokens, &blinded, &signed, &key)
            .map_err(|_| Refused::Error("the issuer's proof does not verify".into()))?;
        Ok((unblinded, key_text))
    }
}

/// Why a group was not redeemed.
enum Refused {
    /// The voucher is done for: `double-spend` or `unpaid`.
    Final(String),
    /// Something that may pass on a retry.
    Error(String),
}

/// Tokens in group `counter` when `total` are split over `groups`.
fn group_size(total: u64, groups: u32, counter: u32) -> usize {
    let (groups, counter) = (u64::from(groups), u64::from(counter));
    let size = total / groups + u64::from(counter < total % groups);
    usize::try_from(size).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use challenge_bypass_ristretto::voprf::Token;

    fn voucher(n: u8) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE.encode([n; 32])
    }

    fn request(voucher: &str, counter: u32, tokens: &[Token]) -> RedeemRequest {
        RedeemRequest {
            redeem_voucher: voucher.to_owned(),
            redeem_counter: counter,
            redeem_tokens: tokens.iter().map(|t| t.blind().encode_base64()).collect(),
        }
    }

    #[test]
    fn the_issuer_signs_once_per_group_and_refuses_unpaid_vouchers() {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let issuer = Issuer::new(key, [voucher(9)]);
        let tokens: Vec<Token> = (0..3)
            .map(|_| Token::random::<sha2::Sha512, _>(&mut rand_core::OsRng))
            .collect();
        let first = issuer.redeem(&request(&voucher(1), 0, &tokens));
        assert!(first.success);
        assert_eq!(first.signatures.len(), 3);
        // The same tokens again (a lost answer): signed again.
        assert!(issuer.redeem(&request(&voucher(1), 0, &tokens)).success);
        // Other tokens for the same group: a double spend.
        let others: Vec<Token> = (0..3)
            .map(|_| Token::random::<sha2::Sha512, _>(&mut rand_core::OsRng))
            .collect();
        let again = issuer.redeem(&request(&voucher(1), 0, &others));
        assert_eq!(again.reason.as_deref(), Some("double-spend"));
        assert!(issuer.redeem(&request(&voucher(1), 1, &others)).success);
        // Inputs tried: an unpaid voucher, a voucher of the wrong shape, a token that is not one.
        assert_eq!(
            issuer
                .redeem(&request(&voucher(9), 0, &tokens))
                .reason
                .as_deref(),
            Some("unpaid")
        );
        assert_eq!(
            issuer
                .redeem(&request("short", 0, &tokens))
                .reason
                .as_deref(),
            Some("bad-voucher")
        );
        let mut bad = request(&voucher(2), 0, &tokens);
        bad.redeem_tokens[1] = "AAAA".into();
        assert_eq!(issuer.redeem(&bad).reason.as_deref(), Some("bad-tokens"));
    }

    #[test]
    fn groups_split_the_tokens_evenly() {
        let sizes: Vec<usize> = (0..16).map(|c| group_size(100, 16, c)).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert_eq!((sizes[0], sizes[15]), (7, 6));
    }

    #[test]
    fn a_client_redeems_over_http_and_resumes_after_a_refusal() {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let public = key.public_key.encode_base64();
        let issuer = Arc::new(Issuer::new(key, [voucher(9)]));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || serve(listener, issuer));
        let dir = tempfile::tempdir().unwrap();
        let wallet = crate::wallet::Wallet::open(&dir.path().join("w.sqlite3")).unwrap();
        let redeemer = Redeemer {
            issuer: http::HttpUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap(),
            allowed_public_keys: vec![public],
            tokens_per_voucher: 10,
            groups: 3,
            timeout: Duration::from_secs(10),
        };
        let status = redeemer.redeem(&wallet, &voucher(1), 5).unwrap();
        assert_eq!(status.state, "redeemed");
        assert_eq!(wallet.counts(5).unwrap().spendable, 10);
        // Input tried: an unpaid voucher.
        assert_eq!(
            redeemer.redeem(&wallet, &voucher(9), 5).unwrap().state,
            "unpaid"
        );
        // Tokens from a key that is not allowed are kept apart.
        let strict = Redeemer {
            allowed_public_keys: vec![],
            ..redeemer.clone()
        };
        strict.redeem(&wallet, &voucher(2), 5).unwrap();
        assert_eq!(wallet.counts(5).unwrap().sequestered, 10);
        // An issuer that is not there: an error state, then redeemed once it answers.
        let gone = Redeemer {
            issuer: http::HttpUrl::parse("http://127.0.0.1:1/").unwrap(),
            ..redeemer.clone()
        };
        assert_eq!(gone.redeem(&wallet, &voucher(3), 5).unwrap().state, "error");
        assert_eq!(
            redeemer.redeem(&wallet, &voucher(3), 5).unwrap().state,
            "redeemed"
        );
    }

    #[test]
    fn the_wire_names_are_the_originals() {
        let json = serde_json::to_value(request(&voucher(1), 2, &[])).unwrap();
        assert!(json.get("redeemVoucher").is_some());
        assert_eq!(json["redeemCounter"], 2);
        assert!(json["redeemTokens"].is_array());
        let answer: RedeemAnswer = serde_json::from_str(
            r#"{"success": true, "signatures": ["a"], "proof": "p", "public-key": "k"}"#,
        )
        .unwrap();
        assert_eq!(answer.public_key.as_deref(), Some("k"));
    }
}
