//! A node on a small filesystem of its own (a tmpfs this test mounts) keeps its reserved
//! space, and names a full disk as such while it goes on serving reads.
//!
//! Mounting needs root, as CI has. Set `GBS_SKIP_MOUNT_TESTS=1` to skip these tests where
//! mounting is impossible; otherwise a failed mount fails them.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use gbs::client::{Client, ClientError};
use gbs::protocol::{ReadTestWriteRequest, ShareKind, ShareNumber, StorageIndex, WriteEnabler};
use gbs_tests::{test_lease, test_upload_secret, GbsNode};
use tempfile::TempDir;

const MB: u64 = 1_000_000;

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
pub(crate) struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it); `None` after printing a
    /// "skipped" line when mounting fails and `GBS_SKIP_MOUNT_TESTS=1` is set.
    pub(crate) fn mount(size: &str, test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        let failure = match output {
            Ok(out) if out.status.success() => return Some(Self { dir }),
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        if std::env::var("GBS_SKIP_MOUNT_TESTS").is_ok_and(|v| v == "1") {
            println!("skipped: {test}: cannot mount a tmpfs ({failure})");
            return None;
        }
        panic!(
            "{test} mounts a tmpfs and could not ({failure}); run as root, or set \
             GBS_SKIP_MOUNT_TESTS=1 to skip the tests that need a mount"
        );
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes an unprivileged user could still write.
    pub(crate) fn available(&self) -> u64 {
        fs4::available_space(self.path()).expect("statvfs")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, in case the node has not quite let go of its files.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// A node whose directory (and so whose storage) is on `fs`, with `reserved_space`.
pub(crate) fn node_on(fs: &Tmpfs, reserved_space: &str) -> GbsNode {
    let dir = tempfile::tempdir_in(fs.path()).expect("node dir on the mount");
    GbsNode::create(dir.path());
    let cfg_path = dir.path().join("tahoe.cfg");
    let cfg = fs::read_to_string(&cfg_path).expect("tahoe.cfg");
    assert!(cfg.contains("reserved_space = 1G"), "{cfg}");
    let cfg = cfg.replace(
        "reserved_space = 1G",
        &format!("reserved_space = {reserved_space}"),
    );
    fs::write(&cfg_path, cfg).expect("write tahoe.cfg");
    GbsNode::start_in(dir)
}

fn share0() -> BTreeSet<ShareNumber> {
    [ShareNumber(0)].into()
}

fn si(n: u8) -> StorageIndex {
    StorageIndex::from_bytes([n; 16])
}

/// Allocates share 0 of `si` and uploads `data` in one PATCH; `false` if the node
/// allocated nothing.
async fn upload(client: &Client, si: StorageIndex, data: &Bytes) -> bool {
    let upload = client
        .allocate(
            si,
            share0(),
            data.len() as u64,
            &test_lease(),
            test_upload_secret(),
        )
        .await
        .expect("allocate");
    if upload.allocated().is_empty() {
        return false;
    }
    let written = upload
        .write_chunk(ShareNumber(0), 0, data.clone())
        .await
        .expect("upload");
    assert!(written.complete);
    true
}

async fn read(client: &Client, kind: ShareKind, si: &StorageIndex) -> Vec<u8> {
    let mut out = Vec::new();
    client
        .read_share(kind, si, ShareNumber(0), None, &mut out)
        .await
        .expect("read share");
    out
}

/// Writes `data` at `offset` of mutable share 0 of `si`.
async fn write_mutable(
    client: &Client,
    si: &StorageIndex,
    offset: u64,
    data: Vec<u8>,
) -> Result<bool, ClientError> {
    let request = ReadTestWriteRequest::write(ShareNumber(0), offset, data);
    let enabler = WriteEnabler::new(vec![3; 32]).expect("write enabler");
    client
        .read_test_write(si, &enabler, &test_lease(), &request)
        .await
        .map(|r| r.success)
}

fn assert_no_space(result: Result<impl std::fmt::Debug, ClientError>) {
    match result {
        Err(ClientError::UnexpectedStatus { status, message }) => {
            assert_eq!(status, 507);
            assert_eq!(message, "not enough disk space");
        }
        other => panic!("expected 507 not enough disk space, got {other:?}"),
    }
}

#[tokio::test]
async fn uploads_and_mutable_writes_stop_at_the_reserved_space() {
    let Some(fs) = Tmpfs::mount(
        "64m",
        "uploads_and_mutable_writes_stop_at_the_reserved_space",
    ) else {
        return;
    };
    const RESERVED: u64 = 16 * MB;
    let node = node_on(&fs, "16M");
    let client = node.client();

    let data: Vec<Bytes> = (0..14u8)
        .map(|n| Bytes::from(vec![n; 4 * MB as usize]))
        .collect();
    let mut accepted = 0;
    for (n, data) in data.iter().enumerate() {
        if !upload(&client, si(n as u8), data).await {
            break;
        }
        accepted += 1;
        assert!(
            fs.available() >= RESERVED,
            "upload {n} went into the reserve: {} bytes left",
            fs.available()
        );
    }
    assert!(
        (1..14).contains(&accepted),
        "{accepted} of 14 uploads of 4 MB accepted on 64 MB with 16 MB reserved"
    );

    // A mutable share grows 1 MB at a time until a write would cross the reserve.
    let slot = si(100);
    let mut written = Vec::new();
    let refused = loop {
        let chunk = vec![written.len() as u8; MB as usize];
        match write_mutable(&client, &slot, written.len() as u64, chunk.clone()).await {
            Ok(success) => {
                assert!(success);
                written.extend_from_slice(&chunk);
                assert!(
                    fs.available() >= RESERVED,
                    "mutable write went into the reserve"
                );
                assert!(written.len() < 64 * MB as usize, "never refused");
            }
            Err(e) => break Err::<(), _>(e),
        }
    };
    assert_no_space(refused);
    assert!(fs.available() >= RESERVED);
    // Writes that do not grow the share are still accepted.
    assert!(write_mutable(&client, &slot, 0, vec![0xee; 10])
        .await
        .unwrap());
    written[..10].fill(0xee);

    // Nothing corrupt: every accepted share reads back whole.
    for (n, data) in data.iter().take(accepted).enumerate() {
        assert_eq!(
            read(&client, ShareKind::Immutable, &si(n as u8)).await,
            data.as_ref(),
            "share {n}"
        );
    }
    assert_eq!(read(&client, ShareKind::Mutable, &slot).await, written);
}

#[tokio::test]
async fn a_full_disk_is_named_and_the_node_keeps_serving_reads() {
    let Some(fs) = Tmpfs::mount(
        "64m",
        "a_full_disk_is_named_and_the_node_keeps_serving_reads",
    ) else {
        return;
    };
    let node = node_on(&fs, "0");
    let client = node.client();
    let kept = Bytes::from(vec![5u8; MB as usize]);
    assert!(upload(&client, si(1), &kept).await);
    let pending = client
        .allocate(si(2), share0(), 3 * MB, &test_lease(), test_upload_secret())
        .await
        .unwrap();
    assert_eq!(pending.allocated(), &share0());

    // Fill the disk behind the node's back.
    let filler_path = fs.path().join("filler");
    let mut filler = File::create(&filler_path).unwrap();
    let block = vec![0u8; 4096];
    while filler.write_all(&block).is_ok() {}
    drop(filler);
    assert!(fs.available() < 4096, "{} bytes still free", fs.available());

    let late = Bytes::from(vec![6u8; 3 * MB as usize]);
    assert_no_space(pending.write_chunk(ShareNumber(0), 0, late.clone()).await);
    assert_no_space(write_mutable(&client, &si(3), 0, vec![1; 1000]).await);

    assert_eq!(read(&client, ShareKind::Immutable, &si(1)).await, kept);
    assert!(client.version().await.is_ok());

    // Once there is room again, the same upload completes.
    fs::remove_file(&filler_path).unwrap();
    let written = pending.write_chunk(ShareNumber(0), 0, late.clone()).await;
    assert!(written.expect("upload after space was freed").complete);
    assert_eq!(read(&client, ShareKind::Immutable, &si(2)).await, late);
}

/// Input tried: `[storage] readonly = true`, as a stock node being decommissioned has it
/// (gbs ignored the key before, and took shares). The node reports no space, allocates no
/// immutable share, refuses a mutable share that would grow, and still serves what it
/// holds; `gbs client put` names the lack of room, not an upload in progress.
#[tokio::test]
async fn a_read_only_node_reports_no_space_and_takes_no_new_share() {
    let data = Bytes::from(vec![7u8; 1000]);
    let writable = tokio::task::spawn_blocking(|| GbsNode::create_configured(""))
        .await
        .expect("create");
    let node = tokio::task::spawn_blocking(move || GbsNode::start_in(writable))
        .await
        .expect("start");
    assert!(upload(&node.client(), si(1), &data).await);
    write_mutable(&node.client(), &si(2), 0, vec![1; 100])
        .await
        .expect("mutable write while writable");
    let (_, dir) = tokio::task::spawn_blocking(move || node.stop())
        .await
        .expect("stop");
    let cfg = dir.path().join("tahoe.cfg");
    let mut text = fs::read_to_string(&cfg).expect("tahoe.cfg");
    text = text.replace("[storage]\n", "[storage]\nreadonly = true\n");
    fs::write(&cfg, text).expect("write tahoe.cfg");
    let node = tokio::task::spawn_blocking(move || GbsNode::start_in(dir))
        .await
        .expect("start read-only");
    let client = node.client();

    let version = client.version().await.expect("version");
    assert_eq!(version.available_space, 0);
    assert_eq!(version.maximum_immutable_share_size, 0);
    assert!(
        !upload(&client, si(3), &data).await,
        "allocated on a read-only node"
    );
    assert_no_space(write_mutable(&client, &si(4), 0, vec![1; 100]).await);
    assert_no_space(write_mutable(&client, &si(2), 100, vec![1; 100]).await);
    assert_eq!(read(&client, ShareKind::Immutable, &si(1)).await, data);
    assert_eq!(
        read(&client, ShareKind::Mutable, &si(2)).await,
        vec![1; 100]
    );

    let file = temp_file_with(&data);
    let put = Command::new(gbs_tests::gbs_binary())
        .args(["client", "put", node.nurl(), &si(5).to_string(), "0"])
        .arg(file.path())
        .output()
        .expect("run gbs client put");
    let stderr = String::from_utf8_lossy(&put.stderr);
    assert!(!put.status.success(), "{stderr}");
    assert!(
        stderr.contains("the server has no room for share 0 of")
            && stderr.contains("takes shares of at most 0"),
        "{stderr}"
    );
}

fn temp_file_with(data: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write");
    file
}
