//! The plugins a node's config names, built and ready: [`ServerPlugins`] for the server
//! (dispatch is in `dispatch.rs`) and [`ClientPluginHandle`]s for the client.
//!
//! Loading follows design §6: `library = PATH` (relative to the node directory), or without
//! a source, the first library in `<node>/plugins/` that provides the name. Out-of-process
//! sources (`url`, `command`) are refused here until their adapter exists. Any failure stops
//! start-up with one [`PluginLoadError`] line naming the plugin and the reason.
//!
//! Announcements are taken once, right after each constructor: one that is not a single
//! CBOR item of at most 64 KiB refuses start-up like a failing constructor, so the
//! `GET /storage/v1/plugins` answer is encoded once and never changes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr};
use gbs_plugin_interface::ffi::{
    ClientPluginBox, ClientPluginFfi_TO, Interests, LibraryDescription, PluginDescription,
    PluginLibraryRef, Roles, ServerHooks, ServerPluginBox, ServerPluginFfi_TO,
};
use gbs_plugin_interface::to_cbor;

use super::check::{check_with_this_executable, Status, CHECK_DEADLINE};
use super::data::{is_one_cbor_item, MAX_PLUGIN_DATA};
use super::dispatch::HOOK_DEADLINE;
use super::executor::{NotRun, PluginThread};
use super::host_api::PluginHost;
use super::remote::{self, StartFailure};
use crate::config::{NodeConfig, PluginSource, PluginSpec};
use crate::storage::Store;

/// Why a configured plugin could not be loaded; its `Display` is the one start-up line.
#[derive(Debug, thiserror::Error)]
#[error("storage plugin {plugin}: {reason}")]
#[non_exhaustive]
pub struct PluginLoadError {
    /// The plugin's name from `tahoe.cfg`.
    pub plugin: String,
    /// What went wrong.
    pub reason: LoadFailure,
}

/// The reasons a plugin does not load.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadFailure {
    /// No library file, or no library that provides the name.
    Missing(String),
    /// The library exists but cannot be used by this host.
    Incompatible(String),
    /// The plugin's constructor reported an error (or panicked).
    Constructor(String),
    /// Two plugins with one name.
    Duplicate,
    /// A source this host cannot run yet.
    Unsupported(&'static str),
    /// The plugin's state directory could not be created.
    StateDir(std::io::Error),
    /// The announcement is not a CBOR item of at most 64 KiB.
    BadAnnouncement(String),
    /// The thread its hooks run on could not be started.
    Thread(std::io::Error),
    /// An out-of-process plugin that did not describe itself in time.
    Unavailable(String),
}

impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(why) => write!(f, "missing: {why}"),
            Self::Incompatible(why) => write!(f, "incompatible: {why}"),
            Self::Constructor(why) => write!(f, "constructor failed: {why}"),
            Self::Duplicate => f.write_str("duplicate plugin name"),
            Self::Unsupported(why) => write!(f, "unsupported: {why}"),
            Self::StateDir(e) => write!(f, "cannot create its state directory: {e}"),
            Self::BadAnnouncement(why) => write!(f, "invalid announcement: {why}"),
            Self::Thread(e) => write!(f, "cannot start its thread: {e}"),
            Self::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

impl From<StartFailure> for LoadFailure {
    fn from(failure: StartFailure) -> Self {
        match failure {
            StartFailure::Config(why) => Self::Missing(why),
            StartFailure::Unavailable(why) => Self::Unavailable(why),
            StartFailure::Incompatible(why) => Self::Incompatible(why),
            StartFailure::Io(e) => Self::Thread(e),
        }
    }
}

fn fail(plugin: &str, reason: LoadFailure) -> PluginLoadError {
    PluginLoadError {
        plugin: plugin.to_owned(),
        reason,
    }
}

/// A library opened and described (no plugin constructor has run).
#[derive(Clone)]
pub struct OpenedLibrary {
    /// Where it was loaded from, for messages.
    pub path: PathBuf,
    /// What it says about itself.
    pub description: LibraryDescription,
    /// Its root module.
    pub root: PluginLibraryRef,
    /// The plugin interface version it was built against.
    pub interface: String,
    /// The first 16 bytes of the SHA-256 of its file, in hex (what `gbs plugin status`
    /// shows, and how a reload tells a changed library from the same one).
    pub hash: String,
}

impl fmt::Debug for OpenedLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedLibrary")
            .field("path", &self.path)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// Opens and checks a plugin library without running any plugin constructor; the error is one
/// short line.
pub fn open_library(path: &Path) -> Result<OpenedLibrary, String> {
    let file =
        LibraryFile::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    open_hashed(path, file.hash)
}

/// [`open_library`] for a file whose contents' `hash` is known.
fn open_hashed(path: &Path, hash: String) -> Result<OpenedLibrary, String> {
    super::dylib::open(path)
        .map(|loaded| OpenedLibrary {
            path: loaded.path,
            description: loaded.description,
            root: loaded.root,
            interface: loaded.interface_version,
            hash,
        })
        .map_err(|e| e.to_string())
}

/// A library file's contents, read once, and their hash.
pub(super) struct LibraryFile {
    bytes: Vec<u8>,
    /// The first 16 bytes of the contents' SHA-256, in hex.
    pub(super) hash: String,
}

impl LibraryFile {
    /// Reads the regular file `path` (never a FIFO or a device, which could block or be
    /// endless).
    pub(super) fn read(path: &Path) -> std::io::Result<Self> {
        use sha2::Digest as _;
        if !std::fs::metadata(path)?.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        let bytes = std::fs::read(path)?;
        let hash = short_hex(&sha2::Sha256::digest(&bytes));
        Ok(Self { bytes, hash })
    }

    /// Writes the contents to `<node>/plugins-state/.libraries/<hash>.<ext>` unless that
    /// copy exists; returns the copy's path.
    fn private_copy(&self, node_dir: &Path) -> std::io::Result<PathBuf> {
        let dir = node_dir.join("plugins-state").join(".libraries");
        std::fs::create_dir_all(&dir)?;
        let copy = dir.join(format!("{}.{}", self.hash, std::env::consts::DLL_EXTENSION));
        if copy.is_file() && std::fs::read(&copy).is_ok_and(|existing| existing == self.bytes) {
            return Ok(copy);
        }
        let partial = dir.join(format!(".{}.partial-{}", self.hash, std::process::id()));
        std::fs::write(&partial, &self.bytes)?;
        std::fs::rename(&partial, &copy)?;
        Ok(copy)
    }
}

/// Loads plugin `name` from a private copy of `file` (read from `path`), after checking
/// that copy in a child process: a library that hangs, crashes or lies while loading stops
/// start-up (or a reload) with one line instead of taking the node with it, and replacing
/// or truncating `path` later never touches the code the node runs. Each step is logged
/// before it happens, so a crash in a library's own initialisers still leaves a line
/// naming it.
pub(super) fn open_checked(
    node_dir: &Path,
    name: &str,
    path: &Path,
    file: &LibraryFile,
) -> Result<OpenedLibrary, PluginLoadError> {
    tracing::info!(plugin = name, library = %path.display(), "copying plugin library");
    let copy = file.private_copy(node_dir).map_err(|e| {
        fail(
            name,
            LoadFailure::Missing(format!("cannot copy {}: {e}", path.display())),
        )
    })?;
    tracing::info!(plugin = name, library = %copy.display(), "checking plugin library in a child process");
    let report = check_with_this_executable(&copy, CHECK_DEADLINE);
    if report.status != Status::Compatible {
        return Err(fail(name, LoadFailure::Incompatible(report.reason())));
    }
    tracing::info!(plugin = name, library = %copy.display(), "loading plugin library");
    // The copy holds `file`'s bytes: its hash is known, no need to read it again.
    let mut library = open_hashed(&copy, file.hash.clone())
        .map_err(|e| fail(name, LoadFailure::Incompatible(e)))?;
    // Messages name the file the operator configured, not the private copy.
    library.path = path.to_owned();
    Ok(library)
}

/// Reads the library file that provides `spec` (no library code runs in this process).
pub(super) fn find_library(
    node_dir: &Path,
    spec: &PluginSpec,
) -> Result<(PathBuf, LibraryFile), PluginLoadError> {
    let path = library_path(node_dir, spec)?;
    let file = LibraryFile::read(&path).map_err(|e| {
        fail(
            &spec.name,
            LoadFailure::Missing(format!("cannot read {}: {e}", path.display())),
        )
    })?;
    Ok((path, file))
}

/// Finds and loads the library that provides `spec`.
fn locate(node_dir: &Path, spec: &PluginSpec) -> Result<OpenedLibrary, PluginLoadError> {
    let (path, file) = find_library(node_dir, spec)?;
    open_checked(node_dir, &spec.name, &path, &file)
}

/// The path of the library that provides `spec`: the configured one, or the first in
/// `<node>/plugins/` whose description (read in a child process) names the plugin.
fn library_path(node_dir: &Path, spec: &PluginSpec) -> Result<PathBuf, PluginLoadError> {
    match &spec.source {
        PluginSource::Library(path) => {
            let path = node_dir.join(path);
            if !path.is_file() {
                return Err(fail(
                    &spec.name,
                    LoadFailure::Missing(format!("no file {}", path.display())),
                ));
            }
            Ok(path)
        }
        PluginSource::Lookup => {
            let dir = node_dir.join("plugins");
            let mut candidates: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| {
                            p.is_file()
                                && p.file_name()
                                    .and_then(|n| n.to_str())
                                    .is_some_and(|n| n.ends_with(std::env::consts::DLL_SUFFIX))
                        })
                        .collect()
                })
                .unwrap_or_default();
            candidates.sort();
            for path in candidates {
                // Each candidate is only described in a child process; the one that
                // provides the name is then copied, checked again and loaded.
                let report = check_with_this_executable(&path, CHECK_DEADLINE);
                if report.plugins.iter().any(|p| p.name == spec.name) {
                    return Ok(path);
                }
                tracing::debug!(path = %path.display(), reason = %report.reason(), "does not provide the plugin");
            }
            Err(fail(
                &spec.name,
                LoadFailure::Missing(format!(
                    "no library in {} provides it (set library = PATH)",
                    dir.display()
                )),
            ))
        }
        PluginSource::Url(_) | PluginSource::Command(_) => Err(fail(
            &spec.name,
            LoadFailure::Unsupported(
                "out-of-process client plugins (url, command) are not available yet",
            ),
        )),
    }
}

fn describes<'a>(description: &'a LibraryDescription, name: &str) -> Option<&'a PluginDescription> {
    description.plugins.iter().find(|p| p.name.as_str() == name)
}

/// Checks that `library` provides `name` once, for `role`, and can catch its panics.
fn check<'a>(
    library: &'a OpenedLibrary,
    name: &str,
    role: Roles,
) -> Result<&'a PluginDescription, PluginLoadError> {
    let description = &library.description;
    let found = describes(description, name).ok_or_else(|| {
        fail(
            name,
            LoadFailure::Missing(format!(
                "{} provides no plugin of that name",
                library.path.display()
            )),
        )
    })?;
    if description
        .plugins
        .iter()
        .filter(|p| p.name.as_str() == name)
        .count()
        > 1
    {
        return Err(fail(name, LoadFailure::Duplicate));
    }
    if !description.panic_unwind {
        return Err(fail(
            name,
            LoadFailure::Incompatible("built with panic=abort; plugins must unwind".into()),
        ));
    }
    if !found.roles.contains(role) {
        let side = if role == Roles::SERVER {
            "server"
        } else {
            "client"
        };
        return Err(fail(
            name,
            LoadFailure::Incompatible(format!("it has no {side} side")),
        ));
    }
    Ok(found)
}

/// What identifies an out-of-process plugin's source for a reload: the same text in the
/// same kind of key keeps the running plugin.
pub(super) fn remote_identity(source: &PluginSource) -> String {
    match source {
        PluginSource::Url(url) => format!("url {url}"),
        PluginSource::Command(command) => format!("command {command}"),
        PluginSource::Library(_) | PluginSource::Lookup => String::new(),
    }
}

/// For a `command =` plugin, the first 16 bytes (hex) of a SHA-256 over the files its
/// command line names (each word that is a regular file, relative to the node directory, in
/// order: a script, a binary), so that a reload tells an edited script from the same one.
/// Empty when it names none, and for a `url =` service, which the operator runs.
pub(super) fn remote_files_hash(node_dir: &Path, source: &PluginSource) -> String {
    use sha2::Digest as _;
    let PluginSource::Command(command) = source else {
        return String::new();
    };
    let mut digest = sha2::Sha256::new();
    let mut named = false;
    for word in remote::split_command(command).unwrap_or_default() {
        let path = node_dir.join(&word);
        // Only regular files, looked at before opening: opening a FIFO would block.
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Ok(mut file) = std::fs::File::open(&path) else {
            continue;
        };
        digest.update(word.as_bytes());
        digest.update([0]);
        if std::io::copy(&mut file, &mut digest).is_err() {
            digest.update(b"unreadable");
        }
        named = true;
    }
    if !named {
        return String::new();
    }
    short_hex(&digest.finalize())
}

/// The first 16 bytes of a SHA-256 digest in hex: how a plugin's files are named in
/// `gbs plugin status` and told apart by a reload.
fn short_hex(digest: &[u8]) -> String {
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn settings_cbor(settings: &BTreeMap<String, String>) -> Vec<u8> {
    to_cbor(settings)
}

/// One loaded server plugin. A reload that leaves its library and settings unchanged
/// carries the same entry into the new set, so it is neither rebuilt nor restarted.
pub(super) struct ServerEntry {
    pub(super) name: String,
    pub(super) interests: Interests,
    /// The hooks it implements: the host calls no other (interface 1.2).
    pub(super) hooks: ServerHooks,
    pub(super) object: Arc<ServerPluginBox>,
    /// Where its hooks run (see `executor`).
    pub(super) thread: PluginThread,
    pub(super) host: PluginHost,
    /// Where it came from, for `gbs plugin status` and reloads.
    pub(super) origin: Origin,
    /// Its entry in the `GET /storage/v1/plugins` list.
    pub(super) listed: ciborium::Value,
    /// Hook calls made and failed.
    pub(super) stats: HookStats,
    /// Its background service once started; taken by `stop`.
    pub(super) service: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What a server plugin was built from.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    pub(super) version: String,
    pub(super) interface: String,
    pub(super) library: PathBuf,
    pub(super) hash: String,
    pub(super) settings: BTreeMap<String, String>,
    pub(super) since: std::time::SystemTime,
}

/// Counts of a plugin's hook calls.
#[derive(Debug, Default)]
pub(super) struct HookStats {
    pub(super) calls: std::sync::atomic::AtomicU64,
    pub(super) failures: std::sync::atomic::AtomicU64,
}

/// The server plugins of a node, in config order, with the hook dispatch the server calls.
pub struct ServerPlugins {
    pub(super) plugins: Vec<Arc<ServerEntry>>,
    /// Union of every plugin's interests: an operation outside it costs one bit test.
    pub(super) interests: Interests,
    /// The encoded `GET /storage/v1/plugins` answer.
    pub(super) listing: Vec<u8>,
    /// How long one hook call may take.
    pub(super) deadline: Duration,
}

impl fmt::Debug for ServerPlugins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.plugins.iter().map(|p| &p.name))
            .finish()
    }
}

impl ServerPlugins {
    /// No plugins: every hook is a no-op.
    pub fn none() -> Self {
        ServerPluginsBuilder::new(Path::new(""), None).build()
    }

    /// Loads every plugin `config` names for the server, in order, running constructors.
    pub fn load(config: &NodeConfig, store: Arc<Store>) -> Result<Self, PluginLoadError> {
        let mut builder = ServerPluginsBuilder::new(&config.node_dir, Some(store));
        builder.deadline(config.limits.plugin_deadline);
        for spec in &config.server_plugins {
            if builder.contains(&spec.name) {
                return Err(fail(&spec.name, LoadFailure::Duplicate));
            }
            match &spec.source {
                PluginSource::Url(_) | PluginSource::Command(_) => {
                    builder.add_remote(&spec.name, &spec.source, &spec.settings)?;
                }
                PluginSource::Library(_) | PluginSource::Lookup => {
                    let library = locate(&config.node_dir, spec)?;
                    builder.add(&spec.name, &spec.settings, &library)?;
                }
            }
        }
        Ok(builder.build())
    }

    /// Whether a plugin of that name is loaded.
    pub fn contains(&self, name: &str) -> bool {
        self.entry(name).is_some()
    }

    pub(super) fn entry(&self, name: &str) -> Option<&Arc<ServerEntry>> {
        self.plugins.iter().find(|p| p.name == name)
    }

    /// Whether no plugin is loaded.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// The names of the loaded plugins, in config order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.plugins.iter().map(|p| p.name.as_str())
    }

    /// The encoded `GET /storage/v1/plugins` answer: a CBOR list of
    /// `{"name": tstr, "version": tstr, "announcement": any}`.
    pub fn listing(&self) -> &[u8] {
        &self.listing
    }

    /// A snapshot of the counters a plugin keeps through the host API.
    pub fn counters(&self, name: &str) -> Option<BTreeMap<String, u64>> {
        self.entry(name).map(|p| p.host.counters())
    }
}

/// Builds [`ServerPlugins`] from opened libraries; [`ServerPlugins::load`] uses it, and
/// tests use it with libraries linked into the test binary.
#[derive(Debug)]
pub struct ServerPluginsBuilder {
    node_dir: PathBuf,
    store: Option<Arc<Store>>,
    plugins: Vec<Arc<ServerEntry>>,
    deadline: Duration,
    inline: bool,
}

impl fmt::Debug for ServerEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl ServerPluginsBuilder {
    /// Plugins of the node at `node_dir` (their state goes under `plugins-state/`), with
    /// storage access for the host API when `store` is given.
    pub fn new(node_dir: &Path, store: Option<Arc<Store>>) -> Self {
        Self {
            node_dir: node_dir.to_owned(),
            store,
            plugins: Vec::new(),
            deadline: HOOK_DEADLINE,
            inline: false,
        }
    }

    /// Runs the hooks of the plugins added next on the caller's task instead of a thread of
    /// their own, as before plugins were isolated, so that `gbs-plugin-bench` can show what
    /// the isolation costs. A blocked plugin then blocks the server: never for a node.
    #[doc(hidden)]
    pub fn without_isolation(&mut self) -> &mut Self {
        self.inline = true;
        self
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.plugins.iter().any(|p| p.name == name)
    }

    /// Builds plugin `name` of `library` with `settings` and takes its announcement.
    pub fn add(
        &mut self,
        name: &str,
        settings: &BTreeMap<String, String>,
        library: &OpenedLibrary,
    ) -> Result<&mut Self, PluginLoadError> {
        if self.contains(name) {
            return Err(fail(name, LoadFailure::Duplicate));
        }
        let description = check(library, name, Roles::SERVER)?;
        let host = PluginHost::new(&self.node_dir, name, self.store.clone())
            .map_err(|e| fail(name, LoadFailure::StateDir(e)))?;
        // The constructor and `announce` run on the plugin's own thread under the hook
        // deadline: one that hangs stops start-up with a line instead of hanging it.
        let thread = if self.inline {
            PluginThread::inline()
        } else {
            PluginThread::spawn(name).map_err(|e| fail(name, LoadFailure::Thread(e)))?
        };
        let constructor = library.root.new_server();
        let (owned_name, settings_cbor, host_ffi) =
            (name.to_owned(), settings_cbor(settings), host.to_ffi());
        let built = thread.run_sync(
            move || {
                let object = match constructor(
                    RStr::from_str(&owned_name),
                    settings_cbor.into(),
                    host_ffi,
                ) {
                    RResult::ROk(object) => object,
                    RResult::RErr(error) => return Err(error.to_string()),
                };
                let announcement = object.announce();
                let hooks = object.hooks();
                Ok((object, announcement, hooks))
            },
            self.deadline,
        );
        let (object, announced, hooks) = match built {
            Ok(Ok(built)) => built,
            Ok(Err(error)) => return Err(fail(name, LoadFailure::Constructor(error))),
            Err(NotRun::TimedOut) => {
                return Err(fail(
                    name,
                    LoadFailure::Constructor(format!("did not return within {:?}", self.deadline)),
                ))
            }
            Err(_) => return Err(fail(name, LoadFailure::Constructor("panicked".to_owned()))),
        };
        let announcement = match announced {
            RResult::ROk(bytes) if bytes.len() > MAX_PLUGIN_DATA => {
                return Err(fail(
                    name,
                    LoadFailure::BadAnnouncement(format!("{} bytes", bytes.len())),
                ))
            }
            RResult::ROk(bytes) if is_one_cbor_item(&bytes) => {
                ciborium::from_reader::<ciborium::Value, _>(bytes.as_slice())
                    .map_err(|e| fail(name, LoadFailure::BadAnnouncement(e.to_string())))?
            }
            RResult::ROk(_) => {
                return Err(fail(
                    name,
                    LoadFailure::BadAnnouncement("not a single CBOR item".into()),
                ))
            }
            RResult::RErr(error) => {
                return Err(fail(name, LoadFailure::BadAnnouncement(error.to_string())))
            }
        };
        tracing::info!(plugin = name, version = %description.version, library = %library.path.display(), "storage plugin loaded");
        let origin = Origin {
            version: description.version.as_str().to_owned(),
            interface: library.interface.clone(),
            library: library.path.clone(),
            hash: library.hash.clone(),
            settings: settings.clone(),
            since: std::time::SystemTime::now(),
        };
        self.push(
            name,
            description.interests,
            hooks,
            object,
            thread,
            host,
            origin,
            announcement,
        );
        Ok(self)
    }

    /// Starts (`command`) or connects to (`url`) the out-of-process plugin `name` and
    /// takes its description, at most the hook deadline after starting it.
    pub fn add_remote(
        &mut self,
        name: &str,
        source: &PluginSource,
        settings: &BTreeMap<String, String>,
    ) -> Result<&mut Self, PluginLoadError> {
        if self.contains(name) {
            return Err(fail(name, LoadFailure::Duplicate));
        }
        let host = PluginHost::new(&self.node_dir, name, self.store.clone())
            .map_err(|e| fail(name, LoadFailure::StateDir(e)))?;
        let (remote, description) = remote::start(
            name,
            Roles::SERVER,
            source,
            settings,
            &self.node_dir,
            host.state_path(),
            self.deadline,
        )
        .map_err(|failure| fail(name, failure.into()))?;
        let identity = remote_identity(source);
        tracing::info!(plugin = name, version = %description.version, source = %identity, "out-of-process storage plugin loaded");
        let origin = Origin {
            version: description.version.clone(),
            interface: format!("out-of-process {}", remote::PROTOCOL),
            // Where it comes from, for status and reloads.
            library: PathBuf::from(identity),
            hash: remote_files_hash(&self.node_dir, source),
            settings: settings.clone(),
            since: std::time::SystemTime::now(),
        };
        let object = ServerPluginFfi_TO::from_value(remote, TD_Opaque);
        // Its hooks only wait on sockets: they run on the request's task.
        let thread = PluginThread::inline();
        let announcement = description.announcement;
        self.push(
            name,
            description.interests,
            description.hooks,
            object,
            thread,
            host,
            origin,
            announcement,
        );
        Ok(self)
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        name: &str,
        interests: Interests,
        hooks: ServerHooks,
        object: ServerPluginBox,
        thread: PluginThread,
        host: PluginHost,
        origin: Origin,
        announcement: ciborium::Value,
    ) {
        let text = |s: &str| ciborium::Value::Text(s.to_owned());
        let listed = ciborium::Value::Map(vec![
            (text("name"), text(name)),
            (text("version"), text(&origin.version)),
            (text("announcement"), announcement),
        ]);
        self.plugins.push(Arc::new(ServerEntry {
            name: name.to_owned(),
            interests,
            hooks,
            object: Arc::new(object),
            thread,
            host,
            origin,
            listed,
            stats: HookStats::default(),
            service: std::sync::Mutex::new(None),
        }));
    }

    /// The version of the plugin added last.
    pub(super) fn last_version(&self) -> &str {
        self.plugins
            .last()
            .map_or("", |p| p.origin.version.as_str())
    }

    /// Carries a plugin of the current set into this one as it is (a reload that did not
    /// change it).
    pub(super) fn keep(&mut self, entry: Arc<ServerEntry>) -> &mut Self {
        self.plugins.push(entry);
        self
    }

    /// How long one hook call may take (default [`HOOK_DEADLINE`]).
    pub fn deadline(&mut self, deadline: Duration) -> &mut Self {
        self.deadline = deadline;
        self
    }

    /// The finished set.
    pub fn build(self) -> ServerPlugins {
        let interests = self
            .plugins
            .iter()
            .fold(Interests(0), |all, p| all.union(p.interests));
        let listing = self.plugins.iter().map(|p| p.listed.clone()).collect();
        ServerPlugins {
            listing: to_cbor(&ciborium::Value::Array(listing)),
            plugins: self.plugins,
            interests,
            deadline: self.deadline,
        }
    }
}

/// One client plugin, built and ready to hand to [`crate::client::ClientBuilder::plugin`].
#[derive(Clone)]
pub struct ClientPluginHandle {
    pub(crate) name: Arc<str>,
    pub(crate) object: Arc<ClientPluginBox>,
}

impl fmt::Debug for ClientPluginHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientPluginHandle")
            .field(&self.name)
            .finish()
    }
}

impl ClientPluginHandle {
    /// Builds the client side of plugin `name` of `library`; its state directory is under
    /// `<node_dir>/plugins-state/`.
    pub fn build(
        node_dir: &Path,
        name: &str,
        settings: &BTreeMap<String, String>,
        library: &OpenedLibrary,
    ) -> Result<Self, PluginLoadError> {
        check(library, name, Roles::CLIENT)?;
        let host = PluginHost::new(node_dir, name, None)
            .map_err(|e| fail(name, LoadFailure::StateDir(e)))?;
        let constructor = library.root.new_client();
        match constructor(
            RStr::from_str(name),
            settings_cbor(settings).into(),
            host.to_ffi(),
        ) {
            RResult::ROk(object) => Ok(Self {
                name: name.into(),
                object: Arc::new(object),
            }),
            RResult::RErr(error) => Err(fail(name, LoadFailure::Constructor(error.to_string()))),
        }
    }

    /// Loads every client plugin `config` names, in order.
    pub fn load_all(config: &NodeConfig) -> Result<Vec<Self>, PluginLoadError> {
        let mut loaded: Vec<Self> = Vec::new();
        for spec in &config.client_plugins {
            if loaded.iter().any(|p| *p.name == *spec.name) {
                return Err(fail(&spec.name, LoadFailure::Duplicate));
            }
            loaded.push(match &spec.source {
                PluginSource::Url(_) | PluginSource::Command(_) => {
                    Self::remote(&config.node_dir, spec, config.limits.plugin_deadline)?
                }
                PluginSource::Library(_) | PluginSource::Lookup => {
                    let library = locate(&config.node_dir, spec)?;
                    Self::build(&config.node_dir, &spec.name, &spec.settings, &library)?
                }
            });
        }
        Ok(loaded)
    }

    /// Starts (`command`) or connects to (`url`) the out-of-process client plugin of
    /// `spec`; its process, if any, stops when the last handle goes.
    pub fn remote(
        node_dir: &Path,
        spec: &PluginSpec,
        deadline: Duration,
    ) -> Result<Self, PluginLoadError> {
        let name = spec.name.as_str();
        let host = PluginHost::new(node_dir, name, None)
            .map_err(|e| fail(name, LoadFailure::StateDir(e)))?;
        let (remote, _) = remote::start(
            name,
            Roles::CLIENT,
            &spec.source,
            &spec.settings,
            node_dir,
            host.state_path(),
            deadline,
        )
        .map_err(|failure| fail(name, failure.into()))?;
        Ok(Self {
            name: name.into(),
            object: Arc::new(ClientPluginFfi_TO::from_value(remote, TD_Opaque)),
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_hashed_by_the_files_it_names() {
        let dir = tempfile::tempdir().expect("temp dir");
        let command = |line: &str| PluginSource::Command(line.to_owned());
        std::fs::write(dir.path().join("plugin.py"), "print('a')\n").expect("write");
        let before = remote_files_hash(dir.path(), &command("python3 plugin.py --flag"));
        assert_eq!(before.len(), 32, "{before}");
        std::fs::write(dir.path().join("plugin.py"), "print('b')\n").expect("write");
        let after = remote_files_hash(dir.path(), &command("python3 plugin.py --flag"));
        assert_ne!(before, after, "an edited script is another plugin");
        // Tried: a FIFO among the words (opening it would block until a writer came), a
        // directory, and no file at all; and a service the operator runs.
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            dir.path().join("fifo"),
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .expect("mkfifo");
        let with_fifo = remote_files_hash(dir.path(), &command("python3 plugin.py fifo ."));
        assert_eq!(with_fifo.len(), 32, "{with_fifo}");
        assert_eq!(
            remote_files_hash(dir.path(), &command("python3 -m quota")),
            ""
        );
        let url = PluginSource::Url("unix:/run/plugin.sock".into());
        assert_eq!(remote_files_hash(dir.path(), &url), "");
    }
}
