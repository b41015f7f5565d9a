//! The `gbs` command as an operator meets it.

use std::process::Command;

use gbs::protocol::Nurl;
use gbs_tests::{gbs_binary, GbsNode};

fn gbs(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(gbs_binary())
        .args(args)
        .output()
        .expect("run gbs")
}

#[test]
fn create_node_prints_a_nurl_that_nurl_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let created = GbsNode::create(dir.path());
    let nurl: Nurl = created.parse().expect("create-node prints a valid NURL");
    assert_eq!(nurl.host, "127.0.0.1");
    assert_eq!(nurl.swissnum.expose().len(), 32);
    let again = gbs(&["nurl".as_ref(), dir.path().as_os_str()]);
    assert!(again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), created);
    for file in ["tahoe.cfg", "private/node.pem", "private/swissnum"] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
}

/// Input tried: `gbs servers-yaml` of 2,000 NURLs (about 600 KB of output) read by a
/// reader that takes one line and closes the pipe, as `| head -1` does. The command ends
/// with the status of a death by SIGPIPE (141), without a panic on stderr.
#[test]
fn a_command_whose_reader_goes_away_ends_quietly() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let nurl = GbsNode::create(dir.path());
    let mut child = Command::new(gbs_binary())
        .arg("servers-yaml")
        .args(std::iter::repeat_n(&nurl, 2000))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run gbs servers-yaml");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("one line");
    assert_eq!(first, "storage:\n");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn create_node_refuses_an_existing_node() {
    let dir = tempfile::tempdir().unwrap();
    GbsNode::create(dir.path());
    let pem_before = std::fs::read(dir.path().join("private/node.pem")).unwrap();
    let second = gbs(&["create-node".as_ref(), dir.path().as_os_str()]);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already holds a node"));
    assert_eq!(
        std::fs::read(dir.path().join("private/node.pem")).unwrap(),
        pem_before
    );
}

#[test]
fn a_bad_config_value_stops_start_up_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    GbsNode::create(dir.path());
    let cfg_path = dir.path().join("tahoe.cfg");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    // Input tried: a reserved_space that is not a size.
    std::fs::write(
        &cfg_path,
        cfg.replace("reserved_space = 1G", "reserved_space = plenty"),
    )
    .unwrap();
    let run = gbs(&["run".as_ref(), dir.path().as_os_str()]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("[storage] reserved_space"), "{stderr}");
    assert!(lines[0].contains("plenty"), "{stderr}");
}

#[test]
fn missing_private_key_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    GbsNode::create(dir.path());
    std::fs::remove_file(dir.path().join("private/node.pem")).unwrap();
    let run = gbs(&["run".as_ref(), dir.path().as_os_str()]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("node.pem"));
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let node = GbsNode::start();
    let nurl: Nurl = node.nurl().parse().unwrap();
    assert!(std::net::TcpStream::connect((nurl.host.as_str(), nurl.port)).is_ok());
    let (status, _dir) = node.stop();
    assert!(status.success(), "gbs run exited with {status}");
}

/// The README's first command: `gbs run` on a directory with no node yet creates one, and
/// with the sample plugins built beside the binary it serves with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_creates_a_node_that_serves_the_sample_plugins() {
    gbs_tests::sample_plugin("gbs-sample-access-log");
    gbs_tests::sample_plugin("gbs-sample-allow-list");
    let node = GbsNode::start_in(tempfile::tempdir().unwrap());
    let cfg = std::fs::read_to_string(node.dir().join("tahoe.cfg")).unwrap();
    assert!(cfg.contains("\nplugins = access-log\n"), "{cfg}");
    assert!(
        cfg.contains("[storageserver.plugins.allow-list]\ntokens = "),
        "{cfg}"
    );
    let client = gbs::client::ClientBuilder::new(node.nurl().parse().unwrap())
        .build()
        .unwrap();
    let announced: Vec<String> = client
        .plugin_announcements()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(announced, ["access-log"]);
    // Stock clients and ours without plugins are still served: access-log admits everything.
    client.version().await.unwrap();
}
