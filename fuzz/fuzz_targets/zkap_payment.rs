//! The ZKAP plugin's untrusted inputs: passes (`Pass::parse`, and `validate` as the server
//! runs it on a request's passes), the plugin data a client attaches (`Payment`), and the
//! other CBOR the two sides exchange (pass uploads, handles, `stat-shares`, rejection
//! details, announcements). A decoded value encodes to bytes that decode to it again.
//!
//! The first byte picks the parser; the rest is the input. Passes are checked against the
//! signing key and message of the recorded vectors (`vectors/passes.json`), so that the
//! seed passes are valid.
#![no_main]

use std::fmt::Debug;
use std::sync::OnceLock;

use gbs_plugin_interface::{from_cbor, to_cbor};
use gbs_sample_zkapauthorizer::pass::{validate, Pass, SigningKey, PASS_LENGTH};
use gbs_sample_zkapauthorizer::wire::{
    Announcement, HandleIssued, PassUpload, Payment, ShortfallDetails, StatAnswer, StatRequest,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// `signing_key` of `vectors/passes.json`, standard base64.
const SIGNING_KEY: [u8; 32] = [
    0x2b, 0xb9, 0xc5, 0x95, 0xdd, 0xab, 0xb4, 0xf4, 0x63, 0xda, 0x87, 0x64, 0xec, 0xd9, 0x9a, 0x2f,
    0x7f, 0x9b, 0xcb, 0x60, 0x51, 0xc4, 0x21, 0x34, 0x65, 0xc6, 0xa4, 0x6b, 0x14, 0x3a, 0xcf, 0x0a,
];
/// The `allocate_buckets` message of the vectors' storage index.
const MESSAGE: &[u8] = b"allocate_buckets AAECAwQFBgcICQoLDA0ODw==";
/// More passes than this in one payment are parsed but not all checked, to keep runs fast.
const MAX_CHECKED: usize = 4;

fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::from_bytes(&SIGNING_KEY).expect("the vectors' signing key"))
}

fn passes(list: &[impl AsRef<[u8]>]) {
    let list = &list[..list.len().min(MAX_CHECKED)];
    match validate(key(), MESSAGE, list) {
        Ok(validation) => {
            assert_eq!(
                validation.valid.len() + validation.signature_check_failed.len(),
                list.len()
            );
            for index in validation.signature_check_failed {
                assert!(index < list.len());
            }
        }
        Err((index, _)) => {
            assert!(index < list.len());
            assert!(Pass::parse(list[index].as_ref()).is_err());
        }
    }
}

fn pass(bytes: &[u8]) {
    if let Ok(pass) = Pass::parse(bytes) {
        let wire = pass.to_bytes();
        assert_eq!(wire.len(), PASS_LENGTH);
        let again = Pass::parse(&wire).expect("an encoded pass parses");
        assert_eq!(again.preimage(), pass.preimage());
        assert_eq!(again.to_bytes(), wire);
    }
    passes(&[bytes]);
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(bytes: &[u8]) -> Option<T> {
    let value: T = from_cbor(bytes).ok()?;
    assert_eq!(from_cbor::<T>(&to_cbor(&value)).as_ref(), Ok(&value));
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => pass(body),
        1 => {
            if let Ok(payment) = Payment::from_cbor(body) {
                assert_eq!(
                    Payment::from_cbor(&payment.to_cbor()).as_ref(),
                    Ok(&payment)
                );
                if let Payment::Passes(list) = &payment {
                    let list: Vec<&[u8]> = list.iter().map(|b| b.0.as_slice()).collect();
                    passes(&list);
                }
            }
        }
        2 => {
            if let Some(upload) = round_trip::<PassUpload>(body) {
                let list: Vec<&[u8]> = upload.passes.iter().map(|b| b.0.as_slice()).collect();
                passes(&list);
            }
        }
        3 => drop(round_trip::<HandleIssued>(body)),
        4 => drop(round_trip::<StatRequest>(body)),
        5 => drop(round_trip::<StatAnswer>(body)),
        6 => drop(round_trip::<ShortfallDetails>(body)),
        _ => drop(round_trip::<Announcement>(body)),
    }
});
