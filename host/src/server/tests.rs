//! Router tests without a socket: order of checks, statuses and headers for bad input.
//! Each test names the input it tries. End-to-end tests over TLS live in `tests/`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use super::{router, AppState};
use crate::plugins::test_plugins::test_library;
use crate::plugins::{ServerPlugins, ServerPluginsBuilder};
use crate::protocol::{
    authorization_value, paths, secret_header_line, AllocateRequest, CborMessage,
    ReadTestWriteRequest, SecretKind, ShareNumber, StorageIndex, Swissnum,
};
use crate::storage::{Store, StoreConfig, SystemClock};

const SI: &str = "aaaqeayeaudaocajbifqydiob4";

/// A router over a store in a temporary directory, with a swissnum and optional plugins.
pub(super) struct Harness {
    _dir: tempfile::TempDir,
    pub(super) state: AppState,
    plugins: Arc<ServerPlugins>,
    auth: String,
}

impl Harness {
    fn new() -> Self {
        Self::with_plugins(&[])
    }

    /// A harness with the named plugins of `plugins::test_plugins`, in order.
    pub(super) fn with_plugins(names: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            reserved_space: 0,
            nodeid: [7; 20],
        };
        let store = Arc::new(
            Store::open(&dir.path().join("storage"), config, Arc::new(SystemClock)).unwrap(),
        );
        let library = test_library();
        let mut builder = ServerPluginsBuilder::new(dir.path(), Some(store.clone()));
        for name in names {
            builder.add(name, &BTreeMap::new(), &library).unwrap();
        }
        let plugins = Arc::new(builder.build());
        let swissnum = Swissnum::new("abcdefghijklmnopqrstuvwxyz234567");
        let auth = authorization_value(&swissnum);
        Self {
            _dir: dir,
            state: AppState::new(store, swissnum).with_plugins(plugins.clone()),
            plugins,
            auth,
        }
    }

    /// A request with the right `Authorization` header.
    pub(super) fn request(&self, method: &str, path: &str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, &self.auth)
    }

    pub(super) async fn send(&self, request: Request<Body>) -> Response {
        router(self.state.clone()).oneshot(request).await.unwrap()
    }

    /// The plugin's counter `name`, 0 if it never counted it.
    pub(super) fn counter(&self, plugin: &str, name: &str) -> u64 {
        self.plugins
            .counters(plugin)
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// Sends an authorized GET of `path` with an empty body.
    pub(super) async fn get(&self, path: &str) -> Response {
        self.send(self.request("GET", path).body(Body::empty()).unwrap())
            .await
    }
}

/// A request with an empty body and no `Authorization` header.
pub(super) fn unauthenticated(method: &str, path: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap()
}

pub(super) fn si() -> StorageIndex {
    SI.parse().unwrap()
}

fn secret(kind: SecretKind, value: &[u8]) -> (&'static str, String) {
    ("x-tahoe-authorization", secret_header_line(kind, value))
}

pub(super) fn with_secrets(
    mut builder: axum::http::request::Builder,
    secrets: &[(SecretKind, &[u8])],
) -> axum::http::request::Builder {
    for (kind, value) in secrets {
        let (name, line) = secret(*kind, value);
        builder = builder.header(name, line);
    }
    builder
}

pub(super) async fn body_bytes(response: Response) -> Vec<u8> {
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

#[tokio::test]
async fn routing_errors_come_before_authorization() {
    let h = Harness::new();
    // Inputs tried: an uppercase SI, a non-canonical last character, a trailing slash, a path
    // with `..`, and a wrong method, all without credentials.
    for path in [
        "/storage/v1/immutable/AAAQEAYEAUDAOCAJBIFQYDIOB4/shares",
        "/storage/v1/immutable/aaaqeayeaudaocajbifqydiobb/shares",
        "/storage/v1/version/",
        "/storage/v1/immutable/../version",
        "/storage/v1/immutable/aaaqeayeaudaocajbifqydiob4/-1",
    ] {
        assert_eq!(
            h.send(unauthenticated("GET", path)).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let wrong_method = h
        .send(unauthenticated("DELETE", "/storage/v1/version"))
        .await;
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(wrong_method.headers().contains_key(header::ALLOW));
    assert_eq!(
        h.send(unauthenticated("GET", "/storage/v1/version"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn authorization_must_match_exactly() {
    let h = Harness::new();
    let version = |value: &[u8]| {
        Request::builder()
            .uri(paths::version())
            .header(
                header::AUTHORIZATION,
                header::HeaderValue::from_bytes(value).unwrap(),
            )
            .body(Body::empty())
            .unwrap()
    };
    // Inputs tried: unpadded base64, lower-case scheme, two spaces, and non-UTF-8 bytes.
    for bad in [
        &b"Tahoe-LAFS YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoyMzQ1Njc"[..],
        b"tahoe-lafs YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoyMzQ1Njc=",
        b"Tahoe-LAFS  YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoyMzQ1Njc=",
    ] {
        assert_eq!(
            h.send(version(bad)).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        h.send(version(b"Tahoe-LAFS \xff")).await.status(),
        StatusCode::BAD_REQUEST
    );
    let ok = h.send(version(h.auth.as_bytes())).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()[header::CONTENT_TYPE], "application/cbor");
    let info = crate::protocol::VersionInfo::from_cbor(&body_bytes(ok).await).unwrap();
    assert_eq!(info.maximum_immutable_share_size, info.available_space);
}

#[tokio::test]
async fn secrets_on_an_endpoint_that_takes_none_are_refused() {
    let h = Harness::new();
    let request = with_secrets(
        h.request("GET", &paths::version()),
        &[(SecretKind::Upload, b"u")],
    );
    let response = h.send(request.body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn undecodable_secrets_are_refused_without_echo() {
    let h = Harness::new();
    let request = h
        .request("POST", &paths::immutable_allocate(&si()))
        .header(
            "x-tahoe-authorization",
            "lease-renew-secret c2VjcmV0LXZhbHVl===",
        )
        .header(
            "x-tahoe-authorization",
            "lease-cancel-secret c2VjcmV0LXZhbHVl===",
        )
        .header("x-tahoe-authorization", "upload-secret c2VjcmV0LXZhbHVl===");
    let response = h.send(request.body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = String::from_utf8(body_bytes(response).await).unwrap();
    assert!(!body.contains("c2VjcmV0"), "{body}");
}

fn allocate_request(h: &Harness) -> axum::http::request::Builder {
    with_secrets(
        h.request("POST", &paths::immutable_allocate(&si())),
        &[
            (SecretKind::LeaseRenew, &[1; 32]),
            (SecretKind::LeaseCancel, &[2; 32]),
            (SecretKind::Upload, b"up"),
        ],
    )
}

#[tokio::test]
async fn allocate_body_checks() {
    let h = Harness::new();
    let good = AllocateRequest {
        share_numbers: [ShareNumber(0)].into(),
        allocated_size: 10,
    }
    .to_cbor();
    // Input tried: a JSON content type.
    let json = allocate_request(&h).header(header::CONTENT_TYPE, "application/json");
    assert_eq!(
        h.send(json.body(Body::from(good.clone())).unwrap())
            .await
            .status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    // Input tried: 9000 bytes, over the 8192-byte cap.
    let huge = allocate_request(&h)
        .body(Body::from(vec![0u8; 9000]))
        .unwrap();
    assert_eq!(h.send(huge).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Input tried: bytes that are not CBOR.
    let garbage = allocate_request(&h)
        .body(Body::from(vec![0xff, 0x00]))
        .unwrap();
    assert_eq!(h.send(garbage).await.status(), StatusCode::BAD_REQUEST);
    // Input tried: Accept: */*, which stock Tahoe answers 406.
    let star = allocate_request(&h).header(header::ACCEPT, "*/*");
    assert_eq!(
        h.send(star.body(Body::from(good.clone())).unwrap())
            .await
            .status(),
        StatusCode::NOT_ACCEPTABLE
    );
    let ok = allocate_request(&h).header(header::CONTENT_TYPE, "application/cbor; x=y");
    let response = h.send(ok.body(Body::from(good)).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = crate::protocol::AllocateResponse::from_cbor(&body_bytes(response).await).unwrap();
    assert_eq!(answer.allocated, [ShareNumber(0)].into());
}

#[tokio::test]
async fn not_acceptable_has_no_side_effects() {
    let h = Harness::new();
    let request = ReadTestWriteRequest::write(ShareNumber(0), 0, b"x".to_vec());
    let rtw = with_secrets(
        h.request("POST", &paths::mutable_read_test_write(&si())),
        &[
            (SecretKind::WriteEnabler, &[3; 32]),
            (SecretKind::LeaseRenew, &[1; 32]),
            (SecretKind::LeaseCancel, &[2; 32]),
        ],
    )
    .header(header::ACCEPT, "application/json");
    let response = h
        .send(rtw.body(Body::from(request.to_cbor())).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);
    let list = h.get(&paths::mutable_shares(&si())).await;
    assert_eq!(body_bytes(list).await, [0xd9, 0x01, 0x02, 0x80]);
}

#[tokio::test]
async fn read_errors_carry_octet_stream() {
    let h = Harness::new();
    let missing = h.get(&paths::immutable_share(&si(), ShareNumber(3))).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        missing.headers()[header::CONTENT_TYPE],
        "application/octet-stream"
    );
    let unauthorized = unauthenticated("GET", &paths::mutable_share(&si(), ShareNumber(3)));
    let response = h.send(unauthorized).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/octet-stream"
    );
    // Input tried: a suffix range, which stock Tahoe does not support.
    let suffix = h
        .request("GET", &paths::mutable_share(&si(), ShareNumber(3)))
        .header(header::RANGE, "bytes=-5");
    assert_eq!(
        h.send(suffix.body(Body::empty()).unwrap()).await.status(),
        StatusCode::RANGE_NOT_SATISFIABLE
    );
}

#[tokio::test]
async fn patch_needs_a_valid_content_range() {
    let h = Harness::new();
    let patch = |range: Option<&str>| {
        let mut builder = with_secrets(
            h.request("PATCH", &paths::immutable_share(&si(), ShareNumber(0))),
            &[(SecretKind::Upload, b"up")],
        );
        if let Some(range) = range {
            builder = builder.header(header::CONTENT_RANGE, range);
        }
        builder.body(Body::from(vec![1u8; 4])).unwrap()
    };
    // Inputs tried: none, `bytes */4` (500 in stock Tahoe), reversed ends.
    for range in [None, Some("bytes */4"), Some("bytes 3-0/*")] {
        assert_eq!(
            h.send(patch(range)).await.status(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            "{range:?}"
        );
    }
    // A valid range for an upload that does not exist.
    assert_eq!(
        h.send(patch(Some("bytes 0-3/*"))).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_that_complete_a_share_answer_201_once_and_never_404() {
    let h = Harness::new();
    // Input tried: two one-byte PATCHes of a two-byte share sent at once, 40 times; whichever
    // finishes second used to find the upload gone and answer 404.
    for round in 0..40u8 {
        let si = StorageIndex::from_bytes([round; 16]);
        let allocate = with_secrets(
            h.request("POST", &paths::immutable_allocate(&si)),
            &[
                (SecretKind::LeaseRenew, &[1; 32]),
                (SecretKind::LeaseCancel, &[2; 32]),
                (SecretKind::Upload, b"up"),
            ],
        );
        let body = AllocateRequest {
            share_numbers: [ShareNumber(0)].into(),
            allocated_size: 2,
        }
        .to_cbor();
        assert_eq!(
            h.send(allocate.body(Body::from(body)).unwrap())
                .await
                .status(),
            StatusCode::OK
        );
        let patch = |offset: u64| {
            let request = with_secrets(
                h.request("PATCH", &paths::immutable_share(&si, ShareNumber(0))),
                &[(SecretKind::Upload, b"up")],
            )
            .header(header::CONTENT_RANGE, format!("bytes {offset}-{offset}/*"))
            .body(Body::from(vec![b'x']))
            .unwrap();
            h.send(request)
        };
        let (first, second) = tokio::join!(patch(0), patch(1));
        let mut statuses = [first.status(), second.status()];
        statuses.sort();
        // Only the request whose write completed the share says so.
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CREATED],
            "round {round}"
        );
    }
}

#[tokio::test]
async fn a_patch_whose_first_piece_completes_the_share_answers_201() {
    const MIB: u64 = 1 << 20;
    let h = Harness::new();
    let body = AllocateRequest {
        share_numbers: [ShareNumber(0)].into(),
        allocated_size: 2 * MIB,
    }
    .to_cbor();
    let allocated = h
        .send(allocate_request(&h).body(Body::from(body)).unwrap())
        .await;
    assert_eq!(allocated.status(), StatusCode::OK);
    let patch = |start: u64, end: u64| {
        with_secrets(
            h.request("PATCH", &paths::immutable_share(&si(), ShareNumber(0))),
            &[(SecretKind::Upload, b"up")],
        )
        .header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/*", end - 1),
        )
        .body(Body::from(vec![b'x'; (end - start) as usize]))
        .unwrap()
    };
    // Input tried: the second half first, then the whole share in one PATCH. Its first
    // piece completes the share; writing the second piece too would find no upload (404).
    assert_eq!(h.send(patch(MIB, 2 * MIB)).await.status(), StatusCode::OK);
    assert_eq!(
        h.send(patch(0, 2 * MIB)).await.status(),
        StatusCode::CREATED
    );
    let read = h.get(&paths::immutable_share(&si(), ShareNumber(0))).await;
    assert_eq!(body_bytes(read).await, vec![b'x'; 2 * MIB as usize]);
}
