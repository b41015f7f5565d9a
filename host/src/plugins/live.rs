//! The server plugins a running node uses, replaceable while it serves (design §10).
//!
//! [`LivePlugins`] holds the current [`ServerPlugins`]. Each request takes the set once, at
//! its `admit`, and keeps it to its `committed`, so a request in flight finishes with the set
//! it started with. [`LivePlugins::reload`] re-reads the plugin configuration, builds the next
//! set beside the current one and switches to it in one step:
//!
//! - a plugin whose library file (by content hash) and settings are unchanged is **kept**:
//!   the same object, not rebuilt, not restarted;
//! - a new or changed one is checked and built as at start-up (child-process check, private
//!   copy, constructor on its own thread under the hook deadline): **added** or **replaced**;
//! - one the configuration no longer names is **removed**;
//! - if any plugin is **refused**, nothing changes: the node keeps the set it had.
//!
//! Plugins leaving the set get `stop` once no request holds the old set any more (at most the
//! drain timeout after the switch). While a plugin is being replaced, its old and new
//! versions both exist for a moment and share its state directory. A replaced library stays
//! mapped (libraries are never unloaded, see `dylib`): each distinct library version loaded
//! costs its mapping for the life of the process.
//!
//! Only the plugin configuration is re-read (`[storage] plugins` and the plugins' sections);
//! every other setting takes effect at the next start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use gbs_plugin_interface::ffi::{OperationKind, RouteRequest, RouteResponse};
use gbs_plugin_interface::{Operation, Outcome};
use serde::{Deserialize, Serialize};

use super::data::PluginData;
use super::dispatch::{stop_plugin, Admission, Refusal, HOOK_NAMES};
use super::registry::{
    find_library, open_checked, remote_files_hash, remote_identity, LoadFailure, PluginLoadError,
    ServerEntry, ServerPlugins, ServerPluginsBuilder,
};
use crate::config::{NodeConfig, PluginSource};
use crate::storage::{LeaseRenewal, Store};

/// The server plugins of a running node.
#[derive(Debug)]
pub struct LivePlugins {
    current: RwLock<Arc<ServerPlugins>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Where a reload reads its configuration; `None` for a fixed set.
    source: Option<Source>,
    /// How long retired plugins wait for requests still using them before `stop`.
    retire_after: Duration,
}

#[derive(Debug)]
struct Source {
    node_dir: PathBuf,
    store: Arc<Store>,
}

/// An operation the current set admitted; hand it back to [`LivePlugins::committed`].
#[derive(Debug)]
#[must_use = "pass the admission to `committed` after the operation succeeds"]
pub struct Admitted {
    /// The set that admitted it, when some plugin was asked.
    plugins: Option<Arc<ServerPlugins>>,
    admission: Admission,
}

impl Admitted {
    /// How the admitted operation grants leases.
    pub fn lease_renewal(&self) -> LeaseRenewal {
        self.admission.lease_renewal()
    }
}

impl LivePlugins {
    /// A set that never changes (reload refuses).
    pub fn fixed(plugins: Arc<ServerPlugins>) -> Self {
        Self {
            current: RwLock::new(plugins),
            reloading: tokio::sync::Mutex::new(()),
            source: None,
            retire_after: Duration::ZERO,
        }
    }

    /// Loads the plugins `config` names; reloads re-read `config`'s node directory.
    pub fn load(config: &NodeConfig, store: Arc<Store>) -> Result<Self, PluginLoadError> {
        let plugins = ServerPlugins::load(config, store.clone())?;
        Ok(Self {
            current: RwLock::new(Arc::new(plugins)),
            reloading: tokio::sync::Mutex::new(()),
            source: Some(Source {
                node_dir: config.node_dir.clone(),
                store,
            }),
            retire_after: config.limits.drain_timeout,
        })
    }

    /// The set new requests use.
    pub fn current(&self) -> Arc<ServerPlugins> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// [`ServerPlugins::admit`] on the current set, which the admission then keeps. An
    /// operation no plugin is interested in takes no reference to the set.
    pub async fn admit(
        &self,
        kind: OperationKind,
        operation: impl FnOnce() -> Operation,
        data: &PluginData,
    ) -> Result<Admitted, Refusal> {
        let plugins = {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            if !current.interests.contains(kind) {
                return Ok(Admitted {
                    plugins: None,
                    admission: Admission::default(),
                });
            }
            current.clone()
        };
        let admission = plugins.admit(kind, operation, data).await?;
        Ok(Admitted {
            plugins: Some(plugins),
            admission,
        })
    }

    /// [`ServerPlugins::committed`] on the set that admitted the operation.
    pub async fn committed(&self, admitted: Admitted, outcome: impl FnOnce() -> Outcome) {
        if let Some(plugins) = admitted.plugins {
            plugins.committed(admitted.admission, outcome).await;
        }
    }

    /// [`ServerPlugins::route`] on the current set.
    pub async fn route(&self, name: &str, request: RouteRequest) -> Result<RouteResponse, Refusal> {
        self.current().route(name, request).await
    }

    /// Whether the current set has a plugin of that name.
    pub fn contains(&self, name: &str) -> bool {
        self.current().contains(name)
    }

    /// The current set's `GET /storage/v1/plugins` answer.
    pub fn listing(&self) -> Vec<u8> {
        self.current().listing().to_vec()
    }

    /// Starts the current set's background services.
    pub fn start_services(&self) {
        self.current().start_services();
    }

    /// Stops the current set's background services (at shutdown).
    pub async fn stop_services(&self) {
        self.current().stop_services().await;
    }

    /// What is loaded now, for `gbs plugin status`.
    pub fn status(&self) -> Vec<PluginStatus> {
        use std::sync::atomic::Ordering::Relaxed;
        self.current()
            .plugins
            .iter()
            .map(|p| PluginStatus {
                name: p.name.clone(),
                version: p.origin.version.clone(),
                interface: p.origin.interface.clone(),
                library: p.origin.library.clone(),
                library_hash: p.origin.hash.clone(),
                since: p
                    .origin
                    .since
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                hooks: HOOK_NAMES
                    .iter()
                    .filter(|(_, hook)| p.hooks.contains(*hook))
                    .map(|(name, _)| (*name).to_owned())
                    .collect(),
                calls: p.stats.calls.load(Relaxed),
                failures: p.stats.failures.load(Relaxed),
                counters: p.host.counters(),
            })
            .collect()
    }

    /// Re-reads the plugin configuration and switches to the set it names, or keeps the
    /// current one if any plugin is refused (see the module docs). One reload at a time.
    pub async fn reload(self: &Arc<Self>) -> ReloadReport {
        let report = self.try_reload().await;
        if report.applied {
            tracing::info!("storage plugins reloaded");
        } else {
            let why = report.error.as_deref().unwrap_or("refused");
            tracing::error!("storage plugin reload not applied: {why}");
        }
        for change in &report.plugins {
            tracing::info!(plugin = %change.name, "plugin reload: {}", change.change);
        }
        report
    }

    async fn try_reload(self: &Arc<Self>) -> ReloadReport {
        let _one_at_a_time = self.reloading.lock().await;
        let Some(source) = &self.source else {
            return ReloadReport::refused("this node's plugins cannot be reloaded");
        };
        let current = self.current();
        let (node_dir, store, old) = (source.node_dir.clone(), source.store.clone(), current);
        let planned = tokio::task::spawn_blocking(move || plan(&node_dir, store, &old)).await;
        let (next, changes) = match planned {
            Ok(Ok(planned)) => planned,
            Ok(Err(report)) => return report,
            Err(error) => return ReloadReport::refused(&format!("reload failed: {error}")),
        };
        let next = Arc::new(next);
        let old = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(|e| e.into_inner()),
            next.clone(),
        );
        next.start_services();
        let retired: Vec<Arc<ServerEntry>> = old
            .plugins
            .iter()
            .filter(|p| !next.plugins.iter().any(|n| Arc::ptr_eq(n, p)))
            .cloned()
            .collect();
        let deadline = next.deadline;
        tokio::spawn(retire(
            Arc::downgrade(&old),
            retired,
            self.retire_after,
            deadline,
        ));
        drop(old);
        ReloadReport {
            applied: true,
            error: None,
            plugins: changes,
        }
    }
}

/// Waits until no request holds the old set (or `wait` passes), then stops the plugins
/// that left it.
async fn retire(
    old: std::sync::Weak<ServerPlugins>,
    retired: Vec<Arc<ServerEntry>>,
    wait: Duration,
    deadline: Duration,
) {
    let since = tokio::time::Instant::now();
    while old.strong_count() > 0 && since.elapsed() < wait {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for plugin in retired {
        stop_plugin(&plugin, deadline).await;
        tracing::info!(plugin = %plugin.name, version = %plugin.origin.version, "retired storage plugin stopped");
    }
}

/// Builds the set the configuration in `node_dir` names, reusing `old`'s unchanged
/// plugins; blocking (child-process checks, constructors).
fn plan(
    node_dir: &Path,
    store: Arc<Store>,
    old: &ServerPlugins,
) -> Result<(ServerPlugins, Vec<PluginChange>), ReloadReport> {
    let config = NodeConfig::load(node_dir).map_err(|e| ReloadReport::refused(&e.to_string()))?;
    let mut builder = ServerPluginsBuilder::new(node_dir, Some(store));
    builder.deadline(old.deadline);
    let mut changes = Vec::new();
    let mut refused = false;
    for spec in &config.server_plugins {
        let previous = old.entry(&spec.name);
        let built = if builder.contains(&spec.name) {
            Err(PluginLoadError {
                plugin: spec.name.clone(),
                reason: LoadFailure::Duplicate,
            })
        } else {
            let changed = |builder: &ServerPluginsBuilder| {
                let version = builder.last_version().to_owned();
                match previous {
                    Some(entry) => Change::Replaced {
                        from: entry.origin.version.clone(),
                        to: version,
                    },
                    None => Change::Added { version },
                }
            };
            // The same library contents (wherever the file is), or the same out-of-process
            // source line and the same files it names; and the same settings.
            let unchanged = |hash: &str, source_line: Option<&Path>| {
                previous.filter(|entry| {
                    entry.origin.hash == hash
                        && source_line.is_none_or(|line| entry.origin.library == line)
                        && entry.origin.settings == spec.settings
                })
            };
            let kept = |builder: &mut ServerPluginsBuilder, entry: &Arc<ServerEntry>| {
                builder.keep(entry.clone());
                Change::Kept {
                    version: entry.origin.version.clone(),
                }
            };
            match &spec.source {
                PluginSource::Url(_) | PluginSource::Command(_) => {
                    let hash = remote_files_hash(node_dir, &spec.source);
                    let line = remote_identity(&spec.source);
                    match unchanged(&hash, Some(Path::new(&line))) {
                        Some(entry) => Ok(kept(&mut builder, entry)),
                        None => builder
                            .add_remote(&spec.name, &spec.source, &spec.settings)
                            .map(|builder| changed(builder)),
                    }
                }
                PluginSource::Library(_) | PluginSource::Lookup => find_library(node_dir, spec)
                    .and_then(|(path, file)| match unchanged(&file.hash, None) {
                        Some(entry) => Ok(kept(&mut builder, entry)),
                        None => {
                            let library = open_checked(node_dir, &spec.name, &path, &file)?;
                            builder.add(&spec.name, &spec.settings, &library)?;
                            Ok(changed(&builder))
                        }
                    }),
            }
        };
        let change = built.unwrap_or_else(|error| {
            refused = true;
            Change::Refused {
                reason: error.reason.to_string(),
            }
        });
        changes.push(PluginChange {
            name: spec.name.clone(),
            change,
        });
    }
    for entry in &old.plugins {
        if !config.server_plugins.iter().any(|s| s.name == entry.name) {
            changes.push(PluginChange {
                name: entry.name.clone(),
                change: Change::Removed {
                    version: entry.origin.version.clone(),
                },
            });
        }
    }
    if refused {
        // The node keeps what it has: say so for each of its plugins but the refused
        // ones, which say why.
        let refused_names: Vec<String> = changes
            .iter()
            .filter(|c| matches!(c.change, Change::Refused { .. }))
            .map(|c| c.name.clone())
            .collect();
        let mut kept: Vec<PluginChange> = old
            .plugins
            .iter()
            .filter(|p| !refused_names.contains(&p.name))
            .map(|p| PluginChange {
                name: p.name.clone(),
                change: Change::Kept {
                    version: p.origin.version.clone(),
                },
            })
            .collect();
        kept.extend(
            changes
                .into_iter()
                .filter(|c| matches!(c.change, Change::Refused { .. })),
        );
        return Err(ReloadReport {
            applied: false,
            error: Some("a plugin was refused; the node keeps its current plugins".into()),
            plugins: kept,
        });
    }
    Ok((builder.build(), changes))
}

/// What a reload did (or would have done).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Whether the node switched to the new set.
    pub applied: bool,
    /// Why not, when it did not.
    pub error: Option<String>,
    /// One line per plugin.
    pub plugins: Vec<PluginChange>,
}

impl ReloadReport {
    fn refused(why: &str) -> Self {
        Self {
            applied: false,
            error: Some(why.to_owned()),
            plugins: Vec::new(),
        }
    }
}

/// What a reload did to one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginChange {
    /// The plugin's name.
    pub name: String,
    /// What happened to it.
    #[serde(flatten)]
    pub change: Change,
}

/// What happens to one plugin in a reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Change {
    /// Unchanged, still running.
    Kept {
        /// Its version.
        version: String,
    },
    /// New in the configuration, now running.
    Added {
        /// Its version.
        version: String,
    },
    /// Its library or settings changed: the new build runs, the old one is stopped.
    Replaced {
        /// The old version.
        from: String,
        /// The new version.
        to: String,
    },
    /// No longer configured: stopped.
    Removed {
        /// Its version.
        version: String,
    },
    /// Could not be loaded; the reload is not applied.
    Refused {
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kept { version } => write!(f, "kept {version}"),
            Self::Added { version } => write!(f, "added {version}"),
            Self::Replaced { from, to } => write!(f, "replaced {from} -> {to}"),
            Self::Removed { version } => write!(f, "removed {version}"),
            Self::Refused { reason } => write!(f, "refused: {reason}"),
        }
    }
}

/// One loaded plugin, as `gbs plugin status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStatus {
    /// Its configured name.
    pub name: String,
    /// The version it declares.
    pub version: String,
    /// The plugin interface version it was built against.
    pub interface: String,
    /// The library file it was loaded from; for an out-of-process plugin, its source line
    /// (`url ...` or `command ...`).
    pub library: PathBuf,
    /// The first 16 bytes of the library's SHA-256, in hex; empty out of process.
    pub library_hash: String,
    /// When it was loaded, in seconds since the Unix epoch.
    pub since: u64,
    /// The hooks it is called for (`admit`, `committed`): those it declares.
    #[serde(default)]
    pub hooks: Vec<String>,
    /// Hook calls made to it.
    pub calls: u64,
    /// Hook calls that failed (errors, panics, deadline overruns).
    pub failures: u64,
    /// The counters it keeps through the host API (its metrics).
    #[serde(default)]
    pub counters: std::collections::BTreeMap<String, u64>,
}
