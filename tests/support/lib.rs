//! Shared helpers for the integration tests: the stock Tahoe venv, and `gbs` and stock
//! Tahoe servers running as real processes on loopback.

mod process;
mod venv;

pub use process::{gbs_binary, run_python, GbsNode, StockServer};
pub use venv::{interop_script, tahoe_python};
