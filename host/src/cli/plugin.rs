//! `gbs plugin check` and `gbs plugin list`: what a plugin library provides and whether
//! this host can load it, without running any plugin constructor.
//!
//! Every library is opened in a child process with a deadline (see `plugins::check`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use gbs_plugin_interface::Roles;
use serde::Serialize;

use crate::admin;
use crate::config::{NodeConfig, PluginSource, PluginSpec};
use crate::plugins::check::{
    check_here, check_with_this_executable, PluginLine, Report, Status, CHECK_DEADLINE,
};
use crate::plugins::remote;

#[derive(Debug, clap::Args)]
pub(super) struct PluginArgs {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Check plugin libraries, or out-of-process plugin services: what they provide and
    /// whether this gbs can load them.
    ///
    /// Runs no plugin constructor, only each library's own description, in a child process
    /// with a deadline. A service (`unix:/path` or `http://127.0.0.1:PORT`, or started with
    /// --command and stopped after) is asked to describe itself. Exit status: 0 all compatible, 1 some incompatible, 3 some not a
    /// plugin, unreadable, not a regular file, crashing or hanging (2 is a usage error, 4
    /// no running node for --node).
    Check(CheckOptions),
    /// Show the plugins a node's tahoe.cfg names and whether each would load.
    ///
    /// Exit status 0 when all of them would.
    List(super::node::DirArg),
    /// Show the server plugins the running node has loaded: name, version, interface,
    /// library and its hash, since when, the hooks it is called for, hook calls and failures,
    /// and the counters it keeps.
    ///
    /// Asks the node over its admin socket (private/admin.sock). Exit status 0, or 4 when
    /// no running node answers.
    Status(NodeOptions),
    /// Make the running node re-read its plugin configuration and switch to it (as SIGHUP
    /// does), printing one line per plugin: kept, added, replaced, removed or refused.
    ///
    /// If any plugin is refused the node keeps its current plugins. Exit status 0 when the
    /// new set is in use, 1 when the reload was not applied, 4 when no running node answers.
    Reload(NodeOptions),
    /// Checks one library in this process and prints a JSON report (used by the others).
    #[command(name = "__check-one", hide = true)]
    CheckOne { file: PathBuf },
}

#[derive(Debug, clap::Args)]
struct NodeOptions {
    #[command(flatten)]
    dir: super::node::DirArg,
    /// Print the node's JSON answer instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct CheckOptions {
    /// Ask the node running on this directory to check the files with its own executable,
    /// so that the verdict is exact for the deployed version (exit status 4 when no
    /// running node answers).
    #[arg(long, value_name = "DIR")]
    node: Option<PathBuf>,
    /// Also print abi_stable's full report for incompatible types.
    #[arg(long, short)]
    verbose: bool,
    /// Print one JSON array of verdicts ({file, status, interface, plugins, reasons,
    /// details}) instead of text.
    #[arg(long)]
    json: bool,
    /// Seconds each file's check may take before it is killed and called unusable.
    #[arg(long, value_name = "SECS", default_value_t = CHECK_DEADLINE.as_secs_f64(), value_parser = positive_seconds)]
    timeout: f64,
    /// Start this out-of-process plugin command (split like a shell would, run without
    /// one), check it, and stop it. May be given several times.
    #[arg(long, value_name = "COMMAND")]
    command: Vec<String>,
    /// Plugin libraries (.so files), or addresses of running plugin services.
    #[arg(required_unless_present = "command")]
    files: Vec<PathBuf>,
}

/// `--timeout`: a positive number of seconds that makes a [`Duration`] (anything else is a
/// usage error, exit status 2, not a verdict).
fn positive_seconds(text: &str) -> Result<f64, String> {
    let seconds: f64 = text.parse().map_err(|e| format!("{e}"))?;
    match Duration::try_from_secs_f64(seconds) {
        Ok(duration) if !duration.is_zero() => Ok(seconds),
        _ => Err("must be a positive number of seconds".into()),
    }
}

/// A `gbs plugin check` argument that names a plugin service rather than a library.
fn service_of(file: &Path) -> Option<Result<remote::Service, String>> {
    let text = file.to_str()?;
    (text.starts_with("unix:") || text.starts_with("http://"))
        .then(|| remote::Address::parse(text).map(remote::Service::At))
}

pub(super) fn run(args: &PluginArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        PluginCommand::Check(options) => check(options),
        PluginCommand::List(dir) => list(&dir.dir()),
        PluginCommand::Status(options) => status(options),
        PluginCommand::Reload(options) => reload(options),
        PluginCommand::CheckOne { file } => Ok(check_here(file).exit_code()),
    }
}

impl Status {
    fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Self::Compatible => 0,
            Self::Incompatible => 1,
            Self::Unusable => 3,
        })
    }
}

fn roles(plugin: &PluginLine) -> &'static str {
    match (plugin.server, plugin.client) {
        (true, true) => "server, client",
        (true, false) => "server",
        (false, true) => "client",
        (false, false) => "no roles",
    }
}

/// One file's verdict in `--json` output.
#[derive(Debug, Serialize)]
struct JsonVerdict<'a> {
    file: &'a Path,
    #[serde(flatten)]
    report: &'a Report,
}

fn check(options: &CheckOptions) -> anyhow::Result<ExitCode> {
    // `positive_seconds` let only such a number through.
    let deadline = Duration::try_from_secs_f64(options.timeout)
        .context("--timeout must be a positive number of seconds")?;
    let (services, libraries): (Vec<&PathBuf>, Vec<&PathBuf>) = options
        .files
        .iter()
        .partition(|file| service_of(file).is_some());
    let libraries: Vec<PathBuf> = libraries.into_iter().cloned().collect();
    let mut reports = match &options.node {
        Some(dir) if !libraries.is_empty() => match checked_by_node(dir, &libraries, deadline) {
            Ok(reports) => reports,
            Err(unreachable) => return Ok(unreachable),
        },
        _ => libraries
            .iter()
            .map(|file| check_with_this_executable(file, deadline))
            .collect(),
    };
    let mut checked = libraries;
    for file in services {
        let report = match service_of(file) {
            Some(Ok(service)) => remote::check_service(&service, deadline),
            Some(Err(why)) => Report::unusable(why),
            None => continue,
        };
        checked.push(file.clone());
        reports.push(report);
    }
    for command in &options.command {
        let service = remote::Service::Command(remote::CommandCheck::bare(command));
        reports.push(remote::check_service(&service, deadline));
        checked.push(PathBuf::from(format!("command {command}")));
    }
    let mut worst = Status::Compatible;
    let mut verdicts = Vec::new();
    for (file, report) in checked.iter().zip(reports) {
        if !options.json {
            print!("{}", render_check(file, &report, options.verbose));
        }
        worst = worst.max(report.status);
        verdicts.push((file, report));
    }
    if options.json {
        let json: Vec<JsonVerdict<'_>> = verdicts
            .iter()
            .map(|(file, report)| JsonVerdict { file, report })
            .collect();
        println!("{}", serde_json::to_string(&json)?);
    }
    Ok(worst.exit_code())
}

/// Exit status when no running node answers on the admin socket.
const NO_NODE: u8 = 4;

/// Asks the node at `dir` over its admin socket; when it does not answer, says why and
/// gives the exit status.
fn ask_node(dir: &Path, request: &admin::Request) -> Result<admin::Answer, ExitCode> {
    let private = NodeConfig::load(dir)
        .map(|config| config.private_dir())
        .unwrap_or_else(|_| dir.join("private"));
    // A reload may check and build several libraries, each within its deadlines.
    admin::ask(&private, request, Duration::from_secs(600)).map_err(|error| {
        eprintln!("gbs: {error:#}");
        ExitCode::from(NO_NODE)
    })
}

fn unexpected(answer: &admin::Answer) -> anyhow::Error {
    match answer {
        admin::Answer::Error { message } => anyhow::anyhow!("the node refused: {message}"),
        other => anyhow::anyhow!("unexpected answer from the node: {other:?}"),
    }
}

/// `gbs plugin check --node DIR`: the node's own executable checks the files.
fn checked_by_node(
    dir: &Path,
    files: &[PathBuf],
    deadline: Duration,
) -> Result<Vec<Report>, ExitCode> {
    let absolute: Vec<PathBuf> = files
        .iter()
        .map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone()))
        .collect();
    let request = admin::Request::Check {
        files: absolute,
        timeout_seconds: deadline.as_secs_f64(),
    };
    match ask_node(dir, &request)? {
        admin::Answer::Check { reports } if reports.len() == files.len() => Ok(reports),
        other => {
            eprintln!("gbs: {:#}", unexpected(&other));
            Err(ExitCode::FAILURE)
        }
    }
}

/// `gbs plugin status`.
fn status(options: &NodeOptions) -> anyhow::Result<ExitCode> {
    let dir = options.dir.dir();
    let answer = match ask_node(&dir, &admin::Request::Status) {
        Ok(answer) => answer,
        Err(code) => return Ok(code),
    };
    let admin::Answer::Status { plugins } = &answer else {
        return Err(unexpected(&answer));
    };
    if options.json {
        println!("{}", serde_json::to_string(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    if plugins.is_empty() {
        println!("no server plugins loaded");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for plugin in plugins {
        println!(
            "{} {} (interface {}): {} calls, {} failed; loaded {}s ago from {}{}",
            plugin.name.escape_debug(),
            plugin.version.escape_debug(),
            plugin.interface.escape_debug(),
            plugin.calls,
            plugin.failures,
            now.saturating_sub(plugin.since),
            plugin.library.display(),
            if plugin.library_hash.is_empty() {
                String::new()
            } else {
                format!(" (sha256 {}…)", plugin.library_hash)
            },
        );
        println!("    hooks: {}", plugin.hooks.join(", "));
        if !plugin.counters.is_empty() {
            let counters: Vec<String> = plugin
                .counters
                .iter()
                .map(|(name, value)| format!("{}={value}", name.escape_debug()))
                .collect();
            println!("    counters: {}", counters.join(" "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `gbs plugin reload`.
fn reload(options: &NodeOptions) -> anyhow::Result<ExitCode> {
    let dir = options.dir.dir();
    let answer = match ask_node(&dir, &admin::Request::Reload) {
        Ok(answer) => answer,
        Err(code) => return Ok(code),
    };
    let admin::Answer::Reload(report) = &answer else {
        return Err(unexpected(&answer));
    };
    if options.json {
        println!("{}", serde_json::to_string(&answer)?);
    } else {
        for plugin in &report.plugins {
            // The versions and reasons come from plugins: escaped, as `status` does.
            println!(
                "{}: {}",
                plugin.name.escape_debug(),
                plugin.change.to_string().escape_debug()
            );
        }
        if let Some(error) = &report.error {
            eprintln!("gbs: reload not applied: {error}");
        }
    }
    Ok(if report.applied {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One file's block of `gbs plugin check` output: the verdict after the file name, then
/// what the library declares, then the reasons, one per line.
fn render_check(file: &Path, report: &Report, verbose: bool) -> String {
    let verdict = match report.status {
        Status::Compatible => "compatible",
        Status::Incompatible => "incompatible",
        Status::Unusable => "unusable",
    };
    let mut out = format!("{}: {verdict}\n", file.display());
    if let Some(interface) = &report.interface {
        let _ = writeln!(out, "    interface: {}", interface.escape_debug());
    }
    for plugin in &report.plugins {
        let _ = writeln!(
            out,
            "    plugin: {} {} ({})",
            plugin.name.escape_debug(),
            plugin.version.escape_debug(),
            roles(plugin)
        );
    }
    for reason in &report.reasons {
        let _ = writeln!(out, "    {reason}");
    }
    if verbose {
        if let Some(details) = &report.details {
            for line in details.lines() {
                let _ = writeln!(out, "        {line}");
            }
        }
    }
    out
}

/// `gbs plugin list`: every configured plugin and whether it would load.
fn list(dir: &Path) -> anyhow::Result<ExitCode> {
    let config = NodeConfig::load(dir)?;
    let mut checked = Checked::default();
    let mut all_load = true;
    for (title, specs, role) in [
        ("server plugins", &config.server_plugins, Roles::SERVER),
        ("client plugins", &config.client_plugins, Roles::CLIENT),
    ] {
        if specs.is_empty() {
            println!("{title}: none");
            continue;
        }
        println!("{title}:");
        for spec in specs {
            let (source, verdict) = checked.verdict(&config, spec, role)?;
            all_load &= verdict.is_ok();
            let verdict = verdict.unwrap_or_else(|reason| format!("will not load: {reason}"));
            println!("    {} ({source}): {verdict}", spec.name);
        }
    }
    Ok(if all_load {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Whether an out-of-process plugin would load in `role`, as its description says.
fn service_verdict(service: &remote::Service, role: Roles) -> Result<String, String> {
    let report = remote::check_service(service, CHECK_DEADLINE);
    match report.plugins.first() {
        Some(plugin) if report.status == Status::Compatible => {
            let has_role = if role == Roles::CLIENT {
                plugin.client
            } else {
                plugin.server
            };
            if has_role {
                Ok(format!("{} {}", plugin.name, plugin.version))
            } else {
                Err("it does not have that role".into())
            }
        }
        _ => Err(report.reason()),
    }
}

/// Reports of libraries already checked, by path, so each is opened once.
#[derive(Debug, Default)]
struct Checked {
    reports: BTreeMap<PathBuf, Report>,
    /// `<node>/plugins/*.so`, once listed.
    lookup_dir: Option<Vec<PathBuf>>,
}

impl Checked {
    fn report(&mut self, path: &Path) -> &Report {
        self.reports
            .entry(path.to_owned())
            .or_insert_with(|| check_with_this_executable(path, CHECK_DEADLINE))
    }

    /// Where the plugin comes from (for display) and `Ok(what loads)` or `Err(why not)`.
    fn verdict(
        &mut self,
        config: &NodeConfig,
        spec: &PluginSpec,
        role: Roles,
    ) -> anyhow::Result<(String, Result<String, String>)> {
        Ok(match &spec.source {
            PluginSource::Library(path) => {
                let source = format!("library {}", path.display());
                let full = config.node_dir.join(path);
                (source, self.library_verdict(&full, &spec.name, role))
            }
            // As `plugins::registry` decides at start-up.
            PluginSource::Url(url) => {
                let verdict = remote::Address::parse(url)
                    .and_then(|address| service_verdict(&remote::Service::At(address), role));
                (format!("url {url}"), verdict)
            }
            PluginSource::Command(command) => {
                let service = remote::Service::Command(remote::CommandCheck {
                    command: command.clone(),
                    dir: config.node_dir.clone(),
                    name: Some(spec.name.clone()),
                    role,
                    settings: spec.settings.clone(),
                });
                (
                    format!("command {command}"),
                    service_verdict(&service, role),
                )
            }
            PluginSource::Lookup => {
                let plugins_dir = config.node_dir.join("plugins");
                let source = format!("looked up in {}", plugins_dir.display());
                (source, self.lookup_verdict(&plugins_dir, &spec.name, role)?)
            }
        })
    }

    fn library_verdict(&mut self, path: &Path, name: &str, role: Roles) -> Result<String, String> {
        let report = self.report(path);
        if report.status != Status::Compatible {
            return Err(report.reason());
        }
        let Some(plugin) = report.plugins.iter().find(|p| p.name == name) else {
            let names: Vec<&str> = report.plugins.iter().map(|p| p.name.as_str()).collect();
            return Err(format!(
                "the library has no plugin named {name:?} (it has {})",
                names.join(", ")
            ));
        };
        let has_role = if role == Roles::SERVER {
            plugin.server
        } else {
            plugin.client
        };
        if !has_role {
            let side = if role == Roles::SERVER {
                "server"
            } else {
                "client"
            };
            return Err(format!("the plugin has no {side} side"));
        }
        Ok(format!(
            "would load (version {}, interface {})",
            plugin.version.escape_debug(),
            report.interface.as_deref().unwrap_or("?")
        ))
    }

    fn lookup_verdict(
        &mut self,
        plugins_dir: &Path,
        name: &str,
        role: Roles,
    ) -> anyhow::Result<Result<String, String>> {
        if self.lookup_dir.is_none() {
            self.lookup_dir = Some(libraries_in(plugins_dir)?);
        }
        let libraries = self.lookup_dir.clone().unwrap_or_default();
        let mut found = Vec::new();
        for library in &libraries {
            let report = self.report(library);
            if report.status == Status::Compatible && report.plugins.iter().any(|p| p.name == name)
            {
                found.push(library.clone());
            }
        }
        Ok(match found.as_slice() {
            [] => Err(format!(
                "no compatible library in {} provides it",
                plugins_dir.display()
            )),
            [library] => self
                .library_verdict(library, name, role)
                .map(|verdict| format!("{verdict} from {}", library.display())),
            several => Err(format!(
                "several libraries provide it: {}",
                several
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        })
    }
}

/// The shared libraries in a directory, sorted; none if it does not exist.
fn libraries_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("cannot list {}", dir.display())),
    };
    let suffix = std::env::consts::DLL_SUFFIX;
    let mut libraries = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        if path.to_string_lossy().ends_with(suffix) && path.is_file() {
            libraries.push(path);
        }
    }
    libraries.sort();
    Ok(libraries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: Status, reasons: &[&str]) -> Report {
        Report {
            status,
            interface: Some("1.0.0".into()),
            plugins: vec![PluginLine {
                name: "access-log".into(),
                version: "0.1.0".into(),
                server: true,
                client: false,
            }],
            reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
            details: Some("raw\ntext".into()),
        }
    }

    #[test]
    fn check_output_names_plugins_and_verdict() {
        let out = render_check(Path::new("a.so"), &report(Status::Compatible, &[]), false);
        assert_eq!(
            out,
            "a.so: compatible\n    interface: 1.0.0\n    plugin: access-log 0.1.0 (server)\n"
        );
    }

    #[test]
    fn check_output_gives_one_line_per_reason_and_details_only_when_verbose() {
        let r = report(Status::Incompatible, &["x: a", "y: b"]);
        let quiet = render_check(Path::new("a.so"), &r, false);
        assert!(quiet.starts_with("a.so: incompatible\n"), "{quiet}");
        assert!(quiet.ends_with("    x: a\n    y: b\n"), "{quiet}");
        let verbose = render_check(Path::new("a.so"), &r, true);
        assert!(
            verbose.ends_with("        raw\n        text\n"),
            "{verbose}"
        );
        assert_eq!(r.reason(), "x: a (and 1 more)");
    }
}
