//! Secrets stay secret: a node logging at trace level through a whole session (uploads,
//! reads, mutable writes, lease renewals, and requests with wrong or malformed secrets)
//! never writes a swissnum, lease secret, upload secret, write enabler or its TLS key to
//! its log, nor into an error body; and the files that hold secrets are its owner's only.

use std::io::{BufReader, Read as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;
use bytes::Bytes;
use gbs::protocol::{
    LeaseCancelSecret, LeaseRenewSecret, LeaseSecrets, ReadTestWriteRequest, ShareKind,
    ShareNumber, StorageIndex, UploadSecret, WriteEnabler,
};
use gbs_tests::{gbs_binary, read_line_starting, read_status, GbsNode, RawConnection};
use tokio::io::AsyncReadExt as _;

/// Distinct bytes per secret, so that a leak names which one leaked.
const RENEW: [u8; 32] = [0xa1; 32];
const CANCEL: [u8; 32] = [0xb2; 32];
const UPLOAD: [u8; 32] = [0xc3; 32];
const ENABLER: [u8; 32] = [0xd4; 32];
const WRONG: [u8; 32] = [0xe5; 32];

fn encodings(bytes: &[u8]) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    vec![
        STANDARD.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        bytes.iter().map(|b| format!("{b:02x}")).collect(),
        // As a Rust byte array would print.
        format!("{:?}", &bytes[..8])
            .trim_end_matches(']')
            .to_owned(),
    ]
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// The wrong and malformed secrets tried, with what each must answer.
fn bad_requests(si: &StorageIndex, wrong: &str) -> Vec<(String, String, Vec<String>, u16)> {
    let immutable = gbs::protocol::paths::immutable_share(si, ShareNumber(0));
    let lease = gbs::protocol::paths::lease(si);
    vec![
        // Another swissnum.
        (
            "GET".into(),
            "/storage/v1/version".into(),
            vec![format!("Authorization: Tahoe-LAFS {wrong}")],
            401,
        ),
        // A swissnum-shaped value under another scheme.
        (
            "GET".into(),
            "/storage/v1/version".into(),
            vec![format!("Authorization: Basic {wrong}")],
            401,
        ),
        // A wrong upload secret for an upload in progress.
        (
            "PATCH".into(),
            immutable,
            vec![
                "Content-Range: bytes 0-0/*".into(),
                format!("X-Tahoe-Authorization: upload-secret {wrong}"),
            ],
            401,
        ),
        // A lease secret that is not base64 of 32 bytes.
        (
            "PUT".into(),
            lease,
            vec![
                format!("X-Tahoe-Authorization: lease-renew-secret {wrong}x"),
                format!("X-Tahoe-Authorization: lease-cancel-secret {wrong}"),
            ],
            400,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_line_or_an_error_body_at_trace_level() {
    let dir = tempfile::tempdir().expect("temp dir");
    GbsNode::create(dir.path());
    let log_path = dir.path().join("trace.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(gbs_binary())
        .arg("run")
        .arg(dir.path())
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start gbs run");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let nurl = format!(
        "pb://{}",
        read_line_starting(&mut stdout, "pb://").expect("the NURL")
    );
    let client = gbs::client::ClientBuilder::new(nurl.parse().expect("NURL"))
        .build()
        .expect("client");
    let lease = LeaseSecrets {
        renew: LeaseRenewSecret::new(RENEW),
        cancel: LeaseCancelSecret::new(CANCEL),
    };

    // The session: an immutable upload in two chunks, a read, a mutable write and read,
    // lease renewals, listings.
    let si = StorageIndex::from_bytes([7; 16]);
    let data = Bytes::from(vec![0x5a; 10_000]);
    let upload = client
        .allocate(
            si,
            [ShareNumber(0), ShareNumber(1)].into(),
            data.len() as u64,
            &lease,
            UploadSecret::new(UPLOAD.to_vec()).expect("an upload secret"),
        )
        .await
        .expect("allocate");
    upload
        .write_chunk(ShareNumber(0), 0, data.slice(..4000))
        .await
        .expect("first chunk");
    // The wrong secrets, while share 0 is still being uploaded.
    let wrong = base64::engine::general_purpose::STANDARD.encode(WRONG);
    let mut raw = RawConnection::connect(&nurl).await.expect("connect");
    for (method, path, headers, expected) in bad_requests(&si, &wrong) {
        raw.send_head(&method, &path, &headers, 0)
            .await
            .expect("send");
        let status = read_status(&mut raw.tls).await.expect("an answer");
        assert_eq!(status, expected, "{method} {path} {headers:?}");
        // Bodies are small; the connection is closed after an error or kept: read what came.
        let mut body = vec![0u8; 4096];
        let n = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            raw.tls.read(&mut body),
        )
        .await
        .unwrap_or(Ok(0))
        .unwrap_or(0);
        let body = String::from_utf8_lossy(&body[..n]);
        assert!(
            !body.contains(&wrong),
            "{method} {path} echoes the secret: {body}"
        );
        raw = RawConnection::connect(&nurl).await.expect("reconnect");
    }
    upload
        .write_chunk(ShareNumber(0), 4000, data.slice(4000..))
        .await
        .expect("second chunk");
    upload
        .write_chunk(ShareNumber(1), 0, data.clone())
        .await
        .expect("share 1");
    let mut read = Vec::new();
    client
        .read_share(ShareKind::Immutable, &si, ShareNumber(1), None, &mut read)
        .await
        .expect("read");
    assert!(read == data);
    let slot = StorageIndex::from_bytes([8; 16]);
    let enabler = WriteEnabler::new(ENABLER.to_vec()).expect("write enabler");
    let write = ReadTestWriteRequest::write(ShareNumber(0), 0, vec![1; 3000]);
    let written = client
        .read_test_write(&slot, &enabler, &lease, &write)
        .await
        .expect("mutable write");
    assert!(written.success);
    // The same slot with another write enabler: refused.
    let other = WriteEnabler::new(WRONG.to_vec()).expect("write enabler");
    let refused = client.read_test_write(&slot, &other, &lease, &write).await;
    let refused = format!("{refused:?}");
    assert!(refused.contains("Unauthorized"), "{refused}");
    for secret in encodings(&WRONG) {
        assert!(
            !refused.contains(&secret),
            "the refusal echoes the write enabler: {refused}"
        );
    }
    client.add_or_renew_lease(&si, &lease).await.expect("renew");
    client
        .list_shares(ShareKind::Immutable, &si)
        .await
        .expect("list");
    drop(client);

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    child.wait().expect("gbs run exits");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("stdout");
    let logged = std::fs::read_to_string(&log_path).expect("the log") + &rest;
    // Everything the node logs was on (it has nothing below DEBUG), among it every refusal
    // with its reason: the check below is not vacuous.
    assert!(
        logged.matches("request refused").count() >= 5,
        "the refusals are not logged: {logged}"
    );

    let swissnum = std::fs::read_to_string(dir.path().join("private/swissnum"))
        .expect("swissnum")
        .trim()
        .to_owned();
    let key_pem = std::fs::read_to_string(dir.path().join("private/node.pem")).expect("key");
    let mut secrets: Vec<(&str, String)> = vec![("swissnum", swissnum.clone())];
    secrets.extend(
        key_pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 20)
            .map(|l| ("TLS key", l.to_owned())),
    );
    for (name, bytes) in [
        ("lease renew secret", RENEW),
        ("lease cancel secret", CANCEL),
        ("upload secret", UPLOAD),
        ("write enabler", ENABLER),
        ("wrong secret", WRONG),
    ] {
        secrets.extend(encodings(&bytes).into_iter().map(|e| (name, e)));
    }
    for (name, secret) in &secrets {
        if let Some(line) = logged.lines().find(|l| l.contains(secret.as_str())) {
            panic!("the {name} is in the log: {line}");
        }
    }
    // The Authorization header's value is base64 of the swissnum.
    let authorization = base64::engine::general_purpose::STANDARD.encode(swissnum.as_bytes());
    assert!(
        !logged.contains(&authorization),
        "the Authorization value is in the log"
    );

    // Files holding secrets are the owner's only, as stock Tahoe makes them.
    assert_eq!(mode(&dir.path().join("private")), 0o700);
    for file in ["private/swissnum", "private/node.pem"] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
}
