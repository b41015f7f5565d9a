//! Request and answer headers: `Content-Range` of uploads, `Range` of reads and the
//! `Content-Range` of a 206 answer, `X-Tahoe-Authorization` and `X-Tahoe-Plugin-Data`.
//! The first byte picks the header (and, for secrets, the set the endpoint takes); the rest,
//! split at newlines, is its value or values.
#![no_main]

use gbs::plugins::data::is_one_cbor_item;
use gbs::plugins::PluginData;
use gbs::protocol::{secret_header_line, ContentRange, ReadRange, SecretKind, Secrets};
use libfuzzer_sys::fuzz_target;

/// The secret sets of the endpoints (see `server/extract.rs`).
const SECRET_SETS: [&[SecretKind]; 5] = [
    &[],
    &[SecretKind::Upload],
    &[SecretKind::LeaseRenew, SecretKind::LeaseCancel],
    &[
        SecretKind::LeaseRenew,
        SecretKind::LeaseCancel,
        SecretKind::Upload,
    ],
    &[
        SecretKind::WriteEnabler,
        SecretKind::LeaseRenew,
        SecretKind::LeaseCancel,
    ],
];

fn content_range(text: &str) {
    if let Ok(range) = ContentRange::parse(text) {
        assert!(range.start() < range.end());
        assert_eq!(range.len(), range.end() - range.start());
        assert_eq!(ContentRange::parse(&range.to_string()), Ok(range));
        assert_eq!(
            ReadRange::parse_content_range(text),
            Ok(range.start()..range.end())
        );
    }
}

fn read_range(text: &str, share_length: u64) {
    if let Ok(range) = ReadRange::parse(text) {
        assert_eq!(ReadRange::parse(&range.to_string()), Ok(range));
        if let Some(served) = range.clamp(share_length) {
            assert!(served.start < served.end && served.end <= share_length);
            let header = ReadRange::content_range(&served);
            assert_eq!(ReadRange::parse_content_range(&header), Ok(served));
        }
    }
}

fn secrets(lines: &[&[u8]], expected: &[SecretKind]) {
    let Ok(secrets) = Secrets::parse(lines.iter().copied(), expected) else {
        return;
    };
    let lease = secrets.lease();
    let _ = (lease.renew.expose(), lease.cancel.expose());
    if let Some(upload) = secrets.upload() {
        assert!(expected.contains(&SecretKind::Upload));
        let line = secret_header_line(SecretKind::Upload, upload.expose());
        let again = Secrets::parse([line.as_bytes()], &[SecretKind::Upload]).expect("re-parse");
        assert_eq!(again.upload(), Some(upload));
    }
    if let Some(enabler) = secrets.write_enabler() {
        assert!(expected.contains(&SecretKind::WriteEnabler));
        assert!(!enabler.expose().is_empty());
    }
}

/// Plugin names a node has loaded: all but those starting with `x`, so that unknown names
/// are reachable too.
fn known(name: &str) -> bool {
    !name.starts_with('x')
}

fn plugin_data(lines: &[&[u8]]) {
    let Ok(data) = PluginData::parse(lines.iter().copied(), known) else {
        return;
    };
    assert_eq!(data.is_empty(), lines.is_empty());
    for line in lines {
        let Some((name, _)) = std::str::from_utf8(line)
            .ok()
            .and_then(|l| l.trim().split_once(' '))
        else {
            continue;
        };
        let cbor = data
            .get(name)
            .expect("every parsed header has its plugin's data");
        assert!(is_one_cbor_item(cbor));
        let header = PluginData::header_value(name, cbor);
        let again = PluginData::parse([header.as_bytes()], known).expect("re-parse");
        assert_eq!(again.get(name), Some(cbor));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let lines: Vec<&[u8]> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(|&b| b == b'\n').collect()
    };
    match which % 4 {
        0 => content_range(&text),
        1 => read_range(&text, u64::from(which) * 997),
        2 => secrets(
            &lines,
            SECRET_SETS[usize::from(which / 4) % SECRET_SETS.len()],
        ),
        _ => plugin_data(&lines),
    }
});
