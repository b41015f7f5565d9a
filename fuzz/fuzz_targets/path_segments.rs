//! Path segments: `{si}` (Tahoe base32 storage indexes) and `{shnum}` (share numbers),
//! and base32 itself. Every accepted spelling is the canonical one, so printing what was
//! parsed gives the input back.
#![no_main]

use gbs::protocol::{base32_decode, base32_encode, ShareNumber, StorageIndex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Arbitrary bytes: base32 encodes and decodes back.
    assert_eq!(base32_decode(&base32_encode(data)).as_deref(), Some(data));
    if let Ok(bytes) = <[u8; 16]>::try_from(data.get(..16).unwrap_or_default()) {
        let si = StorageIndex::from_bytes(bytes);
        assert_eq!(si.to_string().parse::<StorageIndex>(), Ok(si));
    }

    // Axum hands the handlers percent-decoded UTF-8 segments.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(bytes) = base32_decode(text) {
        assert_eq!(base32_encode(&bytes), text);
    }
    if let Ok(si) = text.parse::<StorageIndex>() {
        assert_eq!(si.to_string(), text);
        assert_eq!(si.shard_prefix(), text[..2]);
    }
    if let Ok(shnum) = text.parse::<ShareNumber>() {
        assert!(text.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(shnum.to_string().parse::<ShareNumber>(), Ok(shnum));
        assert_eq!(
            text.trim_start_matches('0').parse::<u64>().unwrap_or(0),
            u64::from(shnum.0)
        );
    }
});
