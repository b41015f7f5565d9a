//! The `servers.yaml` a stock Tahoe client reads its storage servers from
//! (`private/servers.yaml`, Tahoe's static server definitions), for `gbs` nodes directly or
//! through a gateway.
//!
//! Tahoe derives lease secrets and write enablers from the server's Foolscap tub id in the
//! announced `anonymous-storage-FURL`, even over GBS (`gbs-protocol.md` §2.4), and places
//! shares by the server id. So an upstream is announced with the same server id and tub id
//! whether the client reaches it directly or through a gateway: both are derived from the
//! upstream's key (its NURL's SPKI hash), exactly as the node derives its own id, and what a
//! client stores through the gateway stays manageable without it.

use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};

use crate::protocol::{base32_encode, Nurl};

/// The 20-byte id a `gbs` node uses where Tahoe uses a tub id: derived from its key.
fn tub_id(upstream: &Nurl) -> [u8; 20] {
    let digest = Sha256::digest(upstream.spki_hash.to_string().as_bytes());
    let mut id = [0; 20];
    id.copy_from_slice(&digest[..20]);
    id
}

/// One server's entry: `upstream` identifies it, `published` is the NURL the client uses
/// (the same, or a gateway's local NURL for it).
pub fn server_entry(upstream: &Nurl, published: &Nurl) -> String {
    let id = tub_id(upstream);
    let server_id = format!(
        "v0-{}",
        base32_encode(&Sha256::digest(upstream.spki_hash.to_string().as_bytes()))
    );
    // A Foolscap address that is never dialled: the client talks GBS to the NURL.
    let furl = format!(
        "pb://{}@tcp:{}:{}/{}",
        base32_encode(&id),
        upstream.host,
        upstream.port,
        base32_encode(&id)
    );
    let mut entry = String::new();
    let _ = writeln!(entry, "  {server_id}:");
    let _ = writeln!(entry, "    ann:");
    let _ = writeln!(entry, "      nickname: gbs-{}", &server_id[3..11]);
    let _ = writeln!(entry, "      anonymous-storage-FURL: {furl}");
    let _ = writeln!(entry, "      anonymous-storage-NURLs:");
    let _ = writeln!(entry, "        - {published}");
    entry
}

/// A whole `servers.yaml` for these `(upstream, published NURL)` pairs.
pub fn servers_yaml(servers: &[(Nurl, Nurl)]) -> String {
    let mut yaml = String::from("storage:\n");
    for (upstream, published) in servers {
        yaml.push_str(&server_entry(upstream, published));
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    const NURL: &str = "pb://WvQpEy1vElE-08RDYWr_X63JYNn5KR14kgfTbEnIDVU@127.0.0.1:47125/abcdefghijklmnopqrstuvwxyz234567#v=1";

    #[test]
    fn an_upstream_keeps_its_ids_whichever_nurl_is_published() {
        let upstream: Nurl = NURL.parse().expect("NURL");
        let mut local = upstream.clone();
        local.port = 9;
        local.swissnum = crate::protocol::Swissnum::new("another");
        let direct = server_entry(&upstream, &upstream);
        let through = server_entry(&upstream, &local);
        let ids = |entry: &str| -> Vec<String> {
            entry
                .lines()
                .filter(|l| !l.contains("- pb://"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(ids(&direct), ids(&through));
        assert_ne!(direct, through);
        assert!(direct.contains(&format!("- {NURL}")), "{direct}");
        // The tub id is 32 base32 characters, as Tahoe's are.
        let furl = direct
            .lines()
            .find_map(|l| l.trim().strip_prefix("anonymous-storage-FURL: pb://"))
            .expect("a FURL");
        assert_eq!(furl.split('@').next().map(str::len), Some(32));
    }
}
