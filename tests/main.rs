//! The one integration test binary: end-to-end tests of the real `gbs` process, and
//! interop tests against stock Tahoe-LAFS 1.20 from PyPI.

mod benchmarks;
mod cli;
mod client;
mod concurrent_uploads;
mod crash_loops;
mod disk_faults;
mod disk_space;
mod gateway;
mod gateway_introducer;
mod hostile_clients;
mod interop;
mod out_of_process;
mod plugin_hooks;
mod plugin_isolation;
mod plugin_loading;
mod plugin_reload;
mod power_loss;
mod secrets;
mod shutdown;
mod storage_dir;
mod zkap;
