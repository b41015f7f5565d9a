//! The server side against a test host: prices, checks, reservations and settlement, with
//! real passes made from a key of the test's own.

use challenge_bypass_ristretto::voprf::SigningKey;
use gbs_plugin_interface::testing::{block_on, TestHost};
use gbs_plugin_interface::{
    to_cbor, LeaseRenewal, MutableShareChange, Operation, Outcome, RouteRequest, ServerPlugin,
    Settings, ShareInfo, ShareKind,
};

use super::*;
use crate::pass::{self, message, Pass};
use crate::wire::{HandleIssued, ShortfallDetails};

const MIB: u64 = 1024 * 1024;
const SI: [u8; 16] = [7; 16];

struct Fixture {
    _dir: tempfile::TempDir,
    host: TestHost,
    key: SigningKey,
    settings: Settings,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::random(&mut rand_core::OsRng);
        let key_path = dir.path().join("signing.key");
        std::fs::write(&key_path, format!("{}\n", key.encode_base64())).unwrap();
        let host = TestHost::new(dir.path().join("node/plugins-state/zkap"));
        let settings: Settings = [
            ("ristretto-issuer-root-url", "http://issuer.example/"),
            ("ristretto-signing-key-path", key_path.to_str().unwrap()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Self {
            _dir: dir,
            host,
            key,
            settings,
        }
    }

    fn server(&self) -> ZkapServer {
        ZkapServer::new(&self.settings, self.host.host()).unwrap()
    }

    /// `n` passes for `operation` on `si`, signed by `key`.
    fn passes_by(
        key: &SigningKey,
        n: usize,
        operation: pass::Operation,
        si: &[u8; 16],
    ) -> Vec<Vec<u8>> {
        let message = message(operation, si);
        pass::issue_tokens(key, n)
            .iter()
            .map(|token| Pass::new(token, message.as_bytes()).to_bytes())
            .collect()
    }

    fn passes(&self, n: usize, operation: pass::Operation) -> Vec<Vec<u8>> {
        Self::passes_by(&self.key, n, operation, &SI)
    }
}

fn allocate(shares: &[u16], size: u64) -> Operation {
    Operation::Allocate {
        storage_index: SI,
        share_numbers: shares.to_vec(),
        allocated_size: size,
        lease: [1; 32],
    }
}

fn data(passes: Vec<Vec<u8>>) -> Option<Vec<u8>> {
    Some(Payment::inline(passes).to_cbor())
}

fn shortfall(rejection: &Rejection) -> ShortfallDetails {
    assert_eq!(rejection.status, 402, "{rejection:?}");
    assert_eq!(rejection.code.as_str(), MORE_PASSES_REQUIRED);
    crate::wire::from_value(&rejection.details().unwrap()).unwrap()
}

#[test]
fn the_server_asks_the_host_to_grant_leases_only_when_paid() {
    let fx = Fixture::new();
    let server = fx.server();
    assert_eq!(fx.host.lease_renewal(), LeaseRenewal::EXPLICIT);
    let announced: crate::wire::Announcement = crate::wire::from_value(&server.announce()).unwrap();
    assert_eq!(announced.issuer_url, "http://issuer.example/");
    assert_eq!(announced.public_keys, [fx.key.public_key.encode_base64()]);
    assert_eq!(announced.pass_value, Some(MIB));
}

#[test]
fn an_allocation_needs_its_price_in_valid_passes_and_spends_only_for_new_shares() {
    let fx = Fixture::new();
    let server = fx.server();
    let op = allocate(&[0, 1, 2], 2 * MIB); // 3 shares × 2 passes
                                            // Input tried: no plugin data at all.
    let none = block_on(server.admit(op.clone(), None)).unwrap_err();
    assert_eq!(
        shortfall(&none),
        ShortfallDetails {
            valid: 0,
            required: 6,
            signature_check_failed: vec![],
            already_spent: vec![]
        }
    );
    // Input tried: six passes of which two were made for another storage index.
    let mut passes = fx.passes(6, pass::Operation::AllocateBuckets);
    passes[1] =
        Fixture::passes_by(&fx.key, 1, pass::Operation::AllocateBuckets, &[8; 16]).remove(0);
    passes[4] = fx.passes(1, pass::Operation::AddLease).remove(0);
    let short = block_on(server.admit(op.clone(), data(passes.clone()))).unwrap_err();
    let details = shortfall(&short);
    assert_eq!((details.valid, details.required), (4, 6));
    assert_eq!(details.signature_check_failed, [1, 4]);
    // Nothing was reserved by the refusal: the four good ones still pay with two more.
    let mut good: Vec<Vec<u8>> = passes
        .iter()
        .enumerate()
        .filter(|(i, _)| ![1, 4].contains(i))
        .map(|(_, p)| p.clone())
        .collect();
    good.extend(fx.passes(2, pass::Operation::AllocateBuckets));
    block_on(server.admit(op.clone(), data(good.clone()))).unwrap();
    // Share 2 was already there: 4 passes spent, 2 returned.
    block_on(server.committed(
        op.clone(),
        Outcome::Allocated {
            allocated: vec![0, 1],
            already_have: vec![2],
        },
    ));
    assert_eq!(server.ledger.spent_count().unwrap(), 4);
    assert_eq!(fx.host.counters()["spending_successes_sum"], 4);
    // Replaying the same six passes: the four spent are refused, whatever the price.
    let replay = block_on(server.admit(op.clone(), data(good.clone()))).unwrap_err();
    let details = shortfall(&replay);
    assert_eq!(details.already_spent, [0, 1, 2, 3]);
    assert_eq!(details.valid, 2);
    // Also by a server started afresh on the same state.
    drop(server);
    let again = fx.server();
    let replay = block_on(again.admit(op, data(good))).unwrap_err();
    assert_eq!(shortfall(&replay).already_spent, [0, 1, 2, 3]);
}

#[test]
fn a_pass_held_by_a_request_in_flight_cannot_pay_for_another() {
    let fx = Fixture::new();
    let server = fx.server();
    let passes = fx.passes(1, pass::Operation::AllocateBuckets);
    block_on(server.admit(allocate(&[0], 10), data(passes.clone()))).unwrap();
    let second = block_on(server.admit(allocate(&[1], 10), data(passes))).unwrap_err();
    assert_eq!(shortfall(&second).already_spent, [0]);
}

#[test]
fn bad_plugin_data_is_refused_before_any_pass_is_checked() {
    let fx = Fixture::new();
    let server = fx.server();
    let op = allocate(&[0], 10);
    // Inputs tried: not CBOR; a pass of the wrong length; a pass that is not base64.
    let rejection = block_on(server.admit(op.clone(), Some(vec![0xff, 0x00]))).unwrap_err();
    assert_eq!(
        (rejection.status, rejection.code.as_str()),
        (400, "bad-plugin-data")
    );
    let rejection = block_on(server.admit(op.clone(), data(vec![vec![b'a'; 176]]))).unwrap_err();
    assert_eq!(
        (rejection.status, rejection.code.as_str()),
        (400, "malformed-pass")
    );
    let mut garbled = fx.passes(1, pass::Operation::AllocateBuckets).remove(0);
    garbled[3] = b'!';
    let rejection = block_on(server.admit(op, data(vec![garbled]))).unwrap_err();
    assert_eq!(
        (rejection.status, rejection.code.as_str()),
        (400, "malformed-pass")
    );
    assert_eq!(server.ledger.spent_count().unwrap(), 0);
}

#[test]
fn free_operations_need_no_passes() {
    let fx = Fixture::new();
    let server = fx.server();
    for op in [
        Operation::Version,
        allocate(&[], 10),
        Operation::ReadTestWrite {
            storage_index: SI,
            shares: vec![MutableShareChange {
                share_number: 0,
                tests: 1,
                write_bytes: 0,
                write_end: 0,
                new_length: None,
            }],
            read_vectors: 1,
            lease: [1; 32],
        },
        // No shares held: a lease costs nothing (and the host answers 404).
        Operation::Lease {
            storage_index: SI,
            lease: [1; 32],
        },
    ] {
        block_on(server.admit(op.clone(), None)).unwrap_or_else(|r| panic!("{op:?}: {r:?}"));
    }
}

#[test]
fn mutable_writes_pay_for_growth_and_may_not_truncate() {
    let fx = Fixture::new();
    let server = fx.server();
    let now = 1_800_000_000;
    fx.host.set_now_unix_millis(Some(now * 1000));
    let write = |new_length| Operation::ReadTestWrite {
        storage_index: SI,
        shares: vec![MutableShareChange {
            share_number: 0,
            tests: 0,
            write_bytes: 700_000,
            write_end: 1_200_000,
            new_length,
        }],
        read_vectors: 0,
        lease: [1; 32],
    };
    let share = |lease_expiry| ShareInfo {
        kind: ShareKind::Mutable,
        share_number: 0,
        size: 500_000,
        lease_expiry,
    };
    // plugin-model §2.4: 500,000 → 1,200,000 bytes costs 1 pass with a live lease, 2 without.
    fx.host.set_shares(SI, vec![share(now + 100)]);
    let short = block_on(server.admit(write(None), None)).unwrap_err();
    assert_eq!(shortfall(&short).required, 1);
    fx.host.set_shares(SI, vec![share(now - 1)]);
    let short = block_on(server.admit(write(None), None)).unwrap_err();
    assert_eq!(shortfall(&short).required, 2);
    let passes = fx.passes(2, pass::Operation::SlotTestvAndReadvAndWritev);
    block_on(server.admit(write(None), data(passes.clone()))).unwrap();
    // The tests failed, nothing was written: nothing spent, the passes usable again.
    block_on(server.committed(write(None), Outcome::ReadTestWrite { success: false }));
    assert_eq!(server.ledger.spent_count().unwrap(), 0);
    block_on(server.admit(write(None), data(passes))).unwrap();
    block_on(server.committed(write(None), Outcome::ReadTestWrite { success: true }));
    assert_eq!(server.ledger.spent_count().unwrap(), 2);
    // Input tried: a new length (truncation).
    let rejection = block_on(server.admit(write(Some(10)), None)).unwrap_err();
    assert_eq!(
        (rejection.status, rejection.code.as_str()),
        (400, "new-length-rejected")
    );
}

#[test]
fn a_lease_costs_every_held_share() {
    let fx = Fixture::new();
    let server = fx.server();
    let share = |n, size| ShareInfo {
        kind: ShareKind::Immutable,
        share_number: n,
        size,
        lease_expiry: 0,
    };
    fx.host
        .set_shares(SI, vec![share(0, MIB), share(1, MIB + 1)]);
    let op = Operation::Lease {
        storage_index: SI,
        lease: [1; 32],
    };
    assert_eq!(
        shortfall(&block_on(server.admit(op.clone(), None)).unwrap_err()).required,
        3
    );
    block_on(server.admit(op.clone(), data(fx.passes(3, pass::Operation::AddLease)))).unwrap();
    block_on(server.committed(op, Outcome::Done));
    assert_eq!(server.ledger.spent_count().unwrap(), 3);
}

#[test]
fn large_pass_sets_travel_by_handle_once() {
    let fx = Fixture::new();
    let server = fx.server();
    let op = allocate(&(0..10).collect::<Vec<_>>(), 40 * MIB); // 400 passes
    let passes = fx.passes(400, pass::Operation::AllocateBuckets);
    let body = to_cbor(&PassUpload {
        passes: passes.into_iter().map(Bytes).collect(),
    });
    assert!(body.len() > 64 * 1024, "more than a header holds");
    let answer = block_on(server.route(RouteRequest::new("POST", PASSES_ROUTE, body))).unwrap();
    assert_eq!(answer.status, 201);
    let issued: HandleIssued = from_cbor(&answer.body).unwrap();
    let by_handle = Some(Payment::Handle(issued.handle).to_cbor());
    block_on(server.admit(op.clone(), by_handle.clone())).unwrap();
    // Input tried: the same handle again.
    let rejection = block_on(server.admit(op, by_handle)).unwrap_err();
    assert_eq!(
        (rejection.status, rejection.code.as_str()),
        (400, "unknown-handle")
    );
    // Input tried: a body that is not a pass upload.
    let answer =
        block_on(server.route(RouteRequest::new("POST", PASSES_ROUTE, vec![1, 2]))).unwrap();
    assert_eq!(answer.status, 400);
}

#[test]
fn stat_shares_reports_what_the_host_knows() {
    let fx = Fixture::new();
    let server = fx.server();
    let info = ShareInfo {
        kind: ShareKind::Mutable,
        share_number: 3,
        size: 1234,
        lease_expiry: 99,
    };
    fx.host.set_shares(SI, vec![info.clone()]);
    let body = to_cbor(&StatRequest {
        storage_index: Bytes(SI.to_vec()),
    });
    let answer =
        block_on(server.route(RouteRequest::new("POST", STAT_SHARES_ROUTE, body))).unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(from_cbor::<Vec<ShareInfo>>(&answer.body).unwrap(), [info]);
    // Input tried: a storage index of 3 bytes.
    let body = to_cbor(&StatRequest {
        storage_index: Bytes(vec![1, 2, 3]),
    });
    let answer =
        block_on(server.route(RouteRequest::new("POST", STAT_SHARES_ROUTE, body))).unwrap();
    assert_eq!(answer.status, 400);
}

#[test]
fn settings_are_checked_with_clear_errors() {
    let fx = Fixture::new();
    let mut settings = fx.settings.clone();
    settings.remove("ristretto-issuer-root-url");
    let error = ZkapServer::new(&settings, fx.host.host()).unwrap_err();
    assert!(
        error
            .message
            .contains("ristretto-issuer-root-url is required"),
        "{error}"
    );
    // Inputs tried: a key file that is not a key (its contents must not be echoed), a zero
    // pass value, a metrics path without an interval.
    let dir = tempfile::tempdir().unwrap();
    let not_a_key = dir.path().join("k");
    std::fs::write(&not_a_key, "SECRET-LOOKING-TEXT").unwrap();
    let mut settings = fx.settings.clone();
    settings.insert(
        "ristretto-signing-key-path".into(),
        not_a_key.display().to_string(),
    );
    let error = ZkapServer::new(&settings, fx.host.host()).unwrap_err();
    assert!(!error.message.contains("SECRET-LOOKING-TEXT"), "{error}");
    let mut settings = fx.settings.clone();
    settings.insert("pass-value".into(), "0".into());
    assert!(ZkapServer::new(&settings, fx.host.host()).is_err());
    let mut settings = fx.settings.clone();
    settings.insert("prometheus-metrics-path".into(), "m.prom".into());
    assert!(ZkapServer::new(&settings, fx.host.host()).is_err());
}
