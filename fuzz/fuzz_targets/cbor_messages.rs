//! The CBOR bodies of every endpoint: requests the server decodes (allocate,
//! read-test-write, advise corrupt) and answers the client decodes (version, allocate,
//! upload progress, read-test-write, share lists). The first byte picks the message; the
//! rest is the body. A decoded message must encode to bytes that decode to it again.
#![no_main]

use std::fmt::Debug;

use gbs::protocol::{
    share_set_cbor, share_set_from_cbor, AllocateRequest, AllocateResponse, CborMessage,
    CorruptionReport, ReadTestWriteRequest, ReadTestWriteResponse, UploadProgress, VersionInfo,
};
use libfuzzer_sys::fuzz_target;

fn round_trip<T: CborMessage + PartialEq + Debug>(body: &[u8]) {
    if let Ok(message) = T::from_cbor(body) {
        let again = T::from_cbor(&message.to_cbor()).expect("an encoded message decodes");
        assert_eq!(again, message);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => round_trip::<AllocateRequest>(body),
        1 => round_trip::<ReadTestWriteRequest>(body),
        2 => round_trip::<CorruptionReport>(body),
        3 => round_trip::<AllocateResponse>(body),
        4 => round_trip::<ReadTestWriteResponse>(body),
        5 => round_trip::<UploadProgress>(body),
        6 => round_trip::<VersionInfo>(body),
        _ => {
            if let Ok(shares) = share_set_from_cbor(body) {
                assert_eq!(share_set_from_cbor(&share_set_cbor(&shares)), Ok(shares));
            }
        }
    }
});
