//! `gbs client` as an operator or a script meets it, against stock Tahoe and against `gbs`.

use std::ffi::OsStr;
use std::process::{Command, Output};

use gbs::protocol::{Nurl, SpkiHash};
use gbs_tests::gbs_binary;
use serde_json::Value;

against_both!(run_blocking:
    version_prints_json_for_scripts_and_text_for_people,
    put_ls_get_and_lease_round_trip_a_file,
    put_resumes_with_the_printed_upload_secret,
    mutable_write_then_read_round_trips,
    a_pin_mismatch_fails_with_one_clear_line,
);

const SI: &str = "aaaqeayeaudaocajbifqydiob4";

fn gbs<I: AsRef<OsStr>>(args: impl IntoIterator<Item = I>) -> Output {
    Command::new(gbs_binary())
        .arg("client")
        .args(args)
        .output()
        .expect("run gbs client")
}

/// Runs `gbs client --json ARGS`, expects success, and parses stdout.
fn gbs_json(args: &[&OsStr]) -> Value {
    let output = gbs(std::iter::once(OsStr::new("--json")).chain(args.iter().copied()));
    assert!(
        output.status.success(),
        "gbs client {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

fn os(text: &str) -> &OsStr {
    OsStr::new(text)
}

fn version_prints_json_for_scripts_and_text_for_people(nurl: Nurl) {
    let nurl = nurl.to_string();
    let json = gbs_json(&[os("version"), os(&nurl)]);
    assert!(
        json["available_space"].as_u64().is_some_and(|n| n > 0),
        "{json}"
    );
    assert_eq!(
        json["maximum_mutable_share_size"].as_u64(),
        Some(69_105_000_000_000_000)
    );
    assert!(
        json["application_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{json}"
    );
    let text = gbs(["version", &nurl]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("available space:"));
}

fn put_ls_get_and_lease_round_trip_a_file(nurl: Nurl) {
    let nurl = nurl.to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("share");
    let content: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&input, &content).expect("write input");

    let put = gbs_json(&[os("put"), os(&nurl), os(SI), os("3"), input.as_os_str()]);
    assert_eq!(put["status"], "uploaded", "{put}");
    assert_eq!(put["size"].as_u64(), Some(2_500_000));
    assert_eq!(put["bytes_sent"].as_u64(), Some(2_500_000));
    let renew = put["lease_renew_secret"]
        .as_str()
        .expect("renew secret")
        .to_owned();
    let cancel = put["lease_cancel_secret"]
        .as_str()
        .expect("cancel secret")
        .to_owned();
    assert_eq!(renew.len(), 52);

    let ls = gbs_json(&[os("ls"), os(&nurl), os(SI)]);
    assert_eq!(ls["shares"], serde_json::json!([3]), "{ls}");

    let whole = dir.path().join("whole");
    let get = gbs_json(&[os("get"), os(&nurl), os(SI), os("3"), whole.as_os_str()]);
    assert_eq!(get["bytes"].as_u64(), Some(2_500_000));
    assert!(
        std::fs::read(&whole).expect("read output") == content,
        "downloaded data differs"
    );

    let part = dir.path().join("part");
    let get = gbs_json(&[
        os("get"),
        os("--range"),
        os("10-19"),
        os(&nurl),
        os(SI),
        os("3"),
        part.as_os_str(),
    ]);
    assert_eq!(get["bytes"].as_u64(), Some(10));
    assert_eq!(std::fs::read(&part).expect("read part"), &content[10..20]);

    let lease = gbs_json(&[
        os("lease"),
        os(&nurl),
        os(SI),
        os("--renew-secret"),
        os(&renew),
        os("--cancel-secret"),
        os(&cancel),
    ]);
    assert_eq!(lease["lease_renew_secret"].as_str(), Some(renew.as_str()));

    let again = gbs_json(&[os("put"), os(&nurl), os(SI), os("3"), input.as_os_str()]);
    assert_eq!(again["status"], "already-stored", "{again}");

    // A share that is not there: exit status 1 and no output file left behind.
    let missing = dir.path().join("missing");
    let output = gbs([os("get"), os(&nurl), os(SI), os("4"), missing.as_os_str()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not found (404)"));
    assert!(!missing.exists());

    // Into something that is not a regular file (a FIFO here, as `/dev/null` would be): the
    // data arrives, and a failed download leaves it in place (it once removed it, as it
    // removes a partly written file).
    #[cfg(unix)]
    {
        let fifo = dir.path().join("fifo");
        let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(made.success());
        let drain = |fifo: std::path::PathBuf| std::thread::spawn(move || std::fs::read(fifo));
        let reader = drain(fifo.clone());
        gbs_json(&[os("get"), os(&nurl), os(SI), os("3"), fifo.as_os_str()]);
        let read = reader.join().expect("reader").expect("read the FIFO");
        assert!(read == content, "data through the FIFO differs");
        let reader = drain(fifo.clone());
        let output = gbs([os("get"), os(&nurl), os(SI), os("4"), fifo.as_os_str()]);
        assert_eq!(output.status.code(), Some(1));
        reader.join().expect("reader").expect("read the FIFO");
        use std::os::unix::fs::FileTypeExt as _;
        let kind = std::fs::symlink_metadata(&fifo).expect("the FIFO is still there");
        assert!(kind.file_type().is_fifo());
    }
}

fn put_resumes_with_the_printed_upload_secret(nurl: Nurl) {
    let nurl = nurl.to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let full = dir.path().join("full");
    let content: Vec<u8> = (0..3_000u32).map(|i| (i % 7) as u8).collect();
    std::fs::write(&full, &content).expect("write");
    // An earlier run allocated share 1 with this secret and wrote one chunk before stopping.
    let secret = "ab".repeat(32);
    let client = gbs::client::ClientBuilder::new(nurl.parse().expect("nurl"))
        .build()
        .expect("client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let lease = gbs::protocol::LeaseSecrets {
            renew: gbs::protocol::LeaseRenewSecret::new([1; 32]),
            cancel: gbs::protocol::LeaseCancelSecret::new([2; 32]),
        };
        let secret = gbs::protocol::UploadSecret::new(vec![0xab; 32]).expect("secret");
        let shnum = gbs::protocol::ShareNumber(1);
        let upload = client
            .allocate(
                SI.parse().expect("si"),
                [shnum].into(),
                3_000,
                &lease,
                secret,
            )
            .await
            .expect("allocate");
        upload
            .write_chunk(shnum, 0, bytes::Bytes::copy_from_slice(&content[..1_000]))
            .await
            .expect("chunk");
    });
    // Without the secret the share is busy; with it the upload finishes.
    let output = gbs([os("put"), os(&nurl), os(SI), os("1"), full.as_os_str()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--upload-secret"));
    let put = gbs_json(&[
        os("put"),
        os("--upload-secret"),
        os(&secret),
        os(&nurl),
        os(SI),
        os("1"),
        full.as_os_str(),
    ]);
    assert_eq!(put["status"], "uploaded", "{put}");
    assert_eq!(
        put["bytes_skipped"].as_u64(),
        Some(0),
        "one chunk covers the whole share, so it is sent"
    );
    let whole = dir.path().join("whole");
    gbs_json(&[os("get"), os(&nurl), os(SI), os("1"), whole.as_os_str()]);
    assert_eq!(std::fs::read(&whole).expect("read"), content);
}

fn mutable_write_then_read_round_trips(nurl: Nurl) {
    let nurl = nurl.to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("data");
    std::fs::write(&input, b"mutable contents").expect("write");
    let write = gbs_json(&[
        os("mutable"),
        os("write"),
        os(&nurl),
        os(SI),
        os("0"),
        input.as_os_str(),
    ]);
    let enabler = write["write_enabler"]
        .as_str()
        .expect("write enabler")
        .to_owned();
    assert_eq!(write["bytes"].as_u64(), Some(16));

    std::fs::write(&input, b"MUTABLE").expect("write");
    let write = gbs_json(&[
        os("mutable"),
        os("write"),
        os("--write-enabler"),
        os(&enabler),
        os(&nurl),
        os(SI),
        os("0"),
        input.as_os_str(),
    ]);
    assert_eq!(write["write_enabler"].as_str(), Some(enabler.as_str()));
    let ls = gbs_json(&[os("mutable"), os("ls"), os(&nurl), os(SI)]);
    assert_eq!(ls["shares"], serde_json::json!([0]));
    let output = gbs([
        os("mutable"),
        os("read"),
        os(&nurl),
        os(SI),
        os("0"),
        os("-"),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, b"MUTABLE contents");

    // Another write enabler is refused.
    let output = gbs([
        os("mutable"),
        os("write"),
        os(&nurl),
        os(SI),
        os("0"),
        input.as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unauthorized (401)"));
}

fn a_pin_mismatch_fails_with_one_clear_line(nurl: Nurl) {
    let wrong = Nurl {
        spki_hash: SpkiHash::of_spki_der(b"another key"),
        ..nurl
    }
    .to_string();
    let output = gbs(["ls", &wrong, SI]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("does not match the NURL") && stderr.contains("no request was sent"),
        "{stderr}"
    );
}

#[test]
fn malformed_arguments_are_usage_errors() {
    let good = "pb://WvQpEy1vElE-08RDYWr_X63JYNn5KR14kgfTbEnIDVU@127.0.0.1:47125/abcdefghijklmnopqrstuvwxyz234567#v=1";
    let cases: [&[&str]; 4] = [
        &["version", "pb://not-a-nurl"],
        &["ls", good, "AAAQEAYEAUDAOCAJBIFQYDIOB4"],
        &["lease", good, SI, "--renew-secret", "too-short"],
        &["get", "--range", "9-1", good, SI, "0", "out"],
    ];
    for args in cases {
        let output = gbs(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("invalid value"),
            "{args:?}"
        );
    }
}
