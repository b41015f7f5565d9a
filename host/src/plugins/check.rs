//! Checking a plugin library in a child process, so that nothing it does can touch the
//! process that asks: a library cannot be unloaded once opened, its initialisers run on
//! `dlopen`, and a broken or hostile one may crash, hang or print.
//!
//! The child is `gbs plugin __check-one FILE`, in a process group of its own. Before it
//! opens the library it reads a one-time token from its stdin; its verdict is the line on
//! stdout that starts with that token, so a library that prints a report of its own and
//! exits is not believed. The whole group is killed when the check overruns its deadline,
//! and by the child itself when its stdin closes (the parent went away, even killed). Only
//! regular files are checked (a FIFO named `.so` would block the open), and an ELF library
//! cut short is refused before any process opens it (see `elf`).

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use gbs_plugin_interface::ffi::LibraryDescription;
use gbs_plugin_interface::Roles;
use serde::{Deserialize, Serialize};

use super::dylib;
use crate::config::{check_plugin_name, check_plugin_version};

/// How long a check may take unless the caller says otherwise.
pub const CHECK_DEADLINE: Duration = Duration::from_secs(5);
/// The most of a child's stdout and stderr kept.
const OUTPUT_LIMIT: usize = 1 << 20;
/// How long, once the check's process has exited, its output may take to end.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// The outcome of checking one library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// This host can load it.
    Compatible,
    /// A plugin library this host refuses.
    Incompatible,
    /// Not a plugin, unreadable, missing, not a regular file, or the check crashed or hung.
    Unusable,
}

/// What a check found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The verdict.
    pub status: Status,
    /// The interface version it was built against, when known.
    pub interface: Option<String>,
    /// The plugins it declares.
    pub plugins: Vec<PluginLine>,
    /// Why it is not compatible, one line each.
    pub reasons: Vec<String>,
    /// abi_stable's full report, or the child's stderr, for `--verbose`.
    pub details: Option<String>,
}

/// One plugin a library declares.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginLine {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Whether it has a server side.
    pub server: bool,
    /// Whether it has a client side.
    pub client: bool,
}

impl Report {
    /// An unusable library, for one reason.
    pub fn unusable(reason: String) -> Self {
        Self {
            status: Status::Unusable,
            interface: None,
            plugins: Vec::new(),
            reasons: vec![reason],
            details: None,
        }
    }

    /// Judged incompatible for `reason`, before anything about it was known.
    pub fn incompatible(reason: String) -> Self {
        Self {
            status: Status::Incompatible,
            ..Self::unusable(reason)
        }
    }

    /// The first reason, with a count of the others.
    pub fn reason(&self) -> String {
        match self.reasons.split_first() {
            None => "unknown reason".into(),
            Some((first, [])) => first.clone(),
            Some((first, rest)) => format!("{first} (and {} more)", rest.len()),
        }
    }
}

/// Checks `file` in a child process of the running gbs executable, within `deadline`: the
/// one place that picks the executable for `gbs plugin check`, for start-up and reloads,
/// and for checks asked of a running node. On Linux that is `/proc/self/exe`, which names
/// the running binary even after its file has been replaced, so the verdict is exact for
/// the code that will load the library.
pub fn check_with_this_executable(file: &Path, deadline: Duration) -> Report {
    let proc_exe = Path::new("/proc/self/exe");
    let exe = if proc_exe.exists() {
        Ok(proc_exe.to_owned())
    } else {
        std::env::current_exe()
    };
    match exe {
        Ok(exe) => check_in_child(&exe, file, deadline),
        Err(error) => Report::unusable(format!("cannot find the gbs executable: {error}")),
    }
}

/// Checks `file` in a child process running `exe` (the gbs binary), within `deadline`.
pub fn check_in_child(exe: &Path, file: &Path, deadline: Duration) -> Report {
    let length = match std::fs::metadata(file) {
        Ok(meta) if meta.is_file() => meta.len(),
        Ok(_) => return Report::unusable("not a regular file".into()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Report::unusable("no such file".into())
        }
        Err(error) => return Report::unusable(format!("cannot read it: {error}")),
    };
    if let Err(why) = super::elf::check_segments(file, length) {
        return Report::unusable(why);
    }
    let token = crate::protocol::base32_encode(&rand::random::<[u8; 16]>());
    let mut command = Command::new(exe);
    command
        .args(["plugin", "__check-one"])
        .arg(file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return Report::unusable(format!("cannot start the check: {error}")),
    };
    // The stdin pipe stays open until the check ends: its closing tells the child to go.
    let mut stdin = child.stdin.take();
    if let Some(pipe) = stdin.as_mut() {
        let _ = writeln!(pipe, "{token}");
    }
    let until = Instant::now() + deadline;
    let stdout = read_in_background(child.stdout.take(), until);
    let stderr = read_in_background(child.stderr.take(), until);
    let Some(status) = wait_until(&mut child, until) else {
        kill_group(&mut child);
        return Report::unusable(format!(
            "the check did not finish within {} s (a library initialiser or describe that hangs)",
            deadline.as_secs_f32()
        ));
    };
    drop(stdin);
    // Whatever the child wrote is in the pipe by now; a pipe still open after this grace
    // is held by a process the library started and took out of the check's group.
    let grace = until.min(Instant::now() + EXIT_GRACE);
    let (stdout, stdout_ended) = collect(&stdout, grace);
    let (stderr, stderr_ended) = collect(&stderr, grace);
    if !(stdout_ended && stderr_ended) {
        return Report::unusable(
            "the library left a process running after the check (one that took itself out of \
             the check's process group, and still holds its output)"
                .into(),
        );
    }
    let verdict = stdout
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix(&token)?.strip_prefix(' '))
        .and_then(|json| serde_json::from_str::<Report>(json).ok());
    match verdict {
        Some(report) if status.success() || report.status != Status::Compatible => report,
        _ => {
            let mut report = Report::unusable(if status.success() {
                // A library's own code exited early, perhaps after printing a report.
                "the check ended without its verdict (exit status 0): something in the library answered in its place".to_owned()
            } else {
                format!("the check crashed ({})", describe_exit(status))
            });
            if !stderr.trim().is_empty() {
                report.details = Some(stderr);
            }
            report
        }
    }
}

/// The child's side: reads the token, opens the library here, and prints the verdict after
/// the token. Exits on its own if its parent goes away.
pub fn check_here(file: &Path) -> Status {
    let mut token = String::new();
    let mut stdin = std::io::stdin().lock();
    if stdin.read_line(&mut token).is_err() || token.trim().is_empty() {
        eprintln!("gbs plugin __check-one is run by gbs plugin check, not by hand");
        return Status::Unusable;
    }
    drop(stdin);
    let (started, watching) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = started.send(());
        // EOF or an error: the parent is gone, and so is any reason to go on.
        let _ = std::io::stdin().lock().read_to_end(&mut Vec::new());
        end_this_check();
    });
    // A thread still starting when a library's initialiser hangs would wait forever for
    // the loader's lock, which `dlopen` holds (glibc takes it to register a new thread's
    // thread-local destructors): the library is opened only once the watcher runs.
    let _ = watching.recv_timeout(Duration::from_secs(5));
    let report = report_of(file);
    let json = serde_json::to_string(&report).unwrap_or_default();
    println!("{} {json}", token.trim());
    report.status
}

/// Ends this check's process, and every process its library started, at once. Not with
/// `exit`: while an initialiser hangs inside `dlopen`, the loader's lock is held, and
/// `exit` would wait for it forever in the loader's own clean-up.
fn end_this_check() -> ! {
    #[cfg(unix)]
    {
        use rustix::process::{getpgrp, getpid, kill_current_process_group, kill_process, Signal};
        // Started by `check_in_child`, the check leads a group of its own; run some other
        // way, it must not take its caller's group with it.
        let _ = if getpgrp() == getpid() {
            kill_current_process_group(Signal::KILL)
        } else {
            kill_process(getpid(), Signal::KILL)
        };
    }
    std::process::abort()
}

/// Opens `file` in this process and judges it as the node would.
fn report_of(file: &Path) -> Report {
    match dylib::open(file) {
        Ok(loaded) => {
            let plugins = plugin_lines(&loaded.description);
            let reasons = refusals(&plugins);
            Report {
                status: if reasons.is_empty() {
                    Status::Compatible
                } else {
                    Status::Incompatible
                },
                interface: Some(loaded.interface_version.clone()),
                plugins,
                reasons,
                details: None,
            }
        }
        Err(error) => Report {
            status: if error.is_plugin() {
                Status::Incompatible
            } else {
                Status::Unusable
            },
            interface: error.interface_version().map(str::to_owned),
            plugins: error.description().map(plugin_lines).unwrap_or_default(),
            reasons: error.reasons(),
            details: error.details(),
        },
    }
}

/// What the node would refuse in a library's list of plugins.
fn refusals(plugins: &[PluginLine]) -> Vec<String> {
    let mut reasons = Vec::new();
    if plugins.is_empty() {
        reasons.push("declares no plugins (its describe may have panicked)".to_owned());
    }
    for (index, plugin) in plugins.iter().enumerate() {
        if let Err(why) = check_plugin_name(&plugin.name) {
            reasons.push(format!("no tahoe.cfg can name it: {why}"));
        }
        if let Err(why) = check_plugin_version(&plugin.version) {
            reasons.push(format!(
                "plugin {:?}: {why}",
                plugin.name.escape_debug().to_string()
            ));
        }
        if plugins[..index].iter().any(|p| p.name == plugin.name) {
            reasons.push(format!(
                "declares plugin {:?} more than once",
                plugin.name.escape_debug().to_string()
            ));
        }
        if !plugin.server && !plugin.client {
            reasons.push(format!(
                "plugin {:?} has neither a server nor a client side",
                plugin.name.escape_debug().to_string()
            ));
        }
    }
    reasons
}

fn plugin_lines(description: &LibraryDescription) -> Vec<PluginLine> {
    description
        .plugins
        .iter()
        .map(|p| PluginLine {
            name: p.name.to_string(),
            version: p.version.to_string(),
            server: p.roles.contains(Roles::SERVER),
            client: p.roles.contains(Roles::CLIENT),
        })
        .collect()
}

/// Reads a pipe on a thread of its own until its end or `until`, whichever comes first,
/// handing on what it reads. The end may never come: a process the library started in a
/// session of its own inherits the pipe and is out of reach of the group's kill, so the
/// thread stops looking at `until` and never outlives the check by much.
fn read_in_background(
    pipe: Option<impl std::io::Read + std::os::fd::AsFd + Send + 'static>,
    until: Instant,
) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (read, reads) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Some(mut pipe) = pipe else {
            let _ = read.send(Vec::new());
            return;
        };
        let mut buf = [0u8; 8192];
        // What is read past the limit is drained, not kept.
        let mut room = OUTPUT_LIMIT;
        loop {
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                return;
            };
            let timeout = rustix::event::Timespec::try_from(left).unwrap_or_default();
            let mut fds = [rustix::event::PollFd::new(
                &pipe,
                rustix::event::PollFlags::IN,
            )];
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {}
                Err(_) => return,
            }
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) if room == 0 => {}
                Ok(n) => {
                    let kept = n.min(room);
                    room -= kept;
                    if read.send(buf[..kept].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
        // The pipe's end: an empty piece says so.
        let _ = read.send(Vec::new());
    });
    reads
}

/// What [`read_in_background`] read by `until` (at most [`OUTPUT_LIMIT`] bytes), and
/// whether that was all: the pipe ended.
fn collect(reads: &std::sync::mpsc::Receiver<Vec<u8>>, until: Instant) -> (String, bool) {
    let mut kept = Vec::new();
    let mut ended = false;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match reads.recv_timeout(left) {
            Ok(piece) if piece.is_empty() => {
                ended = true;
                break;
            }
            Ok(piece) => kept.extend_from_slice(&piece),
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), ended)
}

/// The child's exit status, or `None` at the deadline.
pub(super) fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => return None,
        }
    }
}

/// Kills the child and every process in its group, then reaps it.
pub(super) fn kill_group(child: &mut Child) {
    #[cfg(unix)]
    {
        let group = rustix::process::Pid::from_child(child);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub(super) fn describe_exit(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return format!("signal {signal}");
        }
    }
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "no exit status".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str) -> PluginLine {
        PluginLine {
            name: name.into(),
            version: "1".into(),
            server: true,
            client: false,
        }
    }

    #[test]
    fn what_the_node_would_refuse_is_a_reason() {
        assert!(refusals(&[line("a"), line("b")]).is_empty());
        assert_eq!(refusals(&[]).len(), 1);
        let duplicate = refusals(&[line("a"), line("a")]);
        assert!(duplicate[0].contains("more than once"), "{duplicate:?}");
        for bad in ["..", "a b", "", "x/y"] {
            let reasons = refusals(&[line(bad)]);
            assert!(
                reasons
                    .iter()
                    .any(|r| r.contains("no tahoe.cfg can name it")),
                "{bad:?}: {reasons:?}"
            );
        }
        let mut roleless = line("r");
        roleless.server = false;
        assert!(refusals(&[roleless])[0].contains("neither"));
        // Versions: 64 bytes pass; 65 bytes, a newline and an escape do not.
        let versioned = |version: &str| {
            let mut plugin = line("v");
            plugin.version = version.into();
            refusals(&[plugin])
        };
        assert!(versioned(&"9".repeat(64)).is_empty());
        for bad in ["9".repeat(65), "1.0\nforged".into(), "1.0\u{1b}[2J".into()] {
            let reasons = versioned(&bad);
            assert!(
                reasons.len() == 1 && reasons[0].contains("its version"),
                "{bad:?}: {reasons:?}"
            );
        }
    }

    #[test]
    fn only_regular_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let report = check_in_child(Path::new("/nonexistent"), dir.path(), CHECK_DEADLINE);
        assert_eq!(report.status, Status::Unusable);
        assert_eq!(report.reasons, ["not a regular file"]);
        let missing = check_in_child(
            Path::new("/nonexistent"),
            &dir.path().join("missing.so"),
            CHECK_DEADLINE,
        );
        assert_eq!(missing.reasons, ["no such file"]);
    }
}
