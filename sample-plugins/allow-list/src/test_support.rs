//! What the unit tests need in place of a host: a server connection and a one-poll executor.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RResult};
use async_ffi::{FfiFuture, FutureExt as _};
use gbs_plugin_interface::ffi::{ServerConnectionFfi, ServerConnectionFfi_TO};
use gbs_plugin_interface::{PluginError, RouteRequest, RouteResponse, ServerConnection};

/// A server without plugin routes (allow-list calls none); kept: `testing` has no server fake.
struct NoRoutes;

impl ServerConnectionFfi for NoRoutes {
    fn call_route(&self, _request: RouteRequest) -> FfiFuture<RResult<RouteResponse, PluginError>> {
        async { RResult::ROk(RouteResponse::text(404, "no routes here")) }.into_ffi()
    }
}

pub(crate) fn server_connection() -> ServerConnection {
    ServerConnection::from_ffi(ServerConnectionFfi_TO::from_ptr(
        RArc::new(NoRoutes),
        TD_Opaque,
    ))
}

/// The output of a hook's future, which must not wait: allow-list does no I/O in hooks.
pub(crate) fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the hook waited, but allow-list hooks never do"),
    }
}
