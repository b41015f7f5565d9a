//! The client's plugin handling against a real TLS server in this process, both sides
//! using the `gate` test plugin (linked in, no `.so`). Each test names the input it tries.

use crate::limits::Limits;
use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::client::{ClientBuilder, ClientError, MAX_PLUGIN_RETRIES};
use crate::node::NodeIdentity;
use crate::plugins::test_plugins::test_library;
use crate::plugins::{ClientPluginHandle, ServerPlugins, ServerPluginsBuilder};
use crate::protocol::{ShareKind, StorageIndex};
use crate::server::{serve, tls_config, AppState};
use crate::storage::{Store, StoreConfig, SystemClock};

struct Server {
    dir: tempfile::TempDir,
    nurl: crate::protocol::Nurl,
    plugins: Arc<ServerPlugins>,
    _stop: oneshot::Sender<()>,
}

async fn server(plugins: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let identity = NodeIdentity::generate().unwrap();
    let store = Arc::new(
        Store::open(
            &dir.path().join("storage"),
            StoreConfig {
                reserved_space: 0,
                nodeid: identity.nodeid(),
            },
            Arc::new(SystemClock),
        )
        .unwrap(),
    );
    let library = test_library();
    let mut builder = ServerPluginsBuilder::new(dir.path(), Some(store.clone()));
    for name in plugins {
        builder.add(name, &BTreeMap::new(), &library).unwrap();
    }
    let plugins = Arc::new(builder.build());
    let state = AppState::new(store, identity.swissnum().clone()).with_plugins(plugins.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = Arc::new(tls_config(&identity).unwrap());
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(serve(listener, tls, state, Limits::default(), async {
        let _ = stopped.await;
    }));
    Server {
        dir,
        nurl: identity.nurl("127.0.0.1", port),
        plugins,
        _stop: stop,
    }
}

fn gate_client(server: &Server, settings: &[(&str, &str)]) -> ClientPluginHandle {
    let settings = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    ClientPluginHandle::build(
        &server.dir.path().join("client"),
        "gate",
        &settings,
        &test_library(),
    )
    .unwrap()
}

fn counter(plugins: &ServerPlugins, name: &str) -> u64 {
    plugins
        .counters("gate")
        .unwrap()
        .get(name)
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn rejected_request_is_retried_with_the_plugins_new_data() {
    let server = server(&["gate"]).await;
    // Input tried: first data "wrong", then "open sesame" after the 401.
    let client = ClientBuilder::new(server.nurl.clone())
        .plugin(gate_client(&server, &[]))
        .build()
        .unwrap();
    let si = StorageIndex::from_bytes([4; 16]);
    let shares = client.list_shares(ShareKind::Immutable, &si).await.unwrap();
    assert!(shares.is_empty());
    assert_eq!(counter(&server.plugins, "admit.list"), 2);
    assert_eq!(counter(&server.plugins, "committed.list"), 1);
    let announced = client.plugin_announcements().await.unwrap();
    assert_eq!(announced[0].name, "gate");
    assert_eq!(announced[0].version, "1.2.3");
}

#[tokio::test]
async fn retries_stop_after_the_limit_with_the_typed_rejection() {
    let server = server(&["gate"]).await;
    // Input tried: a plugin that retries with wrong data every time.
    let client = ClientBuilder::new(server.nurl.clone())
        .plugin(gate_client(&server, &[("retry-with", "still wrong")]))
        .build()
        .unwrap();
    let error = client.version().await.unwrap_err();
    let ClientError::PluginRejected(rejection) = error else {
        panic!("expected a plugin rejection, got {error:?}")
    };
    assert_eq!((rejection.status, rejection.plugin.as_str()), (401, "gate"));
    assert!(!rejection.details.is_empty());
    assert_eq!(
        counter(&server.plugins, "admit.version"),
        1 + MAX_PLUGIN_RETRIES as u64
    );
}

#[tokio::test]
async fn client_plugin_stays_silent_for_a_server_without_it() {
    // Input tried: a server with no plugins, which answers 400 to unknown plugin data.
    let server = server(&[]).await;
    let client = ClientBuilder::new(server.nurl.clone())
        .plugin(gate_client(&server, &[]))
        .build()
        .unwrap();
    let si = StorageIndex::from_bytes([4; 16]);
    client.list_shares(ShareKind::Immutable, &si).await.unwrap();
    client.version().await.unwrap();
    assert!(client.plugin_announcements().await.unwrap().is_empty());
}

#[tokio::test]
async fn plugin_data_over_the_header_limit_is_refused_before_sending() {
    let server = server(&["gate"]).await;
    // Input tried: first data of 70,000 characters, over 64 KiB once encoded.
    let huge = "x".repeat(70_000);
    let client = ClientBuilder::new(server.nurl.clone())
        .plugin(gate_client(&server, &[("first", huge.as_str())]))
        .build()
        .unwrap();
    let error = client.version().await.unwrap_err();
    let ClientError::Plugin { plugin, message } = &error else {
        panic!("expected a local plugin error, got {error:?}")
    };
    assert_eq!(plugin, "gate");
    assert!(message.contains("at most 65536 fit"), "{message}");
    assert_eq!(
        counter(&server.plugins, "admit.version"),
        0,
        "nothing was sent"
    );
}
