//! Bad input: malformed NURLs, and servers that close mid-body, send something other than
//! CBOR, announce one length and send another, lie in `Content-Range`, or go quiet. Each
//! must give a clear error, never a hang or a panic.

use std::collections::BTreeSet;
use std::time::Duration;

use gbs::client::{Client, ClientBuilder, ClientError, Stage};
use gbs::protocol::{
    AllocateResponse, CborMessage, LeaseCancelSecret, LeaseRenewSecret, LeaseSecrets, Nurl,
    NurlError, ReadRange, ShareKind, ShareNumber, SpkiHash, StorageIndex, UploadProgress,
    UploadSecret, VersionInfo,
};

use super::fake_server::{response, FakeServer, Then};

const SI: StorageIndex = StorageIndex::from_bytes([7; 16]);

fn version_cbor() -> Vec<u8> {
    VersionInfo {
        maximum_immutable_share_size: 1 << 30,
        maximum_mutable_share_size: 69_105_000_000_000_000,
        available_space: 1 << 30,
        application_version: b"fake/1".to_vec(),
    }
    .to_cbor()
}

/// A client with short deadlines, so that a test of a hang takes a fraction of a second.
fn client(nurl: Nurl) -> Client {
    ClientBuilder::new(nurl)
        .connect_timeout(Duration::from_secs(5))
        .response_timeout(Duration::from_millis(500))
        .idle_timeout(Duration::from_millis(500))
        .build()
        .expect("client")
}

async fn read(server: &FakeServer, range: Option<(u64, u64)>) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    let range = range.and_then(|(offset, len)| ReadRange::new(offset, len));
    client(server.nurl())
        .read_share(ShareKind::Immutable, &SI, ShareNumber(0), range, &mut out)
        .await
        .map(|_| out)
}

/// Starts a server that sends `answer` and then does `then`, and returns the error that
/// `version()` against it must give; `what` names the input in the failure message.
async fn version_error(answer: Vec<u8>, then: Then, what: &str) -> ClientError {
    let server = FakeServer::start(answer, then).await;
    client(server.nurl()).version().await.expect_err(what)
}

/// As [`version_error`], for a read of `range` (offset, length) from share 0.
async fn read_error(answer: Vec<u8>, then: Then, range: (u64, u64), what: &str) -> ClientError {
    let server = FakeServer::start(answer, then).await;
    read(&server, Some(range)).await.expect_err(what)
}

/// Asserts that `error` matches the pattern, and shows the error when it does not.
macro_rules! assert_error {
    ($error:ident, $($pattern:tt)+) => {
        assert!(matches!($error, $($pattern)+), "{:?}", $error)
    };
}

const OCTETS: (&str, &str) = ("Content-Type", "application/octet-stream");
const CBOR: (&str, &str) = ("Content-Type", "application/cbor");

#[test]
fn malformed_nurls_are_refused_with_the_reason() {
    let good = "pb://WvQpEy1vElE-08RDYWr_X63JYNn5KR14kgfTbEnIDVU@127.0.0.1:47125/abcdefghijklmnopqrstuvwxyz234567#v=1";
    let cases = [
        ("", NurlError::BadScheme),
        ("https://example.org/", NurlError::BadScheme),
        ("pb://tubid@tcp:127.0.0.1:1/swiss", NurlError::NotHttp),
        (&good.replace("WvQp", "Wv=="), NurlError::BadSpkiHash),
        (&good.replace(":47125", ":0x10"), NurlError::BadLocation),
        (
            &good.replace("/abcdefghijklmnopqrstuvwxyz234567", ""),
            NurlError::BadSwissnum,
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(text.parse::<Nurl>().expect_err(text), expected, "{text:?}");
    }
    let tor: Nurl = good
        .replace("pb://", "pb+tor://")
        .replace("127.0.0.1", "abc.onion")
        .parse()
        .expect("tor NURL");
    assert!(matches!(
        ClientBuilder::new(tor).build(),
        Err(ClientError::UnsupportedNurl(_))
    ));
}

#[tokio::test]
async fn requests_carry_exactly_what_stock_servers_need() {
    let allocated = AllocateResponse {
        already_have: BTreeSet::new(),
        allocated: BTreeSet::from([ShareNumber(0)]),
    };
    let server = FakeServer::start(
        response(
            "200 OK",
            &[
                CBOR,
                ("Content-Length", &allocated.to_cbor().len().to_string()),
            ],
            &allocated.to_cbor(),
        ),
        Then::Close,
    )
    .await;
    let lease = LeaseSecrets {
        renew: LeaseRenewSecret::new([1; 32]),
        cancel: LeaseCancelSecret::new([2; 32]),
    };
    let secret = UploadSecret::new(vec![3; 32]).expect("secret");
    let upload = client(server.nurl())
        .allocate(SI, BTreeSet::from([ShareNumber(0)]), 10, &lease, secret)
        .await
        .expect("allocate");
    assert_eq!(upload.allocated(), &BTreeSet::from([ShareNumber(0)]));
    let log = server.log();
    assert_eq!(log.sni, vec![None], "stock clients send no SNI");
    let head = log
        .requests
        .first()
        .expect("one request")
        .to_ascii_lowercase();
    let lines: Vec<&str> = head.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(&*format!("post /storage/v1/immutable/{SI} http/1.1"))
    );
    assert!(lines.contains(&"accept: application/cbor"), "{head}");
    assert!(lines.contains(&"content-type: application/cbor"), "{head}");
    assert!(
        lines.contains(&"authorization: tahoe-lafs zmfrzxn3axnzbnvtzmfrzxn3axnzbnvtzmfrzxn3axm="),
        "{head}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("accept:")).count(),
        1,
        "{head}"
    );
    let secrets: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("x-tahoe-authorization: "))
        .map(|v| v.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(
        secrets,
        ["lease-renew-secret", "lease-cancel-secret", "upload-secret"]
    );
    assert!(!head.contains("gzip"), "no compression: {head}");
}

#[tokio::test]
async fn a_pin_mismatch_is_refused_before_any_request_is_sent() {
    let server = FakeServer::start(response("200 OK", &[CBOR], &version_cbor()), Then::Close).await;
    let other = SpkiHash::of_spki_der(b"not the server's key");
    let error = client(server.nurl_pinning(other))
        .version()
        .await
        .expect_err("must refuse the server");
    match error {
        ClientError::PinMismatch {
            expected,
            presented,
        } => {
            assert_eq!(expected, other);
            assert_eq!(presented, server.nurl().spki_hash);
        }
        other => panic!("expected a pin mismatch, got {other:?}"),
    }
    // The server side sees the handshake fail, and never a request.
    for _ in 0..100 {
        if server.log().failed_handshakes > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log = server.log();
    assert_eq!(log.failed_handshakes, 1);
    assert!(log.requests.is_empty(), "{:?}", log.requests);
    // With the right pin the same server is fine.
    assert_eq!(
        client(server.nurl())
            .version()
            .await
            .expect("version")
            .application_version,
        b"fake/1"
    );
}

#[tokio::test]
async fn accepting_any_key_is_an_explicit_danger() {
    let server = FakeServer::start(response("200 OK", &[CBOR], &version_cbor()), Then::Close).await;
    let other = SpkiHash::of_spki_der(b"not the server's key");
    let client = ClientBuilder::new(server.nurl_pinning(other))
        .danger()
        .accept_any_server_key()
        .build()
        .expect("client");
    assert_eq!(
        client.version().await.expect("version").application_version,
        b"fake/1"
    );
}

#[tokio::test]
async fn connections_are_reused_and_bounded() {
    let cbor = version_cbor();
    let answer = response(
        "200 OK",
        &[CBOR, ("Content-Length", &cbor.len().to_string())],
        &cbor,
    );
    let server = FakeServer::start(answer, Then::KeepAlive).await;
    let client = ClientBuilder::new(server.nurl())
        .max_connections(2)
        .build()
        .expect("client");
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.version().await })
        })
        .collect();
    for call in calls {
        call.await.expect("task").expect("version");
    }
    client.version().await.expect("version");
    let log = server.log();
    assert_eq!(log.requests.len(), 9);
    assert!(
        (1..=2).contains(&log.sni.len()),
        "{} connections for 9 requests",
        log.sni.len()
    );
}

#[tokio::test]
async fn a_server_that_never_finishes_the_handshake_hits_the_connect_deadline() {
    // The kernel completes the TCP handshake into the backlog; nobody ever answers TLS.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let server = FakeServer::start(Vec::new(), Then::Close).await;
    let client = ClientBuilder::new(Nurl {
        port,
        ..server.nurl()
    })
    .connect_timeout(Duration::from_millis(300))
    .build()
    .expect("client");
    let error = client.version().await.expect_err("no handshake");
    assert_error!(
        error,
        ClientError::Timeout {
            stage: Stage::Connect,
            ..
        }
    );
    drop(listener);
}

#[tokio::test]
async fn a_server_closing_mid_body_is_an_error() {
    let body = [9u8; 50];
    let error = read_error(
        response(
            "206 Partial Content",
            &[
                OCTETS,
                ("Content-Range", "bytes 0-99/*"),
                ("Content-Length", "100"),
            ],
            &body,
        ),
        Then::Close,
        (0, 100),
        "truncated body",
    )
    .await;
    assert_error!(error, ClientError::BodyInterrupted { .. });

    let cbor = version_cbor();
    let error = version_error(
        response(
            "200 OK",
            &[CBOR, ("Content-Length", &(cbor.len() + 10).to_string())],
            &cbor,
        ),
        Then::Close,
        "truncated CBOR",
    )
    .await;
    assert_error!(error, ClientError::BodyInterrupted { .. });
}

#[tokio::test]
async fn a_server_hanging_up_without_answering_is_an_error() {
    let error = version_error(Vec::new(), Then::Close, "no answer").await;
    assert_error!(error, ClientError::Transport(_));
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let server = FakeServer::start(Vec::new(), Then::Close).await;
    let error = client(Nurl {
        port,
        ..server.nurl()
    })
    .version()
    .await
    .expect_err("nothing listens");
    assert_error!(error, ClientError::Connect(_));
}

#[tokio::test]
async fn a_body_that_is_not_the_expected_cbor_is_refused() {
    let error = version_error(
        response("200 OK", &[CBOR, ("Content-Length", "5")], b"hello"),
        Then::Close,
        "not CBOR",
    )
    .await;
    assert_error!(error, ClientError::Decode(_));

    let mut trailing = version_cbor();
    trailing.push(0);
    let error = version_error(
        response(
            "200 OK",
            &[CBOR, ("Transfer-Encoding", "chunked")],
            &chunked(&trailing),
        ),
        Then::Close,
        "trailing byte",
    )
    .await;
    assert_error!(error, ClientError::Decode(_));

    let cbor = version_cbor();
    let error = version_error(
        response(
            "200 OK",
            &[
                ("Content-Type", "text/plain"),
                ("Content-Length", &cbor.len().to_string()),
            ],
            &cbor,
        ),
        Then::Close,
        "not labelled CBOR",
    )
    .await;
    assert_error!(
        error,
        ClientError::UnexpectedContentType { status: 200, .. }
    );
}

#[tokio::test]
async fn an_oversized_cbor_body_is_refused_before_it_is_read() {
    // 30 MiB + 1 announced and nothing sent: reading would hang until the idle deadline.
    let error = version_error(
        response("200 OK", &[CBOR, ("Content-Length", "31457281")], b""),
        Then::Stall,
        "too large",
    )
    .await;
    assert_error!(error, ClientError::BodyTooLarge { limit: 31_457_280 });
}

#[tokio::test]
async fn a_share_body_longer_than_announced_is_refused() {
    let body = [1u8; 20];
    let error = read_error(
        response(
            "206 Partial Content",
            &[
                OCTETS,
                ("Content-Range", "bytes 0-9/*"),
                ("Transfer-Encoding", "chunked"),
            ],
            &chunked(&body),
        ),
        Then::Close,
        (0, 10),
        "too long",
    )
    .await;
    assert_error!(error, ClientError::BodyTooLong { announced: 10 });

    let error = read_error(
        response(
            "206 Partial Content",
            &[
                OCTETS,
                ("Content-Range", "bytes 0-9/*"),
                ("Content-Length", "20"),
            ],
            &body,
        ),
        Then::Close,
        (0, 10),
        "too long",
    )
    .await;
    assert_error!(error, ClientError::BodyTooLong { announced: 10 });
}

#[tokio::test]
async fn a_share_body_shorter_than_announced_is_refused() {
    let error = read_error(
        response(
            "206 Partial Content",
            &[
                OCTETS,
                ("Content-Range", "bytes 0-9/*"),
                ("Content-Length", "5"),
            ],
            &[1; 5],
        ),
        Then::Close,
        (0, 10),
        "too short",
    )
    .await;
    assert_error!(
        error,
        ClientError::BodyTooShort {
            announced: 10,
            received: 5
        }
    );
}

#[tokio::test]
async fn a_lying_content_range_is_refused() {
    for header in [
        Some("bytes 0-99/*"),
        Some("bytes 5-9/*"),
        Some("bytes 0-9"),
        Some("items 0-9/*"),
        None,
    ] {
        let mut headers = vec![OCTETS, ("Content-Length", "10")];
        if let Some(header) = header {
            headers.push(("Content-Range", header));
        }
        let error = read_error(
            response("206 Partial Content", &headers, &[1; 10]),
            Then::Close,
            (0, 10),
            "lying range",
        )
        .await;
        assert!(
            matches!(error, ClientError::BadContentRange { ref requested, .. } if *requested == (0..10)),
            "{header:?}: {error:?}"
        );
    }
    // A full answer to a ranged request is refused too: the stock client wants 206 or 204.
    let error = read_error(
        response("200 OK", &[OCTETS, ("Content-Length", "10")], &[1; 10]),
        Then::Close,
        (0, 5),
        "200 for a range",
    )
    .await;
    assert_error!(error, ClientError::UnexpectedStatus { status: 200, .. });
}

#[tokio::test]
async fn read_answers_must_be_octet_streams_before_their_status_counts() {
    let page = b"<html>Not Found</html>";
    let error = read_error(
        response(
            "404 Not Found",
            &[
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", "22"),
            ],
            page,
        ),
        Then::Close,
        (0, 10),
        "HTML",
    )
    .await;
    assert_error!(
        error,
        ClientError::UnexpectedContentType { status: 404, .. }
    );
}

#[tokio::test]
async fn a_silent_server_or_stalled_body_hits_a_deadline() {
    let error = version_error(Vec::new(), Then::Stall, "silence").await;
    assert_error!(
        error,
        ClientError::Timeout {
            stage: Stage::Response,
            ..
        }
    );

    let error = read_error(
        response(
            "206 Partial Content",
            &[
                OCTETS,
                ("Content-Range", "bytes 0-99/*"),
                ("Content-Length", "100"),
            ],
            &[0; 10],
        ),
        Then::Stall,
        (0, 100),
        "stalled body",
    )
    .await;
    assert_error!(
        error,
        ClientError::Timeout {
            stage: Stage::Body,
            ..
        }
    );
}

#[tokio::test]
async fn plugin_rejections_are_typed() {
    let body = [
        &b"\xa4\x66plugin\x64zkap\x64code\x69no-passes\x67message\x6aspend more\x67details\xf6"[..],
    ]
    .concat();
    let error = version_error(
        response(
            "402 Payment Required",
            &[
                CBOR,
                ("X-Tahoe-Plugin-Rejected", "zkap"),
                ("Content-Length", &body.len().to_string()),
            ],
            &body,
        ),
        Then::Close,
        "rejected",
    )
    .await;
    let ClientError::PluginRejected(rejection) = error else {
        panic!("{error:?}")
    };
    assert_eq!(
        (
            rejection.status,
            rejection.plugin.as_str(),
            rejection.code.as_str(),
            rejection.message.as_str()
        ),
        (402, "zkap", "no-passes", "spend more")
    );
}

#[tokio::test]
async fn error_messages_never_echo_the_secrets_sent() {
    // Stock Tahoe echoes the secret headers in some 400 bodies.
    let echoed = "Bad secrets: [b'upload-secret AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=']";
    let server = FakeServer::start(
        response(
            "400 Bad Request",
            &[("Content-Length", &echoed.len().to_string())],
            echoed.as_bytes(),
        ),
        Then::Close,
    )
    .await;
    let upload = gbs::client::ImmutableUpload::resume(
        &client(server.nurl()),
        SI,
        10,
        UploadSecret::new(vec![3; 32]).expect("secret"),
    );
    let error = upload.abort(ShareNumber(0)).await.expect_err("400");
    let ClientError::BadRequest { ref message } = error else {
        panic!("{error:?}")
    };
    assert!(message.contains("<secret>"), "{message}");
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains("AwMDAwMD"), "{shown}");
    }
}

#[tokio::test]
async fn a_404_mid_upload_fails_it_unless_another_chunk_completed_the_share() {
    let progress = |missing: Option<std::ops::Range<u64>>, status: &str| {
        let body = UploadProgress {
            required: missing.into_iter().collect(),
        }
        .to_cbor();
        response(
            status,
            &[CBOR, ("Content-Length", &body.len().to_string())],
            &body,
        )
    };
    let not_found = response("404 Not Found", &[("Content-Length", "0")], b"");
    let secret = || UploadSecret::new(vec![3; 32]).expect("secret");
    let chunked_client = |server: &FakeServer| {
        ClientBuilder::new(server.nurl())
            .upload_chunk_size(10)
            .uploads_in_flight(2)
            .build()
            .expect("client")
    };

    // The upload vanished (expired, aborted, restarted server): the 404 is the answer.
    let server = FakeServer::start_sequence(
        vec![progress(Some(10..30), "200 OK"), not_found.clone()],
        Then::KeepAlive,
    )
    .await;
    let upload = gbs::client::ImmutableUpload::resume(&chunked_client(&server), SI, 30, secret());
    let error = upload
        .upload_share(ShareNumber(0), &[5u8; 30][..])
        .await
        .expect_err("gone");
    assert_error!(error, ClientError::NotFound);

    // Two chunks in flight: one completes the share, the other finds it complete. Done.
    let server = FakeServer::start_sequence(
        vec![
            progress(Some(10..30), "200 OK"),
            progress(None, "201 Created"),
            not_found,
        ],
        Then::KeepAlive,
    )
    .await;
    let upload = gbs::client::ImmutableUpload::resume(&chunked_client(&server), SI, 30, secret());
    let report = upload
        .upload_share(ShareNumber(0), &[5u8; 30][..])
        .await
        .expect("completed by a racing chunk");
    assert_eq!((report.bytes_sent, report.bytes_skipped), (30, 0));
    assert_eq!(server.log().requests.len(), 3);
}

/// `body` in HTTP/1.1 chunked encoding, as one chunk.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n0\r\n\r\n");
    out
}
