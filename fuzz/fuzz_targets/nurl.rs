//! NURLs, as a client reads them from its configuration, `servers.yaml` or a server's
//! announcement, and the SPKI hash they pin. A parsed NURL prints as a NURL that parses to
//! the same value.
#![no_main]

use gbs::protocol::{Nurl, SpkiHash};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(nurl) = text.parse::<Nurl>() {
        let printed = nurl.to_string();
        assert_eq!(printed.parse::<Nurl>().as_ref(), Ok(&nurl), "{printed}");
        let _ = (nurl.base_url(), format!("{nurl:?}"));
    }
    if let Ok(hash) = text.parse::<SpkiHash>() {
        assert_eq!(hash.to_string(), text);
    }
});
