//! Loading compiled plugins: `gbs plugin check` and `gbs plugin list` on the fixture
//! libraries of `tests/fixtures/`, one per way loading can go right or wrong, and fixture
//! hosts a minor ahead of the workspace's interface and a minor behind it loading plugins
//! with the real compatibility code.

use std::path::Path;
use std::process::{Command, Output};

use gbs_tests::{
    build_fixture, build_plugin_crate, fixtures_dir, gbs_binary, processes, ProcessIds,
};

fn gbs(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(gbs_binary())
        .args(args)
        .output()
        .expect("run gbs")
}

/// `gbs plugin check FILE`: exit status and stdout.
fn check(file: &Path) -> (i32, String) {
    let out = gbs(&["plugin".as_ref(), "check".as_ref(), file.as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().expect("exit status"), stdout)
}

/// Checks one file and asserts the status, the verdict after the file name, and that
/// `line` is one of the report's lines (without its indentation).
fn assert_check(file: &Path, status: i32, verdict: &str, line: &str) -> String {
    let (code, stdout) = check(file);
    assert_eq!(code, status, "{stdout}");
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("{}: {verdict}", file.display()).as_str())
    );
    assert!(
        lines.any(|l| l.trim() == line),
        "no line {line:?} in:\n{stdout}"
    );
    stdout
}

#[test]
fn check_accepts_a_plugin_built_against_the_same_interface() {
    let lib = build_fixture("plugin-lease-renewal");
    let (code, stdout) = check(&lib);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(
        stdout,
        format!(
            "{}: compatible\n    interface: 1.2.0\n    plugin: fixture-lease-renewal 0.1.0 (server)\n",
            lib.display()
        )
    );
}

#[test]
fn check_accepts_plugins_built_against_older_minor_interfaces() {
    for (fixture, interface, name) in [
        ("plugin-1.0", "1.0.0", "fixture-1.0"),
        ("plugin-1.1", "1.1.0", "fixture-1.1"),
    ] {
        let lib = build_fixture(fixture);
        let (code, stdout) = check(&lib);
        assert_eq!(code, 0, "{stdout}");
        assert_eq!(
            stdout,
            format!(
                "{}: compatible\n    interface: {interface}\n    plugin: {name} 0.1.0 (server, client)\n",
                lib.display()
            )
        );
    }
}

#[test]
fn check_accepts_a_plugin_built_against_a_newer_minor_interface() {
    let lib = build_fixture("plugin-1.3");
    assert_check(&lib, 0, "compatible", "interface: 1.3.0");
}

#[test]
fn check_refuses_another_interface_major() {
    let lib = build_fixture("plugin-2.0");
    assert_check(
        &lib,
        1,
        "incompatible",
        "built against plugin interface 2.0; this host speaks 1.x",
    );
}

#[test]
fn check_names_the_changed_parameter_of_a_changed_interface() {
    let lib = build_fixture("plugin-changed");
    let stdout = assert_check(
        &lib,
        1,
        "incompatible",
        "incompatible type: new_server.param_2.obj.vtable.log.param_1.field_0: mismatched type (expected u8, found i8)",
    );
    // One line per mismatch, not abi_stable's dump (hundreds of lines)...
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    // ...which --verbose adds.
    let verbose = gbs(&[
        "plugin".as_ref(),
        "check".as_ref(),
        "--verbose".as_ref(),
        lib.as_os_str(),
    ]);
    let verbose = String::from_utf8_lossy(&verbose.stdout);
    assert!(verbose.contains("Error:mismatched type"), "{verbose}");
    assert!(verbose.lines().count() > 100);
}

#[test]
fn check_refuses_a_plugin_built_with_panic_abort_and_still_lists_it() {
    let lib = build_fixture("plugin-abort");
    let stdout = assert_check(
        &lib,
        1,
        "incompatible",
        "built with panic=abort; plugins must unwind",
    );
    assert!(stdout.contains("    plugin: fixture-abort 0.1.0 (server, client)\n"));
}

#[test]
fn check_refuses_another_abi_stable_line() {
    let lib = build_fixture("plugin-abi-0.10");
    assert_check(
        &lib,
        1,
        "incompatible",
        "built with abi_stable 0.10; this host uses 0.11",
    );
}

#[test]
fn check_runs_no_constructor() {
    // Both of its constructors fail; check only asks it to describe itself.
    let lib = build_fixture("plugin-ctor-fails");
    assert_check(
        &lib,
        0,
        "compatible",
        "plugin: fixture-ctor-fails 0.1.0 (server, client)",
    );
}

#[test]
fn check_says_a_library_without_root_module_is_not_a_plugin() {
    let lib = build_fixture("not-a-plugin");
    assert_check(
        &lib,
        3,
        "unusable",
        "not a gbs plugin (no abi_stable root module)",
    );
}

#[test]
fn check_says_a_missing_file_or_a_file_that_is_no_library_is_unusable() {
    let dir = tempfile::tempdir().unwrap();
    assert_check(&dir.path().join("nope.so"), 3, "unusable", "no such file");
    let text = dir.path().join("text.so");
    std::fs::write(&text, "not ELF at all\n").unwrap();
    let (code, stdout) = check(&text);
    assert_eq!(code, 3, "{stdout}");
    assert!(stdout.contains("\n    cannot load: "), "{stdout}");
}

#[cfg(target_os = "linux")]
#[test]
fn check_survives_a_library_that_crashes_the_process_loading_it() {
    let lib = build_fixture("crashes-on-load");
    assert_check(&lib, 3, "unusable", "the check crashed (signal 6)");
}

#[test]
fn check_finds_a_bare_file_name_in_the_current_directory() {
    // dlopen would search the system directories for a name without a slash.
    let lib = build_fixture("plugin-1.0");
    let name = lib.file_name().unwrap();
    let out = Command::new(gbs_binary())
        .args(["plugin".as_ref(), "check".as_ref(), name])
        .current_dir(lib.parent().unwrap())
        .output()
        .expect("run gbs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn check_of_several_files_reports_each_and_exits_with_the_worst() {
    let good = build_fixture("plugin-1.0");
    let major = build_fixture("plugin-2.0");
    let out = gbs(&[
        "plugin".as_ref(),
        "check".as_ref(),
        good.as_os_str(),
        major.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("{}: compatible\n", good.display())));
    assert!(stdout.contains(&format!("{}: incompatible\n", major.display())));
    let missing = Path::new("/nonexistent/lib.so");
    let out = gbs(&[
        "plugin".as_ref(),
        "check".as_ref(),
        good.as_os_str(),
        missing.as_os_str(),
        major.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(3));
}

/// Inputs tried: a configured library that is a FIFO, and a FIFO named like a library in
/// `plugins/` where another plugin is looked up. `plugin list` answers at once instead of
/// blocking on either.
#[cfg(unix)]
#[test]
fn list_does_not_block_on_a_fifo() {
    let node = tempfile::tempdir().unwrap();
    let plugins = node.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for fifo in ["piped.so", "lookup.so"] {
        let made = Command::new("mkfifo")
            .arg(plugins.join(fifo))
            .status()
            .unwrap();
        assert!(made.success());
    }
    std::fs::write(
        node.path().join("tahoe.cfg"),
        "[node]\ntub.port = tcp:3457:interface=127.0.0.1\n\
         [storage]\nenabled = true\nplugins = piped, looked-up\n\
         [storageserver.plugins.piped]\nlibrary = plugins/piped.so\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = gbs(&["plugin".as_ref(), "list".as_ref(), node.path().as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let mut lines = stdout.lines().skip(1);
    assert_eq!(
        lines.next(),
        Some("    piped (library plugins/piped.so): will not load: not a regular file"),
        "{stdout}"
    );
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("    looked-up (looked up in ")
                && l.contains("): will not load: no compatible library in ")),
        "{stdout}"
    );
}

#[test]
fn list_shows_whether_each_configured_plugin_would_load() {
    let node = tempfile::tempdir().unwrap();
    let plugins = node.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    // Relative to the node directory, as an operator writes it.
    std::fs::copy(build_fixture("plugin-1.0"), plugins.join("good.so")).unwrap();
    // Found by name in plugins/.
    std::fs::copy(
        build_fixture("plugin-ctor-fails"),
        plugins.join("ctor-fails.so"),
    )
    .unwrap();
    let major = build_fixture("plugin-2.0");
    std::fs::write(
        node.path().join("tahoe.cfg"),
        format!(
            "[node]\ntub.port = tcp:3457:interface=127.0.0.1\n\
             [storage]\nenabled = true\nplugins = fixture-1.0, gone, fixture-2.0, fixture-ctor-fails\n\
             [storageserver.plugins.fixture-1.0]\nlibrary = plugins/good.so\n\
             [storageserver.plugins.gone]\nlibrary = plugins/gone.so\n\
             [storageserver.plugins.fixture-2.0]\nlibrary = {}\n\
             [client]\nstorage.plugins = fixture-1.0\n\
             [storageclient.plugins.fixture-1.0]\nlibrary = plugins/good.so\n",
            major.display()
        ),
    )
    .unwrap();
    let out = gbs(&["plugin".as_ref(), "list".as_ref(), node.path().as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let expected = format!(
        "server plugins:\n\
         \x20   fixture-1.0 (library plugins/good.so): would load (version 0.1.0, interface 1.0.0)\n\
         \x20   gone (library plugins/gone.so): will not load: no such file\n\
         \x20   fixture-2.0 (library {major}): will not load: built against plugin interface 2.0; this host speaks 1.x\n\
         \x20   fixture-ctor-fails (looked up in {dir}): would load (version 0.1.0, interface 1.2.0) from {dir}/ctor-fails.so\n\
         client plugins:\n\
         \x20   fixture-1.0 (library plugins/good.so): would load (version 0.1.0, interface 1.0.0)\n",
        major = major.display(),
        dir = plugins.display(),
    );
    assert_eq!(stdout, expected);
}

/// Runs fixture host `host` (`host-1.0`, `host-1.3`) on fixture library `plugin`: exit
/// status and stdout.
fn run_host(host: &str, plugin: &str) -> (i32, String) {
    let out = Command::new(build_fixture(host))
        .arg(build_fixture(plugin))
        .output()
        .unwrap_or_else(|e| panic!("run {host}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().expect("exit status"), stdout)
}

#[test]
fn a_host_a_minor_ahead_loads_plugins_built_against_older_minors() {
    // Inputs tried: plugins on 1.1 and 1.0 (two and three minors behind the host).
    for (plugin, interface, name) in [
        ("plugin-1.1", "1.1.0", "fixture-1.1"),
        ("plugin-1.0", "1.0.0", "fixture-1.0"),
    ] {
        let (code, stdout) = run_host("host-1.3", plugin);
        assert_eq!(code, 0, "{plugin}: {stdout}");
        assert_eq!(
            stdout,
            format!(
                "library interface: {interface}\n\
                 accepted: OlderMinor\n\
                 plugin: {name} 0.1.0\n\
                 features field: None\n\
                 announce: 1 bytes\n\
                 health: 0 bytes (the 1.3 default)\n\
                 OK\n"
            ),
            "{plugin}"
        );
    }
}

#[test]
fn a_host_a_minor_ahead_still_refuses_a_changed_type_in_an_older_plugin() {
    let (code, stdout) = run_host("host-1.3", "plugin-changed");
    assert_eq!(code, 1, "{stdout}");
    // Checked with the layouts swapped, but reported in the host's terms.
    assert!(stdout.ends_with(
        "refused: incompatible type: new_server.param_2.obj.vtable.log.param_1.field_0: mismatched type (expected u8, found i8)\n"
    ), "{stdout}");
}

#[test]
fn a_1_0_host_refuses_a_plugin_only_for_the_1_1_call_it_needs() {
    // Input tried: a plugin on the workspace's interface (1.2) whose server constructor
    // insists on choosing lease renewal, a 1.1 call.
    // The 1.0 host loads it (a newer minor passes abi_stable's own check); the call, missing
    // from the host's vtable, runs the interface's default body, and the constructor fails
    // with it instead of running where leases would be given away.
    let (code, stdout) = run_host("host-1.0", "plugin-lease-renewal");
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(
        stdout,
        "library interface: 1.2.0\n\
         accepted: Checked\n\
         plugin: fixture-lease-renewal 0.1.0\n\
         refused: new_server: unsupported: the host implements plugin interface 1.0; choosing \
         lease renewal needs 1.1\n"
    );

    // Only that call: the same host builds a 1.0 plugin and a 1.1 plugin that does not make
    // it...
    for (plugin, interface, name) in [
        ("plugin-1.0", "1.0.0", "fixture-1.0"),
        ("plugin-1.1", "1.1.0", "fixture-1.1"),
    ] {
        let (code, stdout) = run_host("host-1.0", plugin);
        assert_eq!(code, 0, "{plugin}: {stdout}");
        assert_eq!(
            stdout,
            format!(
                "library interface: {interface}\n\
                 accepted: Checked\n\
                 plugin: {name} 0.1.0\n\
                 announce: 1 bytes\n\
                 OK\n"
            ),
            "{plugin}"
        );
    }
    // ...and a host that has the call builds the plugin that needs it.
    let (code, stdout) = run_host("host-1.3", "plugin-lease-renewal");
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("\nlease renewal: LeaseRenewal(1)\nannounce: 1 bytes\n"),
        "{stdout}"
    );
}

/// One documented change of a snapshot: these whole lines of plugin-interface's file
/// become those.
type Change = (&'static [&'static str], &'static [&'static str]);

/// Documented changes made one list after the other: a snapshot of an older minor undoes
/// each newer minor's additions in turn, newest first.
type Changes = &'static [&'static [Change]];

/// A snapshot's own files, each with its documented changes.
type OwnFiles = &'static [(&'static str, Changes)];

/// A snapshot: its directory, the documented changes to the code of its `lib.rs`, and its
/// own files.
type Snapshot = (&'static str, Changes, OwnFiles);

/// What 1.2 added (declared server hooks), undone: the snapshots of 1.1 and 1.0 lack it.
const BEFORE_1_2_FFI: &[Change] = &[
    (
        &[
            "/// Bit set of the server hooks a plugin implements, so that the host calls no other (added",
            "/// in 1.2; a 1.0 or 1.1 plugin is called for all of them).",
            "#[repr(transparent)]",
            "#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]",
            "pub struct ServerHooks(pub u32);",
            "",
            "impl ServerHooks {",
            "    /// `admit`: without it, every operation the plugin is interested in is admitted with no",
            "    /// call.",
            "    pub const ADMIT: ServerHooks = ServerHooks(1);",
            "    /// `committed`: without it, the plugin is not told of operations that succeeded.",
            "    pub const COMMITTED: ServerHooks = ServerHooks(2);",
            "    /// Both, as a plugin built against 1.0 or 1.1 is treated.",
            "    pub const ALL: ServerHooks = ServerHooks(Self::ADMIT.0 | Self::COMMITTED.0);",
            "",
            "    /// Whether every bit of `other` is set.",
            "    pub const fn contains(self, other: ServerHooks) -> bool {",
            "        self.0 & other.0 == other.0",
            "    }",
            "}",
            "",
            "/// The GBS operations, numbered for [`Interests`]. New kinds get new numbers.",
        ],
        &["/// The GBS operations, numbered for [`Interests`]. New kinds get new numbers."],
    ),
    (
        &[
            "    fn stop(&self) -> FfiFuture<RResult<(), PluginError>>;",
            "",
            "    /// Added in 1.2: the hooks this plugin implements; the host calls no other. A 1.0 or 1.1",
            "    /// plugin lacks it, and this default says it implements them all.",
            "    fn hooks(&self) -> ServerHooks {",
            "        ServerHooks::ALL",
            "    }",
        ],
        &["    fn stop(&self) -> FfiFuture<RResult<(), PluginError>>;"],
    ),
];

const BEFORE_1_2_SDK: &[Change] = &[
    (
        &["    RouteResponse, ServerConnectionBox, ServerConnectionFfi_TO, ServerHooks, ServerPluginFfi,"],
        &["    RouteResponse, ServerConnectionBox, ServerConnectionFfi_TO, ServerPluginFfi,"],
    ),
    (
        &[
            "impl ServerHooks {",
            "    /// Both sets. In a `const` item (such as [`ServerPlugin::HOOKS`]) write",
            "    /// `ServerHooks::ADMIT.union(ServerHooks::COMMITTED)` or [`ServerHooks::ALL`];",
            "    /// elsewhere `|` does the same.",
            "    pub const fn union(self, other: ServerHooks) -> ServerHooks {",
            "        ServerHooks(self.0 | other.0)",
            "    }",
            "}",
            "",
            "impl std::ops::BitOr for ServerHooks {",
            "    type Output = ServerHooks;",
            "",
            "    fn bitor(self, other: ServerHooks) -> ServerHooks {",
            "        self.union(other)",
            "    }",
            "}",
            "",
            "/// A plugin's settings: the keys of its `[storageserver.plugins.NAME]` or",
        ],
        &["/// A plugin's settings: the keys of its `[storageserver.plugins.NAME]` or"],
    ),
    (
        &[
            "pub trait ServerPlugin: Send + Sync + 'static {",
            "    /// Which of [`admit`](Self::admit) and [`committed`](Self::committed) this side",
            "    /// implements: the host calls no other, which saves it a hand-off to the plugin's",
            "    /// thread per operation for each hook left at its default. Name every one you",
            "    /// implement: the host never calls one left out (a unit test that calls it directly",
            "    /// does not notice). Interface 1.2; older hosts call both.",
            "    const HOOKS: ServerHooks = ServerHooks::ALL;",
            "",
        ],
        &["pub trait ServerPlugin: Send + Sync + 'static {"],
    ),
    (
        &[
            "        guarded(move || async move { this.stop().await })",
            "    }",
            "",
            "    fn hooks(&self) -> ServerHooks {",
            "        T::HOOKS",
            "    }",
        ],
        &[
            "        guarded(move || async move { this.stop().await })",
            "    }",
        ],
    ),
];

const BEFORE_1_2_EXPORT: &[Change] = &[(
    &["pub const INTERFACE_VERSION: (u16, u16) = (1, 2);"],
    &["pub const INTERFACE_VERSION: (u16, u16) = (1, 1);"],
)];

const BEFORE_1_2_LIB: &[Change] = &[(
    &["    RouteResponse, ServerHooks,"],
    &["    RouteResponse,"],
)];

/// What 1.1 added (lease renewal, client routes), undone after 1.2's: the snapshot of 1.0.
const BEFORE_1_1_LIB: &[Change] = &[(
    &[
        "    Interests, LeaseRenewal, LogLevel, OperationKind, PluginError, Rejection, Roles, RouteRequest,",
        "    RouteResponse,",
    ],
    &[
        "    Interests, LogLevel, OperationKind, PluginError, Rejection, Roles, RouteRequest, RouteResponse,",
    ],
)];

const BEFORE_1_1_FFI: &[Change] = &[
    (
        &[
            "/// How the host grants leases on the operations a plugin admits (added in 1.1).",
            "#[repr(transparent)]",
            "#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Default)]",
            "pub struct LeaseRenewal(pub u8);",
            "",
            "impl LeaseRenewal {",
            "    /// As stock Tahoe: an allocation renews the lease on the shares the server already has,",
            "    /// and a mutable write renews it on every share written.",
            "    pub const IMPLICIT: Self = Self(0);",
            "    /// Leases only when asked for (`PUT /storage/v1/lease`): an allocation leaves the shares",
            "    /// the server already has alone (new shares still get their first lease), and a mutable",
            "    /// write adds a lease only to written shares without an unexpired one.",
            "    pub const EXPLICIT: Self = Self(1);",
            "}",
            "",
            "/// Severity of a log line sent to the host.",
        ],
        &["/// Severity of a log line sent to the host."],
    ),
    (
        &[
            "    ) -> FfiFuture<RResult<(), PluginError>>;",
            "",
            "    /// Added in 1.1: serves the client plugin's own local resource (a wallet, a price",
            "    /// calculator). A 1.0 plugin has none.",
            "    fn route(&self, request: RouteRequest) -> FfiFuture<RResult<RouteResponse, PluginError>> {",
            "        let _ = request;",
            "        async_ffi::FutureExt::into_ffi(async {",
            "            RResult::ROk(RouteResponse {",
            "                status: 404,",
            "                content_type: \"text/plain; charset=utf-8\".into(),",
            "                body: RVec::from(b\"this plugin has no client route\".to_vec()),",
            "            })",
            "        })",
            "    }",
        ],
        &["    ) -> FfiFuture<RResult<(), PluginError>>;"],
    ),
    (
        &[
            "    fn add_lease(&self, request: RVec<u8>) -> FfiFuture<RResult<(), PluginError>>;",
            "",
            "    /// Added in 1.1: how leases are granted on the operations this plugin admits. Server",
            "    /// side only. A 1.0 host lacks it, and this default says so.",
            "    fn set_lease_renewal(&self, renewal: LeaseRenewal) -> RResult<(), PluginError> {",
            "        let _ = renewal;",
            "        RResult::RErr(PluginError {",
            "            kind: ErrorKind::UNSUPPORTED,",
            "            message: \"the host implements plugin interface 1.0; choosing lease renewal needs 1.1\"",
            "                .into(),",
            "        })",
            "    }",
        ],
        &[
            "    fn add_lease(&self, request: RVec<u8>) -> FfiFuture<RResult<(), PluginError>>;",
        ],
    ),
];

const BEFORE_1_1_EXPORT: &[Change] = &[(
    &["pub const INTERFACE_VERSION: (u16, u16) = (1, 1);"],
    &["pub const INTERFACE_VERSION: (u16, u16) = (1, 0);"],
)];

const BEFORE_1_1_SDK: &[Change] = &[
    (
        &[
            "    ClientPluginFfi, ClientPluginFfi_TO, ErrorKind, HostApiBox, HostApiFfi_TO, Interests,",
            "    LeaseRenewal, LogLevel, OperationKind, PluginError, Rejection, Roles, RouteRequest,",
            "    RouteResponse, ServerConnectionBox, ServerConnectionFfi_TO, ServerPluginFfi,",
            "    ServerPluginFfi_TO,",
        ],
        &[
            "    ClientPluginFfi, ClientPluginFfi_TO, ErrorKind, HostApiBox, HostApiFfi_TO, Interests, LogLevel,",
            "    OperationKind, PluginError, Rejection, Roles, RouteRequest, RouteResponse, ServerConnectionBox,",
            "    ServerConnectionFfi_TO, ServerPluginFfi, ServerPluginFfi_TO,",
        ],
    ),
    (
        &[
            "    }",
            "",
            "    /// Serves the plugin's local resource, for the client's operator (`gbs client --node",
            "    /// DIR client-route NAME ...`): a wallet, a price calculator. Interface 1.1.",
            "    fn route(",
            "        &self,",
            "        request: RouteRequest,",
            "    ) -> impl Future<Output = Result<RouteResponse, PluginError>> + Send {",
            "        let _ = request;",
            "        async { Ok(RouteResponse::text(404, \"this plugin has no client route\")) }",
            "    }",
        ],
        &["    }"],
    ),
    (
        &[
            "    /// Chooses how leases are granted on the operations this plugin admits (server side",
            "    /// only; by default [`LeaseRenewal::IMPLICIT`], as stock Tahoe). A plugin that charges for",
            "    /// leases calls this from its constructor with [`LeaseRenewal::EXPLICIT`]; a host older",
            "    /// than interface 1.1 answers an `unsupported` error, so the plugin can refuse to run",
            "    /// there instead of giving leases away.",
            "    pub fn set_lease_renewal(&self, renewal: LeaseRenewal) -> Result<(), PluginError> {",
            "        self.0.set_lease_renewal(renewal).into_result()",
            "    }",
            "",
            "    /// Adds or renews a lease on given shares (server side only).",
        ],
        &["    /// Adds or renews a lease on given shares (server side only)."],
    ),
    (
        &[
            "    }",
            "",
            "    fn route(&self, request: RouteRequest) -> FfiFuture<RResult<RouteResponse, PluginError>> {",
            "        let this = self.0.clone();",
            "        guarded(move || async move { this.route(request).await })",
            "    }",
            "}",
        ],
        &["    }", "}"],
    ),
];

const BEFORE_1_1_TESTING: &[Change] = &[
    (
        &["use crate::ffi::{HostApiFfi, HostApiFfi_TO, LeaseRenewal, LogLevel, PluginError};"],
        &["use crate::ffi::{HostApiFfi, HostApiFfi_TO, LogLevel, PluginError};"],
    ),
    (
        &[
            "    leases: Mutex<Vec<LeaseRequest>>,",
            "    lease_renewal: Mutex<LeaseRenewal>,",
        ],
        &["    leases: Mutex<Vec<LeaseRequest>>,"],
    ),
    (
        &[
            "        locked(&self.0.leases).clone()",
            "    }",
            "",
            "    /// What the plugin chose with [`Host::set_lease_renewal`].",
            "    pub fn lease_renewal(&self) -> LeaseRenewal {",
            "        *locked(&self.0.lease_renewal)",
            "    }",
        ],
        &["        locked(&self.0.leases).clone()", "    }"],
    ),
    (
        &[
            "        async move { RResult::from(answer) }.into_ffi()",
            "    }",
            "",
            "    fn set_lease_renewal(&self, renewal: LeaseRenewal) -> RResult<(), PluginError> {",
            "        *locked(&self.0.lease_renewal) = renewal;",
            "        RResult::ROk(())",
            "    }",
        ],
        &[
            "        async move { RResult::from(answer) }.into_ffi()",
            "    }",
        ],
    ),
];

/// What the hypothetical 1.3 adds: a root-module field and a server-trait method.
const IN_1_3_FFI: &[Change] = &[
    (
        &["}", "", "impl RootModule for PluginLibraryRef {"],
        &[
            "    /// Added in 1.3: bit set of optional interface features the library supports.",
            "    pub features: extern \"C\" fn() -> u64,",
            "}",
            "",
            "impl RootModule for PluginLibraryRef {",
        ],
    ),
    (
        &["}", "", "/// An owned server plugin object."],
        &[
            "",
            "    /// Added in 1.3: a health report (CBOR); the default reports nothing.",
            "    fn health(&self) -> RResult<RVec<u8>, PluginError> {",
            "        RResult::ROk(RVec::new())",
            "    }",
            "}",
            "",
            "/// An owned server plugin object.",
        ],
    ),
];
const IN_1_3_EXPORT: &[Change] = &[
    (
        &["pub const INTERFACE_VERSION: (u16, u16) = (1, 2);"],
        &["pub const INTERFACE_VERSION: (u16, u16) = (1, 3);"],
    ),
    (
        &["/// Builds the root module for a plugin list. `panic_unwind` must be evaluated in the"],
        &[
            "extern \"C\" fn features() -> u64 {",
            "    1",
            "}",
            "",
            "/// Builds the root module for a plugin list. `panic_unwind` must be evaluated in the",
        ],
    ),
    (
        &["    }", "    .leak_into_prefix()"],
        &["        features,", "    }", "    .leak_into_prefix()"],
    ),
];

/// Where the snapshots' sources live relative to their `src/lib.rs`.
const REAL_SRC: &str = "../../../../plugin-interface/src/";

/// The lines of a `lib.rs` that are code: without its docs (`//!`, `#![doc = ...]`) and
/// without the `#[path]` attributes that point a snapshot's modules at plugin-interface.
fn lib_code(text: &str) -> String {
    let code = text.lines().filter(|l| {
        !l.starts_with("//!") && !l.starts_with("#![doc") && !l.starts_with("#[path = ")
    });
    let code: Vec<&str> = code.skip_while(|l| l.is_empty()).collect();
    code.join("\n")
}

/// `real` with each change made once; the changed lines must be there exactly once, else
/// the change no longer describes the snapshot.
fn apply(real: &str, changes: Changes, what: &str) -> String {
    let block = |lines: &[&str]| format!("\n{}\n", lines.join("\n"));
    let mut text = format!("\n{real}");
    for (from, to) in changes.iter().copied().flatten() {
        let (from, to) = (block(from), block(to));
        assert_eq!(
            text.matches(&from).count(),
            1,
            "{what}: the documented change no longer applies to plugin-interface: {from}"
        );
        text = text.replacen(&from, &to, 1);
    }
    text.split_off(1)
}

/// Panics at the first line where `copy` differs from what it should be.
fn assert_same_text(copy: &str, expected: &str, what: &str) {
    let mut copy_lines = copy.lines();
    for (number, line) in expected.lines().enumerate() {
        let found = copy_lines.next();
        assert!(
            found == Some(line),
            "{what}: line {} is {found:?}, not {line:?}: copy plugin-interface's file again \
             and make the documented change",
            number + 1
        );
    }
    let rest: Vec<&str> = copy_lines.collect();
    assert!(
        rest.is_empty(),
        "{what}: lines more than expected: {rest:?}"
    );
    assert_eq!(
        copy.ends_with('\n'),
        expected.ends_with('\n'),
        "{what}: final newline"
    );
}

/// The snapshots must follow `plugin-interface` except for their documented changes, or
/// the compatibility tests above would test an interface that no longer exists (or, for
/// `interface-1.1` and `interface-1.0`, one that never existed: their changes undo exactly
/// what each later minor added). Each
/// keeps only the files that change (`interface-2.0` none: only its version differs) and
/// takes the others from plugin-interface with `#[path]`.
#[test]
fn interface_snapshots_differ_from_the_interface_only_as_documented() {
    let real_dir = fixtures_dir().join("../../plugin-interface/src");
    let read = |path: &Path| {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let cases: [Snapshot; 4] = [
        (
            "interface-1.3",
            &[],
            &[("ffi.rs", &[IN_1_3_FFI]), ("export.rs", &[IN_1_3_EXPORT])],
        ),
        (
            "interface-1.1",
            &[BEFORE_1_2_LIB],
            &[
                ("ffi.rs", &[BEFORE_1_2_FFI]),
                ("export.rs", &[BEFORE_1_2_EXPORT]),
                ("sdk.rs", &[BEFORE_1_2_SDK]),
            ],
        ),
        (
            "interface-1.0",
            &[BEFORE_1_2_LIB, BEFORE_1_1_LIB],
            &[
                ("ffi.rs", &[BEFORE_1_2_FFI, BEFORE_1_1_FFI]),
                ("export.rs", &[BEFORE_1_2_EXPORT, BEFORE_1_1_EXPORT]),
                ("sdk.rs", &[BEFORE_1_2_SDK, BEFORE_1_1_SDK]),
                ("testing.rs", &[BEFORE_1_1_TESTING]),
            ],
        ),
        (
            "interface-changed",
            &[],
            &[(
                "ffi.rs",
                &[&[(
                    &["pub struct LogLevel(pub u8);"],
                    &["pub struct LogLevel(pub i8);"],
                )]],
            )],
        ),
    ];
    let real_lib = read(&real_dir.join("lib.rs"));
    for (snapshot, lib_changes, own) in cases {
        let src = fixtures_dir().join(snapshot).join("src");
        let mut files: Vec<String> = std::fs::read_dir(&src)
            .expect("list the snapshot")
            .map(|e| {
                e.expect("list the snapshot")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        files.sort();
        let mut expected: Vec<String> = own.iter().map(|(file, _)| (*file).to_owned()).collect();
        expected.push("lib.rs".to_owned());
        expected.sort();
        assert_eq!(
            files, expected,
            "{snapshot}: only the changed files are copies"
        );
        assert!(!fixtures_dir().join(snapshot).join("docs").exists());

        // lib.rs: plugin-interface's code with its documented changes, with every module
        // that is not its own taken from plugin-interface.
        let lib = read(&src.join("lib.rs"));
        let what = format!("{snapshot}/src/lib.rs (without docs and #[path])");
        assert_same_text(
            &lib_code(&lib),
            &lib_code(&apply(&real_lib, lib_changes, &what)),
            &what,
        );
        let mut lines = lib.lines();
        let mut taken = Vec::new();
        while let Some(line) = lines.next() {
            if let Some(path) = line.strip_prefix("#[path = \"") {
                let file = path
                    .strip_prefix(REAL_SRC)
                    .and_then(|p| p.strip_suffix("\"]"))
                    .unwrap_or_else(|| panic!("{snapshot}: {line} is not in plugin-interface"));
                let module = file.strip_suffix(".rs").unwrap_or(file);
                let next = lines.next().unwrap_or_default();
                assert!(
                    [format!("mod {module};"), format!("pub mod {module};")]
                        .contains(&next.to_owned()),
                    "{snapshot}: {line} is not for {next}"
                );
                taken.push(file.to_owned());
            }
        }
        let mut all: Vec<String> = taken.iter().chain(&files).cloned().collect();
        all.sort();
        let mut real_files: Vec<String> = std::fs::read_dir(&real_dir)
            .expect("list plugin-interface")
            .map(|e| {
                e.expect("list plugin-interface")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        real_files.sort();
        assert_eq!(
            all, real_files,
            "{snapshot}: each module once, its own or plugin-interface's"
        );

        for (file, changes) in own {
            let what = format!("{snapshot}/src/{file}");
            let expected = apply(&read(&real_dir.join(file)), changes, &what);
            assert_same_text(&read(&src.join(file)), &expected, &what);
        }
    }

    // interface-2.0 is plugin-interface's own sources under another version.
    let major = fixtures_dir().join("interface-2.0");
    assert!(!major.join("src").exists() && !major.join("docs").exists());
    let manifest = read(&major.join("Cargo.toml"));
    assert!(manifest.contains("\nversion = \"2.0.0\"\n"), "{manifest}");
    assert!(
        manifest.contains("\npath = \"../../../plugin-interface/src/lib.rs\"\n"),
        "{manifest}"
    );
}

/// Input tried: a library whose initialiser sleeps forever. The check gives up at its
/// deadline, kills the child, and says why.
#[cfg(target_os = "linux")]
#[test]
fn check_gives_up_on_a_library_that_hangs_while_loading() {
    let lib = build_fixture("misbehaves-on-load");
    let started = std::time::Instant::now();
    let out = Command::new(gbs_binary())
        .args(["plugin", "check", "--timeout", "1"])
        .arg(&lib)
        .env("GBS_FIXTURE_ON_LOAD", "hang")
        .output()
        .expect("run gbs plugin check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("did not finish within 1 s"), "{stdout}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // The killed child left nothing behind holding the library.
    let ps = Command::new("pgrep")
        .arg("-f")
        .arg(lib.as_os_str())
        .output()
        .unwrap();
    assert!(
        ps.stdout.is_empty(),
        "left running: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
}

/// Input tried: `gbs plugin check` killed (SIGKILL, so it cleans up nothing) while the
/// library it checks hangs in its initialiser after starting a process of its own. The
/// check's child notices and takes its whole process group with it.
#[cfg(target_os = "linux")]
#[test]
fn killing_plugin_check_leaves_no_process_behind() {
    use std::time::{Duration, Instant};
    // A copy, so that other tests looking for processes holding the fixture do not see it.
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libhangs.so");
    std::fs::copy(build_fixture("misbehaves-on-load"), &lib).unwrap();
    let mut parent = Command::new(gbs_binary())
        .args(["plugin", "check", "--timeout", "120"])
        .arg(&lib)
        .env("GBS_FIXTURE_ON_LOAD", "hang-with-child")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run gbs plugin check");
    let group_of = |group: u32| -> Vec<ProcessIds> {
        processes()
            .into_iter()
            .filter(|p| p.group == group)
            .collect()
    };
    // The check's child leads its own group, which holds the library's process too.
    let started = Instant::now();
    let group = loop {
        let child = processes().into_iter().find(|p| p.parent == parent.id());
        if let Some(child) = child.filter(|c| group_of(c.pid).len() >= 2) {
            break child.pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the check never started the library's process"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    parent.kill().expect("kill gbs plugin check");
    parent.wait().expect("reap gbs plugin check");
    let killed = Instant::now();
    while !group_of(group).is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "left running after the check was killed: {:?}",
            group_of(group)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Input tried: a library whose initialiser starts a process in a session of its own (out
/// of reach of the check's group kill) that keeps the check's output open for ten minutes.
/// The check does not wait for it: it ends within its deadline and refuses the library.
#[cfg(target_os = "linux")]
#[test]
fn check_refuses_a_library_that_leaves_a_process_holding_its_output() {
    let lib = build_fixture("misbehaves-on-load");
    let started = std::time::Instant::now();
    let out = Command::new(gbs_binary())
        .args(["plugin", "check", "--timeout", "20"])
        .arg(&lib)
        .env("GBS_FIXTURE_ON_LOAD", "escape")
        .env("GBS_FIXTURE_ESCAPE_SECONDS", "601.5")
        .output()
        .expect("run gbs plugin check");
    let took = started.elapsed();
    let _ = Command::new("pkill").args(["-f", "^sleep 601.5$"]).status();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("left a process running after the check"),
        "{stdout}"
    );
    assert!(took < std::time::Duration::from_secs(15), "took {took:?}");
}

/// Input tried: a library whose initialiser prints a "compatible" report and exits 0.
#[cfg(target_os = "linux")]
#[test]
fn check_does_not_believe_a_report_the_library_prints() {
    let lib = build_fixture("misbehaves-on-load");
    let out = Command::new(gbs_binary())
        .args(["plugin", "check"])
        .arg(&lib)
        .env("GBS_FIXTURE_ON_LOAD", "forge")
        .output()
        .expect("run gbs plugin check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains(": unusable\n"), "{stdout}");
    assert!(!stdout.contains("forged"), "{stdout}");
}

/// Inputs tried: a library whose `describe` never returns, and one whose `describe`
/// panics (the SDK catches the panic, so it declares no plugins, which no node can load).
#[test]
fn check_gives_up_on_a_describe_that_hangs_and_refuses_one_that_panics() {
    let lib = build_fixture("plugin-bad-describe");
    let check_with = |describe: &str| {
        let out = Command::new(gbs_binary())
            .args(["plugin", "check", "--timeout", "2"])
            .arg(&lib)
            .env("GBS_FIXTURE_DESCRIBE", describe)
            .output()
            .expect("run gbs plugin check");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), stdout)
    };
    let started = std::time::Instant::now();
    let (code, stdout) = check_with("hang");
    assert_eq!(code, Some(3), "{stdout}");
    assert!(stdout.contains(": unusable\n"), "{stdout}");
    assert!(stdout.contains("did not finish within 2 s"), "{stdout}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let (code, stdout) = check_with("panic");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains(": incompatible\n"), "{stdout}");
    assert!(
        stdout.contains("declares no plugins (its describe may have panicked)"),
        "{stdout}"
    );
}

/// The crate docs' plugin, built as their `Cargo.toml` says (with the path to this
/// checkout), as a third-party author would from the docs alone: `plugin check` calls it
/// compatible, and a node running it refuses a share over its `max-share-size` with the
/// plugin's 413 and stores a smaller one. Inputs tried: shares of 2,000 and 500 bytes
/// against a limit of 1,000.
#[test]
fn the_crate_docs_plugin_builds_loads_and_refuses_what_it_should() {
    let interface = fixtures_dir().join("../../plugin-interface");
    let docs = std::fs::read_to_string(interface.join("src/lib.rs")).expect("read lib.rs");
    let docs: String = docs
        .lines()
        .filter_map(|line| line.strip_prefix("//!"))
        .map(|line| format!("{}\n", line.strip_prefix(' ').unwrap_or(line)))
        .collect();
    let block_after = |marker: &str, fence: &str| -> String {
        let from = docs.find(marker).expect("the marker in the crate docs");
        let start = docs[from..].find(fence).expect("a code block") + from + fence.len();
        let end = docs[start..].find("```").expect("its end") + start;
        docs[start..end].to_owned()
    };
    let manifest = block_after("# Building a plugin", "```toml\n");
    let code: String = block_after("A complete plugin", "```\n")
        .lines()
        .filter(|line| !line.starts_with("# ") && *line != "#")
        .map(|line| format!("{line}\n"))
        .collect();
    let path = interface.canonicalize().expect("plugin-interface");
    let manifest = manifest.replace(
        "path = \"../gbs-plugins/plugin-interface\"",
        &format!("path = {:?}", path.display().to_string()),
    );
    assert!(
        manifest.contains(&format!("{:?}", path.display().to_string())),
        "{manifest}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        format!("{manifest}\n[workspace]\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("src/lib.rs"), code).unwrap();
    // Versions the fixtures already use, so that the build needs nothing new.
    let lock = std::fs::read_to_string(fixtures_dir().join("plugin-bad-describe/Cargo.lock"))
        .unwrap()
        .replace(
            "name = \"gbs-fixture-plugin-bad-describe\"\nversion = \"0.1.0\"",
            "name = \"size-limit\"\nversion = \"1.0.0\"",
        );
    std::fs::write(dir.path().join("Cargo.lock"), lock).unwrap();
    let library = build_plugin_crate(&dir.path().join("Cargo.toml"), "size-limit");

    let out = gbs(&["plugin".as_ref(), "check".as_ref(), library.as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("plugin: size-limit 1.0.0 (server)"),
        "{stdout}"
    );

    let node = gbs_tests::GbsNode::start_configured(&format!(
        "[storage]\nplugins = size-limit\n[storageserver.plugins.size-limit]\nlibrary = {}\nmax-share-size = 1000\n",
        library.display()
    ));
    let put = |size: usize, shnum: &str| {
        let file = dir.path().join(format!("share-{size}"));
        std::fs::write(&file, vec![7u8; size]).unwrap();
        Command::new(gbs_binary())
            .args([
                "client",
                "--json",
                "put",
                node.nurl(),
                "aaaaaaaaaaaaaaaaaaaaaaaaaa",
                shnum,
            ])
            .arg(&file)
            .output()
            .expect("run gbs client put")
    };
    let refused = put(2000, "0");
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let answer: serde_json::Value = serde_json::from_slice(&refused.stdout).expect("JSON");
    assert_eq!(answer["rejection"]["plugin"], "size-limit");
    assert_eq!(answer["rejection"]["status"], 413);
    assert_eq!(answer["rejection"]["code"], "share-too-large");
    let stored = put(500, "1");
    assert!(stored.status.success(), "{stored:?}");
}

/// Inputs tried: `--timeout` of 0, -1, `soon` and 1e300 seconds, no file, and an unknown
/// flag. Each is a usage error, exit status 2, distinct from every verdict (0, 1, 3).
#[test]
fn plugin_check_usage_errors_exit_with_2() {
    let lib = build_fixture("plugin-1.0");
    let lib = lib.to_str().expect("a UTF-8 path");
    for args in [
        &["--timeout", "0", lib][..],
        &["--timeout", "-1", lib],
        &["--timeout", "soon", lib],
        &["--timeout", "1e300", lib],
        &[],
        &["--bogus", lib],
    ] {
        let out = Command::new(gbs_binary())
            .args(["plugin", "check"])
            .args(args)
            .output()
            .expect("run gbs plugin check");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed a verdict");
    }
}

/// Input tried: a FIFO named like a library; opening it would block forever.
#[cfg(unix)]
#[test]
fn check_refuses_what_is_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("lib.so");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    assert_check(&fifo, 3, "unusable", "not a regular file");
}

/// Input tried: one library declaring a plugin twice and one named `../escape`: the node
/// would refuse both, so the check does.
#[test]
fn check_calls_names_the_node_refuses_incompatible() {
    let lib = build_fixture("plugin-bad-names");
    let stdout = assert_check(
        &lib,
        1,
        "incompatible",
        "declares plugin \"fixture-twin\" more than once",
    );
    assert!(
        stdout.contains("no tahoe.cfg can name it: plugin name \"../escape\""),
        "{stdout}"
    );
}

/// `--json`: one array of verdicts, for scripts.
#[test]
fn check_json_gives_one_verdict_per_file() {
    let good = build_fixture("plugin-1.0");
    let out = gbs(&[
        "plugin".as_ref(),
        "check".as_ref(),
        "--json".as_ref(),
        good.as_os_str(),
        "/nonexistent.so".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    let verdicts: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let statuses: Vec<&str> = verdicts
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, ["compatible", "unusable"]);
    assert_eq!(verdicts[0]["plugins"][0]["name"], "fixture-1.0");
}
