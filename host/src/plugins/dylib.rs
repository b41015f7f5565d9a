//! Opening a plugin library and reading what it provides, without running any plugin
//! constructor.
//!
//! [`open`] maps the library, checks abi_stable's header, hands the interface version and
//! layout decision to [`compat`], and calls the library's `describe`
//! function. The plugins' constructors (`new_server`, `new_client`) are left to the caller.
//!
//! Libraries are **never unloaded**. abi_stable hands out `'static` references into the
//! library (its header, type layouts, vtables, the cached root module), plugin objects and
//! the futures they return point at its code, and a plugin may have started threads or
//! registered thread-local destructors; `dlclose` would leave all of those dangling. A
//! process that only wants to look at a library (`gbs plugin check`) does so in a child
//! process for the same reason.

// Mapping a library and reading its abi_stable header are unsafe calls; the layout check
// that follows (in `compat`) is what makes using the header's root module sound.
#![allow(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_raw_library, AbiHeader, LibraryError, RawLibrary};
use gbs_plugin_interface::ffi::{LibraryDescription, PluginLibraryRef};

use super::compat::{self, Acceptance, CompatError};

/// A plugin library that passed every check, with its description.
pub struct LoadedLibrary {
    /// The canonical path it was loaded from.
    pub path: PathBuf,
    /// The interface version it was built against, e.g. `1.1.0`.
    pub interface_version: String,
    /// What `describe` returned: its plugins and how it was built.
    pub description: LibraryDescription,
    /// The root module: `describe`, `new_server`, `new_client`.
    pub root: PluginLibraryRef,
    /// Whether it passed abi_stable's own check or is an older 1.x minor.
    pub acceptance: Acceptance,
}

impl fmt::Debug for LoadedLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedLibrary")
            .field("path", &self.path)
            .field("interface_version", &self.interface_version)
            .field("description", &self.description)
            .field("acceptance", &self.acceptance)
            .finish_non_exhaustive()
    }
}

/// Why a library cannot be used. Its `Display` is one short line without the path.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// Nothing at that path.
    NotFound,
    /// The file exists but the dynamic loader refused it (not a shared library, wrong
    /// architecture, unreadable, a missing dependency).
    Unreadable {
        /// The loader's reason, without the path.
        reason: String,
    },
    /// A shared library without an abi_stable root module.
    NotAPlugin,
    /// The abi_stable header is there but not recognisable.
    CorruptHeader,
    /// Built with a different abi_stable line (0.10 and 0.11 cannot talk).
    AbiStableVersion {
        /// The library's abi_stable (major, minor).
        library: (u32, u32),
        /// The host's abi_stable (major, minor).
        host: (u32, u32),
    },
    /// The compiler that built it passes values through the C ABI differently.
    CAbi,
    /// An abi_stable library whose interface version or layout does not fit this host.
    Incompatible {
        /// The interface version it declares.
        interface_version: String,
        /// The reason.
        error: CompatError,
    },
    /// Built with `panic = "abort"`, so a panic in a hook would end the server.
    PanicAbort {
        /// The interface version it was built against.
        interface_version: String,
        /// What it says it provides.
        description: Box<LibraryDescription>,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such file"),
            Self::Unreadable { reason } => write!(f, "cannot load: {reason}"),
            Self::NotAPlugin => f.write_str("not a gbs plugin (no abi_stable root module)"),
            Self::CorruptHeader => f.write_str("not a gbs plugin (corrupt abi_stable header)"),
            Self::AbiStableVersion { library, host } => write!(
                f,
                "built with abi_stable {}.{}; this host uses {}.{}",
                library.0, library.1, host.0, host.1
            ),
            Self::CAbi => f.write_str("built by a compiler with a different C ABI"),
            Self::Incompatible { error, .. } => error.fmt(f),
            Self::PanicAbort { .. } => f.write_str("built with panic=abort; plugins must unwind"),
        }
    }
}

impl std::error::Error for LoadError {}

impl LoadError {
    /// Whether the file is a gbs plugin at all (then it is merely incompatible).
    pub fn is_plugin(&self) -> bool {
        match self {
            Self::NotFound | Self::Unreadable { .. } | Self::NotAPlugin | Self::CorruptHeader => {
                false
            }
            Self::Incompatible { error, .. } => {
                !matches!(error, CompatError::OtherRootModule { .. })
            }
            Self::AbiStableVersion { .. } | Self::CAbi | Self::PanicAbort { .. } => true,
        }
    }

    /// Every reason, one line each (a layout can differ in several places). The first is
    /// the `Display` line, without its "and N more".
    pub fn reasons(&self) -> Vec<String> {
        match self {
            Self::Incompatible {
                error: CompatError::Layout { mismatches, .. },
                ..
            } if !mismatches.is_empty() => mismatches
                .iter()
                .map(|m| format!("incompatible type: {m}"))
                .collect(),
            other => vec![other.to_string()],
        }
    }

    /// abi_stable's full report, when there is more to it than [`LoadError::reasons`].
    pub fn details(&self) -> Option<String> {
        match self {
            Self::Incompatible {
                error: CompatError::Layout { raw, .. },
                ..
            } => Some(raw.clone()),
            Self::Incompatible {
                error: CompatError::Library(error),
                ..
            } => Some(error.to_string()),
            _ => None,
        }
    }

    /// The interface version the library declares, when it got that far.
    pub fn interface_version(&self) -> Option<&str> {
        match self {
            Self::Incompatible {
                interface_version, ..
            }
            | Self::PanicAbort {
                interface_version, ..
            } if !interface_version.is_empty() => Some(interface_version),
            _ => None,
        }
    }

    /// What the library says it provides, when it could be asked.
    pub fn description(&self) -> Option<&LibraryDescription> {
        match self {
            Self::PanicAbort { description, .. } => Some(description),
            _ => None,
        }
    }
}

/// Opens the plugin library at `path` and checks it. Runs the library's initialisers and
/// its `describe` function, never a plugin constructor.
///
/// The same file may be opened again: the loader maps it once and abi_stable keeps its
/// checked root module.
pub fn open(path: &Path) -> Result<LoadedLibrary, LoadError> {
    // A bare file name would make the dynamic loader search the system directories.
    let path = std::fs::canonicalize(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => LoadError::NotFound,
        _ => LoadError::Unreadable {
            reason: error.to_string(),
        },
    })?;
    let raw = RawLibrary::load_at(&path).map_err(|e| from_library_error(e, &path))?;
    // Never unloaded: see the module docs.
    let raw: &'static RawLibrary = Box::leak(Box::new(raw));
    // SAFETY: the library stays mapped for the life of the process (leaked above), which
    // is what the header's `'static` references need.
    let header =
        unsafe { lib_header_from_raw_library(raw) }.map_err(|e| from_library_error(e, &path))?;
    let interface_version = header.version_strings().version.as_str().to_owned();
    let (root, acceptance) = compat::root_module::<PluginLibraryRef>(header).map_err(|error| {
        LoadError::Incompatible {
            interface_version: interface_version.clone(),
            error,
        }
    })?;
    let description = root.describe()();
    if !description.panic_unwind {
        return Err(LoadError::PanicAbort {
            interface_version,
            description: Box::new(description),
        });
    }
    Ok(LoadedLibrary {
        path,
        interface_version,
        description,
        root,
        acceptance,
    })
}

/// Errors from mapping the library and reading its header.
fn from_library_error(error: LibraryError, path: &Path) -> LoadError {
    match error {
        LibraryError::OpenError { err, .. } => LoadError::Unreadable {
            reason: without_path(&err.to_string(), path),
        },
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin,
        LibraryError::InvalidAbiHeader(header)
            if header.magic_string == AbiHeader::VALUE.magic_string =>
        {
            LoadError::AbiStableVersion {
                library: (header.abi_major, header.abi_minor),
                host: (AbiHeader::VALUE.abi_major, AbiHeader::VALUE.abi_minor),
            }
        }
        LibraryError::InvalidAbiHeader(_) => LoadError::CorruptHeader,
        LibraryError::InvalidCAbi { .. } => LoadError::CAbi,
        other => LoadError::Incompatible {
            interface_version: String::new(),
            error: CompatError::Library(other),
        },
    }
}

/// The loader's message names the file first (`/x/lib.so: invalid ELF header`); we name
/// it elsewhere.
fn without_path(message: &str, path: &Path) -> String {
    let message = compat::first_line(message);
    let prefix = format!("{}: ", path.display());
    message.strip_prefix(&prefix).unwrap_or(message).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_is_one_short_line() {
        let cases = [
            (LoadError::NotFound, "no such file"),
            (
                LoadError::NotAPlugin,
                "not a gbs plugin (no abi_stable root module)",
            ),
            (
                LoadError::AbiStableVersion {
                    library: (0, 10),
                    host: (0, 11),
                },
                "built with abi_stable 0.10; this host uses 0.11",
            ),
            (
                LoadError::PanicAbort {
                    interface_version: "1.0.0".into(),
                    description: Box::new(LibraryDescription {
                        interface_major: 1,
                        interface_minor: 0,
                        panic_unwind: false,
                        plugins: Default::default(),
                    }),
                },
                "built with panic=abort; plugins must unwind",
            ),
        ];
        for (error, line) in cases {
            assert_eq!(error.to_string(), line);
            assert_eq!(error.reasons(), [line]);
        }
    }

    #[test]
    fn only_files_that_are_gbs_plugins_count_as_incompatible() {
        assert!(!LoadError::NotFound.is_plugin());
        assert!(!LoadError::CorruptHeader.is_plugin());
        assert!(LoadError::CAbi.is_plugin());
        let other = LoadError::Incompatible {
            interface_version: "0.3.0".into(),
            error: CompatError::OtherRootModule {
                name: "something_else".into(),
            },
        };
        assert!(!other.is_plugin());
        assert_eq!(
            other.to_string(),
            "not a gbs plugin (abi_stable root module \"something_else\")"
        );
    }

    #[test]
    fn the_loader_message_loses_the_path_it_repeats() {
        let path = Path::new("/x/lib.so");
        assert_eq!(
            without_path("/x/lib.so: invalid ELF header", path),
            "invalid ELF header"
        );
        assert_eq!(without_path("\nsomething else", path), "something else");
    }
}
