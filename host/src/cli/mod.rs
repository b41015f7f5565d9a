//! The `gbs` command line.
use std::ffi::OsString;
use std::process::ExitCode;

/// Runs the `gbs` command with the process arguments.
pub fn main(_args: impl IntoIterator<Item = OsString>) -> ExitCode {
    ExitCode::SUCCESS
}
