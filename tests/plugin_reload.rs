//! Live plugin reload and the admin socket, against the real binary: a plugin replaced by a
//! new version of itself while clients keep uploading and reading, reloads that are refused
//! and leave the node as it was, SIGHUP, `gbs plugin status`, `gbs plugin check --node`,
//! and the admin socket's bounds.

use std::io::{BufRead as _, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gbs::client::Client;
use gbs::protocol::{ShareKind, ShareNumber, StorageIndex};
use gbs_plugin_interface::RouteRequest;
use gbs_tests::{build_fixture, gbs_binary, test_lease, test_upload_secret, GbsNode};

const VERSIONED: &str = "[storage]\nplugins = fixture-versioned\n\
     [storageserver.plugins.fixture-versioned]\nlibrary = plugins/versioned.so\n";

/// Puts `library` at `<dir>/plugins/versioned.so` the way an operator deploys safely: a
/// new file renamed over the old one.
fn deploy(dir: &Path, library: &Path) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("create plugins/");
    let staged = plugins.join(".versioned.so.new");
    std::fs::copy(library, &staged).expect("stage the library");
    std::fs::rename(&staged, plugins.join("versioned.so")).expect("deploy the library");
}

/// A node serving `fixture-versioned` 1.0.0, plus `extra` config.
fn versioned_node(extra: &str) -> GbsNode {
    let dir = GbsNode::create_configured(&format!("{VERSIONED}{extra}"));
    deploy(dir.path(), &build_fixture("plugin-v1"));
    GbsNode::start_in(dir)
}

fn gbs(args: &[&str], dir: &Path) -> Output {
    Command::new(gbs_binary())
        .args(args)
        .arg(dir)
        .output()
        .expect("run gbs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn route_version(client: &Client) -> String {
    let answer = client
        .call_plugin_route(
            "fixture-versioned",
            RouteRequest::new("GET", "version", Vec::new()),
        )
        .await
        .expect("the plugin's route");
    String::from_utf8(answer.body.to_vec()).expect("a text answer")
}

/// One client's work until `stop`: allocate, upload 64 KiB, read it back, ask the version.
/// Returns the operations done and the failures seen.
async fn keep_working(client: Client, id: u8, stop: Arc<AtomicBool>) -> (u64, Vec<String>) {
    let mut done = 0;
    let mut failures = Vec::new();
    let data: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8 ^ id).collect();
    let mut round = 0u32;
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        let mut si = [id; 16];
        si[..4].copy_from_slice(&round.to_be_bytes());
        let si = StorageIndex::from_bytes(si);
        let work = async {
            let upload = client
                .allocate(
                    si,
                    [ShareNumber(0)].into(),
                    data.len() as u64,
                    &test_lease(),
                    test_upload_secret(),
                )
                .await?;
            upload.upload_share(ShareNumber(0), &data[..]).await?;
            let mut out = Vec::new();
            client
                .read_share(ShareKind::Immutable, &si, ShareNumber(0), None, &mut out)
                .await?;
            client.version().await?;
            Ok::<_, gbs::client::ClientError>(out == data)
        };
        match work.await {
            Ok(true) => done += 4,
            Ok(false) => failures.push(format!("round {round}: read back other bytes")),
            Err(error) => failures.push(format!("round {round}: {error}")),
        }
    }
    (done, failures)
}

/// Input tried: `fixture-versioned` 1.0.0 replaced on disk by 2.0.0 and reloaded while four
/// clients upload, read and ask the version in a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_replaced_under_load_fails_no_request() {
    let node = versioned_node("");
    let client = node.client();
    assert_eq!(route_version(&client).await, "1.0.0");
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (1..=4)
        .map(|id| tokio::spawn(keep_working(node.client(), id, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    deploy(node.dir(), &build_fixture("plugin-v2"));
    let dir = node.dir().to_owned();
    let reloaded_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let reload = tokio::task::spawn_blocking(move || gbs(&["plugin", "reload"], &dir))
        .await
        .unwrap();
    assert!(reload.status.success(), "reload: {reload:?}");
    assert_eq!(
        stdout(&reload),
        "fixture-versioned: replaced 1.0.0 -> 2.0.0\n"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    let mut operations = 0;
    for worker in workers {
        let (done, failures) = worker.await.unwrap();
        assert!(failures.is_empty(), "requests failed: {failures:?}");
        operations += done;
    }
    assert!(operations >= 40, "only {operations} operations ran");

    assert_eq!(route_version(&client).await, "2.0.0");
    let listed = client.plugin_announcements().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version, "2.0.0");
    let status = gbs(&["plugin", "status", "--json"], node.dir());
    assert!(status.status.success(), "{status:?}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let plugin = &status["plugins"][0];
    assert_eq!(plugin["name"], "fixture-versioned");
    assert_eq!(plugin["version"], "2.0.0");
    assert_eq!(plugin["interface"], "1.2.0");
    assert_eq!(plugin["hooks"], serde_json::json!(["admit", "committed"]));
    assert_eq!(plugin["failures"], 0);
    assert!(plugin["calls"].as_u64().unwrap() > 0, "{plugin}");
    assert_eq!(plugin["library_hash"].as_str().unwrap().len(), 32);
    // Loaded by the reload, not at start.
    let since = plugin["since"].as_u64().unwrap();
    assert!(
        since >= reloaded_at,
        "since {since}, reloaded at {reloaded_at}"
    );
    // The replaced version got `stop` once its requests were done (at most `drain_timeout`
    // later); the new one only at shutdown.
    let state = node.dir().join("plugins-state").join("fixture-versioned");
    let stopped = std::time::Instant::now();
    while !state.join("stopped-1.0.0").exists() {
        assert!(
            stopped.elapsed() < Duration::from_secs(40),
            "the replaced plugin never got stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!state.join("stopped-2.0.0").exists());
    let (exit, dir) = node.stop();
    assert!(exit.success());
    assert!(dir
        .path()
        .join("plugins-state/fixture-versioned/stopped-2.0.0")
        .exists());
}

/// Inputs tried: a reload naming a library that is not a plugin (refused: nothing changes),
/// then one adding a second plugin, then SIGHUP after removing it from the config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reloads_change_nothing_and_sighup_reloads() {
    let node = versioned_node("");
    let cfg = node.dir().join("tahoe.cfg");
    let original = std::fs::read_to_string(&cfg).unwrap();
    let junk = node.dir().join("junk.so");
    std::fs::write(&junk, b"not a library").unwrap();
    let with = |second: &str, library: &Path| {
        original.replace(
            "plugins = fixture-versioned\n",
            &format!(
                "plugins = fixture-versioned, {second}\n[storageserver.plugins.{second}]\nlibrary = {}\n",
                library.display()
            ),
        )
    };

    std::fs::write(&cfg, with("broken", &junk)).unwrap();
    let refused = gbs(&["plugin", "reload"], node.dir());
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let lines = stdout(&refused);
    assert!(
        lines.starts_with("fixture-versioned: kept 1.0.0\nbroken: refused: incompatible: "),
        "{lines}"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("reload not applied"));
    let client = node.client();
    assert_eq!(route_version(&client).await, "1.0.0");
    assert_eq!(client.plugin_announcements().await.unwrap().len(), 1);

    std::fs::write(&cfg, with("fixture-blocks", &gbs_tests::blocking_plugin())).unwrap();
    let added = gbs(&["plugin", "reload", "--json"], node.dir());
    assert!(added.status.success(), "{added:?}");
    let answer: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    assert_eq!(answer["applied"], true);
    assert_eq!(answer["plugins"][0]["change"], "kept");
    assert_eq!(answer["plugins"][1]["name"], "fixture-blocks");
    assert_eq!(answer["plugins"][1]["change"], "added");
    let names: Vec<String> = client
        .plugin_announcements()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["fixture-versioned", "fixture-blocks"]);

    std::fs::write(&cfg, &original).unwrap();
    let sent = Command::new("kill")
        .arg("-HUP")
        .arg(node.pid().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    let mut names = Vec::new();
    for _ in 0..100 {
        names = client
            .plugin_announcements()
            .await
            .expect("the node serves on after SIGHUP")
            .into_iter()
            .map(|p| p.name)
            .collect();
        if names.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(names, ["fixture-versioned"], "SIGHUP did not reload");
    let (exit, _dir) = node.stop();
    assert!(exit.success());
}

/// Inputs tried: `check --node` on a compatible library and on a file that is not one,
/// relative paths included; `status`, `reload` and `check --node` with no node running.
#[test]
fn check_and_status_ask_the_running_node() {
    let node = versioned_node("");
    let v2 = build_fixture("plugin-v2");
    let junk = node.dir().join("junk.so");
    std::fs::write(&junk, b"not a library").unwrap();
    let check = |files: &[&Path]| {
        let mut command = Command::new(gbs_binary());
        command
            .current_dir(node.dir())
            .args(["plugin", "check", "--json", "--node"])
            .arg(node.dir())
            .args(files);
        command.output().unwrap()
    };
    let good = check(&[&v2]);
    assert_eq!(good.status.code(), Some(0), "{good:?}");
    let verdicts: serde_json::Value = serde_json::from_slice(&good.stdout).unwrap();
    assert_eq!(verdicts[0]["status"], "compatible");
    assert_eq!(verdicts[0]["plugins"][0]["version"], "2.0.0");
    let bad = check(&[&v2, Path::new("junk.so")]);
    assert_eq!(bad.status.code(), Some(3), "{bad:?}");
    let verdicts: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert_eq!(verdicts[1]["status"], "unusable");

    let status = gbs(&["plugin", "status"], node.dir());
    assert!(status.status.success());
    assert!(
        stdout(&status).starts_with("fixture-versioned 1.0.0 (interface 1.2.0): "),
        "{}",
        stdout(&status)
    );

    let (exit, dir) = node.stop();
    assert!(exit.success());
    assert!(
        !dir.path().join("private/admin.sock").exists(),
        "the admin socket outlived the node"
    );
    for args in [
        &["plugin", "status"][..],
        &["plugin", "reload"],
        &["plugin", "check", "--node", "."],
    ] {
        let mut command = Command::new(gbs_binary());
        command.args(args);
        if args.len() == 2 {
            command.arg(dir.path());
        } else {
            command.current_dir(dir.path()).arg(&v2);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(4), "{args:?}: {output:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("no running node answers"),
            "{output:?}"
        );
    }
}

/// Inputs tried: a second `gbs run` on a directory a node serves; the socket's and
/// `private/`'s modes; four idle admin connections (the bound) and a fifth asking for
/// status; a request over 64 KiB; a line that is not a request.
#[test]
fn the_admin_socket_is_private_bounded_and_guards_the_directory() {
    use std::os::unix::fs::PermissionsExt as _;
    let node = versioned_node("");
    let socket = node.dir().join("private/admin.sock");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(&node.dir().join("private")), 0o700);

    let second = gbs(&["run"], node.dir());
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another gbs node is already running"),
        "{second:?}"
    );

    let ask = |line: &[u8]| -> String {
        let mut stream = UnixStream::connect(&socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let _ = stream.write_all(line);
        let mut answer = String::new();
        let _ = std::io::BufReader::new(stream).read_line(&mut answer);
        answer
    };
    let idle: Vec<UnixStream> = (0..4)
        .map(|_| {
            let stream = UnixStream::connect(&socket).unwrap();
            // Accepted in this order.
            std::thread::sleep(Duration::from_millis(50));
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // A fifth takes the place of the oldest idle one: four idle connections used to lock
    // `gbs plugin status` out until the node dropped them (10 s without a request).
    let fifth = ask(b"{\"command\":\"status\"}\n");
    assert!(fifth.contains("\"answer\":\"status\""), "{fifth:?}");
    let closed_by_the_node = |mut stream: &UnixStream| {
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        matches!(stream.read(&mut [0u8; 1]), Ok(0))
    };
    let closed: Vec<bool> = idle.iter().map(closed_by_the_node).collect();
    assert_eq!(
        closed,
        [true, false, false, false],
        "which idle ones were closed"
    );
    drop(idle);
    std::thread::sleep(Duration::from_millis(200));
    assert!(ask(b"{\"command\":\"status\"}\n").contains("\"answer\":\"status\""));
    let mut huge = vec![b' '; 70 * 1024];
    huge.push(b'\n');
    assert!(ask(&huge).contains("request over 65536 bytes"));
    assert!(ask(b"hello\n").contains("not a request"));
    // The node still serves, and the socket still answers.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(node.client().version()).expect("version");
    assert!(gbs(&["plugin", "status"], node.dir()).status.success());
    let (exit, _dir) = node.stop();
    assert!(exit.success());
}

/// Inputs tried: `gbs client plugins` in text and JSON, `gbs client plugin-route` on a route
/// that answers and on one that answers 404.
#[test]
fn gbs_client_lists_plugins_and_calls_their_routes() {
    let node = versioned_node("");
    let client = |args: &[&str]| {
        Command::new(gbs_binary())
            .arg("client")
            .args(args)
            .output()
            .expect("run gbs client")
    };
    let listed = client(&["plugins", node.nurl()]);
    assert!(listed.status.success(), "{listed:?}");
    // The server states the plugin interface it hosts, this build's.
    let (major, minor) = gbs_plugin_interface::INTERFACE_VERSION;
    assert_eq!(
        stdout(&listed),
        format!("plugin interface {major}.{minor}\nfixture-versioned 1.0.0: {{\"version\":\"1.0.0\"}}\n")
    );
    let listed = client(&["--json", "plugins", node.nurl()]);
    let value: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(value["plugins"][0]["announcement"]["version"], "1.0.0");
    assert_eq!(value["interface"], format!("{major}.{minor}"));

    let version = client(&["plugin-route", node.nurl(), "fixture-versioned", "version"]);
    assert!(version.status.success(), "{version:?}");
    assert_eq!(stdout(&version), "1.0.0");
    let json = client(&[
        "--json",
        "plugin-route",
        node.nurl(),
        "fixture-versioned",
        "version",
    ]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["status"], 200);
    assert_eq!(value["body"], "1.0.0");
    let missing = client(&["plugin-route", node.nurl(), "fixture-versioned", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stdout(&missing), "no such route");
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("/storage/v1/plugin/fixture-versioned/nope answered status 404"),
        "{missing:?}"
    );
    // Input tried: a plugin the server does not have: the server answers, not a plugin.
    let unknown = client(&["plugin-route", node.nurl(), "nosuch", "x"]);
    assert_eq!(unknown.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("/storage/v1/plugin/nosuch/x answered status 404"),
        "{stderr}"
    );
    assert!(!stderr.contains("plugin nosuch"), "{stderr}");
}
