//! What plugins answer the host, checked before it reaches a client: in-process rejections
//! (`checked_rejection`) and route answers (`passable_route_response`), and the CBOR
//! answers of out-of-process plugins (`describe`, `admit`, `route`, error bodies), which
//! go through the same checks. A rejection the host accepts has an allowed status and a
//! body that is one CBOR map; a route answer it accepts stays within its bounds.
//!
//! The first byte picks the check; the rest is the answer.
#![no_main]

use abi_stable::std_types::{RString, RVec};
use ciborium::Value;
use gbs::plugins::data::is_one_cbor_item;
use gbs::plugins::dispatch::{
    checked_rejection, passable_route_response, MAX_ROUTE_RESPONSE, REJECTION_STATUSES,
};
use gbs::plugins::remote::wire;
use gbs::plugins::Refusal;
use gbs_plugin_interface::ffi::{Rejection, RouteResponse};
use libfuzzer_sys::fuzz_target;

fn check_rejection(rejection: &Rejection) {
    let Ok(refusal) = checked_rejection("fuzz", rejection) else {
        return;
    };
    let Refusal::Rejected { status, body, .. } = refusal else {
        panic!("a checked rejection is a Rejected refusal");
    };
    assert!(REJECTION_STATUSES.contains(&status));
    assert!(is_one_cbor_item(&body));
    let value: Value = ciborium::from_reader(body.as_slice()).expect("CBOR body");
    assert!(matches!(value, Value::Map(ref entries) if entries.len() == 4));
}

fn check_route(response: &RouteResponse) {
    if passable_route_response(response) {
        assert!((200..=599).contains(&response.status));
        assert!(response.body.len() <= MAX_ROUTE_RESPONSE);
        // The content type becomes a header value.
        assert!(http_header_value(response.content_type.as_str()));
    }
}

/// What `http::HeaderValue` accepts: visible ASCII, space, tab and obs-text.
fn http_header_value(text: &str) -> bool {
    text.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// An in-process rejection made from raw fields: status, then code and message lengths,
/// then the bytes they and the details are cut from.
fn rejection_of(bytes: &[u8]) -> Option<Rejection> {
    let (head, rest) = bytes.split_at_checked(4)?;
    let status = u16::from_be_bytes([head[0], head[1]]);
    let code_len = usize::from(head[2]).min(rest.len());
    let (code, rest) = rest.split_at(code_len);
    let message_len = usize::from(head[3]).min(rest.len());
    let (message, details) = rest.split_at(message_len);
    Some(Rejection {
        status,
        code: RString::from(String::from_utf8_lossy(code).into_owned()),
        message: RString::from(String::from_utf8_lossy(message).into_owned()),
        details: RVec::from(details.to_vec()),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            if let Some(rejection) = rejection_of(body) {
                check_rejection(&rejection);
            }
        }
        1 => {
            let Some((head, rest)) = body.split_first_chunk::<3>() else {
                return;
            };
            let type_len = usize::from(head[2]).min(rest.len());
            let (content_type, body) = rest.split_at(type_len);
            check_route(&RouteResponse {
                status: u16::from_be_bytes([head[0], head[1]]),
                content_type: RString::from(String::from_utf8_lossy(content_type).into_owned()),
                body: RVec::from(body.to_vec()),
            });
        }
        2 => {
            if let Ok(description) = wire::description(body) {
                let _ = format!("{description:?}");
            }
        }
        3 => {
            if let Ok(Some(rejection)) = wire::admission(body) {
                assert!(rejection.details.is_empty() || is_one_cbor_item(&rejection.details));
                check_rejection(&rejection);
            }
        }
        4 => {
            if let Ok(response) = wire::route_response(body) {
                check_route(&response);
            }
        }
        _ => {
            let status = u16::from(which);
            let message = wire::error_message(status, body);
            assert!(message.starts_with(&format!("status {status}")));
            // `is_one_cbor_item` agrees with a decode that must consume everything.
            let mut reader = body;
            let whole = ciborium::from_reader::<Value, _>(&mut reader).is_ok() && reader.is_empty();
            assert_eq!(is_one_cbor_item(body), whole);
        }
    }
});
