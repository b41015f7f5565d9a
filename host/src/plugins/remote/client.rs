//! The client hooks of an out-of-process plugin (`/gbs-plugin/v1/client/...`). An
//! unreachable client plugin fails the operation it would have prepared (closed, as on the
//! server side): the client reports the plugin's failure instead of sending the request
//! without its data.

use abi_stable::std_types::{RNone, ROption, RResult, RSome, RVec};
use async_ffi::FfiFuture;
use gbs_plugin_interface::ffi::{
    ClientPluginFfi, PluginDataFuture, PluginError, Rejection, RouteRequest, RouteResponse,
    ServerConnectionBox,
};

use super::connection::Connector;
use super::wire::{envelope, Item, Map};
use super::{
    acknowledged, answer_of, failed, on_own_runtime, plainly, Remote, MAX_ANSWER, MAX_ROUTE_ANSWER,
    PREFIX,
};

/// `{"data": bstr / null}`: plugin data to attach, or none.
fn data(body: &[u8]) -> Result<ROption<RVec<u8>>, String> {
    let mut map = Map::decode(body)?;
    Ok(match map.optional_bytes("data")? {
        Some(bytes) => RSome(bytes.into()),
        None => RNone,
    })
}

impl ClientPluginFfi for Remote {
    fn matches(&self, announcement: RVec<u8>) -> RResult<bool, PluginError> {
        // Synchronous in the interface: asked once per server, on a thread of its own.
        let body = envelope(&[("announcement", Item::Encoded(&announcement))]);
        let address = self.shared.connector.address().clone();
        let deadline = self.shared.deadline;
        let asked = on_own_runtime(async {
            let connector = Connector::new(address);
            let path = format!("{PREFIX}client/matches");
            let call = connector.call(::http::Method::POST, &path, body, MAX_ANSWER, deadline);
            tokio::time::timeout(deadline, call)
                .await
                .map_err(|_| format!("no answer within {deadline:?}"))
        });
        let result =
            asked.map(|result| answer_of(result, |body| Map::decode(body)?.bool("matches")));
        match result {
            Ok(result) => plainly(&self.shared, result),
            Err(why) => RResult::RErr(failed(why)),
        }
    }

    fn prepare(&self, _server: ServerConnectionBox, operation: RVec<u8>) -> PluginDataFuture {
        let body = envelope(&[("operation", Item::Encoded(&operation))]);
        self.call("client/prepare", body, MAX_ANSWER, data, plainly)
    }

    fn rejected(
        &self,
        _server: ServerConnectionBox,
        operation: RVec<u8>,
        rejection: Rejection,
    ) -> PluginDataFuture {
        let details = ciborium::from_reader::<ciborium::Value, _>(rejection.details.as_slice())
            .unwrap_or(ciborium::Value::Null);
        let text = |s: &str| ciborium::Value::Text(s.to_owned());
        let rejection = ciborium::Value::Map(vec![
            (
                text("status"),
                ciborium::Value::Integer(rejection.status.into()),
            ),
            (text("code"), text(rejection.code.as_str())),
            (text("message"), text(rejection.message.as_str())),
            (text("details"), details),
        ]);
        let body = envelope(&[
            ("operation", Item::Encoded(&operation)),
            ("rejection", Item::Value(rejection)),
        ]);
        self.call("client/rejected", body, MAX_ANSWER, data, plainly)
    }

    fn committed(
        &self,
        operation: RVec<u8>,
        outcome: RVec<u8>,
    ) -> FfiFuture<RResult<(), PluginError>> {
        let body = super::committed_envelope(&operation, &outcome);
        self.call("client/committed", body, MAX_ANSWER, acknowledged, plainly)
    }

    fn route(&self, request: RouteRequest) -> FfiFuture<RResult<RouteResponse, PluginError>> {
        self.call(
            "client/route",
            super::route_envelope(&request),
            MAX_ROUTE_ANSWER,
            super::wire::route_response,
            plainly,
        )
    }
}
