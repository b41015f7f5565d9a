//! The `gbs` command, built inside the test package.
use std::process::ExitCode;

fn main() -> ExitCode {
    gbs::cli::main(std::env::args_os())
}
