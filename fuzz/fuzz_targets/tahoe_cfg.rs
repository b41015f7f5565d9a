//! `tahoe.cfg`: the raw INI parse, then the checked node config built from it, and the
//! value parsers it uses (sizes, durations, plugin names). Nothing may panic, and every
//! error must display.
#![no_main]

use std::path::Path;

use gbs::config::{check_plugin_name, parse_duration, parse_size, NodeConfig, RawConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The file is read with `read_to_string`, so only UTF-8 reaches the parser.
    let text = String::from_utf8_lossy(data);
    match RawConfig::parse(Path::new("tahoe.cfg"), &text) {
        Ok(raw) => match NodeConfig::from_raw(Path::new("/node"), &raw) {
            Ok(config) => {
                let _ = (config.storage_dir(), config.private_dir());
            }
            Err(error) => {
                let _ = error.to_string();
            }
        },
        Err(error) => {
            let _ = error.to_string();
        }
    }
    let first_line = text.lines().next().unwrap_or_default();
    let _ = parse_size(first_line);
    let _ = parse_duration(first_line);
    let _ = check_plugin_name(first_line);
});
