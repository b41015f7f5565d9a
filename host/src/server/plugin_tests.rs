//! Router tests with storage plugins linked into the test binary (see
//! `plugins::test_plugins`): admission before the store, structured rejections, plugin
//! data checks, plugin routes and the plugin list. Each test names the input it tries.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};

use super::tests::{body_bytes, si, unauthenticated, with_secrets, Harness};
use crate::plugins::PluginData;
use crate::protocol::{paths, AllocateRequest, CborMessage, SecretKind, ShareNumber};

fn word(text: &str) -> (&'static str, String) {
    (
        "x-tahoe-plugin-data",
        PluginData::header_value("gate", &gbs_plugin_interface::to_cbor(&text)),
    )
}

fn allocate(h: &Harness, data: Option<(&'static str, String)>) -> Request<Body> {
    let mut builder = with_secrets(
        h.request("POST", &paths::immutable_allocate(&si())),
        &[
            (SecretKind::LeaseRenew, &[1; 32]),
            (SecretKind::LeaseCancel, &[2; 32]),
            (SecretKind::Upload, &[3; 32]),
        ],
    );
    if let Some((name, value)) = data {
        builder = builder.header(name, value);
    }
    let body = AllocateRequest {
        share_numbers: BTreeSet::from([ShareNumber(0), ShareNumber(1)]),
        allocated_size: 4,
    };
    builder
        .header(header::CONTENT_TYPE, "application/cbor")
        .body(Body::from(body.to_cbor()))
        .unwrap()
}

fn upload(h: &Harness, data: Option<(&'static str, String)>) -> Request<Body> {
    let mut builder = with_secrets(
        h.request("PATCH", &paths::immutable_share(&si(), ShareNumber(0))),
        &[(SecretKind::Upload, &[3; 32])],
    )
    .header(header::CONTENT_RANGE, "bytes 0-3/*");
    if let Some((name, value)) = data {
        builder = builder.header(name, value);
    }
    builder.body(Body::from(&b"data"[..])).unwrap()
}

#[tokio::test]
async fn plugin_list_without_plugins_is_an_empty_cbor_array() {
    let h = Harness::with_plugins(&[]);
    let response = h.get("/storage/v1/plugins").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/cbor");
    let interface = gbs_plugin_interface::INTERFACE_VERSION;
    assert_eq!(
        response.headers()["x-tahoe-plugin-interface"],
        format!("{}.{}", interface.0, interface.1).as_str()
    );
    assert_eq!(body_bytes(response).await, [0x80]);
    // Input tried: no Authorization header.
    let anonymous = unauthenticated("GET", "/storage/v1/plugins");
    assert_eq!(h.send(anonymous).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn version_without_plugin_data_is_rejected_with_the_structured_body() {
    let h = Harness::with_plugins(&["gate"]);
    let response = h.get("/storage/v1/version").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/cbor");
    assert_eq!(response.headers()["x-tahoe-plugin-rejected"], "gate");
    let body: ciborium::Value = ciborium::from_reader(&body_bytes(response).await[..]).unwrap();
    let map = body.into_map().unwrap();
    let keys: Vec<_> = map.iter().map(|(k, _)| k.as_text().unwrap()).collect();
    assert_eq!(keys, ["plugin", "code", "message", "details"]);

    // Input tried: the word in plugin data.
    let response = h
        .send(
            h.request("GET", "/storage/v1/version")
                .header(word("open sesame").0, word("open sesame").1)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.counter("gate", "committed.version"), 1);
}

#[tokio::test]
async fn malformed_plugin_data_is_400_before_any_plugin_sees_it() {
    let h = Harness::with_plugins(&["gate"]);
    // Inputs tried: bad base64, base64 of a lone CBOR break byte, an unknown plugin, two
    // headers for one plugin, and 70 KB of data.
    let big = PluginData::header_value("gate", &gbs_plugin_interface::to_cbor(&vec![0u8; 70_000]));
    let cases: Vec<Vec<String>> = vec![
        vec!["gate !!!".into()],
        vec!["gate _w".into()],
        vec![PluginData::header_value("zkap", &[0xf6])],
        vec![word("a").1, word("b").1],
        vec![big],
    ];
    for values in cases {
        let mut builder = h.request("GET", "/storage/v1/version");
        for value in &values {
            builder = builder.header("x-tahoe-plugin-data", value);
        }
        let response = h.send(builder.body(Body::empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{values:?}");
    }
    assert_eq!(h.counter("gate", "admit.version"), 0);
}

#[tokio::test]
async fn allocate_and_upload_are_admitted_first_and_committed_with_the_outcome() {
    let h = Harness::with_plugins(&["gate"]);
    // Input tried: allocate without plugin data; the store must not be touched.
    let response = h.send(allocate(&h, None)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let shares = h.state.store.list_immutable(&si()).unwrap();
    assert!(shares.is_empty());

    let response = h.send(allocate(&h, Some(word("open sesame")))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.counter("gate", "allocated"), 2);

    // Input tried: an upload without plugin data, which must not write.
    let response = h.send(upload(&h, None)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(h.counter("gate", "uploaded-bytes"), 0);

    let response = h.send(upload(&h, Some(word("open sesame")))).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(h.counter("gate", "uploaded-bytes"), 4);
    assert_eq!(h.counter("gate", "completed"), 1);

    // The share is complete now: a second allocate reports it as already there.
    let response = h.send(allocate(&h, Some(word("open sesame")))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.counter("gate", "already-have"), 1);
}

#[tokio::test]
async fn panic_in_admit_is_500_naming_the_plugin_and_the_server_goes_on() {
    let h = Harness::with_plugins(&["panics"]);
    let response = h.send(allocate(&h, None)).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let text = String::from_utf8(body_bytes(response).await).unwrap();
    assert_eq!(text, "storage plugin panics failed");
    let response = h.get("/storage/v1/version").await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn rejection_with_status_418_is_500_naming_the_plugin() {
    let h = Harness::with_plugins(&["bad-status"]);
    let response = h.send(allocate(&h, None)).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!response.headers().contains_key("x-tahoe-plugin-rejected"));
    let text = String::from_utf8(body_bytes(response).await).unwrap();
    assert_eq!(text, "storage plugin bad-status failed");
}

#[tokio::test]
async fn plugin_routes_pass_checked_answers_on() {
    let h = Harness::with_plugins(&["gate"]);
    let response = h
        .send(
            h.request("POST", "/storage/v1/plugin/gate/echo?x=1")
                .body(Body::from("ping"))
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/octet-stream"
    );
    assert_eq!(body_bytes(response).await, b"ping");
    // Inputs tried: a 16 MiB + 1 body and status 99 from the plugin.
    for path in ["huge", "status-99"] {
        let response = h.get(&format!("/storage/v1/plugin/gate/{path}")).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{path}");
        let text = String::from_utf8(body_bytes(response).await).unwrap();
        assert!(text.contains("gate"), "{text}");
    }
    // Input tried: the plugin's root, which reaches the plugin with an empty path.
    let response = h.get("/storage/v1/plugin/gate").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(body_bytes(response).await, b"no such gate route");
    // Inputs tried: escapes of `/`, `?` and NUL in the path, and a name that is escaped
    // itself. The path reaches the plugin as sent, like the query: decoded, the plugin got
    // `a/b?c` and a NUL.
    let response = h
        .get("/storage/v1/plugin/g%61te/path/a%2Fb%3Fc%00d?x=%2F")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_bytes(response).await, b"path/a%2Fb%3Fc%00d x=%2F");
    // Input tried: a plugin that is not loaded.
    let response = h.get("/storage/v1/plugin/zkap/x").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // Input tried: no Authorization header.
    let anonymous = unauthenticated("GET", "/storage/v1/plugin/gate/echo");
    assert_eq!(h.send(anonymous).await.status(), StatusCode::UNAUTHORIZED);
}
