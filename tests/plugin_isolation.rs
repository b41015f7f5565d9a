//! Plugins are untrusted code: a plugin that blocks its thread holds up only the operations
//! it guards and cannot stop the node from shutting down; a library that hangs or aborts
//! while loading stops start-up with one line; overwriting a loaded library changes
//! nothing in the running node.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gbs::client::ClientError;
use gbs::protocol::{ShareKind, ShareNumber, StorageIndex};
use gbs_plugin_interface::RouteRequest;
use gbs_tests::{
    blocking_plugin, gbs_binary, test_lease, test_upload_secret, wait_for_exit, GbsNode,
};

/// A node running `fixture-blocks`, blocking in `hooks`, with a 2 s hook deadline.
fn node_blocking_in(hooks: &str) -> GbsNode {
    node_blocking_by(hooks, "sleep")
}

/// The same, blocking `by` sleeping or spinning.
fn node_blocking_by(hooks: &str, by: &str) -> GbsNode {
    GbsNode::start_configured(&format!(
        "[storage]\nplugins = fixture-blocks\n\
         [storageserver.plugins.fixture-blocks]\nlibrary = {}\nblock-in = {hooks}\nblock-seconds = 20\nblock-by = {by}\n\
         [gbs]\nplugin_deadline = 2s\n",
        blocking_plugin().display()
    ))
}

/// Input tried: a plugin whose `admit` sleeps its thread for 20 s, guarding listings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_blocks_its_thread_holds_up_only_what_it_guards() {
    only_the_guarded_operation_waits(node_blocking_by("admit", "sleep")).await;
}

/// Input tried: a plugin whose `admit` spins on a core for 20 s, guarding listings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_spins_holds_up_only_what_it_guards() {
    only_the_guarded_operation_waits(node_blocking_by("admit", "spin")).await;
}

/// Stores share 0 of `si`, holding `hello` (allocating and uploading are guarded by no
/// plugin in these tests).
async fn store_hello(client: &gbs::client::Client, si: StorageIndex) {
    let upload = client
        .allocate(
            si,
            [ShareNumber(0)].into(),
            5,
            &test_lease(),
            test_upload_secret(),
        )
        .await
        .expect("allocate is not guarded");
    upload
        .upload_share(ShareNumber(0), &b"hello"[..])
        .await
        .expect("upload is not guarded");
}

/// Asks the version and reads back what [`store_hello`] stored; how long both took.
async fn version_and_read_hello(client: &gbs::client::Client, si: StorageIndex) -> Duration {
    let started = Instant::now();
    client.version().await.expect("version");
    let mut out = Vec::new();
    client
        .read_share(ShareKind::Immutable, &si, ShareNumber(0), None, &mut out)
        .await
        .expect("read");
    assert_eq!(out, b"hello");
    started.elapsed()
}

async fn only_the_guarded_operation_waits(node: GbsNode) {
    let client = node.client();
    let si = StorageIndex::from_bytes([7; 16]);
    store_hello(&client, si).await;

    let guarded = {
        let client = client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = client.list_shares(ShareKind::Immutable, &si).await;
            (answer, started.elapsed())
        })
    };
    // While the plugin's thread sleeps, everything it does not guard keeps its latency.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..20 {
        let took = version_and_read_hello(&client, si).await;
        assert!(
            took < Duration::from_secs(1),
            "an unguarded request took {took:?} while a plugin was blocked"
        );
    }
    // The guarded operation fails closed at the deadline, with the structured rejection.
    let (answer, took) = guarded.await.expect("the guarded listing task");
    match answer {
        Err(ClientError::PluginRejected(rejection)) => {
            assert_eq!(
                (
                    rejection.status,
                    rejection.plugin.as_str(),
                    rejection.code.as_str()
                ),
                (503, "fixture-blocks", "plugin-timeout")
            );
        }
        other => panic!("a blocked plugin's listing answered {other:?}"),
    }
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "the guarded listing failed after {took:?}, not at the 2 s deadline"
    );
}

/// Input tried: `gbs client plugin-route` to a route that sleeps past the 2 s deadline. The
/// node's refusal is told as a refusal (plugin, status, code), and stdout stays empty: the
/// command used to print its CBOR body raw and say the plugin had answered 503.
#[test]
fn a_route_past_its_deadline_is_shown_as_the_refusal_it_is() {
    let node = node_blocking_in("route");
    let output = Command::new(gbs_binary())
        .args([
            "client",
            "plugin-route",
            node.nurl(),
            "fixture-blocks",
            "hello",
        ])
        .output()
        .expect("run gbs client plugin-route");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refused by server plugin fixture-blocks (503, plugin-timeout)"),
        "{stderr}"
    );
    let (status, _dir) = node.stop();
    assert!(status.success(), "gbs run exited with {status}");
}

/// Input tried: a plugin whose `admit` spins in 10 ms slices, yielding in between (no poll
/// is long), with 64 listings in flight, beside a well-behaved plugin that guards every
/// operation. The well-behaved plugin's operations keep their latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_spins_in_slices_holds_up_no_other_plugin() {
    no_other_plugin_waits_for("slices").await;
}

/// Input tried: a plugin whose `admit` sleeps 20 s, with 64 listings in flight (most of
/// them waiting in the shared thread's queue when the plugin is moved), beside a
/// well-behaved plugin that guards every operation. The queued calls go to the plugin's
/// own thread: they do not block the shared thread that replaced the one it held, one
/// after another, nor leave a stuck thread each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_blocks_many_calls_holds_up_no_other_plugin() {
    no_other_plugin_waits_for("sleep").await;
}

async fn no_other_plugin_waits_for(by: &str) {
    let node = GbsNode::start_configured(&format!(
        "[storage]\nplugins = fixture-blocks, fixture-versioned\n\
         [storageserver.plugins.fixture-blocks]\nlibrary = {}\nblock-in = admit\nblock-seconds = 20\nblock-by = {by}\n\
         [storageserver.plugins.fixture-versioned]\nlibrary = {}\n\
         [gbs]\nplugin_deadline = 2s\n",
        blocking_plugin().display(),
        gbs_tests::build_fixture("plugin-v1").display()
    ));
    let client = node.client();
    let si = StorageIndex::from_bytes([9; 16]);
    store_hello(&client, si).await;
    let threads_before = gbs_tests::ProcessStats::of(node.pid()).threads;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A client each: one client has at most 10 requests in flight.
    let listings: Vec<_> = (0..64)
        .map(|_| {
            let (client, stop) = (node.client(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = client.list_shares(ShareKind::Immutable, &si).await;
                }
            })
        })
        .collect();
    // Long enough for every listing to be in the plugin, and for the watchdog to see it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        slowest = slowest.max(version_and_read_hello(&client, si).await);
    }
    let threads = gbs_tests::ProcessStats::of(node.pid()).threads;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for listing in listings {
        listing.await.expect("a listing task");
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a read and a version, guarded by another plugin, took {slowest:?}"
    );
    // The shared thread the plugin held, and a few the node starts on demand.
    assert!(
        threads <= threads_before + 8,
        "{threads} threads, {threads_before} before"
    );
}

/// Input tried: a plugin whose `start` and `stop` both sleep their thread for 20 s.
#[test]
fn shutdown_completes_whatever_a_plugin_start_or_stop_does() {
    let node = node_blocking_in("start, stop");
    // The node serves while the background service is stuck.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(node.client().version())
        .expect("version while start blocks");
    let started = Instant::now();
    let (status, _dir) = node.stop();
    let took = started.elapsed();
    assert!(status.success(), "gbs run exited with {status}");
    assert!(
        took < Duration::from_secs(15),
        "shutdown took {took:?} with a plugin stuck in start and stop"
    );
}

/// How a `gbs run` that was meant to stop by itself ended.
struct Ended {
    ok: bool,
    stderr: String,
}

impl Ended {
    /// Asserts that it failed, with `reason` in the last line of its stderr.
    fn failed_with(&self, reason: &str) {
        let last = self.stderr.trim().lines().last().unwrap_or_default();
        assert!(!self.ok, "gbs run succeeded: {}", self.stderr);
        assert!(last.contains(reason), "{last}");
    }
}

/// `gbs run` on a node whose only plugin is `library`, with `env` set.
fn run_with_library(library: &Path, env: (&str, &str)) -> Ended {
    let extra = format!(
        "[storage]\nplugins = odd\n[storageserver.plugins.odd]\nlibrary = {}\n",
        library.display()
    );
    run_until_exit(Command::new(gbs_binary()).env(env.0, env.1), &extra)
}

/// `gbs run` on a node whose `tahoe.cfg` ends with `extra`.
fn run_configured(extra: &str) -> Ended {
    run_until_exit(&mut Command::new(gbs_binary()), extra)
}

/// Runs `command run DIR` on a new node dir with `extra` config; waits at most 30 s.
fn run_until_exit(command: &mut Command, extra: &str) -> Ended {
    let dir = GbsNode::create_configured(extra);
    let mut child = command
        .arg("run")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gbs run");
    let Some(status) = wait_for_exit(&mut child, Duration::from_secs(30)) else {
        let _ = child.kill();
        panic!("gbs run still running after 30 s");
    };
    let mut stderr = String::new();
    let mut pipe = child.stderr.take().expect("stderr");
    std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("read stderr");
    Ended {
        ok: status.success(),
        stderr,
    }
}

/// Inputs tried: a library whose initialiser hangs, and one whose initialiser aborts. The
/// node checks it in a child process first and refuses to start with one line, instead of
/// hanging or dying with it.
#[cfg(target_os = "linux")]
#[test]
fn start_up_survives_libraries_that_hang_or_abort_while_loading() {
    let hangs = gbs_tests::build_fixture("misbehaves-on-load");
    run_with_library(&hangs, ("GBS_FIXTURE_ON_LOAD", "hang"))
        .failed_with("storage plugin odd: incompatible: the check did not finish");
    let aborts = gbs_tests::build_fixture("crashes-on-load");
    let ended = run_with_library(&aborts, ("GBS_FIXTURE_ON_LOAD", ""));
    ended.failed_with("storage plugin odd: incompatible: the check crashed (signal 6)");
    // Each step was logged, naming the plugin, before it was taken: had the crash been in
    // this process, the log would still say where.
    let steps = [
        "copying plugin library",
        "checking plugin library in a child process",
    ];
    let logged: Vec<&str> = ended
        .stderr
        .lines()
        .filter(|l| l.contains("plugin=\"odd\"") || l.contains("plugin=odd"))
        .collect();
    for (step, next) in steps.iter().zip(steps.iter().skip(1)) {
        let at = |what: &str| logged.iter().position(|l| l.contains(what));
        assert!(
            matches!((at(step), at(next)), (Some(a), Some(b)) if a < b),
            "{step:?} not logged before {next:?}: {}",
            ended.stderr
        );
    }
    assert!(
        !ended.stderr.contains("loading plugin library"),
        "a library that failed its check was loaded: {}",
        ended.stderr
    );
}

/// Input tried: a real plugin library cut to half of what its segments map (an interrupted
/// copy), which still loads but faults when its missing pages are touched. Start-up stops
/// with one line.
#[cfg(target_os = "linux")]
#[test]
fn start_up_refuses_a_truncated_library_with_one_line() {
    let library = gbs_tests::build_fixture("plugin-v1");
    let mapped = gbs::plugins::elf::mapped_length(&library).expect("an ELF library");
    let whole = std::fs::read(&library).expect("read the fixture");
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("libcut.so");
    std::fs::write(&cut, &whole[..usize::try_from(mapped / 2).unwrap()]).unwrap();
    run_with_library(&cut, ("GBS_FIXTURE_ON_LOAD", ""))
        .failed_with("storage plugin odd: incompatible: truncated: its segments need");
}

/// Inputs tried: a plugin library whose `describe` hangs, and one whose `describe` panics.
/// Start-up stops with one line naming the plugin and why, at the check's deadline.
#[test]
fn start_up_survives_a_describe_that_hangs_or_panics() {
    let library = gbs_tests::build_fixture("plugin-bad-describe");
    run_with_library(&library, ("GBS_FIXTURE_DESCRIBE", "hang"))
        .failed_with("storage plugin odd: incompatible: the check did not finish");
    run_with_library(&library, ("GBS_FIXTURE_DESCRIBE", "panic"))
        .failed_with("storage plugin odd: incompatible: declares no plugins");
}

/// Input tried: the plugin's library file overwritten in place with other bytes while the
/// node runs (`cp new.so plugins/lib.so` does that). The node runs a private copy, so it
/// goes on serving and its plugin goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwriting_a_loaded_library_does_not_touch_the_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join("libblocks.so");
    std::fs::copy(blocking_plugin(), &library).unwrap();
    let node = GbsNode::start_configured(&format!(
        "[storage]\nplugins = fixture-blocks\n[storageserver.plugins.fixture-blocks]\nlibrary = {}\n",
        library.display()
    ));
    let client = node.client();
    let si = StorageIndex::from_bytes([8; 16]);
    client
        .list_shares(ShareKind::Immutable, &si)
        .await
        .expect("listing through the plugin");
    // Same inode, new contents: what crashed a node that mapped the file itself.
    std::fs::write(&library, vec![0u8; 4096]).unwrap();
    for _ in 0..5 {
        client
            .list_shares(ShareKind::Immutable, &si)
            .await
            .expect("the plugin still answers");
        let answer = client
            .call_plugin_route(
                "fixture-blocks",
                RouteRequest::new("GET", "hello", Vec::new()),
            )
            .await
            .expect("the plugin's route after the overwrite");
        assert_eq!(answer.body.as_slice(), b"fixture-blocks answered");
    }
    let (status, _dir) = node.stop();
    assert!(status.success(), "gbs run exited with {status}");
}

/// Input tried: a plugin whose constructor sleeps its thread for 20 s, with a 2 s deadline.
#[test]
fn a_constructor_that_hangs_stops_start_up_at_the_deadline() {
    // Built before the clock starts: a first build of the fixture can take longer than the
    // constructor sleeps.
    let library = blocking_plugin();
    let started = Instant::now();
    run_configured(&format!(
        "[storage]\nplugins = fixture-blocks\n\
         [storageserver.plugins.fixture-blocks]\nlibrary = {}\nblock-in = constructor\nblock-seconds = 20\n\
         [gbs]\nplugin_deadline = 2s\n",
        library.display()
    ))
    .failed_with("storage plugin fixture-blocks: constructor failed: did not return within 2s");
    // Under 20 s: start-up gave up at the deadline instead of waiting for the constructor.
    assert!(
        started.elapsed() < Duration::from_secs(19),
        "{:?}",
        started.elapsed()
    );
}

/// Inputs tried: SIGTERM and SIGINT while a plugin's constructor hangs (default 30 s
/// deadline): the node stops at once instead of ignoring the signal.
#[test]
fn signals_during_a_hanging_constructor_stop_the_node() {
    let config = format!(
        "[storage]\nplugins = fixture-blocks\n\
         [storageserver.plugins.fixture-blocks]\nlibrary = {}\nblock-in = constructor\n",
        blocking_plugin().display()
    );
    for signal in ["-TERM", "-INT"] {
        // Past the library check, into the constructor.
        let node = start_up_stuck(&config, ("GBS_FIXTURE_ON_LOAD", ""), Duration::from_secs(2));
        node.signalled_stops(signal);
    }
}

/// Inputs tried: SIGTERM and SIGINT while the node's check of a library hangs (its
/// initialiser sleeps, in the check's child process, before the 5 s check deadline): the
/// node stops at once, and the check's child and what it started go with it.
#[cfg(target_os = "linux")]
#[test]
fn signals_during_a_hanging_library_check_stop_the_node_and_the_check() {
    let config = format!(
        "[storage]\nplugins = odd\n[storageserver.plugins.odd]\nlibrary = {}\n",
        gbs_tests::build_fixture("misbehaves-on-load").display()
    );
    for signal in ["-TERM", "-INT"] {
        let node = start_up_stuck(
            &config,
            ("GBS_FIXTURE_ON_LOAD", "hang-with-child"),
            Duration::from_millis(1500),
        );
        let checks: Vec<u32> = gbs_tests::processes()
            .iter()
            .filter(|p| p.parent == node.child.id())
            .map(|p| p.pid)
            .collect();
        assert!(!checks.is_empty(), "no check running after 1.5 s");
        node.signalled_stops(signal);
        let stopped = Instant::now();
        while gbs_tests::processes()
            .iter()
            .any(|p| checks.contains(&p.group))
        {
            assert!(
                stopped.elapsed() < Duration::from_secs(5),
                "the check's processes outlived the node"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A `gbs run` still starting up.
struct Starting {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

/// Starts `gbs run` on a new node dir with `config` and `env`, and checks that it is still
/// starting after `after` (something in start-up hangs).
fn start_up_stuck(config: &str, env: (&str, &str), after: Duration) -> Starting {
    let dir = GbsNode::create_configured(config);
    let mut child = Command::new(gbs_binary())
        .arg("run")
        .arg(dir.path())
        .env(env.0, env.1)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gbs run");
    std::thread::sleep(after);
    assert!(
        child.try_wait().expect("wait").is_none(),
        "gbs run ended early"
    );
    Starting { child, _dir: dir }
}

impl Starting {
    /// Sends `signal` (`-TERM`, `-INT`) and expects the node gone within 5 s.
    fn signalled_stops(mut self, signal: &str) {
        let sent = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(sent.success());
        if wait_for_exit(&mut self.child, Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            panic!("gbs run ignored {signal} during start-up");
        }
    }
}
