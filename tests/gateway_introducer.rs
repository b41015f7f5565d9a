//! `gbs gateway` with upstreams from a stock Tahoe introducer (`[client] introducer.furl`):
//! a real introducer, stock 1.20 storage nodes announcing themselves to it, and stock
//! clients, one through the gateway and one of the grid directly.

use gbs_tests::{
    gbs_binary, gbs_stdout, tahoe_python, GbsGateway, GbsNode, StockNode, TahoeClient,
};
use tempfile::TempDir;

/// A gateway directory following the introducer at `furl` with the venv's Python.
fn gateway_dir(furl: &str) -> TempDir {
    GbsNode::create_configured(&format!(
        "[client]\nintroducer.furl = {furl}\n[gateway]\nintroducer.python = {}\n",
        tahoe_python().display()
    ))
}

/// Runs the gateway on `dir` until it printed `upstreams` local NURLs (stock nodes
/// announce themselves a few seconds after they start).
async fn gateway_serving(dir: TempDir, upstreams: usize) -> GbsGateway {
    tokio::task::spawn_blocking(move || GbsGateway::start_in(dir, upstreams))
        .await
        .expect("start the gateway")
}

/// Input tried: two stock storage nodes announced by a stock introducer. The gateway adds
/// both as they are announced; a stock client using the gateway's `servers.yaml` stores a
/// directory and files; a stock client of the grid itself (no gateway) reads them and
/// writes into that directory, which works only if the gateway kept the announcements as
/// they are (Tahoe derives write enablers from the announced FURL and places shares by the
/// permutation seed); the first client sees that write. Restarted without the introducer,
/// the gateway serves the same servers at the same local NURLs. Input tried besides: the
/// relay killed while the gateway runs (another is started; a server announced after that
/// is added).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_clients_reach_introduced_servers_through_the_gateway_as_directly() {
    let (introducer, storage) = tokio::task::spawn_blocking(|| {
        let introducer = StockNode::introducer();
        let furl = introducer.introducer_furl();
        let storage = [
            StockNode::storage(&furl, "stock-one"),
            StockNode::storage(&furl, "stock-two"),
        ];
        (introducer, storage)
    })
    .await
    .expect("start the grid");
    let furl = introducer.introducer_furl();
    let gateway = gateway_serving(gateway_dir(&furl), 2).await;
    let first_nurls = gateway.nurls().to_vec();
    let dir = gateway.dir().to_str().expect("path").to_owned();

    let yaml = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || gbs_stdout(&["gateway", "servers-yaml", &dir]))
            .await
            .expect("servers-yaml")
    };
    for expected in ["stock-one", "stock-two", "permutation-seed-base32", "\"v0-"] {
        assert!(yaml.contains(expected), "{expected} not in {yaml}");
    }
    for nurl in &first_nurls {
        assert!(yaml.contains(nurl.as_str()), "{nurl} not in {yaml}");
    }
    assert!(
        !yaml.contains(&furl),
        "the introducer's FURL is in servers.yaml"
    );

    let grid_furl = furl.clone();
    tokio::task::spawn_blocking(move || {
        let through = TahoeClient::start(&yaml, 1, 2, 2);
        let direct = TahoeClient::of_introducer(&grid_furl, 1, 2, 2, 2);

        let dircap = through.ok(&["mkdir"]).trim().to_owned();
        let file = through.scratch().join("through");
        let bytes: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &bytes).expect("write a file");
        let cap = through
            .ok(&["put", file.to_str().expect("path")])
            .trim()
            .to_owned();
        through.ok(&["ln", &cap, &format!("{dircap}/through")]);

        let back = direct.scratch().join("back");
        direct.ok(&["get", &cap, back.to_str().expect("path")]);
        assert!(
            std::fs::read(&back).expect("read back") == bytes,
            "came back different"
        );
        let checked = direct.ok(&["check", "--verify", &cap]);
        assert!(checked.contains("Healthy"), "{checked}");
        let other = direct.scratch().join("direct");
        std::fs::write(&other, vec![7u8; 100_000]).expect("write a file");
        let other_cap = direct
            .ok(&["put", other.to_str().expect("path")])
            .trim()
            .to_owned();
        // A mutable write with the write enabler the grid's own client derives.
        direct.ok(&["ln", &other_cap, &format!("{dircap}/direct")]);

        let listed = through.ok(&["ls", &dircap]);
        for name in ["through", "direct"] {
            assert!(
                listed.lines().any(|l| l.trim() == name),
                "{name} not in {listed}"
            );
        }
        let checked = through.ok(&["check", "--verify", &dircap]);
        assert!(checked.contains("Healthy"), "the directory: {checked}");
    })
    .await
    .expect("the stock clients' session");

    // The relay dies: the gateway starts another, which reports a server started since.
    let relay = std::process::Command::new("pkill")
        .args(["-KILL", "-P", &gateway.pid().to_string(), "python"])
        .status()
        .expect("run pkill");
    assert!(relay.success(), "no relay process under the gateway");
    let grid_furl = furl.clone();
    let third = tokio::task::spawn_blocking(move || StockNode::storage(&grid_furl, "stock-three"))
        .await
        .expect("start a third storage node");
    let mut gateway = gateway;
    let added = tokio::task::spawn_blocking(move || {
        let added = gateway.wait_for_nurls(1);
        (gateway, added)
    })
    .await
    .expect("the third server through the gateway");
    let (gateway, added) = added;
    assert!(
        !first_nurls.contains(&added[0]),
        "{added:?} was there before"
    );

    let dir = gateway.stop();
    drop(introducer);
    let again = gateway_serving(dir, 3).await;
    let sorted = |nurls: &[String]| {
        let mut nurls = nurls.to_vec();
        nurls.sort();
        nurls
    };
    // Announced in any order; remembered by server id.
    let mut all = first_nurls.clone();
    all.extend(added);
    assert_eq!(sorted(again.nurls()), sorted(&all));
    drop((storage, third));
}

/// Input tried: `introducer.python` naming a Python without Tahoe (the system's). The
/// gateway refuses to start, says what it needs, and does not print the introducer's
/// FURL (its swissnum is a secret).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_without_tahoe_is_refused_with_a_clear_error() {
    let furl =
        "pb://m3gkhmwdylp7raxaptacip5hzcavmlqi@tcp:127.0.0.1:9/uqftvnpigmbggfeyu6wsoxf5josea5dj";
    let dir = GbsNode::create_configured(&format!(
        "[client]\nintroducer.furl = {furl}\n[gateway]\nintroducer.python = /usr/bin/python3\n"
    ));
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(gbs_binary())
            .arg("gateway")
            .arg(dir.path())
            .output()
            .expect("run gbs gateway")
    })
    .await
    .expect("gbs gateway");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{all}");
    assert!(all.contains("tahoe-lafs installed is needed"), "{all}");
    assert!(all.contains("allmydata"), "{all}");
    assert!(!all.contains("uqftvnpigmbggfeyu6wsoxf5josea5dj"), "{all}");
}
