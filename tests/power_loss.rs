//! Power-loss safety, not only process death. Killing a process leaves the page cache
//! intact, so it cannot show a missing fsync; this test records the order of the node's
//! writes, renames, directory creations and fsyncs (the node runs under `strace -f -y`,
//! which names each file descriptor's path) and checks that at the moment each write is
//! acknowledged, everything it made visible under `shares/` is durable:
//!
//! - a file renamed into place was fsynced after its last write and before the rename, and
//!   the directory it was renamed into was fsynced after the rename;
//! - a file written in place (a lease added to a stored share) was fsynced after the write;
//! - a directory created was made durable by an fsync of its parent after it was created.
//!
//! A simulated crash at any acknowledgement (everything not fsynced dropped) therefore keeps
//! every acknowledged share and mutable write. "Acknowledged" is pinned in the trace by a
//! marker: after each operation returns, the test lists the shares of a storage index of
//! its own, which the node looks up on disk under a name found nowhere else.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use gbs::client::Client;
use gbs::protocol::{
    LeaseCancelSecret, LeaseRenewSecret, LeaseSecrets, ReadTestWriteRequest, ShareKind,
    ShareNumber, StorageIndex, WriteEnabler,
};
use gbs_tests::{gbs_binary, read_line_starting, test_upload_secret, GbsNode};

/// One system call of interest, in completion order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// Data or size changed (write, pwrite, copy, truncate, allocate).
    Write(PathBuf),
    /// fsync or fdatasync of a file or directory.
    Sync(PathBuf),
    Rename {
        from: PathBuf,
        to: PathBuf,
    },
    Mkdir(PathBuf),
    /// The marker lookup of step `n`.
    Marker(usize),
}

const WRITES: [&str; 9] = [
    "write(",
    "pwrite64(",
    "writev(",
    "pwritev(",
    "pwritev2(",
    "ftruncate(",
    "fallocate(",
    "copy_file_range(",
    "sendfile(",
];

/// The path strace printed for the first file descriptor of `args` (`3</a/b>`).
fn fd_path(args: &str) -> Option<PathBuf> {
    let start = args.find('<')? + 1;
    let end = start + args[start..].find('>')?;
    Some(PathBuf::from(&args[start..end]))
}

/// The quoted strings of `args`, in order.
fn quoted(args: &str) -> Vec<String> {
    args.split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

/// Parses an `strace -f -y` log into events, placing each call where it completed (a call
/// split into `<unfinished ...>` and `<... resumed>` counts at its resumption).
fn events(trace: &str, markers: &[String]) -> Vec<Event> {
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for line in trace.lines() {
        let (pid, rest) = line.split_once(' ').unwrap_or(("", line));
        let rest = rest.trim_start();
        let call = if let Some(start) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid.to_owned(), start.to_owned());
            continue;
        } else if rest.starts_with("<... ") {
            let Some(start) = pending.remove(pid) else {
                continue;
            };
            let tail = rest.split_once("resumed>").map_or("", |(_, t)| t);
            format!("{start}{tail}")
        } else {
            rest.to_owned()
        };
        // Markers are lookups that fail (no such directory): checked first.
        if let Some(n) = markers.iter().position(|m| call.contains(m.as_str())) {
            out.push(Event::Marker(n));
            continue;
        }
        if call.contains("= -1 ") {
            continue; // failed: changed nothing
        }
        let name = call.split('(').next().unwrap_or_default();
        let args = call.get(name.len()..).unwrap_or_default();
        let event = match name {
            "fsync" | "fdatasync" => fd_path(args).map(Event::Sync),
            "rename" | "renameat" | "renameat2" => {
                let paths = quoted(args);
                match paths.as_slice() {
                    [from, to, ..] => Some(Event::Rename {
                        from: from.into(),
                        to: to.into(),
                    }),
                    _ => None,
                }
            }
            "mkdir" | "mkdirat" => quoted(args).first().map(|p| Event::Mkdir(p.into())),
            _ if WRITES.iter().any(|w| call.starts_with(w)) => {
                // copy_file_range and sendfile: the target is the second descriptor.
                let target = if name == "copy_file_range" || name == "sendfile" {
                    args.find(">,").and_then(|at| fd_path(&args[at + 2..]))
                } else {
                    fd_path(args)
                };
                target.map(Event::Write)
            }
            _ => None,
        };
        out.extend(event);
    }
    out
}

/// Checks the durability rules for everything before each marker; returns the violations.
fn violations(events: &[Event], shares: &Path) -> Vec<String> {
    let incoming = shares.join("incoming");
    let mut found = Vec::new();
    let synced_between = |path: &Path, from: usize, to: usize| {
        events[from..to]
            .iter()
            .any(|e| matches!(e, Event::Sync(p) if p == path))
    };
    let last_write_before = |path: &Path, at: usize| {
        events[..at]
            .iter()
            .rposition(|e| matches!(e, Event::Write(p) if p == path))
    };
    for (at, marker) in events.iter().enumerate() {
        let Event::Marker(step) = marker else {
            continue;
        };
        for (i, event) in events[..at].iter().enumerate() {
            match event {
                Event::Rename { from, to }
                    if to.starts_with(shares) && !to.starts_with(&incoming) =>
                {
                    let written = last_write_before(from, i).map_or(0, |w| w + 1);
                    if !synced_between(from, written, i) && !synced_between(to, written, i) {
                        found.push(format!(
                            "step {step}: {} renamed to {} without an fsync after its last write",
                            from.display(),
                            to.display()
                        ));
                    }
                    let dir = to.parent().expect("a parent");
                    if !synced_between(dir, i + 1, at) {
                        found.push(format!(
                            "step {step}: {} not made durable: no fsync of {} after the rename",
                            to.display(),
                            dir.display()
                        ));
                    }
                }
                Event::Write(path)
                    if path.starts_with(shares)
                        && !path.starts_with(&incoming)
                        && !path.to_string_lossy().ends_with(".new") =>
                {
                    // Written in place: an fsync must follow before the acknowledgement,
                    // unless the file was renamed away (a scratch file under another name).
                    let renamed_away = events[i..at]
                        .iter()
                        .any(|e| matches!(e, Event::Rename { from, .. } if from == path));
                    if !renamed_away && !synced_between(path, i + 1, at) {
                        found.push(format!(
                            "step {step}: {} written in place and not fsynced before the answer",
                            path.display()
                        ));
                    }
                }
                Event::Mkdir(dir) if dir.starts_with(shares) && !dir.starts_with(&incoming) => {
                    let parent = dir.parent().expect("a parent");
                    if !synced_between(parent, i + 1, at) {
                        found.push(format!(
                            "step {step}: directory {} created without an fsync of {}",
                            dir.display(),
                            parent.display()
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// `gbs run DIR` under strace, its trace in `trace`; the NURL it printed.
#[allow(clippy::zombie_processes)] // waited for by the caller, or here when it fails
fn run_traced(dir: &Path, trace: &Path) -> (Child, String) {
    let mut child = Command::new("strace")
        .args(["-f", "-y", "-qq", "-s", "0", "-o"])
        .arg(trace)
        .args([
            "-e",
            "trace=write,pwrite64,writev,pwritev,pwritev2,ftruncate,fallocate,copy_file_range,\
             sendfile,fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat,openat,statx,\
             newfstatat",
        ])
        .arg(gbs_binary())
        .arg("run")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("strace is installed (apt-get install strace)");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    match read_line_starting(&mut stdout, "pb://") {
        Some(nurl) => (child, format!("pb://{nurl}")),
        None => {
            let status = child.wait().expect("strace exits");
            panic!("gbs run under strace printed no NURL ({status})");
        }
    }
}

/// Lists the shares of marker `n`'s storage index: the node looks its directory up.
async fn mark(client: &Client, markers: &[StorageIndex], n: usize) {
    let listed = client
        .list_shares(ShareKind::Immutable, &markers[n])
        .await
        .expect("list the marker");
    assert!(listed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_is_fsynced_before_its_answer() {
    let dir = tempfile::tempdir().expect("temp dir");
    GbsNode::create(dir.path());
    let trace = dir.path().join("strace.log");
    let (mut child, nurl) = run_traced(dir.path(), &trace);
    let client = gbs::client::ClientBuilder::new(nurl.parse().expect("NURL"))
        .build()
        .expect("client");
    let markers: Vec<StorageIndex> = (0..8u8)
        .map(|n| StorageIndex::from_bytes([0xf0 | n; 16]))
        .collect();
    let lease = LeaseSecrets {
        renew: LeaseRenewSecret::new([1; 32]),
        cancel: LeaseCancelSecret::new([2; 32]),
    };
    let other_lease = LeaseSecrets {
        renew: LeaseRenewSecret::new([3; 32]),
        cancel: LeaseCancelSecret::new([4; 32]),
    };

    // 0: an immutable share uploaded in two chunks, 1: a second share of the same index.
    let si = StorageIndex::from_bytes([0x11; 16]);
    let data = Bytes::from(vec![0x42; 300_000]);
    let upload = client
        .allocate(
            si,
            [ShareNumber(0), ShareNumber(1)].into(),
            data.len() as u64,
            &lease,
            test_upload_secret(),
        )
        .await
        .expect("allocate");
    upload
        .write_chunk(ShareNumber(0), 0, data.slice(..100_000))
        .await
        .expect("chunk");
    let done = upload
        .write_chunk(ShareNumber(0), 100_000, data.slice(100_000..))
        .await
        .expect("chunk");
    assert!(done.complete);
    mark(&client, &markers, 0).await;
    let done = upload
        .write_chunk(ShareNumber(1), 0, data.clone())
        .await
        .expect("share 1");
    assert!(done.complete);
    mark(&client, &markers, 1).await;
    // 2: a new mutable slot; 3: written again (grown); 4: a lease added to the stored
    // immutable shares in place; 5: a lease renewed on the slot.
    let slot = StorageIndex::from_bytes([0x22; 16]);
    let enabler = WriteEnabler::new(vec![9; 32]).expect("write enabler");
    for (step, (offset, len)) in [(0u64, 5000usize), (5000, 20_000)].into_iter().enumerate() {
        let write = ReadTestWriteRequest::write(ShareNumber(0), offset, vec![step as u8; len]);
        let answer = client
            .read_test_write(&slot, &enabler, &lease, &write)
            .await
            .expect("mutable write");
        assert!(answer.success);
        mark(&client, &markers, 2 + step).await;
    }
    client
        .add_or_renew_lease(&si, &other_lease)
        .await
        .expect("add a lease");
    mark(&client, &markers, 4).await;
    client
        .add_or_renew_lease(&slot, &other_lease)
        .await
        .expect("add a lease");
    mark(&client, &markers, 5).await;
    drop(client);

    // SIGTERM to the node itself (strace's child), which stops cleanly; strace follows.
    let node = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
        .expect("strace's children");
    let node = node
        .split_whitespace()
        .next()
        .expect("the node under strace");
    let _ = Command::new("kill").arg("-TERM").arg(node).status();
    child.wait().expect("strace exits with the node");
    let text = std::fs::read_to_string(&trace).expect("the trace");
    let names: Vec<String> = markers.iter().map(|m| m.to_string()).collect();
    let events = events(&text, &names[..6]);
    // The trace saw what it must see, so the check below is not vacuous.
    for (n, name) in names.iter().enumerate().take(6) {
        assert!(
            events.contains(&Event::Marker(n)),
            "marker {n} ({name}) not in the trace"
        );
    }
    let shares = dir
        .path()
        .canonicalize()
        .expect("canonical node dir")
        .join("storage")
        .join("shares");
    let renames = events
        .iter()
        .filter(|e| matches!(e, Event::Rename { to, .. } if to.starts_with(&shares)))
        .count();
    assert!(renames >= 4, "{renames} renames into shares/ seen");
    assert!(
        events.iter().any(|e| matches!(e, Event::Sync(_))),
        "no fsync seen at all"
    );
    let found = violations(&events, &shares);
    assert!(
        found.is_empty(),
        "not durable when acknowledged:\n{}",
        found.join("\n")
    );
}

/// The checker itself finds what it must: a rename without an fsync, a directory not
/// synced, an in-place write not synced (inputs: hand-written traces).
#[test]
fn the_order_checker_finds_missing_fsyncs() {
    let shares = Path::new("/n/storage/shares");
    let trace = "\
1 pwrite64(5</n/storage/shares/ab/x/0.new>, \"\"..., 10, 0) = 10
1 rename(\"/n/storage/shares/ab/x/0.new\", \"/n/storage/shares/ab/x/0\") = 0
1 mkdir(\"/n/storage/shares/cd/y\", 0777) = 0
2 pwrite64(6</n/storage/shares/ef/z/1>, \"\"..., 4, 0 <unfinished ...>
2 <... pwrite64 resumed>) = 4
1 openat(AT_FDCWD, \"/n/storage/shares/mm/MARK\", O_RDONLY) = -1 ENOENT (No such file or directory)
";
    let found = violations(&events(trace, &["MARK".to_owned()]), shares);
    assert_eq!(found.len(), 4, "{found:#?}");
    let good = "\
1 pwrite64(5</n/storage/shares/ab/x/0.new>, \"\"..., 10, 0) = 10
1 fsync(5</n/storage/shares/ab/x/0.new>) = 0
1 rename(\"/n/storage/shares/ab/x/0.new\", \"/n/storage/shares/ab/x/0\") = 0
1 fsync(7</n/storage/shares/ab/x>) = 0
1 openat(AT_FDCWD, \"/n/storage/shares/mm/MARK\", O_RDONLY) = -1 ENOENT (No such file or directory)
";
    assert_eq!(
        violations(&events(good, &["MARK".to_owned()]), shares),
        Vec::<String>::new()
    );
}
