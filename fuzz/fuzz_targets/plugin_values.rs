//! The operations and outcomes the host gives in-process plugins, read by the SDK's
//! hand-written decoder (`Operation::from_cbor`, `Outcome::from_cbor`). Whatever the bytes,
//! it answers exactly as serde does (`gbs_plugin_interface::from_cbor`), the same value or
//! the same error, and a value it reads is written back as serde writes it.
//!
//! The first byte picks operation or outcome; the rest is the CBOR.
#![no_main]

use gbs_plugin_interface::{from_cbor, to_cbor, Operation, Outcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&pick, bytes)) = input.split_first() else {
        return;
    };
    if pick % 2 == 0 {
        let decoded = Operation::from_cbor(bytes);
        assert_eq!(decoded, from_cbor::<Operation>(bytes));
        if let Ok(operation) = decoded {
            assert_eq!(operation.to_cbor(), to_cbor(&operation));
        }
    } else {
        let decoded = Outcome::from_cbor(bytes);
        assert_eq!(decoded, from_cbor::<Outcome>(bytes));
        if let Ok(outcome) = decoded {
            assert_eq!(outcome.to_cbor(), to_cbor(&outcome));
        }
    }
});
