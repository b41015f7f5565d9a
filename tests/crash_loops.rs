//! A node killed with SIGKILL at random moments while clients upload immutable shares and
//! rewrite mutable ones, round after round on the same directory.
//!
//! Each round starts `gbs run` on the directory, lets [`UPLOADERS`] tasks upload immutable
//! shares (64-384 KiB, 1-3 share numbers out of 0-9, sent in 64 KiB chunks with up to 4 in
//! flight) and [`SLOTS`] tasks rewrite two shares of their own mutable slot (2-122 KiB
//! each, one read-test-write after another), then kills the node after a delay drawn from
//! the round's band: 2-10 ms, 10-50 ms, 50-150 ms or 150-400 ms, cycling, so that the kill
//! lands before the first request, during allocation, mid-upload and mid-rewrite. After the
//! node is started again on the same directory:
//!
//! - every acknowledged immutable share (the client's upload returned `Ok`, i.e. the server
//!   answered 201) is listed and reads back byte for byte;
//! - every immutable share whose upload was not acknowledged is either absent (not listed,
//!   and reading it answers 404) or complete and byte for byte what was sent (the kill came
//!   after the server finished it but before the client heard): never listed while partial,
//!   never served with wrong bytes;
//! - every mutable share holds exactly the contents of the last write acknowledged for it,
//!   or of a write sent after that and never acknowledged (at most one per round, since each
//!   slot's writes go one after another), or is absent if no write to it was ever
//!   acknowledged and none reached the disk. Contents are compared whole, so a mix of two
//!   versions, a torn write or stale bytes past a shorter version all fail. The two shares
//!   of a slot are judged separately: one request writes both, and a crash may land between
//!   them;
//! - nothing is left in `shares/incoming/`, and no `<shnum>.new` scratch file survives.
//!
//! The last node must accept a new upload and a new mutable write, and everything
//! acknowledged in every round is read back once more before it stops cleanly.
//!
//! The seed of round `r` is `base + r`, with `base` from `GBS_CRASH_LOOPS_SEED` (default
//! below); each round prints its seed and delay, so a failing round can be replayed. Tried
//! with the default seed and twelve others (1, 2, 3, 7-11, 42, 1000, 99999, 123456789), 24
//! rounds each, in a debug build on 2 shared cores: 5-7 s per run, 160-290 acknowledged
//! shares and 120-150 interrupted ones per run, 2-12 of those complete on the server
//! although the client never heard, and slots whose two shares ended at different versions
//! (the kill fell between the two renames of one request).

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gbs::client::{Client, ClientBuilder, ClientError};
use gbs::protocol::{
    ReadTestWriteRequest, ShareKind, ShareNumber, StorageIndex, TestWriteVectors, WriteEnabler,
    WriteVector,
};
use gbs_tests::{files_under, test_lease, test_upload_secret, GbsNode};

/// Rounds, each ending in a SIGKILL.
const ROUNDS: u64 = 24;
/// Concurrent immutable uploaders per round.
const UPLOADERS: u64 = 3;
/// Mutable slots, each rewritten by one task per round.
const SLOTS: usize = 3;
/// The share numbers written in every slot.
const SLOT_SHARES: [ShareNumber; 2] = [ShareNumber(0), ShareNumber(1)];
/// Kill delays in milliseconds, one band per round in turn.
const DELAY_BANDS: [(u64, u64); 4] = [(2, 10), (10, 50), (50, 150), (150, 400)];
const DEFAULT_SEED: u64 = 0x6762_735f_6b69_6c6c;

/// SplitMix64: small, deterministic, good enough to pick sizes and delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `low..high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

/// `len` bytes determined by `seed`.
fn bytes_for(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// One immutable share a task tried to upload.
#[derive(Debug, Clone)]
struct Upload {
    si: StorageIndex,
    shnum: ShareNumber,
    data: Vec<u8>,
}

/// What an uploader achieved before the kill.
#[derive(Debug, Default)]
struct UploadLog {
    acknowledged: Vec<Upload>,
    interrupted: Vec<Upload>,
}

/// Uploads fresh storage indexes until `stop`, or until a request fails (the node died).
async fn uploader(
    client: Client,
    round: u64,
    task: u64,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> UploadLog {
    let mut rng = Rng(seed);
    let mut log = UploadLog::default();
    for n in 0u16.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let [n0, n1] = n.to_be_bytes();
        let mut si = [0xc5u8; 16];
        si[..4].copy_from_slice(&[round as u8, task as u8, n0, n1]);
        let si = StorageIndex::from_bytes(si);
        let size = rng.between(64 << 10, 384 << 10);
        let count = rng.between(1, 4);
        let mut shares = BTreeSet::new();
        while (shares.len() as u64) < count {
            shares.insert(ShareNumber(rng.between(0, 10) as u16));
        }
        let uploads: Vec<Upload> = shares
            .iter()
            .map(|&shnum| Upload {
                si,
                shnum,
                data: bytes_for(rng.next(), size as usize),
            })
            .collect();
        let allocated = client
            .allocate(
                si,
                shares.clone(),
                size,
                &test_lease(),
                test_upload_secret(),
            )
            .await;
        let upload = match allocated {
            Ok(upload) => upload,
            Err(e) => {
                assert_transport(&e, "allocate");
                log.interrupted.extend(uploads);
                break;
            }
        };
        assert_eq!(upload.allocated(), &shares, "a fresh storage index");
        let results = futures_util::future::join_all(
            uploads
                .iter()
                .map(|u| upload.upload_share(u.shnum, u.data.as_slice())),
        )
        .await;
        let mut failed = false;
        for (u, result) in uploads.into_iter().zip(results) {
            match result {
                Ok(_) => log.acknowledged.push(u),
                Err(e) => {
                    assert_transport(&e, "upload");
                    failed = true;
                    log.interrupted.push(u);
                }
            }
        }
        if failed {
            break;
        }
    }
    log
}

/// The only way a request may fail here: the node went away under it. A status from the
/// server would mean it refused a valid request.
fn assert_transport(error: &ClientError, what: &str) {
    assert!(
        matches!(
            error,
            ClientError::Connect(_)
                | ClientError::Transport(_)
                | ClientError::BodyInterrupted { .. }
                | ClientError::BodyTooShort { .. }
        ),
        "{what} failed with something other than the node dying: {error:?}"
    );
}

/// A mutable slot and what each of its shares may hold.
#[derive(Debug, Clone)]
struct Slot {
    index: usize,
    si: StorageIndex,
    /// Per share in [`SLOT_SHARES`]: the version known to be there (`None`: no share).
    known: [Option<u32>; 2],
    /// Per share: versions sent since `known` was established and never acknowledged.
    pending: [Vec<u32>; 2],
    next_version: u32,
}

impl Slot {
    fn new(index: usize) -> Self {
        Self {
            index,
            si: StorageIndex::from_bytes([0x40 + index as u8; 16]),
            known: [None; 2],
            pending: [Vec::new(), Vec::new()],
            next_version: 1,
        }
    }

    fn enabler() -> WriteEnabler {
        WriteEnabler::new(vec![0x5e; 32]).expect("write enabler")
    }

    /// The contents version `version` of the slot gives share `which`: its own length
    /// (2-122 KiB), starting with the slot, share and version numbers.
    fn contents(&self, which: usize, version: u32) -> Vec<u8> {
        let seed = (self.index as u64) << 40 | (which as u64) << 32 | u64::from(version);
        let mut rng = Rng(seed);
        let len = rng.between(2 << 10, 122 << 10) as usize;
        let mut data = bytes_for(rng.next(), len);
        data[..4].copy_from_slice(&(self.index as u32).to_be_bytes());
        data[4..8].copy_from_slice(&(which as u32).to_be_bytes());
        data[8..12].copy_from_slice(&version.to_be_bytes());
        data
    }

    /// One read-test-write replacing both shares with `version`: each written from offset
    /// 0 and cut to its new length.
    fn request(&self, version: u32) -> ReadTestWriteRequest {
        let mut request = ReadTestWriteRequest::default();
        for (which, shnum) in SLOT_SHARES.iter().enumerate() {
            let data = self.contents(which, version);
            let vectors = TestWriteVectors {
                test: Vec::new(),
                new_length: Some(data.len() as u64),
                write: vec![WriteVector { offset: 0, data }],
            };
            request.test_write_vectors.insert(*shnum, vectors);
        }
        request
    }

    fn acknowledged(&mut self, version: u32) {
        self.known = [Some(version); 2];
        self.pending = [Vec::new(), Vec::new()];
    }

    fn sent(&mut self, version: u32) {
        for pending in &mut self.pending {
            pending.push(version);
        }
    }
}

/// Rewrites `slot` with versions `first..` until `stop` or a failure; answers the versions
/// acknowledged, and the one that failed, if any.
async fn rewriter(
    client: Client,
    slot: Arc<Slot>,
    first: u32,
    stop: Arc<AtomicBool>,
) -> (Vec<u32>, Option<u32>) {
    let mut acknowledged = Vec::new();
    for version in first.. {
        if stop.load(Ordering::SeqCst) {
            return (acknowledged, None);
        }
        let request = slot.request(version);
        match client
            .read_test_write(&slot.si, &Slot::enabler(), &test_lease(), &request)
            .await
        {
            Ok(response) => {
                assert!(response.success, "a write without tests is applied");
                acknowledged.push(version);
            }
            Err(e) => {
                assert_transport(&e, "read-test-write");
                return (acknowledged, Some(version));
            }
        }
    }
    (acknowledged, None)
}

/// A client that uploads in 64 KiB chunks, so that a kill can land between them.
fn chunky_client(node: &GbsNode) -> Client {
    ClientBuilder::new(node.nurl().parse().expect("gbs printed a valid NURL"))
        .upload_chunk_size(64 << 10)
        .build()
        .expect("client")
}

/// A share's data, or `None` for 404; panics on any other error.
async fn read(
    client: &Client,
    kind: ShareKind,
    si: &StorageIndex,
    shnum: ShareNumber,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match client.read_share(kind, si, shnum, None, &mut out).await {
        Ok(_) => Some(out),
        Err(ClientError::NotFound) => None,
        Err(e) => panic!("reading {kind:?} share {si} {shnum:?}: {e}"),
    }
}

/// Checks an immutable share the client saw completed.
async fn check_acknowledged(client: &Client, upload: &Upload, when: &str) {
    let listed = client
        .list_shares(ShareKind::Immutable, &upload.si)
        .await
        .expect("list");
    assert!(
        listed.contains(&upload.shnum),
        "{when}: acknowledged share {} {:?} not listed ({listed:?})",
        upload.si,
        upload.shnum
    );
    let data = read(client, ShareKind::Immutable, &upload.si, upload.shnum).await;
    assert!(
        data.as_deref() == Some(upload.data.as_slice()),
        "{when}: acknowledged share {} {:?} reads back {:?} bytes, not its {} bytes",
        upload.si,
        upload.shnum,
        data.map(|d| d.len()),
        upload.data.len()
    );
}

/// Checks an immutable share whose upload was cut short: absent, or complete and intact.
/// Answers whether it was complete.
async fn check_interrupted(client: &Client, upload: &Upload, when: &str) -> bool {
    let listed = client
        .list_shares(ShareKind::Immutable, &upload.si)
        .await
        .expect("list")
        .contains(&upload.shnum);
    let data = read(client, ShareKind::Immutable, &upload.si, upload.shnum).await;
    match data {
        None => {
            assert!(
                !listed,
                "{when}: interrupted share {} {:?} is listed but cannot be read",
                upload.si, upload.shnum
            );
            false
        }
        Some(data) => {
            assert!(
                listed && data == upload.data,
                "{when}: interrupted share {} {:?} is readable ({} of {} bytes, listed: \
                 {listed}) but not the complete share",
                upload.si,
                upload.shnum,
                data.len(),
                upload.data.len()
            );
            true
        }
    }
}

/// Checks a slot against what it may hold, then records what it holds.
async fn check_slot(client: &Client, slot: &mut Slot, when: &str) {
    let listed = client
        .list_shares(ShareKind::Mutable, &slot.si)
        .await
        .expect("list mutable");
    for (which, shnum) in SLOT_SHARES.iter().enumerate() {
        let data = read(client, ShareKind::Mutable, &slot.si, *shnum).await;
        assert_eq!(
            listed.contains(shnum),
            data.is_some(),
            "{when}: slot {} share {which}: listed and readable disagree",
            slot.index
        );
        let allowed: Vec<Option<u32>> = std::iter::once(slot.known[which])
            .chain(slot.pending[which].iter().map(|v| Some(*v)))
            .collect();
        let found = allowed.iter().copied().find(|version| match version {
            None => data.is_none(),
            Some(v) => data.as_deref() == Some(slot.contents(which, *v).as_slice()),
        });
        let Some(found) = found else {
            let header = data.as_ref().map(|d| {
                let field = |at: usize| {
                    d.get(at..at + 4)
                        .map(|b| u32::from_be_bytes(b.try_into().unwrap_or_default()))
                };
                (d.len(), field(0), field(4), field(8))
            });
            panic!(
                "{when}: slot {} share {which} holds none of the allowed versions {allowed:?}: \
                 (length, slot, share, version) = {header:?}",
                slot.index
            );
        };
        slot.known[which] = found;
        slot.pending[which].clear();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_uploads_and_rewrites_loses_nothing_acknowledged() {
    let started = Instant::now();
    let base_seed = std::env::var("GBS_CRASH_LOOPS_SEED")
        .ok()
        .map(|s| s.parse::<u64>().expect("GBS_CRASH_LOOPS_SEED is a number"))
        .unwrap_or(DEFAULT_SEED);
    let mut slots: Vec<Slot> = (0..SLOTS).map(Slot::new).collect();
    let mut all_acknowledged = Vec::new();
    let (mut interrupted_total, mut completed_unheard) = (0, 0);
    let mut node = GbsNode::start();
    let nurl = node.nurl().to_owned();

    for round in 0..ROUNDS {
        let seed = base_seed.wrapping_add(round);
        let mut rng = Rng(seed);
        let (low, high) = DELAY_BANDS[round as usize % DELAY_BANDS.len()];
        let delay = Duration::from_millis(rng.between(low, high));
        println!("round {round}: seed {seed}, SIGKILL after {delay:?}");

        let client = chunky_client(&node);
        let stop = Arc::new(AtomicBool::new(false));
        let uploaders: Vec<_> = (0..UPLOADERS)
            .map(|task| {
                tokio::spawn(uploader(
                    client.clone(),
                    round,
                    task,
                    rng.next(),
                    stop.clone(),
                ))
            })
            .collect();
        let rewriters: Vec<_> = slots
            .iter()
            .map(|slot| {
                let view = Arc::new(slot.clone());
                tokio::spawn(rewriter(
                    client.clone(),
                    view,
                    slot.next_version,
                    stop.clone(),
                ))
            })
            .collect();

        tokio::time::sleep(delay).await;
        assert!(
            node.has_exited().is_none(),
            "round {round}: the node died on its own"
        );
        stop.store(true, Ordering::SeqCst);
        let (status, dir) = node.kill();
        assert_eq!(status.signal(), Some(9), "round {round}: {status}");

        let mut acknowledged = Vec::new();
        let mut interrupted = Vec::new();
        for task in uploaders {
            let log = task.await.expect("uploader");
            acknowledged.extend(log.acknowledged);
            interrupted.extend(log.interrupted);
        }
        for (slot, task) in slots.iter_mut().zip(rewriters) {
            let (acked, failed) = task.await.expect("rewriter");
            if let Some(&last) = acked.last() {
                slot.acknowledged(last);
            }
            if let Some(version) = failed {
                slot.sent(version);
            }
            slot.next_version += acked.len() as u32 + u32::from(failed.is_some());
        }

        // What a crash may leave behind is gone once the node is serving again.
        node = GbsNode::start_in(dir);
        assert_eq!(node.nurl(), nurl, "the same node");
        let storage = node.dir().join("storage/shares");
        let incoming = files_under(&storage.join("incoming"));
        assert!(
            incoming.is_empty(),
            "round {round}: left in incoming/: {incoming:?}"
        );
        let scratch: Vec<_> = files_under(&storage)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "new"))
            .collect();
        assert!(
            scratch.is_empty(),
            "round {round}: scratch files left: {scratch:?}"
        );

        let when = format!("round {round} (seed {seed})");
        let client = node.client();
        for upload in &acknowledged {
            check_acknowledged(&client, upload, &when).await;
        }
        for upload in &interrupted {
            if check_interrupted(&client, upload, &when).await {
                completed_unheard += 1;
            }
        }
        for slot in &mut slots {
            check_slot(&client, slot, &when).await;
        }
        println!(
            "round {round}: {} shares acknowledged, {} interrupted; slot versions {:?}",
            acknowledged.len(),
            interrupted.len(),
            slots.iter().map(|s| s.known).collect::<Vec<_>>()
        );
        interrupted_total += interrupted.len();
        all_acknowledged.extend(acknowledged);
    }

    // The kills landed both after work was acknowledged and in the middle of some.
    assert!(
        !all_acknowledged.is_empty(),
        "no upload was ever acknowledged"
    );
    assert!(interrupted_total > 0, "no upload was ever interrupted");
    assert!(
        slots.iter().any(|s| s.next_version > 2),
        "the mutable slots were hardly written"
    );

    // The last node serves new work, and everything acknowledged is still there.
    let client = node.client();
    let fresh = Upload {
        si: StorageIndex::from_bytes([0xfe; 16]),
        shnum: ShareNumber(7),
        data: bytes_for(1, 200 << 10),
    };
    let upload = client
        .allocate(
            fresh.si,
            [fresh.shnum].into(),
            fresh.data.len() as u64,
            &test_lease(),
            test_upload_secret(),
        )
        .await
        .expect("allocate after the crashes");
    upload
        .upload_share(fresh.shnum, fresh.data.as_slice())
        .await
        .expect("upload after the crashes");
    check_acknowledged(&client, &fresh, "after the crashes").await;
    for slot in &mut slots {
        let version = slot.next_version;
        let response = client
            .read_test_write(
                &slot.si,
                &Slot::enabler(),
                &test_lease(),
                &slot.request(version),
            )
            .await
            .expect("rewrite after the crashes");
        assert!(response.success);
        slot.acknowledged(version);
        check_slot(&client, slot, "after the crashes").await;
    }
    for upload in &all_acknowledged {
        check_acknowledged(&client, upload, "at the end").await;
    }
    let (status, _dir) = tokio::task::spawn_blocking(move || node.stop())
        .await
        .expect("stop");
    assert!(status.success(), "gbs run exited with {status}");
    println!(
        "{} acknowledged shares, {interrupted_total} interrupted ({completed_unheard} of them \
         complete on the server), in {:?}",
        all_acknowledged.len(),
        started.elapsed()
    );
}
