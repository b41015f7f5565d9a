//! The GBS client library and `gbs client`, against stock Tahoe 1.20 and against `gbs`.
//!
//! Each behaviour is written once, as a function of the server's NURL, and `against_both!`
//! runs it against a stock Tahoe storage server (the reference) and against the real `gbs`
//! binary, each with its own certificate and real TLS on loopback. Servers that misbehave,
//! which neither real server can be made into, are played by `fake_server`.

use std::future::Future;

use gbs::protocol::Nurl;
use gbs_tests::{GbsNode, StockServer};

/// Generates an `against_gbs::<case>` and an `against_stock::<case>` test for each case, run by `run_async`
/// (cases are `async fn(Nurl)`) or `run_blocking` (cases are `fn(Nurl)`).
macro_rules! against_both {
    (@each $target:ty, $runner:ident, $($case:ident),*) => {
        $(
            #[test]
            fn $case() {
                let server = <$target as crate::client::Target>::start();
                crate::client::$runner(crate::client::Target::nurl(&server), super::$case);
            }
        )*
    };
    ($runner:ident: $($case:ident),* $(,)?) => {
        mod against_gbs {
            against_both!(@each gbs_tests::GbsNode, $runner, $($case),*);
        }
        mod against_stock {
            against_both!(@each gbs_tests::StockServer, $runner, $($case),*);
        }
    };
}

mod bad_input;
mod cases;
mod cli;
mod fake_server;

/// A real server the cases run against, started fresh for each test.
trait Target {
    fn start() -> Self;
    fn nurl(&self) -> Nurl;
}

impl Target for GbsNode {
    fn start() -> Self {
        GbsNode::start()
    }

    fn nurl(&self) -> Nurl {
        GbsNode::nurl(self)
            .parse()
            .expect("gbs prints a valid NURL")
    }
}

impl Target for StockServer {
    fn start() -> Self {
        StockServer::start()
    }

    fn nurl(&self) -> Nurl {
        StockServer::nurl(self)
            .parse()
            .expect("stock Tahoe prints a valid NURL")
    }
}

/// Runs an async case to completion on a two-thread runtime (the machine has two cores).
fn run_async<F: Future<Output = ()>>(nurl: Nurl, case: impl FnOnce(Nurl) -> F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(case(nurl));
}

/// Runs a blocking case.
fn run_blocking(nurl: Nurl, case: fn(Nurl)) {
    case(nurl);
}
