//! Whether a library's root module may be used by this host: interface version and layout.
//!
//! abi_stable accepts a library only when its root module has **at least** the fields and
//! methods the host knows ("implementation ≥ user"), so out of the box a host built against
//! interface 1.1 refuses every plugin built against 1.0. We want the whole 1.x line to load in
//! both directions, so [`root_module`] decides:
//!
//! - a different interface major: refused, before any layout is compared;
//! - plugin minor ≥ host minor: abi_stable's normal check (`LibHeader::init_root_module`);
//! - plugin minor < host minor: the normal check first; if only the layout differs, the
//!   check again with the two layouts **swapped** (is the host's layout a valid extension of
//!   the plugin's?). If that passes, the module is taken without abi_stable's own check.
//!
//! The swap is sound because everything that may grow within a major version is a prefix
//! type (the root module, every `#[sabi_trait]` vtable): the plugin's values carry their own
//! field count, and the host's accessors for fields the plugin lacks return `None` (root
//! module fields) or run the trait method's default body (vtables) instead of reading past
//! the end. Everything that is not a prefix type must still match exactly, and does, because
//! the swapped check compares it as strictly as the normal one. The fixtures in
//! `tests/fixtures/` keep both directions honest: this host loads `plugin-1.3` (a newer
//! minor) and `plugin-1.0`, `plugin-1.1` and `samples-1.0` (older ones), and `host-1.3`
//! loads older plugins with this very file.
//!
//! This file depends on nothing but `std` and `abi_stable` and is generic over the root
//! module type, so that `tests/fixtures/host-1.3` and `host-1.0` include it with `#[path]`.
//!
//! Layout mismatches reach us as abi_stable's rendered text (hundreds of lines per
//! mismatch); [`parse_abi_instability`] boils it down to one [`Mismatch`] per problem.

// The only unsafe call here is `init_root_module_with_unchecked_layout`, made after the
// swapped layout check described above has passed.
#![allow(unsafe_code)]

use std::fmt;

use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
use abi_stable::library::{LibHeader, LibraryError, RootModule};
use abi_stable::sabi_types::{VersionNumber, VersionStrings};
use abi_stable::StableAbi;

/// How a compatible library passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Acceptance {
    /// abi_stable's own check: the library knows at least what the host knows.
    Checked,
    /// An older minor version: the host's layout extends the library's (see the module docs).
    OlderMinor,
}

/// Why a library's root module cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum CompatError {
    /// An abi_stable library, but its root module belongs to some other program.
    OtherRootModule {
        /// The root module's name.
        name: String,
    },
    /// The library's interface version string does not parse.
    BadVersion {
        /// The string it declares.
        version: String,
    },
    /// Built against another major version of the interface.
    InterfaceMajor {
        /// The library's interface version.
        library: VersionNumber,
        /// The host's interface version.
        host: VersionNumber,
    },
    /// The library carries no type layout to check (`#[unsafe_no_layout_constant]`).
    NoLayout,
    /// The root module's layout differs from the host's.
    Layout {
        /// One entry per problem, in the host's terms ("expected" is what the host expects).
        mismatches: Vec<Mismatch>,
        /// abi_stable's full report.
        raw: String,
    },
    /// Anything else abi_stable refused.
    Library(LibraryError),
}

impl fmt::Display for CompatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OtherRootModule { name } => {
                write!(f, "not a gbs plugin (abi_stable root module {name:?})")
            }
            Self::BadVersion { version } => {
                write!(f, "unreadable interface version {version:?}")
            }
            Self::InterfaceMajor { library, host } => write!(
                f,
                "built against plugin interface {}.{}; this host speaks {}.x",
                library.major, library.minor, host.major
            ),
            Self::NoLayout => f.write_str("the library exports no type layout to check"),
            Self::Layout { mismatches, .. } => match mismatches.split_first() {
                None => f.write_str("incompatible type (unrecognised abi_stable report)"),
                Some((first, [])) => write!(f, "incompatible type: {first}"),
                Some((first, rest)) => {
                    write!(f, "incompatible type: {first} (and {} more)", rest.len())
                }
            },
            Self::Library(LibraryError::RootModule { .. }) => {
                f.write_str("its root module could not be built")
            }
            Self::Library(error) => write!(f, "{}", first_line(&error.to_string())),
        }
    }
}

impl std::error::Error for CompatError {}

/// The first non-empty line of a message, trimmed (abi_stable's start with a newline).
pub fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// Checks a loaded library's root module against the host's type `M` and returns it.
///
/// Runs the library's `#[export_root_module]` function (which only builds the module; the
/// plugin's own constructors are fields of it and are not called).
pub fn root_module<M>(header: &'static LibHeader) -> Result<(M, Acceptance), CompatError>
where
    M: RootModule + StableAbi,
{
    let name = header.root_mod_consts().name().as_str();
    if name != M::NAME {
        return Err(CompatError::OtherRootModule { name: name.into() });
    }
    let library = parse_version(header.version_strings())?;
    let host = parse_version(M::VERSION_STRINGS)?;
    if library.major != host.major {
        return Err(CompatError::InterfaceMajor { library, host });
    }
    // `init_root_module` skips the layout check when there is no layout; we never do.
    let library_layout = header.layout().ok_or(CompatError::NoLayout)?;
    match header.init_root_module::<M>() {
        Ok(module) => Ok((module, Acceptance::Checked)),
        Err(LibraryError::AbiInstability(report)) if library.minor < host.minor => {
            // Swapped: the library's layout as the "interface", ours as "implementation".
            match check_layout_compatibility(library_layout, <M as StableAbi>::LAYOUT) {
                Ok(()) => {
                    // SAFETY: the swapped check passed (see the module docs for why that
                    // suffices), and the major versions match.
                    let module = unsafe { header.init_root_module_with_unchecked_layout::<M>() }
                        .map_err(CompatError::Library)?;
                    Ok((module, Acceptance::OlderMinor))
                }
                Err(swapped) => {
                    let raw = swapped.to_string();
                    let mut mismatches = parse_abi_instability(&raw);
                    for m in &mut mismatches {
                        std::mem::swap(&mut m.expected, &mut m.found);
                    }
                    Err(CompatError::Layout {
                        mismatches,
                        raw: format!("{report}\n\nChecked the other way round:\n{raw}"),
                    })
                }
            }
        }
        Err(LibraryError::AbiInstability(report)) => {
            let raw = report.to_string();
            Err(CompatError::Layout {
                mismatches: parse_abi_instability(&raw),
                raw,
            })
        }
        Err(other) => Err(CompatError::Library(other)),
    }
}

fn parse_version(strings: VersionStrings) -> Result<VersionNumber, CompatError> {
    VersionNumber::new(strings).map_err(|_| CompatError::BadVersion {
        version: strings.version.as_str().into(),
    })
}

/// One layout problem found by abi_stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Where, as field names from the root module down, e.g. `new_server.param_2.vtable`;
    /// empty for the root module itself.
    pub path: String,
    /// abi_stable's description, e.g. `mismatched type`.
    pub error: String,
    /// The first line of what was expected.
    pub expected: Option<String>,
    /// The first line of what was found.
    pub found: Option<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "<root>"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.error)?;
        match (&self.expected, &self.found) {
            (Some(e), Some(found)) => write!(f, " (expected {e}, found {found})"),
            (Some(e), None) => write!(f, " (expected {e})"),
            (None, Some(found)) => write!(f, " (found {found})"),
            (None, None) => Ok(()),
        }
    }
}

/// Turns abi_stable's `AbiInstability` report into one [`Mismatch`] per problem.
///
/// The report has one block per type where something differs. Each block opens with
/// `N error(s)inside:` (or `N error(s).` at the root), lists the chain of `field_name:`
/// entries from the root down, dumps both layouts, and then has one `Error:<what>` with
/// `Expected:` and `Found:` sections per problem (or an `Extra:` section for the extra
/// checks). Only the path, the `Error:` line and the first line of each section are kept.
pub fn parse_abi_instability(text: &str) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut path: Vec<&str> = Vec::new();
    let mut lines = text.lines().peekable();
    // Whether we are between a block header and its layout dumps, where the path is.
    let mut in_path = false;
    while let Some(line) = lines.next() {
        if let Some((count, has_path)) = block_header(line) {
            path.clear();
            in_path = count > 0 && has_path;
            continue;
        }
        if line.starts_with("Layout of expected type:")
            || line.starts_with("Error:")
            || line.starts_with("Extra:")
        {
            in_path = false;
        }
        if in_path {
            if let Some(name) = line.trim().strip_prefix("field_name:") {
                let name = name.split_whitespace().next().unwrap_or("");
                // Newtypes (the root module, vtable references) add a field numbered 0
                // that says nothing to a reader.
                if name != "0" && !name.is_empty() {
                    path.push(name);
                }
            }
            continue;
        }
        if let Some(error) = line.strip_prefix("Error:") {
            let mut mismatch = Mismatch {
                path: path.join("."),
                error: error.trim().to_owned(),
                expected: None,
                found: None,
            };
            while let Some(next) = lines.peek() {
                if next.starts_with("Expected:") {
                    lines.next();
                    mismatch.expected = section_first_line(&mut lines);
                } else if next.starts_with("Found:") {
                    lines.next();
                    mismatch.found = section_first_line(&mut lines);
                } else if next.starts_with("Extra:") && mismatch.error.is_empty() {
                    lines.next();
                    mismatch.error = section_first_line(&mut lines).unwrap_or_default();
                } else {
                    break;
                }
            }
            if mismatch.error.is_empty() {
                "layout mismatch".clone_into(&mut mismatch.error);
            }
            out.push(mismatch);
        } else if line.starts_with("Extra:") {
            // An extra check failed without an `Error:` line before it.
            let error = section_first_line(&mut lines).unwrap_or_default();
            out.push(Mismatch {
                path: path.join("."),
                error,
                expected: None,
                found: None,
            });
        }
    }
    out
}

/// `N error(s)inside:` (followed by a path) or `N error(s).` (at the root) at the start
/// of a line: `Some((N, whether a path follows))`.
fn block_header(line: &str) -> Option<(usize, bool)> {
    let (count, rest) = line.split_once(' ')?;
    let count = count.parse().ok()?;
    match rest {
        "error(s)inside:" => Some((count, true)),
        "error(s)." => Some((count, false)),
        _ => None,
    }
}

/// The first non-empty line of an indented section, consuming the section (up to the next
/// line that starts in column 0).
fn section_first_line<'a, I>(lines: &mut std::iter::Peekable<I>) -> Option<String>
where
    I: Iterator<Item = &'a str>,
{
    let mut first = None;
    while let Some(next) = lines.peek() {
        if !next.is_empty() && !next.starts_with(' ') {
            break;
        }
        if first.is_none() && !next.trim().is_empty() {
            first = Some(next.trim().to_owned());
        }
        lines.next();
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of abi_stable's report for `plugin-changed` (a `u64` parameter turned into
    /// `u32`), with the layout dumps shortened.
    const CHANGED_PARAMETER: &str = "\
Compared <this>:
    --- Type Layout ---
    type:PluginLibraryRef
    field_name:0
To <other>:
    --- Type Layout ---
    type:PluginLibraryRef
    field_name:0

0 error(s).
0 error(s)inside:
    <other>

    field_name:0
    type:PluginLibrary

Layout of expected type:
    field_name:describe

Layout of found type:
    field_name:describe


1 error(s)inside:
    <other>

    field_name:0
    type:PluginLibrary
    size:24 align:8
    package:'gbs-plugin-interface' version:'1.0.0'

    field_name:new_server
    type:AFunctionPointer
    fn pointer(s):
        fn(,,,: RStr<'a>, param_1: RVec, param_2: HostApiFfi_TO<'lt>)->RResult

    fn(,,,: RStr<'a>, param_1: RVec, param_2: HostApiFfi_TO<'lt>)->RResult

    field_name:param_2
    type:HostApiFfi_TO<'lt>

    field_name:obj
    type:RObject<'lt>

    field_name:vtable
    type:PrefixRef<'a, VTable>

    field_name:0
    type:VTable

    field_name:sleep_millis
    type:AFunctionPointer
    fn pointer(s):
        unsafe fn(_self,param_0,: RRef<'a>, param_1: u32)->BorrowingFfiFuture<'a>

    field_name:param_1
    type:u32
    size:4 align:4
    package:'std' version:'1.0.0'

Layout of expected type:
    --- Type Layout ---
    type:u64
    field_name:not_part_of_the_path

Layout of found type:
    --- Type Layout ---
    type:u32



Error:mismatched type
Expected:
    u64
Found:
    u32
";

    #[test]
    fn a_changed_parameter_becomes_one_line_with_its_path() {
        let found = parse_abi_instability(CHANGED_PARAMETER);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].to_string(),
            "new_server.param_2.obj.vtable.sleep_millis.param_1: mismatched type (expected u64, found u32)"
        );
    }

    /// The notes' examples: a method inserted mid-trait, and a newer host's root module
    /// against an older library, each block shortened.
    const INSERTED_METHOD: &str = "\
1 error(s)inside:
    <other>

    field_name:0
    type:PluginMod

    field_name:new_hook
    type:AFunctionPointer

    field_name:__returns
    type:Hook_TO<'lt>

    field_name:obj
    type:RObject<'lt>

    field_name:vtable
    type:PrefixRef<'a, VTable>

Layout of expected type:
    x

Layout of found type:
    y


Error:prefix-types have a different prefix
Expected:
    7
Found:
    8

Error:unexpected field
Expected:
    field_name:add
    type:AFunctionPointer
Found:
    field_name:inserted
    type:AFunctionPointer
1 error(s).

Error:too many fields
Expected:
    3
Found:
    2

1 error(s).

Error:incompatible package versions
Expected:
    0.1.0
Found:
    0.2.0
";

    #[test]
    fn every_error_of_every_block_is_kept_with_the_first_line_of_each_side() {
        let lines: Vec<String> = parse_abi_instability(INSERTED_METHOD)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "new_hook.__returns.obj.vtable: prefix-types have a different prefix (expected 7, found 8)",
                "new_hook.__returns.obj.vtable: unexpected field (expected field_name:add, found field_name:inserted)",
                "<root>: too many fields (expected 3, found 2)",
                "<root>: incompatible package versions (expected 0.1.0, found 0.2.0)",
            ]
        );
    }

    #[test]
    fn extra_checks_without_expected_and_found_still_give_a_line() {
        let text = "\
1 error(s)inside:
    <other>

    field_name:0

    field_name:new_server

Layout of expected type:
    x


Extra:
    Auto traits: expected Send Sync, found Send

";
        let found = parse_abi_instability(text);
        assert_eq!(
            found.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["new_server: Auto traits: expected Send Sync, found Send"]
        );
    }

    #[test]
    fn text_that_is_no_report_gives_no_mismatch() {
        assert!(parse_abi_instability("").is_empty());
        assert!(parse_abi_instability("Error\nExpected:\n").is_empty());
        let error = CompatError::Layout {
            mismatches: Vec::new(),
            raw: String::new(),
        };
        assert_eq!(
            error.to_string(),
            "incompatible type (unrecognised abi_stable report)"
        );
    }

    #[test]
    fn several_mismatches_display_as_the_first_and_a_count() {
        let mismatches = parse_abi_instability(INSERTED_METHOD);
        let error = CompatError::Layout {
            mismatches,
            raw: String::new(),
        };
        assert_eq!(
            error.to_string(),
            "incompatible type: new_hook.__returns.obj.vtable: prefix-types have a different prefix (expected 7, found 8) (and 3 more)"
        );
    }
}
